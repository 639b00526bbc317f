"""Standby and fail-over logic, sans-IO: digests, gaps, catch-up, divergence, promotion, fencing, switchover."""

from __future__ import annotations

import pytest
from _net import add_client, cmd, group

import matching
from matching import ReferenceEngine
from replication.protocol import wire
from replication.protocol.node.machine import NodeMachine

# The machines take the engine as a factory: the scenarios that matter run on both engines.
ENGINES = [pytest.param(ReferenceEngine, id="reference")] + (
    [pytest.param(matching.Engine, id="native")] if matching.Engine is not None else []
)


def started(mode="sync", **kw):
    net = group(mode, **kw)
    c = add_client(net, b"c1", 7, ["a", "b"])
    net.run_until(lambda: net.machines["b"].joined)
    return net, c


def submit(net, c, first, n):
    for i in range(first, first + n):
        net.emit(b"c1", c.submit(cmd(i, "buy" if i % 2 else "sell", 100 + i % 5), net.now)[1])


def roles(net):
    return {n: wire.ROLE_NAMES[net.machines[n].role] for n in ("a", "b")}


def test_digests_match_and_acks_are_cumulative():
    net, c = started()
    acks = []
    net.drop = lambda s, d, m: acks.append(m.seq) if isinstance(m, wire.Ack) else False
    submit(net, c, 1, 20)
    net.run(0.01)
    a, b = net.machines["a"], net.machines["b"]
    assert b.replica.seq == 20 and b.replica.digest == a.replica.digest
    assert acks == sorted(acks) and acks[-1] == 20 and len(acks) < 20  # one ack per batch, not per entry
    assert net.journals["b"].read(1) == net.journals["a"].read(1)


def test_gap_is_detected_and_refilled():
    net, c = started()
    dropped = []

    def drop(s, d, m):
        if isinstance(m, wire.Entries) and d == "b" and not dropped:
            dropped.append(m.seq)
            return True
        return False

    net.drop = drop
    submit(net, c, 1, 3)
    net.step()
    submit(net, c, 4, 3)
    net.run(0.01)
    b = net.machines["b"]
    assert dropped and b.replica.seq == 6 and b.counters["refills_requested"] >= 1
    assert b.replica.digest == net.machines["a"].replica.digest
    assert len(net.done[b"c1"]) == 6


def test_lost_tail_is_refilled_from_heartbeat_seq():
    net, c = started()
    dropped = []
    net.drop = lambda s, d, m: (
        isinstance(m, wire.Entries) and d == "b" and not dropped and not dropped.append(1)
    )
    submit(net, c, 1, 2)  # the only Entries message is lost and nothing follows it
    net.run(0.05)
    assert dropped and net.machines["b"].replica.seq == 2 and len(net.done[b"c1"]) == 2


@pytest.mark.parametrize("engine", ENGINES)
def test_late_standby_catches_up_by_snapshot_then_tail(engine):
    net = group("async", catchup_snapshot_lag=10, engine_factory=engine)
    c = add_client(net, b"c1", 7, ["a", "b"])
    net.down.add("b")
    net.run(0.02)
    submit(net, c, 1, 40)
    net.run(0.01)
    assert net.machines["a"].replica.seq == 40
    net.down.discard("b")
    net.run(0.05)
    b = net.machines["b"]
    assert b.counters.get("snapshots_installed") == 1 and b.replica.seq == 40
    assert net.journals["b"].base_seq == 40
    submit(net, c, 41, 5)
    net.run(0.01)
    assert b.replica.seq == 45 and b.replica.digest == net.machines["a"].replica.digest
    assert b.replica.results == net.machines["a"].replica.results  # dedupe table replicated


def test_divergent_standby_stops_and_never_promotes():
    net = group("sync", perturb={"b": 3})
    c = add_client(net, b"c1", 7, ["a", "b"])
    net.run_until(lambda: net.machines["b"].joined)
    submit(net, c, 1, 5)
    net.run(0.02)
    b = net.machines["b"]
    assert b.role == wire.ROLE_DIVERGED and b.counters["divergences"] == 1 and b.diverged_at == 3
    assert net.journals["b"].last_seq == 2  # the mismatching entry is never journaled or acked
    net.down.add("a")
    net.run(0.3)
    assert b.role == wire.ROLE_DIVERGED and b.epoch == 1
    assert "promotions" not in b.counters


@pytest.mark.parametrize("engine", ENGINES)
def test_failover_loses_nothing_acknowledged_and_fences_old_primary(engine):
    net, c = started("sync", engine_factory=engine)
    submit(net, c, 1, 5)
    net.run(0.01)
    # Entries 6..8 reach the primary's journal but never the standby: never acknowledged.
    net.drop = lambda s, d, m: s == "a" and d == "b"
    submit(net, c, 6, 3)
    net.step()
    net.step()
    acked_before = {d.request_id for d in net.done[b"c1"]}
    assert acked_before == {1, 2, 3, 4, 5} and net.machines["a"].replica.seq == 8
    net.down.add("a")
    net.drop = None
    net.run_until(lambda: not c.pending, 1.0)
    b = net.machines["b"]
    # promotion_ms: 0.0 here, set by promote(); the driver measures the real figure.
    assert roles(net)["b"] == "primary" and b.epoch == 2 and b.promotion_ms == 0.0
    assert sorted(d.request_id for d in net.done[b"c1"]) == list(range(1, 9))
    assert b.replica.seq == 8  # 6..8 re-executed once each on b, nothing twice
    # The old primary comes back from its journal, is fenced, truncates 6..8 and follows b.
    net.down.discard("a")
    a = net.machines["a"] = NodeMachine(
        "a", ["a", "b"], net.journals["a"], net.settings, "witness", engine, "primary"
    )
    net.run_until(lambda: a.joined and a.replica.seq == 8, 1.0)
    assert roles(net) == {"a": "standby", "b": "primary"}
    assert a.counters["fenced"] == 1 and a.replica.digest == b.replica.digest
    assert [e.epoch for e in net.journals["a"].read(6)] == [2, 2, 2]


def test_standby_without_witness_waits_for_operator():
    net = group("sync", witness=False)
    c = add_client(net, b"c1", 7, ["a", "b"])
    net.run(0.02)
    assert roles(net) == {"a": "standby", "b": "standby"}  # nobody may start alone in a pair
    net.emit("operator", [wire.Send("a", wire.Promote())])
    net.run_until(lambda: net.machines["b"].joined)
    submit(net, c, 1, 2)
    net.run(0.01)
    net.down.add("a")
    net.run(0.2)
    assert roles(net)["b"] == "standby"
    net.emit("operator", [wire.Send("b", wire.Promote())])
    net.run(0.01)
    assert roles(net)["b"] == "primary" and net.machines["b"].epoch == 2


def test_planned_switchover_loses_nothing():
    net, c = started("sync")
    submit(net, c, 1, 10)
    net.step()
    net.emit("operator", [wire.Send("a", wire.Switchover("b"))])
    submit(net, c, 11, 10)
    net.run_until(lambda: not c.pending, 1.0)
    a, b = net.machines["a"], net.machines["b"]
    assert roles(net) == {"a": "standby", "b": "primary"} and b.epoch == 2
    assert sorted(d.request_id for d in net.done[b"c1"]) == list(range(1, 21))
    net.run(0.02)
    assert a.replica.seq == b.replica.seq == 20 and a.replica.digest == b.replica.digest
    assert net.machines["witness"].epoch == 2 and net.machines["witness"].primary == "b"


def test_switchover_to_unknown_node_is_refused():
    net, c = started("sync")
    net.emit("operator", [wire.Send("a", wire.Switchover("zz"))])
    net.run(0.01)
    assert roles(net) == {"a": "primary", "b": "standby"}
    assert net.machines["a"].epoch == net.machines["b"].epoch == 1 and net.machines["b"].leader == "a"
    submit(net, c, 1, 3)  # and a still serves
    net.run_until(lambda: not c.pending, 1.0)


def test_restart_recovers_from_journal_and_snapshot():
    net = group("async", snapshot_every=7)
    c = add_client(net, b"c1", 7, ["a", "b"])
    net.run_until(lambda: net.machines["b"].joined)
    submit(net, c, 1, 20)
    net.run(0.01)
    j = net.journals["b"]
    snap = j.load_snapshot()
    assert snap is not None and snap[:2] == (20, 1)  # taken at the last entry (one batch of 20)
    assert snap[2] == net.machines["a"].replica.snapshot()  # the primary's book, byte for byte
    b2 = NodeMachine("b", ["a", "b"], j, net.settings, "witness", ReferenceEngine)
    assert b2.replica.seq == 20 and b2.replica.digest == net.machines["a"].replica.digest
    assert b2.replica.results == net.machines["a"].replica.results
