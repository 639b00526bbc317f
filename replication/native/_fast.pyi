"""Type stubs for ``replication.native._fast``; callers import these names from ``native.fastpath``."""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

def crc32_each(buf: bytes, offset: int, stride: int, size: int, count: int) -> npt.NDArray[np.uint32]:
    """CRC-32 (zlib's) of ``buf[offset + i * stride :][:size]`` for ``i < count``. O(count * size)."""

def frame_records(raw: bytes, size: int) -> bytes:
    """Journal records (``u32 size, u32 crc32, payload``) for the ``size``-byte payloads in ``raw``. O(len)."""

def start_writeback(fd: int, offset: int, nbytes: int) -> bool:
    """Start writing a file range back to disk without waiting (Linux); False where not started. O(1)."""

def pack_results(results: dict[int, list]) -> bytes:
    """The dedupe table in the replica snapshot's layout. O(table bytes)."""

def remember_run(
    results: dict[int, list],
    window: int,
    cids: npt.NDArray[np.uint64],
    rids: npt.NDArray[np.uint64],
    seqs: npt.NDArray[np.uint64],
    events: bytes,
    starts: npt.NDArray[np.int64],
    stops: npt.NDArray[np.int64],
) -> None:
    """Record applied entries in the dedupe table, entry by entry (``Replica._remember`` each). O(entries)."""

def pack_reply_run(
    client_ids: list[int] | npt.NDArray[np.uint64],
    request_ids: list[int] | npt.NDArray[np.uint64],
    lo: int,
    hi: int,
    epoch: int,
    first_seq: int,
    leader: bytes,
    events: bytes,
    offsets: list[int],
) -> bytes:
    """``wire.Replies`` payload records of a batch's OK replies ``lo .. hi - 1``. O(replies + events)."""

def fresh_requests(requests: Sequence, start: int, keys: set, results: dict[int, list], size: int) -> int:
    """How many of ``requests[start:]`` are new (adding their keys to ``keys``). O(that many)."""

def request_stretch(raw: bytes, start: int) -> tuple[int, int, int]:
    """``(k, client id, first request id)`` of the one-client, consecutive-id records from ``start``. O(k)."""

def fresh_span(results: dict[int, list], client_id: int, first: int, count: int) -> int:
    """How many of ids ``first ..`` of ``client_id``, from the first, the dedupe table lacks. O(that many)."""
