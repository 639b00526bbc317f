"""The node's roles are objects: one at a time, built at each role change, each owning its state.

Sans-IO, on the deterministic test network (which checks every node's
``invariants()`` after each of its steps). What the composition promises:
a role change builds a new role object (nothing of the old one's queues
survives in it), hand-overs go through the node (a switchover's Handover and
stashed replies reach the standby the old primary becomes), a message no role
of ours takes now is ignored rather than counted unexpected, and
``invariants()`` does fail on a broken state.
"""

from __future__ import annotations

import pytest
from _net import add_client, cmd, group

from replication.protocol import wire
from replication.protocol.node.primary import PrimaryRole
from replication.protocol.node.records import HeldRequest
from replication.protocol.node.standby import DivergedRole, StandbyRole


def test_each_role_change_builds_a_new_role_object():
    net = group("sync")
    a, b = net.machines["a"], net.machines["b"]
    assert type(a.current_role) is StandbyRole  # every node starts as a standby
    net.run_until(lambda: b.joined)
    primary = a.current_role
    assert type(primary) is PrimaryRole and primary.node is a and a.role == wire.ROLE_PRIMARY
    c = add_client(net, b"c", 7, ["a", "b"])
    net.emit(b"c", c.submit(cmd(1), net.now)[1])
    net.run_until(lambda: a.replica.seq == 1 and not c.pending)
    # A newer epoch's heartbeat steps a down: a new standby, and the primary's queues go with it.
    net.emit("b", [wire.Send("a", wire.Heartbeat(5, 1, "b", wire.ROLE_PRIMARY, 1, "b"))])
    net.deliver_all()
    assert type(a.current_role) is StandbyRole and a.current_role is not primary
    assert a.epoch == 5 and a.leader == "b" and not a.pending and not a.waiting and not a.acked
    assert a.commit == a.replica.seq  # a standby's heartbeat commit: its seq when it became one


def test_a_switchover_hands_its_handover_to_the_standby_the_primary_becomes():
    net = group("sync")
    a, b = net.machines["a"], net.machines["b"]
    net.run_until(lambda: b.joined and a.acked.get("b") == 0)
    net.down.add("b")  # the Handover is lost: the new standby must re-send it
    net.emit("operator", [wire.Send("a", wire.Switchover("b"))])
    net.deliver_all()
    assert a.role == wire.ROLE_DRAINING and a.drain_target == "b"
    net.step()
    standby = a.current_role
    assert type(standby) is StandbyRole and a.leader == "b"
    assert standby.handover is not None and standby.handover.target == "b"
    assert standby.handover.message == wire.Handover(1, 0, "a")
    net.down.discard("b")
    net.run_until(lambda: b.is_primary and b.epoch == 2 and a.joined)
    assert a.current_role.handover is None  # proven (or forgotten) once b serves epoch 2


def test_a_divergence_replaces_the_standby_and_drops_its_held_requests():
    net = group("sync")
    b = net.machines["b"]
    net.run_until(lambda: b.joined)
    standby = b.current_role
    standby.held.append(HeldRequest(b"c", wire.Request(7, 1, cmd(1)), net.now))
    bad = wire.Entry(1, 1, 7, 1, 12345, cmd(1))  # a digest no book gives
    b.handle("a", wire.Entries(1, 1, 0, (bad,)), net.now)
    assert type(b.current_role) is DivergedRole and b.diverged_at == 1 and not b.held
    # A diverged node refuses requests (UNAVAILABLE) and ignores what only a standby takes.
    out = b.handle(b"c", wire.Request(7, 2, cmd(2)), net.now)
    assert [o.msg.status for o in out] == [wire.UNAVAILABLE]
    assert b.handle("a", wire.SnapshotChunk(1, 1, 1, 0, 1, b"x"), net.now) == []
    assert "unexpected_messages" not in b.counters
    b.invariants()


def test_a_message_for_another_role_is_ignored_not_unexpected():
    net = group("sync")
    b = net.machines["b"]
    assert b.handle("a", wire.Ack(1, 1, "a", 0), 0.0) == []  # an Ack is a primary's
    assert b.handle("a", wire.Join(1, 0, "a", 0), 0.0) == []
    assert "unexpected_messages" not in b.counters


def test_invariants_catch_a_broken_state():
    net = group("sync")
    a, b = net.machines["a"], net.machines["b"]
    net.run_until(lambda: b.joined)
    a.invariants()
    a.current_role.commit = a.replica.seq + 1
    with pytest.raises(AssertionError, match="commit 1 past seq 0"):
        a.invariants()
    a.current_role.commit = 0
    b.current_role.future[0] = None  # an entry at or below our seq in the reorder buffer
    with pytest.raises(AssertionError, match="reorder buffer"):
        b.invariants()
