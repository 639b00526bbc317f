"""The catch-up path's per-entry loops: from the ``replication.native._fast`` extension if built, else plain Python.

For: the CRC-32 of many fixed-size records and framing them as journal
records (the journal's append and its check on open), starting the
write-back of what a big append wrote, packing the dedupe table for a
snapshot, recording a run of applied entries in the replica's dedupe table,
packing a batch's OK replies to one client as ``Replies`` records, the
primary's dedupe look-up of a client's bundle of requests, and, for a bundle
kept packed (``wire.RequestRun``), finding one client's stretch of consecutive
request ids and looking a stretch of ids up in the dedupe table. The
plain-Python functions here (``*_py``) are the specification; the Cython
ones in ``_fast.pyx`` must give the same results (tests run both), only
without bytecode per entry. Callers import the unsuffixed names. Not for:
anything that decides what is written or applied.
"""

from __future__ import annotations

import struct
import zlib
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

_HEAD = struct.Struct("<II")  # a journal record's head: payload size, crc32(payload)


def crc32_each_py(buf: bytes, offset: int, stride: int, size: int, count: int) -> np.ndarray:
    """CRC-32 (zlib's) of ``buf[offset + i * stride :][:size]`` for ``i < count``, as a uint32 array. O(bytes)."""
    if min(offset, stride, size, count) < 0:
        raise ValueError("negative offset, stride, size or count")
    if count and offset + (count - 1) * stride + size > len(buf):
        raise ValueError("records run past the end of the buffer")
    view, crc = memoryview(buf), zlib.crc32
    starts = [offset + i * stride for i in range(count)]
    return np.array([crc(view[p : p + size]) for p in starts], dtype=np.uint32)


def frame_records_py(raw: bytes, size: int) -> bytes:
    """Journal records for the ``size``-byte payloads packed in ``raw``: per payload
    ``u32 size, u32 crc32(payload), payload`` (little-endian, as ``journal.REC``). O(len(raw))."""
    if size <= 0:
        raise ValueError("size must be positive")
    n = len(raw) // size
    if n < 64:  # the live stream's small batches: NumPy's per-call overhead would dominate
        pack, crc = _HEAD.pack, zlib.crc32
        parts = []
        for i in range(0, n * size, size):
            payload = raw[i : i + size]
            parts.append(pack(size, crc(payload)))
            parts.append(payload)
        return b"".join(parts)
    out = np.empty(n, dtype=[("size", "<u4"), ("crc", "<u4"), ("payload", f"V{size}")])
    out["size"] = size
    out["crc"] = crc32_each_py(raw, 0, size, size, n)
    out["payload"] = np.frombuffer(raw, dtype=f"V{size}", count=n)
    return out.tobytes()


def start_writeback_py(fd: int, offset: int, nbytes: int) -> bool:
    """Have the kernel start writing a file range to disk without waiting; plain Python cannot
    (no sync_file_range in ``os``), so this does nothing and says so. O(1)."""
    return False


_CLIENT_HEAD = struct.Struct("<QQI")  # client id, floor, n results (replica.CLIENT_HEAD)
_RESULT_HEAD = struct.Struct("<QQI")  # request id, seq, events length (replica.RESULT_HEAD)


def pack_results_py(results: dict) -> bytes:
    """The dedupe table as the replica snapshot stores it: per client ``u64 id, u64 floor,
    u32 results``, then per result ``u64 request id, u64 seq, u32 length, events``. O(table bytes)."""
    parts = []
    for cid, (floor, table) in results.items():
        parts.append(_CLIENT_HEAD.pack(cid, floor, len(table)))
        for rid, (seq, events) in table.items():
            parts.append(_RESULT_HEAD.pack(rid, seq, len(events)))
            parts.append(events)
    return b"".join(parts)


def remember_run_py(
    results: dict,
    window: int,
    cids: np.ndarray,
    rids: np.ndarray,
    seqs: np.ndarray,
    events: bytes,
    starts: np.ndarray,
    stops: np.ndarray,
) -> None:
    """Record applied entries in the dedupe table, entry by entry, in the order given.

    ``results`` is the replica's table (client id -> ``[floor, OrderedDict{request
    id -> (seq, events)}]``). Entry ``i`` is request ``rids[i]`` of client
    ``cids[i]`` (0: not remembered), applied as ``seqs[i]``; it produced
    ``events[starts[i]:stops[i]]``. Per entry, exactly ``Replica._remember``:
    insert; past ``window`` results, evict the client's oldest and raise its
    floor above it. O(len(cids)).
    """
    k = len(cids)
    if not len(rids) == len(seqs) == len(starts) == len(stops) == k:
        raise ValueError("cids, rids, seqs, starts and stops must have one element per entry")
    cl, rl, sl, a, b = cids.tolist(), rids.tolist(), seqs.tolist(), starts.tolist(), stops.tolist()
    if any(a[i] < 0 or a[i] > b[i] or b[i] > len(events) for i in range(k)):
        raise ValueError("event offsets out of order or out of range")
    # The current client's slot and its results; table is a placeholder until the first entry.
    cur, slot = 0, None
    table: OrderedDict[int, tuple[int, bytes]] = OrderedDict()
    for i in range(k):
        c = cl[i]
        if not c:
            continue
        if c != cur or slot is None:
            # Runs are mostly long stretches of few clients: look the slot up once per stretch.
            slot = results.get(c)
            if slot is None:
                slot = results[c] = [0, OrderedDict()]
            cur, table = c, slot[1]
        table[rl[i]] = (sl[i], events[a[i] : b[i]])
        if len(table) > window:
            old = table.popitem(last=False)[0]
            if old >= slot[0]:
                slot[0] = old + 1


_BUNDLED_REPLY = struct.Struct("<QQBIQHI")  # wire._BUNDLED_REPLY: ids, status, epoch, seq, lengths


def pack_reply_run_py(
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
    """``wire.Replies`` payload records of OK replies ``lo .. hi - 1`` of a batch: reply ``i``
    answers request ``request_ids[i]`` of client ``client_ids[i]``, sequenced as
    ``first_seq + i`` in ``epoch`` by ``leader``, with events ``events[offsets[i]:offsets[i + 1]]``.
    Byte for byte ``Replies.payload`` of those ``Reply`` messages. O(hi - lo + their events)."""
    if not 0 <= lo <= hi <= min(len(client_ids), len(request_ids), len(offsets) - 1):
        raise ValueError("lo and hi must select replies that have ids and offsets")
    if len(leader) > 0xFFFF:
        raise ValueError("leader name longer than 65535 bytes")
    if any(not 0 <= offsets[i] <= offsets[i + 1] <= len(events) for i in range(lo, hi)):
        raise ValueError("event offsets out of order or out of range")
    pack = _BUNDLED_REPLY.pack
    parts: list[bytes] = []
    for i in range(lo, hi):
        a, b = offsets[i], offsets[i + 1]
        parts += (
            pack(client_ids[i], request_ids[i], 0, epoch, first_seq + i, len(leader), b - a),
            leader,
            events[a:b],
        )
    return b"".join(parts)


def fresh_requests_py(requests: Sequence, start: int, keys: set, results: dict, size: int) -> int:
    """How many of ``requests[start:]``, from the first, are new: a ``size``-byte command, a
    ``(client_id, request_id)`` not in ``keys`` (queued) and neither remembered nor below its
    client's floor in ``results`` (the replica's dedupe table, flushed). Their keys are added
    to ``keys``; the scan stops at the first request that is not new. O(that many)."""
    n = start
    for m in requests[start:] if start else requests:
        key = (cid, rid) = (m.client_id, m.request_id)
        if len(m.command) != size or key in keys:
            break
        slot = results.get(cid)
        if slot is not None and (rid in slot[1] or rid < slot[0]):
            break
        keys.add(key)
        n += 1
    return n - start


_IDS = struct.Struct("<QQ")  # the head of a wire.Requests record: client id, request id
_REQUEST_SIZE = 96  # a wire.Requests record: the ids, then an 80-byte command


def request_stretch_py(raw: bytes, start: int) -> tuple[int, int, int]:
    """``(k, client id, request id)``: records ``start .. start + k - 1`` of packed ``Requests``
    records ``raw`` are all the client's of record ``start``, with request ids rising by one
    from that record's (never wrapping past 2**64 - 1), and ``k`` is the most such (0 at or
    past the end, with ids 0). O(k)."""
    if start < 0:
        raise ValueError("negative start")
    n = len(raw) // _REQUEST_SIZE
    if start >= n:
        return 0, 0, 0
    cid, rid = _IDS.unpack_from(raw, start * _REQUEST_SIZE)
    i, prev = start + 1, rid
    while i < n:
        c, r = _IDS.unpack_from(raw, i * _REQUEST_SIZE)
        if c != cid or r != prev + 1:  # (a u64 never equals 2**64: no wrapping)
            break
        prev, i = r, i + 1
    return i - start, cid, rid


def fresh_span_py(results: dict, client_id: int, first: int, count: int) -> int:
    """How many of request ids ``first .. first + count - 1`` of ``client_id``, from the first,
    are neither remembered nor below the client's floor in ``results`` (the replica's dedupe
    table, flushed): ``Replica.lookup`` gives None for each. O(that many)."""
    if count < 0:
        raise ValueError("negative count")
    if count and first + count - 1 > 0xFFFFFFFFFFFFFFFF:
        raise OverflowError("request ids pass 2**64 - 1")
    slot = results.get(client_id)
    if slot is None:
        return count
    for j in range(count):
        rid = first + j
        if rid in slot[1] or rid < slot[0]:
            return j
    return count


# The extension, if built; else (a source checkout before `make build`) the same results, slower.
try:
    from ._fast import (
        crc32_each,
        frame_records,
        fresh_requests,
        fresh_span,
        pack_reply_run,
        pack_results,
        remember_run,
        request_stretch,
        start_writeback,
    )
except ImportError:
    fresh_requests, request_stretch, fresh_span = fresh_requests_py, request_stretch_py, fresh_span_py
    crc32_each, frame_records, remember_run = crc32_each_py, frame_records_py, remember_run_py
    pack_results, start_writeback, pack_reply_run = pack_results_py, start_writeback_py, pack_reply_run_py

NATIVE = crc32_each is not crc32_each_py
