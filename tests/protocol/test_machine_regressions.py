"""Regressions found by the fault simulator (``replication.testing.sim``), each reduced to a few sans-IO calls.

Every test names the simulator seed that found it; the machines are driven
directly, with hand-made messages, so the failure needs no network at all.
"""

from __future__ import annotations

from _net import cmd, settings

from matching import ReferenceEngine
from replication.protocol import wire
from replication.protocol.node.machine import NodeMachine
from replication.protocol.replica import Replica
from replication.storage.journal import MemoryJournal


def primary_entries(n: int, epoch: int = 1) -> list[wire.Entry]:
    """Entries 1..n as a primary of ``epoch`` would journal them (digests included)."""
    r = Replica(ReferenceEngine)
    out = []
    for s in range(1, n + 1):
        c = cmd(s, "buy" if s % 2 else "sell", 100 + s % 3)
        _, digest = r.execute(epoch, s, 7, s, c)
        out.append(wire.Entry(epoch, s, 7, s, digest, c))
    return out


def joined_standby() -> NodeMachine:
    b = NodeMachine("b", ["a", "b"], MemoryJournal(), settings(), "witness", ReferenceEngine, "standby")
    b.handle("a", wire.Heartbeat(1, 0, "a", wire.ROLE_PRIMARY, 0, "a", 0), 0.0)
    b.handle("a", wire.Fence(1, 0, "b"), 0.0)
    assert b.joined and b.leader == "a"
    return b


def test_entry_applied_in_order_is_dropped_from_the_reorder_buffer():
    """sim seed 16: a stale reorder-buffer entry turned every later refill into an empty range.

    Entry 2 arrives early (held in the reorder buffer), then a refill brings
    1..2 and both are applied straight from that message. The buffered copy
    of 2 stayed behind, so the next real gap asked for ``seq 3 .. to_seq 1``,
    which the primary answers with nothing: the standby stalled for good.
    """
    e = primary_entries(5)
    b = joined_standby()
    b.handle("a", wire.Entries(1, 2, 0, (e[1],)), 0.001)  # early: buffered
    b.handle("a", wire.Entries(1, 1, 0, (e[0], e[1])), 0.002)  # the refill: 1 and 2 applied in order
    assert b.replica.seq == 2
    assert all(s > b.replica.seq for s in b.future), f"stale buffered entries {sorted(b.future)}"
    out = b.handle("a", wire.Entries(1, 4, 0, (e[3],)), 1.0)  # a real gap at 3
    refills = [o.msg for o in out if isinstance(o.msg, wire.Refill)]
    assert refills and refills[0].seq == 3 and refills[0].to_seq in (0, 3), refills


def test_stale_fence_does_not_truncate_a_joined_standby():
    """sim seed 8406: a delayed duplicate Fence wiped a standby, which was then promoted empty.

    The standby joined, then caught up (by entries or a snapshot); a late copy
    of the leader's answer to an older Join arrived saying "truncate after 1".
    Applied, it cut the journal below what the leader had since sent — below
    a catch-up snapshot's base, so recovery found nothing to rebuild from and
    started empty; when the primary then died the witness promoted the empty
    node and every acknowledged entry of epoch 1 was lost.
    """
    e = primary_entries(5)
    b = joined_standby()
    b.handle("a", wire.Entries(1, 1, 0, tuple(e[:3])), 0.001)
    assert b.replica.seq == 3 and b.journal.last_seq == 3
    b.handle("a", wire.Fence(1, 1, "b"), 0.002)  # a stale answer to a Join that is no longer outstanding
    assert b.replica.seq == 3 and b.journal.last_seq == 3 and b.joined
    assert b.replica.digest == e[2].digest


def _restarted_standby(epoch: int) -> NodeMachine:
    """Node ``a`` restarted as a standby whose saved epoch is ``epoch`` (it never led it)."""
    j = MemoryJournal()
    j.save_meta({"epoch": epoch, "history": [], "led_epoch": 0})
    return NodeMachine("a", ["a", "b"], j, settings(), "witness", ReferenceEngine, "standby")


def _asks_witness(outputs) -> bool:
    return any(isinstance(o, wire.Send) and isinstance(o.msg, wire.VoteRequest) for o in outputs)


def test_a_standby_nobody_leads_runs_for_primary_after_a_heartbeat_timeout():
    """sim seeds 1405, 1176 (async, overlapping faults): no primary, and nobody asked the witness.

    ``a`` stepped down to epoch 2, whose primary ``b`` then crashed and came back as a
    standby: ``a`` followed nobody in epoch 2 and only ran for primary when it had led the
    epoch or its leader, followed in that epoch, fell silent. Now a standby that follows
    nobody in its epoch, and has heard no node claim to lead it (or a later one) for a
    heartbeat timeout, asks; the witness decides.
    """
    a = _restarted_standby(2)
    timeout = a.settings.heartbeat_timeout
    a.tick(0.0)
    a.handle("b", wire.Heartbeat(2, 1, "b", wire.ROLE_STANDBY, 0, "", 0), 0.001)  # b: no primary either
    assert not _asks_witness(a.tick(timeout * 0.9))
    assert a.timer_due(timeout * 0.9) == timeout  # the driver wakes for it
    assert _asks_witness(a.tick(timeout + 0.001)) and a.candidate_since is not None


def test_a_standby_that_hears_a_primary_of_its_epoch_does_not_run():
    a = _restarted_standby(2)
    a.tick(0.0)
    t = 0.0
    while t < 0.2:  # b leads epoch 2 and heartbeats; a follows it instead of running
        t += 0.005
        a.handle("b", wire.Heartbeat(2, 0, "b", wire.ROLE_PRIMARY, 0, "b", 0), t)
        assert not _asks_witness(a.tick(t))
    assert a.leader == "b" and a.candidate_since is None


def test_a_node_of_a_new_group_waits_for_the_node_started_as_primary():
    a = _restarted_standby(0)
    a.tick(0.0)
    assert not _asks_witness(a.tick(1.0)) and a.timer_due(1.0) > 1.0
