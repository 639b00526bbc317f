"""Packed request bundles (``wire.RequestRun``) and their helpers, against the plain forms.

``wire.decode_packed`` is ``wire.decode`` (same messages, same errors on any
bytes) with a bundle kept packed; ``fastpath.request_stretch`` and
``fastpath.fresh_span`` (C and Python) are the per-request tests they stand
for; ``pack_reply_run`` packs uint64 id columns as it packs lists; an
``EventBlobs`` is the tuple of its slices, on the wire too.
"""

from __future__ import annotations

import struct
import zlib
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from replication.native import fastpath
from replication.protocol import wire
from replication.protocol.wire import DecodeError

NATIVE = []
if fastpath.NATIVE:
    from replication.native import _fast

    NATIVE = [_fast]

STRETCH = [pytest.param(fastpath.request_stretch_py, id="python")] + [
    pytest.param(m.request_stretch, id="native") for m in NATIVE
]
FRESH = [pytest.param(fastpath.fresh_span_py, id="python")] + [
    pytest.param(m.fresh_span, id="native") for m in NATIVE
]
PACK = [pytest.param(fastpath.pack_reply_run_py, id="python")] + [
    pytest.param(m.pack_reply_run, id="native") for m in NATIVE
]

U64 = 2**64 - 1
cids = st.sampled_from([0, 1, 2, U64])
rids = st.one_of(st.integers(0, 6), st.integers(U64 - 3, U64))
commands = st.binary(min_size=wire.COMMAND_SIZE, max_size=wire.COMMAND_SIZE)
requests = st.builds(wire.Request, cids, rids, commands)


@st.composite
def bundles(draw) -> tuple[wire.Request, ...]:
    """Mostly stretches of one client's consecutive ids (the pipelined client), some noise."""
    out: list = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            c, r = draw(cids), draw(rids)
            n = draw(st.integers(1, 6))
            out += [wire.Request(c, r + i, draw(commands)) for i in range(n) if r + i <= U64]
        else:
            out.append(draw(requests))
    return tuple(out) or (draw(requests),)


def _frame(typ: int, body: bytes) -> bytes:
    head = wire.HEADER.pack(wire.MAGIC, wire.VERSION, typ, 0, 0, len(body), 0)[:20]
    return head + struct.pack("<I", zlib.crc32(body, zlib.crc32(head))) + body


# -- RequestRun and decode_packed -------------------------------------------------------


@given(bundles())
def test_request_run_is_the_tuple_of_its_requests(reqs):
    frame = wire.encode(wire.Requests(reqs))
    if len(reqs) == 1:
        frame = _frame(wire.Requests.TYPE, wire.Requests(reqs).payload())
    msg = wire.decode_packed(frame)
    run = msg.requests
    assert type(run) is wire.RequestRun and len(run) == len(reqs)
    assert run == reqs and tuple(run) == reqs and list(run) == list(reqs) and hash(run) == hash(reqs)
    assert msg == wire.decode(frame) and hash(msg) == hash(wire.decode(frame))
    assert [run[i] for i in range(-len(reqs), len(reqs))] == list(reqs) * 2
    assert run[1:3] == reqs[1:3] and type(run[1:3]) is wire.RequestRun and run[::2] == reqs[::2]
    assert run.commands(0, len(reqs)) == b"".join(q.command for q in reqs)
    assert wire.encode(msg) == frame  # the packed form encodes as it came
    with pytest.raises(IndexError):
        run[len(reqs)]


def test_request_run_refuses_partial_records():
    with pytest.raises(ValueError):
        wire.RequestRun(bytes(71))
    assert len(wire.RequestRun(b"")) == 0


def _outcome(decoder, frame: bytes):
    try:
        return ("ok", decoder(frame))
    except DecodeError as exc:
        return ("error", exc.reason)


@given(bundles(), st.data())
def test_decode_packed_is_decode_on_damaged_bundles(reqs, data):
    frame = bytearray(wire.encode(wire.Requests(reqs)))
    how = data.draw(st.sampled_from(["truncate", "flip", "extend", "odd_body", "empty_body"]))
    if how == "truncate":
        frame = frame[: data.draw(st.integers(0, len(frame) - 1))]
    elif how == "flip":
        i = data.draw(st.integers(0, len(frame) - 1))
        frame[i] ^= data.draw(st.integers(1, 255))
    elif how == "extend":
        frame += data.draw(st.binary(min_size=1, max_size=80))
    else:  # checksum-valid frames whose body is not whole records
        body = bytes(frame[wire.HEADER_SIZE :])
        frame = _frame(wire.Requests.TYPE, body[:-1] if how == "odd_body" else b"")
    got, want = _outcome(wire.decode_packed, bytes(frame)), _outcome(wire.decode, bytes(frame))
    assert got == want
    assert got[0] == "error" or how == "flip"


@given(st.binary(max_size=200), st.sampled_from([1, 2, 3, 20, 21, 77]))
def test_decode_packed_is_decode_on_garbage(body, typ):
    for frame in (body, _frame(typ, body)):
        assert _outcome(wire.decode_packed, frame) == _outcome(wire.decode, frame)


# -- request_stretch and fresh_span -----------------------------------------------------


@pytest.mark.parametrize("stretch", STRETCH)
@given(reqs=bundles(), data=st.data())
def test_request_stretch_is_the_per_record_test(stretch, reqs, data):
    raw = wire.Requests(reqs).payload()
    start = data.draw(st.integers(0, len(reqs) + 1))
    if start >= len(reqs):
        assert stretch(raw, start) == (0, 0, 0)
        return
    k = 1
    while start + k < len(reqs):
        a, b = reqs[start + k - 1], reqs[start + k]
        if b.client_id != a.client_id or b.request_id != a.request_id + 1:
            break
        k += 1
    assert stretch(raw, start) == (k, reqs[start].client_id, reqs[start].request_id)


@pytest.mark.parametrize("stretch", STRETCH)
def test_request_stretch_refuses_a_negative_start(stretch):
    with pytest.raises(ValueError):
        stretch(bytes(96), -1)


tables = st.dictionaries(
    cids,
    st.tuples(st.one_of(st.integers(0, 8), st.just(2**64)), st.lists(rids, unique=True, max_size=5)),
    max_size=3,
)


@pytest.mark.parametrize("fresh", FRESH)
@given(table=tables, cid=cids, first=rids, count=st.integers(0, 9))
def test_fresh_span_is_lookup_per_id(fresh, table, cid, first, count):
    results = {c: [floor, OrderedDict((r, (r + 1, b"")) for r in rs)] for c, (floor, rs) in table.items()}
    if first + count - 1 > U64 and count:
        with pytest.raises(OverflowError):
            fresh(results, cid, first, count)
        return
    want = 0
    for rid in range(first, first + count):
        slot = results.get(cid)
        if slot is not None and (rid in slot[1] or rid < slot[0]):
            break
        want += 1
    assert fresh(results, cid, first, count) == want


# -- pack_reply_run on id columns, EventBlobs -----------------------------------------------


@pytest.mark.parametrize("pack", PACK)
@given(
    ids=st.lists(st.tuples(st.integers(0, U64), st.integers(0, U64)), min_size=1, max_size=6),
    sizes=st.lists(st.integers(0, 3), min_size=6, max_size=6),
    data=st.data(),
)
def test_pack_reply_run_takes_uint64_columns_as_lists(pack, ids, sizes, data):
    n = len(ids)
    offsets = [0]
    for s in sizes[:n]:
        offsets.append(offsets[-1] + 64 * s)
    events = bytes(range(256)) * (offsets[-1] // 256 + 1)
    events = events[: offsets[-1]]
    lo = data.draw(st.integers(0, n))
    hi = data.draw(st.integers(lo, n))
    c, r = [a for a, _ in ids], [b for _, b in ids]
    want = pack(c, r, lo, hi, 3, 10, b"a", events, offsets)
    ca, ra = np.array(c, dtype=np.uint64), np.array(r, dtype=np.uint64)
    assert pack(ca, ra, lo, hi, 3, 10, b"a", events, offsets) == want
    with pytest.raises(ValueError):
        pack(ca, ra, 0, n + 1, 3, 10, b"a", events, offsets)


def test_event_blobs_are_the_tuple_of_their_slices():
    raw = bytes(range(64)) * 5
    ends = [0, 64, 64, 320]
    blobs = wire.EventBlobs(raw, ends)
    want = (raw[:64], b"", raw[64:320])
    assert len(blobs) == 3 and blobs == want and tuple(blobs) == want and hash(blobs) == hash(want)
    assert [blobs[i] for i in (-3, -2, -1, 0, 1, 2)] == list(want) * 2 and blobs[1:] == want[1:]
    with pytest.raises(IndexError):
        blobs[3]
    entries = tuple(wire.Entry(1, 5 + i, 7, i, 9, bytes(80)) for i in range(3))
    lazy, plain = wire.Entries(1, 5, 4, entries, blobs), wire.Entries(1, 5, 4, entries, want)
    assert lazy == plain and wire.encode(lazy) == wire.encode(plain)
    assert wire.decode(wire.encode(lazy)) == plain
    assert not wire.EventBlobs(b"", [0]) and wire.EventBlobs(b"", [0]) == ()
