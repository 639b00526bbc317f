"""A heartbeat proves a history by its last entry (epoch, seq) and digest, never by the digest alone.

Sans-IO, on the deterministic test network. A request a primary sequenced but
never replicated (it crashed) is re-sent by its client to the next epoch's
primary, which sequences it again at the same seq: the two entries differ only
in their epoch, and the chained digests are equal (the same books). Two
journals holding them are still different histories (one primary per epoch:
``CatchUp.common_prefix`` agrees by (epoch, seq)), and the older one's suffix
must be fenced before its node counts as holding the newer one's.

The shape of simulator seeds 6114 and 6877 (sync, overlapping faults): the
epoch-2 primary b, draining into the restarted epoch-1 primary a, took a's
heartbeat (seq and digest equal to its own) for an ack, handed over to it
before a's Join was answered, and then followed a's epoch 3 without a Join
(its first heartbeat as primary showed the same seq and digest): b's journal
held epoch 2's entries under epoch 3's, a's held epoch 1's.
"""

from __future__ import annotations

from _net import add_client, cmd, group

from matching import ReferenceEngine
from replication.protocol import wire
from replication.protocol.node.machine import NodeMachine


def _reset_twice_sequenced():
    """a led epoch 1 and crashed holding seq 3 unreplicated; b leads epoch 2 with the same request
    re-sequenced at seq 3 (acknowledged), and drains into a, down. Returns (net, b, client)."""
    net = group("sync")
    a, b = net.machines["a"], net.machines["b"]
    c = add_client(net, b"c1", 7, ["a", "b"])
    net.run_until(lambda: b.joined and a.isr_confirmed == ("b",))
    for i in (1, 2):
        net.emit(b"c1", c.submit(cmd(i), net.now)[1])
    net.run_until(lambda: not c.pending, 1.0)
    # a sequences request 3, but its entries never reach b; then a crashes.
    net.drop = lambda src, dest, msg: src == "a" and dest == "b" and isinstance(msg, wire.Entries)
    net.emit(b"c1", c.submit(cmd(3), net.now)[1])
    net.run_until(lambda: a.replica.seq == 3, 0.5)
    net.journals["a"].crash()
    del net.machines["a"]
    net.drop = None
    # b takes epoch 2 and serves the client's re-sent request 3 at seq 3.
    net.run_until(lambda: b.is_primary and b.epoch == 2 and not c.pending, 2.0)
    mine, theirs = b.journal.entry(3), net.journals["a"].entry(3)
    assert (mine.epoch, theirs.epoch) == (2, 1) and mine.digest == theirs.digest  # the shape
    # A switchover to a, still down: b drains, waiting for a to hold its seq.
    net.emit("operator", [wire.Send("b", wire.Switchover("a"))])
    net.deliver_all()
    assert b.role == wire.ROLE_DRAINING and b.drain_target == "a"
    return net, b, c


def test_a_heartbeat_with_an_equal_digest_but_another_epochs_entry_is_no_ack():
    net, b, _ = _reset_twice_sequenced()
    digest = b.journal.entry(3).digest
    # a's heartbeat as b's standby of epoch 2, its last entry still epoch 1's seq 3.
    stale = wire.Heartbeat(2, 3, "a", wire.ROLE_STANDBY, 3, "b", digest, (), 1)
    out = b.handle("a", stale, net.now) + b.tick(net.now)
    assert "a" not in b.acked and b.role == wire.ROLE_DRAINING
    assert not any(isinstance(o, wire.Send) and isinstance(o.msg, wire.Handover) for o in out)
    # The same heartbeat naming our entry (2, 3) does prove it: the drain completes.
    held = wire.Heartbeat(2, 3, "a", wire.ROLE_STANDBY, 3, "b", digest, (), 2)
    out = b.handle("a", held, net.now) + b.tick(net.now)
    assert b.role == wire.ROLE_STANDBY and b.leader == "a"
    assert any(isinstance(o, wire.Send) and isinstance(o.msg, wire.Handover) for o in out)


def test_a_restarted_old_primary_is_fenced_before_it_is_handed_the_group():
    net, b, c = _reset_twice_sequenced()
    # a restarts; its first Joins are lost, so only its heartbeats reach b for a while.
    a = NodeMachine("a", ["a", "b"], net.journals["a"], net.settings, "witness", ReferenceEngine, "standby")
    net.machines["a"] = a
    joins_from = net.now + 0.05
    net.drop = lambda src, dest, msg: isinstance(msg, wire.Join) and net.now < joins_from
    net.run(0.03)
    assert b.role == wire.ROLE_DRAINING and not a.is_primary  # no handover on a's heartbeats alone
    # Its Join gets through: fenced to seq 2, it catches up, and only then is handed the group.
    net.run_until(lambda: a.is_primary and b.joined and b.leader == "a", 2.0)
    for i in (4, 5):
        net.emit(b"c1", c.submit(cmd(i), net.now)[1])
    net.run_until(lambda: not c.pending and b.replica.seq == a.replica.seq == 5, 1.0)
    # One history: entry 3 is epoch 2's on both nodes, and every entry agrees.
    assert a.journal.read(1) == b.journal.read(1)
    assert a.journal.entry(3).epoch == 2


def test_a_handover_target_serving_from_another_epochs_entry_is_joined_not_trusted():
    net, b, _ = _reset_twice_sequenced()
    a = NodeMachine("a", ["a", "b"], net.journals["a"], net.settings, "witness", ReferenceEngine, "standby")
    net.machines["a"] = a
    # One message (or tick) at a time, until b has sent its Handover and follows a.
    while b.role != wire.ROLE_STANDBY:
        assert net.now < 2.0, "b never handed over"
        if net.queue:
            net.deliver_all(limit=1)
            continue
        net.now += net.dt
        for name, m in list(net.machines.items()):
            net.emit(name, m.tick(net.now))
    assert b.epoch == 2 and b.current_role.handover is not None
    standby = b.current_role
    digest = b.replica.digest
    # The target's first heartbeat as primary of epoch 3: same seq and digest as ours.
    other = wire.Heartbeat(3, 3, "a", wire.ROLE_PRIMARY, 3, "a", digest, (), 1)
    assert not standby.handover_proven("a", other)  # its last entry is epoch 1's: a Join decides
    same = wire.Heartbeat(3, 3, "a", wire.ROLE_PRIMARY, 3, "a", digest, (), 2)
    assert standby.handover_proven("a", same)


def test_a_heartbeat_at_or_below_the_acked_seq_is_not_proven_against_the_journal():
    """Only a seq above the standby's acked one can count: below it, no journal read (a primary
    under load gets a heartbeat every few ms, and its acks lead them)."""
    net = group("sync")
    a, b = net.machines["a"], net.machines["b"]
    c = add_client(net, b"c1", 7, ["a", "b"])
    net.run_until(lambda: b.joined and a.isr_confirmed == ("b",))
    for i in (1, 2, 3):
        net.emit(b"c1", c.submit(cmd(i), net.now)[1])
    net.run_until(lambda: not c.pending and a.acked.get("b") == 3, 1.0)
    reads: list[int] = []
    entry = a.journal.entry
    a.journal.entry = lambda seq: reads.append(seq) or entry(seq)
    digest = entry(3).digest
    for seq in (2, 3):
        hb = wire.Heartbeat(1, seq, "b", wire.ROLE_STANDBY, 3, "a", digest, (), 1)
        assert a.handle("b", hb, net.now) == [] and reads == []
    # Past the acked seq (an entry whose ack was lost), the heartbeat is proven and counts.
    net.drop = lambda src, dest, msg: src == "b" and isinstance(msg, wire.Ack)
    net.emit(b"c1", c.submit(cmd(4), net.now)[1])
    net.run_until(lambda: b.replica.seq == 4, 1.0)
    assert a.acked["b"] == 3
    hb = wire.Heartbeat(1, 4, "b", wire.ROLE_STANDBY, 4, "a", entry(4).digest, (), 1)
    a.handle("b", hb, net.now)
    assert reads == [4] and a.acked["b"] == 4
