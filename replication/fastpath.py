"""The catch-up path's per-entry loops: from the ``replication._fast`` extension if built, else plain Python.

For: the CRC-32 of many fixed-size records (journal framing and checking)
and recording a run of applied entries in the replica's dedupe table. The
plain-Python functions here (``*_py``) are the specification; the Cython
ones in ``_fast.pyx`` must give the same results (tests run both), only
without bytecode per entry. Callers import the unsuffixed names. Not for:
anything that decides what is written or applied.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict

import numpy as np


def crc32_each_py(buf: bytes, offset: int, stride: int, size: int, count: int) -> np.ndarray:
    """CRC-32 (zlib's) of ``buf[offset + i * stride :][:size]`` for ``i < count``, as a uint32 array. O(bytes)."""
    if min(offset, stride, size, count) < 0:
        raise ValueError("negative offset, stride, size or count")
    if count and offset + (count - 1) * stride + size > len(buf):
        raise ValueError("records run past the end of the buffer")
    view, crc = memoryview(buf), zlib.crc32
    starts = [offset + i * stride for i in range(count)]
    return np.array([crc(view[p : p + size]) for p in starts], dtype=np.uint32)


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
    cur, slot, table = 0, None, None
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


try:
    from ._fast import crc32_each, remember_run
except (
    ImportError
):  # the extension is not built (a source checkout before `make build`): same results, slower
    crc32_each, remember_run = crc32_each_py, remember_run_py

NATIVE = crc32_each is not crc32_each_py
