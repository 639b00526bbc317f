"""The async lease (``replication.protocol.node.lease``), sans-IO: the primary's side, a standby's promise, the witness's.

Times are virtual; the default lease is 30 ms with a 5 ms margin.
"""

from __future__ import annotations

import pytest

from matching import ReferenceEngine
from replication.protocol import wire
from replication.protocol.node.machine import NodeMachine
from replication.protocol.settings import Settings
from replication.protocol.witness import WitnessMachine
from replication.storage.journal import MemoryJournal
from replication.transport.group_file import parse


def command(i: int) -> bytes:
    from replication.testing.sim import pack

    return pack({"op": "new", "instrument": 1, "id": i, "side": "buy", "price": 100, "qty": 1})


def request(rid: int) -> wire.Request:
    return wire.Request(7, rid, command(rid))


def primary(peers=("a", "b"), witness="witness") -> NodeMachine:
    """Async primary a of epoch 1, granted at t=0 (its first lease ask, stamp 1, sent then)."""
    a = NodeMachine(
        "a", list(peers), MemoryJournal(), Settings(mode="async"), witness, ReferenceEngine, "primary"
    )
    a.tick(0.0)
    a.handle("witness", wire.Vote(1, "a", True, "granted"), 0.0)
    assert a.is_primary and a.lease_stamp == 1
    return a


def replies(out: list) -> list[wire.Reply]:
    got = []
    for o in out:
        if isinstance(o, wire.ReplyRun):
            got += o.replies()
        elif isinstance(o, wire.Send) and isinstance(o.msg, wire.Reply):
            got.append(o.msg)
    return got


def test_nothing_is_acknowledged_before_the_first_echo_and_all_of_it_after():
    a = primary()
    a.handle(b"c", request(1), 0.001)
    assert replies(a.tick(0.002)) == [] and a.replica.seq == 0  # queued, not sequenced
    assert a.status()["lease"] == "pending"
    a.handle("witness", wire.Lease(1, 1, "witness"), 0.003)
    got = replies(a.tick(0.003))
    assert [(r.request_id, r.status) for r in got] == [(1, wire.OK)] and a.replica.seq == 1


def test_the_lease_runs_from_when_the_ask_left_not_from_when_the_echo_came():
    a = primary()
    a.handle("witness", wire.Lease(1, 1, "witness"), 0.020)  # the ask left at 0.0: held until 0.030
    assert a.lease_held(0.0299) and not a.lease_held(0.030)


def test_a_lapsed_lease_stops_acknowledging_and_an_echo_resumes_it():
    a = primary()
    a.handle("witness", wire.Lease(1, 1, "witness"), 0.001)
    a.handle(b"c", request(1), 0.002)
    assert [r.status for r in replies(a.tick(0.002))] == [wire.OK]
    # No echo since the ask of t=0: from 0.030 on, a refuses, and sequences nothing.
    out = a.handle(b"c", request(2), 0.031)
    assert [(r.request_id, r.status) for r in replies(out)] == [(2, wire.UNAVAILABLE)]
    assert a.replica.seq == 1 and a.counters["requests_refused_no_lease"] == 1
    assert a.status()["role"] == "primary"
    out = a.handle_requests(b"c", (request(3), request(4)), 0.032)  # a bundle: refused too
    assert [r.status for r in replies(out)] == [wire.UNAVAILABLE] * 2 and not a.pending
    # An echo of an ask older than a lease renews nothing.
    a.tick(0.035)  # heartbeat: ask stamp 2 (sent at 0.035)
    a.handle("witness", wire.Lease(1, 1, "witness"), 0.036)
    assert not a.lease_held(0.036)
    a.handle("witness", wire.Lease(1, a.lease_stamp, "witness"), 0.036)
    assert a.lease_held(0.036)
    a.handle(b"c", request(2), 0.037)
    assert [(r.request_id, r.status) for r in replies(a.tick(0.037))] == [(2, wire.OK)]


def test_standbys_hold_the_lease_only_all_together():
    a = primary(peers=("a", "b", "c"))
    a.handle("b", wire.Lease(1, 1, "b"), 0.001)
    assert not a.lease_held(0.001)  # c could still be promoted
    a.handle("c", wire.Lease(1, 1, "c"), 0.001)
    assert a.lease_held(0.001)


def test_echoes_from_strangers_other_epochs_or_forged_names_count_for_nothing():
    a = primary()
    for src, m in [
        (b"c", wire.Lease(1, 1, "witness")),  # a client address
        ("b", wire.Lease(1, 1, "witness")),  # names another sender
        ("witness", wire.Lease(2, 1, "witness")),  # another epoch
        ("x", wire.Lease(1, 1, "x")),  # not in the group
        ("witness", wire.Lease(1, 99, "witness")),  # a stamp never sent
    ]:
        a.handle(src, m, 0.001)
    assert not a.lease_held(0.001)


def test_sync_mode_has_no_lease():
    a = NodeMachine(
        "a", ["a", "b"], MemoryJournal(), Settings(mode="sync"), "witness", ReferenceEngine, "primary"
    )
    a.tick(0.0)
    out = a.handle("witness", wire.Vote(1, "a", True, "granted"), 0.0)
    assert not any(isinstance(o.msg, wire.Lease) for o in out if isinstance(o, wire.Send))
    assert a.lease_held(100.0) and a.status()["lease"] == "none"


def follower() -> NodeMachine:
    """Standby b following a in epoch 1."""
    b = NodeMachine(
        "b", ["a", "b"], MemoryJournal(), Settings(mode="async"), "witness", ReferenceEngine, "standby"
    )
    b.tick(0.0)
    b.handle("a", wire.Heartbeat(1, 0, "a", wire.ROLE_PRIMARY, 0, "a"), 0.0)
    b.handle("a", wire.Fence(1, 0, "b"), 0.0)  # a accepted our Join
    assert b.leader == "a" and b.followed_epoch == 1
    return b


def test_a_standby_echoes_its_leader_and_then_helps_no_one_to_a_new_epoch_for_the_promise():
    b = follower()
    out = b.handle("a", wire.Lease(1, 5, "a"), 0.010)
    assert [(o.dest, o.msg) for o in out] == [("a", wire.Lease(1, 5, "b"))]
    assert b.lease_promise.until == pytest.approx(0.045)  # 10 ms + 30 ms lease + 5 ms margin
    b.handle("a", wire.PeerDown("a"), 0.011)  # the leader is lost at once...
    ticks = [0.012 + k / 1000 for k in range(33)]  # up to 0.044
    votes = [o for t in ticks for o in b.tick(t) if isinstance(o.msg, wire.VoteRequest)]
    assert b.candidate_since is not None and votes == []  # ...but the promise holds
    # A grant inside the promise is not taken (the witness re-sends it on our heartbeats).
    b2 = follower()
    b2.handle("a", wire.Lease(1, 5, "a"), 0.010)
    b2.handle("witness", wire.Vote(2, "b", True, "granted"), 0.030)
    assert not b2.is_primary and b2.counters["votes_deferred_by_lease"] == 1
    b2.handle("witness", wire.Vote(2, "b", True, "granted (re-sent)"), 0.046)
    assert b2.is_primary and b2.epoch == 2
    # After the promise it asks.
    votes = [o for o in b.tick(0.0455) if isinstance(o.msg, wire.VoteRequest)]
    assert len(votes) == 1


def test_a_standby_that_deferred_a_grant_echoes_the_old_primary_no_more():
    """Granted epoch 2 inside its promise, b defers the grant; renewing the promise with more
    echoes would keep a acknowledging on b's support and b from ever taking the epoch (seed 8766)."""
    b = follower()
    b.handle("a", wire.Lease(1, 5, "a"), 0.010)
    b.handle("witness", wire.Vote(2, "b", True, "granted"), 0.030)
    assert not b.is_primary and b.counters["votes_deferred_by_lease"] == 1
    assert b.handle("a", wire.Lease(1, 6, "a"), 0.035) == []  # no echo, no longer promise
    assert b.lease_promise.until == pytest.approx(0.045)
    b.handle("witness", wire.Vote(2, "b", True, "granted (re-sent)"), 0.046)
    assert b.is_primary and b.epoch == 2


def test_a_standby_echoes_no_one_but_its_leader():
    b = follower()
    assert b.handle("c", wire.Lease(1, 5, "c"), 0.01) == []
    assert b.handle("a", wire.Lease(2, 5, "a"), 0.01) == []
    assert b.lease_promise.until == float("-inf")


def witness_with_primary() -> WitnessMachine:
    w = WitnessMachine(["a", "b"], Settings(mode="async"))
    (out,) = w.handle("a", wire.VoteRequest(1, 0, "a", 0), 0.0)
    assert out.msg.granted  # epoch 1: no lease can run yet
    return w


def test_the_witness_echoes_its_primary_and_grants_nothing_while_the_lease_may_run():
    w = witness_with_primary()
    assert w.handle("b", wire.Lease(1, 3, "b"), 0.01) == []  # not its primary
    (out,) = w.handle("a", wire.Lease(1, 3, "a"), 0.010)
    assert out.dest == "a" and out.msg == wire.Lease(1, 3, "witness")
    w.handle("a", wire.PeerDown("a"), 0.011)  # a's connection dropped: lost at once...
    assert w.handle("b", wire.VoteRequest(2, 0, "b", 0), 0.012) == []  # ...but parked until 0.045
    assert w.counters["votes_parked"] == 1
    out = w.tick(0.046)
    assert [o.msg.granted for o in out] == []  # the parked ask was forgotten after vote_retry
    (out,) = w.handle("b", wire.VoteRequest(2, 0, "b", 0), 0.046)
    assert out.msg.granted and out.msg.epoch == 2


def test_a_restarted_witness_or_node_promises_a_lease_from_its_start():
    w = WitnessMachine(
        ["a", "b"], Settings(mode="async"), state={"epoch": 3, "primary": "a", "isr": None, "isr_proposal": 0}
    )
    w.tick(1.0)
    assert w.handle("b", wire.VoteRequest(4, 9, "b", 3), 1.02) == []
    b = NodeMachine(
        "b", ["a", "b"], MemoryJournal(), Settings(mode="async"), "witness", ReferenceEngine, "standby"
    )
    b.epoch = 3
    b.tick(1.0)
    assert b.lease_promise.until == pytest.approx(1.035)


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"lease_ms": 5}, "lease_ms"),  # under two heartbeats
        ({"lease_ms": 41}, "lease_ms"),  # over the timeout
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"max_batch": 1 << 20}, "max_batch"),  # its Entries would pass MAX_INBOUND_FRAME
    ],
)
def test_the_group_file_refuses_unsafe_bounds(doc, key):
    base = {"mode": "async", "nodes": {"a": {"endpoint": "tcp://127.0.0.1:1", "journal": "a"}}}
    with pytest.raises(ValueError, match=key):
        parse({**base, **doc})
    assert parse({**base, "lease_ms": 20}).settings.lease == pytest.approx(0.020)
