"""Timers as data: each wait is a named deadline, armed where it starts and cleared where it ends.

``protocol.timers.Timers`` on its own, then the node's timers in each role:
armed by the logic that starts the wait, cleared by what ends it, fired by
``tick`` once due, and ``idle_wait`` the earliest armed deadline (the
randomised proof that no deadline is ever late is
``test_node_idle_wait.py``: a node ticked only at its deadlines behaves as
one ticked every 0.1 ms).
"""

from __future__ import annotations

import math

from _net import group
from test_node_idle_wait import joined_standby, primary

from replication.protocol import wire
from replication.protocol.node.machine import HEARTBEAT
from replication.protocol.node.primary import DRAIN
from replication.protocol.node.standby import HANDOVER, JOIN, LEADER
from replication.protocol.timers import INF, Timers


def test_timers_arm_clear_and_earliest():
    t = Timers()
    assert t.earliest() == INF and t.at("a") == INF
    t.arm("a", 2.0)
    t.arm("b", 1.0)
    assert t.earliest() == 1.0 and t.armed() == {"a": 2.0, "b": 1.0}
    t.arm("b", 3.0)  # re-armed: one deadline per name
    assert t.earliest() == 2.0
    t.clear("a")
    t.clear("never armed")
    assert t.armed() == {"b": 3.0}
    t.arm("b", INF)  # INF: no deadline
    assert t.armed() == {} and t.earliest() == INF


def test_idle_wait_is_the_earliest_armed_deadline():
    b = joined_standby()  # ticked at 0.0: heartbeat sent, joined
    armed = {**b.timers.armed(), **b.current_role.timers.armed()}
    assert armed[HEARTBEAT] == 0.005 and JOIN not in armed  # joined: no Join retry waits
    assert b.timer_due(0.001) == min(armed.values())
    assert b.idle_wait(0.001) == math.ceil((min(armed.values()) - 0.001) * 1000 - 1e-6) / 1000
    b.handle("a", wire.Heartbeat(1, 0, "a", wire.ROLE_PRIMARY, 0, "a"), 0.002)
    assert b.idle_wait(0.002) == 0.0  # a message since the last tick: the tick comes first
    b.tick(0.002)
    assert b.current_role.timers.at(LEADER) == 0.002 + b.settings.heartbeat_timeout  # re-armed by it


def test_the_join_retry_is_armed_when_the_join_leaves_and_cleared_once_joined():
    b = joined_standby()
    b.handle("c", wire.Heartbeat(2, 0, "c", wire.ROLE_PRIMARY, 0, "c"), 0.001)  # a newer epoch: follow c
    role = b.current_role
    assert b.leader == "c" and not b.joined and role.timers.at(JOIN) == 0.001 + b.settings.join_retry
    t = role.timers.at(JOIN)
    assert not [o for o in b.tick(t - 1e-6) if isinstance(o.msg, wire.Join)]  # not yet due
    assert [o.dest for o in b.tick(t) if isinstance(o.msg, wire.Join)] == ["c"]  # fired, re-armed
    assert role.timers.at(JOIN) == t + b.settings.join_retry
    b.handle("c", wire.Fence(2, 0, "b"), t + 0.001)
    assert b.joined and role.timers.at(JOIN) == INF


def test_the_switchover_abort_is_armed_at_the_drain_and_cleared_when_it_ends():
    a = primary(switchover_timeout=0.05)
    a.handle("op", wire.Switchover("b"), 0.001)
    t = a.current_role.timers.at(DRAIN)
    assert a.role == wire.ROLE_DRAINING and t == 0.001 + 0.05
    a.tick(t)  # a > timeout: due, not yet over
    assert a.role == wire.ROLE_DRAINING
    a.tick(t + 1e-6)
    assert a.role == wire.ROLE_PRIMARY and a.current_role.timers.at(DRAIN) == INF  # aborted: cleared


def test_a_handover_timer_starts_with_the_standby_a_drained_primary_becomes():
    net = group("sync")
    a, b = net.machines["a"], net.machines["b"]
    net.run_until(lambda: b.joined and a.acked.get("b") == 0)
    net.down.add("b")
    net.emit("operator", [wire.Send("a", wire.Switchover("b"))])
    net.deliver_all()
    net.step()
    standby = a.current_role
    sent_at = standby.handover.sent_at
    assert standby.timers.at(HANDOVER) == sent_at + net.settings.join_retry
    net.down.discard("b")
    net.run_until(lambda: b.is_primary and a.joined)
    assert a.current_role.timers.at(HANDOVER) == INF  # proven: the wait ended
