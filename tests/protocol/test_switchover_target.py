"""A planned switchover hands over only to a target that acknowledged the primary's seq in its epoch.

Sans-IO, on the deterministic test network. Found by the simulator with
overlapping faults: a switchover to a node that was down (so never joined
the new epoch) at seq 0 handed over at once, since "acked up to 0" held by
default; the old primary then followed a target that refused the Handover,
and the group had no primary at all.
"""

from __future__ import annotations

from _net import group

from replication.protocol import wire


def _handovers(net, sent):
    """Wrap net.emit so that every Handover a node sends is recorded in ``sent``."""
    emit = net.emit

    def recording(src, outputs):
        outputs = list(outputs)
        sent.extend(o for o in outputs if isinstance(o, wire.Send) and isinstance(o.msg, wire.Handover))
        emit(src, outputs)

    net.emit = recording


def test_no_handover_to_a_target_that_never_joined_the_epoch():
    net = group("sync", switchover_timeout=0.2)
    net.down.add("b")  # down from the start: it never joins epoch 1
    a = net.machines["a"]
    net.run_until(lambda: a.is_primary)
    sent: list = []
    _handovers(net, sent)
    net.emit("operator", [wire.Send("a", wire.Switchover("b"))])
    net.run(0.1)
    assert a.role == wire.ROLE_DRAINING and not sent  # waiting for b, never handed over
    net.run(0.2)
    assert a.role == wire.ROLE_PRIMARY and not sent  # the drain timed out: a serves again
    # b comes back, joins, and a later switchover goes through.
    net.down.discard("b")
    net.run_until(lambda: net.machines["b"].joined)
    net.emit("operator", [wire.Send("a", wire.Switchover("b"))])
    net.run_until(lambda: net.machines["b"].is_primary and net.machines["b"].epoch == 2)
    assert len(sent) >= 1 and a.role == wire.ROLE_STANDBY and a.leader == "b"


def test_a_target_that_joined_an_empty_journal_takes_a_switchover():
    # Nothing sequenced yet: the target's heartbeat at seq 0 is its acknowledgement.
    net = group("sync")
    a, b = net.machines["a"], net.machines["b"]
    net.run_until(lambda: b.joined and a.acked.get("b") == 0)
    net.emit("operator", [wire.Send("a", wire.Switchover("b"))])
    net.run_until(lambda: b.is_primary and b.epoch == 2, 1.0)
    assert a.role == wire.ROLE_STANDBY and a.replica.seq == b.replica.seq == 0


def test_the_old_primary_does_not_run_for_primary_while_its_target_takes_over():
    """chaos seed 7: right after its Handover the old primary, a standby that followed nobody
    in its epoch yet, ran as 'leaderless' and won the next epoch before its target asked."""
    net = group("sync")
    a, b = net.machines["a"], net.machines["b"]
    net.run_until(lambda: b.joined and a.isr_confirmed == ("b",))
    asked: list = []
    emit = net.emit

    def recording(src, outputs):
        outputs = list(outputs)
        if src == "a":
            asked.extend(
                o for o in outputs if isinstance(o, wire.Send) and isinstance(o.msg, wire.VoteRequest)
            )
        emit(src, outputs)

    net.emit = recording
    net.emit("operator", [wire.Send("a", wire.Switchover("b"))])
    # The target's vote is held back as long as a heartbeat timeout: the old primary waits.
    net.drop = lambda src, dest, msg: src == "b" and dest == "witness" and isinstance(msg, wire.VoteRequest)
    net.run(net.settings.heartbeat_timeout * 0.9)
    assert a.role == wire.ROLE_STANDBY and not asked
    net.drop = None
    net.run_until(lambda: b.is_primary and b.epoch == 2, 1.0)
    assert not asked and a.leader == "b"
