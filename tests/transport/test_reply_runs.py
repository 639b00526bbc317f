"""A batch's replies as columns (``wire.ReplyRun``) against one ``Send(dest, Reply)`` per reply.

The plain form is the specification: the packer (C and Python) gives
``Replies.payload``'s bytes, ``encode_replies`` gives ``encode``'s frame,
``queues.ReplyQueue`` holds and releases what a plain queue of
``(seq, dest, Reply, t)`` would, and the driver sends the very frames it
sends for the expanded outputs.
"""

from __future__ import annotations

from collections import deque
from itertools import groupby

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_driver_replies import _driver

from replication.native import fastpath
from replication.protocol import wire
from replication.protocol.queues import ReplyQueue
from replication.transport import node_driver as node

PACKERS = [pytest.param(fastpath.pack_reply_run_py, id="python")]
if fastpath.NATIVE:
    from replication.native import _fast

    PACKERS.append(pytest.param(_fast.pack_reply_run, id="native"))

U64 = st.integers(0, (1 << 64) - 1)


def _stretches(srcs: tuple | list) -> list[tuple[wire.Address, int, int]]:
    """``(dest, lo, hi)`` for each stretch of equal consecutive ``srcs``: what ``add_stretches`` takes."""
    if srcs.count(srcs[0]) == len(srcs):
        return [(srcs[0], 0, len(srcs))]
    out, lo = [], 0
    for dest, group in groupby(srcs):
        hi = lo + sum(1 for _ in group)
        out.append((dest, lo, hi))
        lo = hi
    return out


@st.composite
def columns(draw, first_seq=None, epoch=None, leader=None) -> wire.ReplyColumns:
    n = draw(st.integers(1, 12))
    sizes = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    offsets = [0]
    for k in sizes:
        offsets.append(offsets[-1] + k * wire.EVENT_SIZE)
    events = draw(st.binary(min_size=offsets[-1], max_size=offsets[-1]))
    return wire.ReplyColumns(
        draw(st.integers(0, (1 << 32) - 1)) if epoch is None else epoch,
        draw(st.integers(1, 1 << 40)) if first_seq is None else first_seq,
        draw(st.sampled_from(["a", "b", "nœud", ""])) if leader is None else leader,
        draw(st.lists(U64, min_size=n, max_size=n)),
        draw(st.lists(U64, min_size=n, max_size=n)),
        events,
        offsets,
    )


@pytest.mark.parametrize("pack", PACKERS)
@given(cols=columns(), data=st.data())
def test_packed_runs_are_the_replies_payload(pack, cols, data):
    n = len(cols.client_ids)
    lo = data.draw(st.integers(0, n))
    hi = data.draw(st.integers(lo, n))
    got = pack(
        cols.client_ids,
        cols.request_ids,
        lo,
        hi,
        cols.epoch,
        cols.first_seq,
        cols.leader.encode(),
        cols.events,
        cols.offsets,
    )
    want = wire.Replies(tuple(cols.reply(i) for i in range(lo, hi))).payload() if hi > lo else b""
    assert got == want


@pytest.mark.parametrize("pack", PACKERS)
def test_the_packer_refuses_what_would_read_out_of_bounds(pack):
    ids, events, offsets = [1, 2], bytes(128), [0, 64, 128]
    with pytest.raises(ValueError):
        pack(ids, ids, 0, 3, 1, 1, b"a", events, offsets)  # past the ids
    with pytest.raises(ValueError):
        pack(ids, ids, 1, 0, 1, 1, b"a", events, offsets)  # lo > hi
    with pytest.raises(ValueError):
        pack(ids, ids, 0, 2, 1, 1, b"a", events[:100], offsets)  # events shorter than the offsets say
    with pytest.raises(ValueError):
        pack(ids, ids, 0, 2, 1, 1, b"a", events, [0, 128, 64])  # offsets out of order
    with pytest.raises(ValueError):
        pack(ids, ids, 0, 2, 1, 1, bytes(70000), events, offsets)  # a leader name past u16


@given(items=st.lists(st.one_of(columns(), columns().map(lambda c: c.reply(0))), min_size=1, max_size=5))
def test_encode_replies_is_encode_of_the_lone_reply_or_the_bundle(items):
    outs = [x if isinstance(x, wire.Reply) else wire.ReplyRun(b"c", x, 0, len(x.client_ids)) for x in items]
    flat = [r for x in outs for r in ([x] if isinstance(x, wire.Reply) else x.replies())]
    want = wire.encode(flat[0] if len(flat) == 1 else wire.Replies(tuple(flat)))
    assert wire.encode_replies(outs) == want
    assert wire.decode(wire.encode_replies(outs)) == wire.decode(want)


# --- the queue -------------------------------------------------------------------------------

DESTS = (b"c1", b"c2", "b")
queue_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("batch"), st.integers(1, 9), st.lists(st.sampled_from(DESTS), min_size=9, max_size=9)
        ),
        st.tuples(st.just("single"), st.sampled_from(DESTS)),
        st.tuples(st.just("release"), st.integers(0, 12)),
        st.tuples(
            st.just("release_all"),
        ),
    ),
    max_size=30,
)


def _expand(outputs: list) -> list:
    out = []
    for o in outputs:
        out += o.sends() if isinstance(o, wire.ReplyRun) else [o]
    return out


@given(ops=queue_ops)
def test_reply_queue_holds_and_releases_as_a_plain_queue_of_replies(ops):
    q, plain = ReplyQueue(), deque()
    seq, t = 0, 0.0
    for op in ops:
        t += 1.0
        if op[0] == "batch":
            n, dests = op[1], tuple(op[2][: op[1]])
            cols = wire.ReplyColumns(
                3,
                seq + 1,
                "a",
                list(range(n)),
                list(range(100, 100 + n)),
                bytes(64 * n),
                [64 * i for i in range(n + 1)],
            )
            q.add_stretches(cols, _stretches(dests), t)
            plain.extend((seq + 1 + i, dests[i], cols.reply(i), t) for i in range(n))
            seq += n
        elif op[0] == "single":
            seq += 1
            item = (seq, op[1], wire.Reply(9, seq, wire.OK, 3, seq, "a", bytes(64)), t)
            q.append(item)
            plain.append(item)
        else:
            commit = float("inf") if op[0] == "release_all" else seq - op[1]
            want = []
            while plain and plain[0][0] <= commit:
                _, dest, reply, _ = plain.popleft()
                want.append(wire.Send(dest, reply))
            assert _expand(q.release(commit)) == want
        assert list(q) == list(plain) and len(q) == len(plain) and bool(q) == bool(plain)
        if plain:
            assert q.head() == (plain[0][0], plain[0][3])


# --- the driver ------------------------------------------------------------------------------


@given(
    batches=st.lists(
        st.tuples(columns(leader="a"), st.sampled_from(DESTS), st.data()),
        min_size=1,
        max_size=4,
    ),
    singles=st.lists(st.sampled_from(DESTS), max_size=3),
)
def test_the_driver_sends_runs_as_it_sends_their_replies(batches, singles):
    outs = []
    for cols, dest, data in batches:
        n = len(cols.client_ids)
        lo = data.draw(st.integers(0, n - 1))
        outs.append(wire.ReplyRun(dest, cols, lo, data.draw(st.integers(lo + 1, n))))
    for i, dest in enumerate(singles):
        outs.insert(i % (len(outs) + 1), wire.Send(dest, wire.Reply(5, i, wire.OK, 2, 7, "a", bytes(64))))
    fast, plain = _driver(), _driver()
    fast.perform(outs)
    plain.perform(_expand(outs))
    assert fast.router.sent == plain.router.sent and fast.dealers["b"].sent == plain.dealers["b"].sent


def test_a_run_past_bundle_bytes_splits_as_its_replies_would():
    per = node.BUNDLE_BYTES // 5 // wire.EVENT_SIZE * wire.EVENT_SIZE  # the sixth reply passes the limit
    n = 12
    cols = wire.ReplyColumns(
        2, 40, "a", [1] * n, list(range(n)), bytes(per * n), [per * i for i in range(n + 1)]
    )
    fast, plain = _driver(), _driver()
    fast.perform([wire.ReplyRun(b"c1", cols, 0, 8), wire.ReplyRun(b"c1", cols, 8, n)])
    plain.perform([wire.Send(b"c1", cols.reply(i)) for i in range(n)])
    assert fast.router.sent == plain.router.sent and len(fast.router.sent) == 3
