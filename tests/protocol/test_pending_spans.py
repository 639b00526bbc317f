"""A packed bundle (``wire.RequestRun``) on a node is ``handle`` per request, exactly.

As ``test_handle_requests``, but the bundles come packed, as the driver now
decodes them, so stretches of one client's consecutive request ids are
queued as spans (``queues.PendingQueue``) and sequenced as columns. Two
groups run in lockstep: outputs (encoded, in order) and node state must agree
after every step, with spans split across batches (a small ``max_batch``),
duplicated while queued, re-sent after execution or expiry, mixed with
single requests and with short bundles, held by a standby and refused at a
step-down. Then ``PendingQueue`` against per-sender lists of pairs.
"""

from __future__ import annotations

import numpy as np
from _net import cmd, group
from hypothesis import given
from hypothesis import strategies as st
from test_handle_requests import LOCKSTEP_CONTROL, run_lockstep

from replication.protocol import wire
from replication.protocol.queues import SPAN_MIN, PendingQueue
from replication.protocol.session import opened_id

CLIENTS = (1, 2)
SRCS = (b"c1", b"c2")


def _request(cid: int, rid: int) -> wire.Request:
    return wire.Request(cid, rid, cmd(cid * 1000 + rid, "buy" if (cid + rid) % 2 else "sell", 100 + rid % 3))


def _pair(max_batch: int, **kw):
    nets = []
    for _ in range(2):
        net = group("sync", dedupe_window=6, max_batch=max_batch, **kw)
        net.run_until(lambda net=net: net.machines["b"].joined and net.machines["a"].is_primary)
        nets.append(net)
    return nets


stretches = st.lists(
    st.tuples(st.sampled_from(CLIENTS), st.integers(1, 30), st.integers(1, 2 * SPAN_MIN)),
    min_size=1,
    max_size=3,
)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("bundle"), st.sampled_from(("a", "a", "a", "b")), st.sampled_from(SRCS), stretches),
        st.tuples(st.just("single"), st.sampled_from(SRCS), st.sampled_from(CLIENTS), st.integers(1, 40)),
        *LOCKSTEP_CONTROL,
    ),
    min_size=1,
    max_size=30,
)


def _requests(op):
    if op[0] == "bundle":
        _, node, src, spec = op
        return node, src, tuple(_request(c, r + i) for c, r, n in spec for i in range(n))
    if op[0] == "single":
        _, src, c, r = op
        return "a", src, (_request(c, r),)
    return None


def _packed(reqs: tuple) -> wire.RequestRun:
    return wire.RequestRun(wire.Requests(reqs).payload())


@given(ops, st.sampled_from([3, 7, 1024]))
def test_packed_bundles_are_handle_per_request(program, max_batch):
    run_lockstep(*_pair(max_batch), program, _requests, _packed)


@given(ops, st.sampled_from([1, 5, 12]))
def test_packed_bundles_past_the_senders_bound_are_handle_per_request(program, limit):
    """A sender's new requests past ``max_in_flight``: the span path answers them busy all at
    once, with the replies and counters of one ``on_request`` each."""
    run_lockstep(*_pair(1024, max_in_flight=limit), program, _requests, _packed)


def test_a_window_is_queued_as_one_span_and_its_duplicates_are_caught():
    (net, _) = _pair(1024)
    a = net.machines["a"]
    window = tuple(_request(1, r) for r in range(1, 21))
    run = wire.RequestRun(wire.Requests(window).payload())
    assert a.handle_requests(b"c1", run, net.now) == []
    assert len(a.pending) == 20 and len(a.pending._q[b"c1"]) == 1 and not a.pending.loose
    assert a.counters["requests_spanned"] == 20
    assert list(a.pending) == [(b"c1", q) for q in window]
    # The same ids again, alone, in a short bundle and in a window: all deduplicated, nothing queued.
    assert a.handle(b"c1", window[4], net.now) == []
    assert a.handle_requests(b"c1", window[2:4], net.now) == []
    assert a.handle_requests(b"c1", run, net.now) == []
    assert len(a.pending) == 20 and a.counters["requests_deduplicated"] == 23
    net.run(0.01)
    assert not a.pending and a.replica.seq == 20 and not a.pending._spans


def _model_take(model: dict, n: int) -> list:
    """``n`` requests from ``model`` (sender -> its requests, the next to serve first), by the
    rule ``PendingQueue.take`` states, request by request: each sender in turn gives up to
    ``n`` shared evenly among the senders (rounded up), then goes last if it has more."""
    quantum, got = -(-n // len(model)), []
    while len(got) < n:
        src = next(iter(model))
        reqs = model.pop(src)
        k = min(quantum, n - len(got), len(reqs))
        got += [(src, m) for m in reqs[:k]]
        if reqs[k:]:
            model[src] = reqs[k:]
    return got


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("pair"), st.sampled_from(SRCS + (b"c3",)), st.integers(0, 99)),
            st.tuples(
                st.just("span"), st.sampled_from(SRCS + (b"c3",)), st.integers(0, 99), st.integers(1, 12)
            ),
            st.tuples(st.just("take"), st.integers(1, 20)),
        ),
        max_size=30,
    )
)
def test_pending_queue_is_per_sender_lists_of_pairs_served_in_turn(program):
    """Against a plain model: per-sender lists, taken by the round-robin rule request by request
    (so each sender's order is kept, and the order of a batch is a function of what was queued)."""
    q, model = PendingQueue(), {}
    cid = 0
    for op in program:
        if op[0] == "pair":
            cid += 1  # every request its own key: what the queue is given is never queued already
            m = _request(cid, op[2])
            q.add(op[1], m)
            model.setdefault(op[1], []).append(m)
        elif op[0] == "span":
            cid += 1
            reqs = tuple(_request(cid, op[2] + i) for i in range(op[3]))
            run = wire.RequestRun(wire.Requests((_request(9999, 0), *reqs)).payload())
            q.add_span(op[1], run, 1, 1 + op[3], cid, op[2])
            model.setdefault(op[1], []).extend(reqs)
        else:
            n = min(op[1], len(q))
            if not n:
                continue
            stretches, cids, rids, commands = q.take(n)
            got = _model_take(model, n)
            assert [int(c) for c in cids] == [m.client_id for _, m in got]
            assert [int(r) for r in rids] == [m.request_id for _, m in got]
            assert isinstance(cids, list) or cids.dtype == np.uint64
            assert commands == b"".join(m.command for _, m in got)
            assert [s for s, lo, hi in stretches for _ in range(lo, hi)] == [s for s, _ in got]
            assert all(a[0] != b[0] or a[2] != b[1] for a, b in zip(stretches, stretches[1:], strict=False))
        flat = [(s, m) for s, reqs in model.items() for m in reqs]
        assert list(q) == flat and len(q) == len(flat) and bool(q) == bool(flat)
        assert q.by_src == {s: len(reqs) for s, reqs in model.items()}
        assert q.keys() == sorted((m.client_id, m.request_id) for _, m in flat)
        for _, m in flat:
            assert q.queued(m.client_id, m.request_id)
            assert not q.queued(m.client_id, m.request_id + 100)
        assert q.loose == {(m.client_id, m.request_id) for s, m in flat if m.client_id in _pairs(program)}


def _pairs(program) -> set:
    """The client ids ``test_pending_queue_is_per_sender_lists_of_pairs_served_in_turn`` gave to single pairs."""
    out, cid = set(), 0
    for op in program:
        if op[0] in ("pair", "span"):
            cid += 1
            if op[0] == "pair":
                out.add(cid)
    return out


def test_execute_batch_takes_uint64_columns_as_lists():
    from matching import Engine
    from replication.protocol.replica import Replica

    cols, lists = Replica(Engine, dedupe_window=50), Replica(Engine, dedupe_window=50)
    rid = 1
    for n in (1, 5, 20, 63, 64, 100):  # the per-request, bulk-remember and packed-run paths
        cids = [7 if i % 3 else 0 for i in range(n)]  # client 0: not remembered
        rids = list(range(rid, rid + n))
        commands = b"".join(cmd(r, "buy" if r % 2 else "sell", 100 + r % 3) for r in rids)
        rid += n
        got = cols.execute_batch(
            2, np.array(cids, dtype=np.uint64), np.array(rids, dtype=np.uint64), commands
        )
        assert got == lists.execute_batch(2, cids, rids, commands)
        assert cols.snapshot() == lists.snapshot()
        assert all(type(k) is int for k in cols.results) and all(
            type(r) is int for _, t in cols.results.values() for r in t
        )


def test_a_session_open_is_taken_after_its_client_ids_older_requests_from_another_sender():
    """Served in turn, the open (on p2) would go before client 7's session-1 requests (on p1):
    it waits until they are taken, so no entry of session 1 follows the open that fences it."""
    q = PendingQueue()
    old = [_request(7, opened_id(1) + i) for i in range(1, 5)]
    for m in old:
        q.add(b"p1", m)
    q.add(b"p3", _request(8, 1))
    q.add(b"p2", wire.Request(7, opened_id(2), cmd(1, "buy", 100)))
    assert len(q) == 6 and q.ready == 5 and q.queued(7, opened_id(2))
    taken = []
    while q:
        n = min(q.ready, 2)
        _, cids, rids, _ = q.take(n)
        taken += list(zip([int(c) for c in cids], [int(r) for r in rids], strict=True))
    assert taken.index((7, opened_id(2))) > max(taken.index((7, m.request_id)) for m in old)
    assert [r for c, r in taken if c == 7 and r != opened_id(2)] == [m.request_id for m in old]
    assert (8, 1) in taken[:2]  # the turn still serves p3 at once
