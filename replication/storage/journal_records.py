"""Journal records: how entries are framed on disk, and how a file of them is checked.

For: the record format of ``journal.FileJournal``'s segment files — each
record is ``u32 length, u32 crc32(payload), payload`` with one packed
``wire.Entry`` as payload, so every record is ``RECORD`` bytes and seq ->
offset is arithmetic — framing packed entries as records, stripping the
framing back off, and finding how many records lead a file whole (right
length, CRC and seq), all vectorised. Not for: what to do about a bad
record (``journal`` decides: only a torn last record may be cut).
"""

from __future__ import annotations

import struct

import numpy as np

from ..native.fastpath import crc32_each, frame_records
from ..protocol.wire import ENTRY

REC = struct.Struct("<II")
RECORD = REC.size + ENTRY.size  # every record holds one entry: fixed size, so seq -> offset is arithmetic
REC_DTYPE = np.dtype([("length", "<u4"), ("crc", "<u4"), ("payload", f"V{ENTRY.size}")])


def frame(raw: bytes) -> bytes:
    """Packed entries (``ENTRY.size`` bytes each) framed as journal records. O(n), one C pass when built."""
    return frame_records(raw, ENTRY.size)


def payloads(data: bytes) -> bytes:
    """Journal records (all well-formed, as written or scanned) back to packed entries. O(n)."""
    return np.frombuffer(data, dtype=REC_DTYPE)["payload"].tobytes()


def good_records(data: bytes, first: int | None) -> tuple[int | None, int]:
    """How many whole records lead ``data`` with a right length, CRC and seq (from ``first``, or
    whatever the first says); ``(first seq, count)``. O(n), vectorised."""
    k = len(data) // RECORD
    if k == 0:
        return first, 0
    rec = np.frombuffer(data, dtype=REC_DTYPE, count=k)
    good = np.asarray(rec["length"] == ENTRY.size)
    if first is None:
        if not good[0]:
            return None, 0
        first = int(np.frombuffer(data, dtype="<u8", count=1, offset=REC.size + 4)[0])
    # The seq field, record by record (records are RECORD bytes apart, entries ENTRY.size).
    seqs = np.ndarray((k,), dtype="<u8", buffer=data, offset=REC.size + 4, strides=(RECORD,))
    good &= seqs == np.arange(first, first + k, dtype=np.uint64)
    bad = np.flatnonzero(~good)
    k = int(bad[0]) if len(bad) else k
    bad = np.flatnonzero(crc32_each(data, REC.size, RECORD, ENTRY.size, k) != rec["crc"][:k])
    return first, int(bad[0]) if len(bad) else k
