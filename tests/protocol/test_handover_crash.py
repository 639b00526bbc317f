"""The old primary of a switchover crashes right after its Handover, while the new primary is cut off.

Sans-IO, on the deterministic test network: a double fault (a crash and a
partition) that no timing makes impossible, so the protocol, not luck, must
keep the epoch's primary unique.
"""

from __future__ import annotations

from _net import add_client, cmd, group

from matching import ReferenceEngine
from replication.protocol import wire
from replication.protocol.node.machine import NodeMachine


def test_old_primary_restarted_after_its_handover_never_leads_the_handed_over_epoch():
    net = group("sync")
    c = add_client(net, b"c1", 7, ["a", "b"])
    net.run_until(lambda: net.machines["b"].joined and net.machines["a"].isr_confirmed == ("b",))
    for i in range(1, 11):
        net.emit(b"c1", c.submit(cmd(i), net.now)[1])
    net.run_until(lambda: not c.pending, 1.0)
    a, b = net.machines["a"], net.machines["b"]
    assert a.is_primary and a.epoch == 1

    # The operator asks a to hand over to b. Deliver one message at a time until a has
    # sent its Handover (it then follows b), and crash a at that moment.
    net.emit("operator", [wire.Send("a", wire.Switchover("b"))])
    while a.role != wire.ROLE_STANDBY:
        if net.queue:
            net.deliver_all(limit=1)
            continue
        net.now += net.dt
        for name, m in list(net.machines.items()):
            net.emit(name, m.tick(net.now))
            if a.role == wire.ROLE_STANDBY:
                break
    net.journals["a"].crash()
    # From now on b is cut off from everyone (a's Handover is already on its way to it).
    net.drop = lambda src, dest, msg: (
        "b" in (src, dest) and not (src == "a" and isinstance(msg, wire.Handover))
    )
    net.queue = type(net.queue)(q for q in net.queue if q[0] == "a" and q[1] == "b")  # the Handover only
    del net.machines["a"]  # crashed
    net.deliver_all()
    # The next epoch is the witness's to give, even for a handover: b asked, and is cut off.
    assert not b.is_primary and b.epoch == 1 and b.candidate_since is not None

    net.run(0.2)  # the witness hears nothing from a (crashed) nor b (cut off)
    a2 = NodeMachine("a", ["a", "b"], net.journals["a"], net.settings, "witness", ReferenceEngine, "standby")
    net.machines["a"] = a2
    net.run(0.2)  # a restarted: it may ask the witness, which knows only epoch 1

    leaders = sorted(n for n in ("a", "b") if net.machines[n].is_primary and net.machines[n].epoch == 2)
    assert len(leaders) <= 1, f"epoch 2 led by {leaders}"

    # The cut heals: one group again, under one primary, the other following with the same book.
    net.drop = None
    for i in range(11, 21):
        net.emit(b"c1", c.submit(cmd(i), net.now)[1])
    net.run_until(lambda: not c.pending, 2.0)
    net.run(0.05)
    primaries = [m for m in (a2, b) if m.is_primary]
    assert len(primaries) == 1
    p = primaries[0]
    other = b if p is a2 else a2
    assert other.leader == p.name and other.joined and other.epoch == p.epoch
    assert other.replica.seq == p.replica.seq == 20 and other.replica.digest == p.replica.digest
    assert net.machines["witness"].epoch == p.epoch and net.machines["witness"].primary == p.name
