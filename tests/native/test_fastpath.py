"""The catch-up path's per-entry loops: the C versions (``replication.native._fast``) against their plain-Python
specification (``replication.native.fastpath.*_py``), and the bulk dedupe update against one ``_remember`` per entry."""

from __future__ import annotations

import random
import zlib
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replication.native import fastpath
from replication.protocol.replica import Replica, _remember_runs, _run

# (crc32_each, remember_run, frame_records, pack_results): the specification, and the C if built.
IMPLS = [
    pytest.param(
        (
            fastpath.crc32_each_py,
            fastpath.remember_run_py,
            fastpath.frame_records_py,
            fastpath.pack_results_py,
        ),
        id="python",
    )
]
if fastpath.NATIVE:
    from replication.native import _fast

    IMPLS.append(
        pytest.param(
            (_fast.crc32_each, _fast.remember_run, _fast.frame_records, _fast.pack_results), id="native"
        )
    )


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "offset,stride,size,count",
    [(0, 100, 100, 300), (8, 108, 100, 50), (3, 7, 5, 40), (0, 0, 9, 3), (5, 1, 0, 4)],
)
def test_crc32_each_is_zlib_crc32_of_every_record(impl, offset, stride, size, count):
    crc32_each = impl[0]
    buf = random.Random(size * 1000 + stride).randbytes(offset + stride * count + size)
    got = crc32_each(buf, offset, stride, size, count)
    assert got.dtype == np.uint32 and len(got) == count
    assert got.tolist() == [zlib.crc32(buf[offset + i * stride :][:size]) for i in range(count)]


@pytest.mark.parametrize("impl", IMPLS)
def test_crc32_each_every_length_and_alignment(impl):
    """The C loop folds 8 bytes at a time: every tail length and start alignment."""
    crc32_each = impl[0]
    buf = random.Random(1).randbytes(64)
    for start in range(8):
        for size in range(40):
            assert int(crc32_each(buf, start, 0, size, 1)[0]) == zlib.crc32(buf[start : start + size])


@pytest.mark.parametrize("impl", IMPLS)
def test_crc32_each_refuses_to_read_past_the_buffer(impl):
    crc32_each = impl[0]
    with pytest.raises(ValueError):
        crc32_each(bytes(100), 1, 10, 10, 10)
    with pytest.raises(ValueError):
        crc32_each(bytes(100), -1, 10, 10, 1)
    assert len(crc32_each(bytes(100), 0, 10, 10, 10)) == 10 and len(crc32_each(b"", 0, 0, 0, 0)) == 0


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("n", [0, 1, 63, 64, 200])
def test_frame_records_is_head_and_payload_per_record(impl, n):
    """Small batches and big ones (the Python twin switches to NumPy at 64): u32 size, u32 crc, payload."""
    import struct

    frame_records = impl[2]
    raw = random.Random(n).randbytes(100 * n + 37)  # a partial payload at the end is ignored
    want = b"".join(
        struct.pack("<II", 100, zlib.crc32(raw[i : i + 100])) + raw[i : i + 100]
        for i in range(0, 100 * n, 100)
    )
    assert frame_records(raw, 100) == want
    with pytest.raises(ValueError):
        frame_records(raw, 0)


@pytest.mark.parametrize("impl", IMPLS)
def test_pack_results_is_the_snapshot_layout(impl):
    """Per client u64 id, u64 floor, u32 n; per result u64 request id, u64 seq, u32 length, events;
    extreme ids, empty tables and empty events included. A restored replica reads it back."""
    import struct

    pack_results = impl[3]
    rng = random.Random(3)
    results = {0: [0, OrderedDict()]}
    for c in (1, 7, (1 << 64) - 1):
        t = OrderedDict(
            (rng.randrange(1 << 64), (rng.randrange(1 << 64), rng.randbytes(64 * rng.randrange(3))))
            for _ in range(50)
        )
        t[(1 << 64) - 1] = (1, b"")
        results[c] = [rng.randrange(1 << 64), t]
    want = b""
    for c, (floor, t) in results.items():
        want += struct.pack("<QQI", c, floor, len(t))
        for rid, (seq, ev) in t.items():
            want += struct.pack("<QQI", rid, seq, len(ev)) + ev
    assert pack_results(results) == want and pack_results({}) == b""
    r = Replica()
    r._results = results
    assert Replica.restore(r.snapshot()).results == results


def test_start_writeback_is_only_a_hint(tmp_path):
    """Starting the write-back of a range changes nothing a reader sees; where it cannot
    (plain Python, a bad fd) it says so instead of raising."""
    import os

    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.pwrite(fd, b"x" * 100_000, 0)
        assert fastpath.start_writeback(fd, 0, 100_000) in (True, False)
        assert fastpath.start_writeback_py(fd, 0, 100_000) is False
        assert fastpath.start_writeback(-1, 0, 10) is False
        assert os.pread(fd, 100_000, 0) == b"x" * 100_000
    finally:
        os.close(fd)


def _entries(rng: random.Random, n: int, clients: int, ids: int) -> tuple[np.ndarray, ...]:
    """``n`` entries of a few clients (0: not remembered) with request ids drawn from ``ids``
    values (so they repeat when ``ids`` is small), and events of 0..3 records each."""
    cids = np.array([rng.randrange(clients + 1) for _ in range(n)], dtype=np.uint64)
    rids = np.array([rng.randrange(ids) for _ in range(n)], dtype=np.uint64)
    sizes = [64 * rng.randrange(4) for _ in range(n)]
    stops = np.cumsum(sizes, dtype=np.int64)
    events = rng.randbytes(int(stops[-1]) if n else 0)
    return cids, rids, events, stops - np.array(sizes, dtype=np.int64), stops


def _one_by_one(window: int, cids, rids, first: int, events: bytes, starts, stops, results=None) -> dict:
    """The specification: ``Replica._remember`` per entry, in order."""
    r = Replica(dedupe_window=window)
    if results is not None:
        r._results = results
    for i, c in enumerate(cids.tolist()):
        if c:
            r._remember(c, int(rids[i]), first + i, events[starts[i] : stops[i]])
    return r._results


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "window,clients,ids", [(4, 3, 10), (50, 2, 1 << 64), (1, 1, 3), (0, 2, 5), (8, 40, 30)]
)
def test_remember_run_is_remember_per_entry(impl, window, clients, ids):
    remember_run = impl[1]
    rng = random.Random(window * 7 + clients)
    cids, rids, events, starts, stops = _entries(rng, 400, clients, ids)
    seqs = np.arange(10, 410, dtype=np.uint64)
    got: dict = {}
    remember_run(got, window, cids, rids, seqs, events, starts, stops)
    want = _one_by_one(window, cids, rids, 10, events, starts, stops)
    assert got == want and list(got) == list(want)  # floors, results and orders; clients in order too


@pytest.mark.parametrize("impl", IMPLS)
def test_remember_run_refuses_bad_offsets(impl):
    remember_run = impl[1]
    one = np.ones(1, dtype=np.uint64)
    for a, b in ((0, 65), (-1, 0), (10, 5)):
        with pytest.raises(ValueError):
            remember_run({}, 4, one, one, one, bytes(64), np.array([a]), np.array([b]))
    with pytest.raises(ValueError):
        remember_run({}, 4, one, np.ones(2, dtype=np.uint64), one, bytes(64), np.array([0]), np.array([0]))


@settings(max_examples=300, deadline=None)
@given(
    window=st.integers(0, 6),
    clients=st.integers(1, 3),
    ids=st.sampled_from([4, 12, 1 << 20]),
    n=st.integers(0, 60),
    cuts=st.lists(st.integers(0, 60), max_size=4),
    held=st.integers(0, 9),
    seed=st.integers(0, 1 << 30),
    one=st.sampled_from(["no", "yes", "broken"]),
)
def test_bulk_dedupe_update_is_remember_per_entry(window, clients, ids, n, cuts, held, seed, one):
    """Deferred runs recorded in bulk (_remember_runs) leave the table as one _remember per entry:
    clients past the window (bulk), repeated ids, ids the table already holds, a table
    bigger than the window (restored with a smaller one), client 0; and the one-client case
    (one client, ids rising: _remember_one_client), also with one entry breaking it."""
    rng = random.Random(seed)
    start = _entries(rng, held, clients, ids)
    before = _one_by_one(window + rng.randrange(3), *start[:2], 1, *start[2:])  # may exceed window
    cids, rids, events, starts, stops = _entries(rng, n, clients, ids)
    if one != "no" and n:
        cids[:] = 1
        held_ids = list(before.get(1, [0, {}])[1]) or [0]
        # Rising from 0, past everything held, or from an id it holds (one by one: updated in place).
        rids[:] = np.arange(n, dtype=np.uint64) * 2 + rng.choice([0, 1 << 40, rng.choice(held_ids)])
        if one == "broken":
            i = rng.randrange(n)
            if rng.random() < 0.5:
                cids[i], rids[i] = rng.choice([(0, rids[i]), (2, rids[i]), (1, rids[i - 1])])
            else:  # ids start again from 0 where runs are cut: each run still rises
                i = min([c for c in cuts if 0 < c < n], default=i)
                rids[i:] -= rids[i]
    first = held + 1
    bounds = sorted({0, n, *[min(c, n) for c in cuts]})
    runs = [
        _run(first + a, cids[a:b], rids[a:b], events, starts[a:b], stops[a:b])
        for a, b in zip(bounds, bounds[1:], strict=False)
        if b > a
    ]
    copy = {c: [f, OrderedDict(t)] for c, (f, t) in before.items()}
    if runs:
        _remember_runs(copy, window, runs)
    want = _one_by_one(window, cids, rids, first, events, starts, stops, before)
    assert copy == want and list(copy) == list(want)
    assert [list(t.items()) for _, t in copy.values()] == [list(t.items()) for _, t in want.values()]
