"""Journal records: how entries are framed on disk, and how a file of them is checked.

For: the record format of ``journal.FileJournal``'s segment files — each
record is ``u32 length, u32 crc32(payload), payload`` with one packed
``wire.Entry`` as payload, so every record is ``RECORD`` bytes and seq ->
offset is arithmetic — framing packed entries as records, stripping the
framing back off, and finding how many records lead a file whole (right
length, CRC and seq), all vectorised; reading records of the version-1
layout (a 56-byte command, so 92-byte entries) as the current one
(``upgrade``). Not for: what to do about a bad record (``journal`` decides:
only a torn last record may be cut).
"""

from __future__ import annotations

import struct

import numpy as np

from ..native.fastpath import crc32_each, frame_records
from ..protocol.wire import ENTRY

REC = struct.Struct("<II")
RECORD = REC.size + ENTRY.size  # every record holds one entry: fixed size, so seq -> offset is arithmetic
REC_DTYPE = np.dtype([("length", "<u4"), ("crc", "<u4"), ("payload", f"V{ENTRY.size}")])
# Version 1 of the record (before issue 19): the command was 56 bytes, not 80. Its entries are the
# current ones without the command's last 24 bytes (ts, expire_ts, stop_price: all zero for it).
V1_ENTRY_SIZE = ENTRY.size - 24
V1_RECORD = REC.size + V1_ENTRY_SIZE


def frame(raw: bytes) -> bytes:
    """Packed entries (``ENTRY.size`` bytes each) framed as journal records. O(n), one C pass when built."""
    return frame_records(raw, ENTRY.size)


def payloads(data: bytes) -> bytes:
    """Journal records (all well-formed, as written or scanned) back to packed entries. O(n)."""
    return np.frombuffer(data, dtype=REC_DTYPE)["payload"].tobytes()


def good_records(data: bytes, first: int | None, entry_size: int = ENTRY.size) -> tuple[int | None, int]:
    """How many whole records lead ``data`` with a right length, CRC and seq (from ``first``, or
    whatever the first says); ``(first seq, count)``. ``entry_size`` is the payload size of the
    layout (``V1_ENTRY_SIZE`` to check a version-1 file). O(n), vectorised."""
    record = REC.size + entry_size
    k = len(data) // record
    if k == 0:
        return first, 0
    rec = np.ndarray((k,), dtype=[("length", "<u4"), ("crc", "<u4")], buffer=data, strides=(record,))
    good = np.asarray(rec["length"] == entry_size)
    if first is None:
        if not good[0]:
            return None, 0
        first = int(np.frombuffer(data, dtype="<u8", count=1, offset=REC.size + 4)[0])
    # The seq field, record by record (records are ``record`` bytes apart).
    seqs = np.ndarray((k,), dtype="<u8", buffer=data, offset=REC.size + 4, strides=(record,))
    good &= seqs == np.arange(first, first + k, dtype=np.uint64)
    bad = np.flatnonzero(~good)
    k = int(bad[0]) if len(bad) else k
    bad = np.flatnonzero(crc32_each(data, REC.size, record, entry_size, k) != rec["crc"][:k])
    return first, int(bad[0]) if len(bad) else k


def is_version1(data: bytes) -> bool:
    """Whether a segment file's first record is of the version-1 layout (by its length word). O(1)."""
    return len(data) >= REC.size and REC.unpack_from(data)[0] == V1_ENTRY_SIZE


def upgrade(data: bytes, n: int) -> bytes:
    """The first ``n`` version-1 records of ``data`` (checked whole) as current records: each
    entry's command gains 24 zero bytes (no ts, expiry or stop), then is framed again. O(n)."""
    old = np.ndarray((n,), dtype=f"V{V1_ENTRY_SIZE}", buffer=data, offset=REC.size, strides=(V1_RECORD,))
    new = np.zeros(n, dtype=[("old", f"V{V1_ENTRY_SIZE}"), ("tail", "V24")])
    new["old"] = old
    return frame(new.tobytes())
