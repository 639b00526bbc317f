"""The switchover's overlapped steps (issue 18), on the sans-IO machines.

- The witness grants the target unasked (``witness.HANDOVER_GRANT``) from the old
  primary's handed-over heartbeat; the target serves on that grant only holding
  the Handover at its own seq, whichever of the two comes first.
- A draining primary holds the new requests that reach it until its Handover has
  left (then redirects them to the target), or until the drain is aborted (then
  serves them itself).
"""

from __future__ import annotations

from _net import add_client, cmd, group

from replication.protocol import wire
from replication.protocol.witness import HANDOVER_GRANT


def _joined():
    net = group("sync")
    net.run_until(lambda: net.machines["b"].joined and net.machines["a"].acked.get("b") == 0)
    return net


def test_the_switchover_lands_with_every_vote_request_lost():
    net = _joined()
    a, b, w = net.machines["a"], net.machines["b"], net.machines["witness"]
    asked: list = []
    net.drop = lambda src, dest, msg: asked.append(msg) if isinstance(msg, wire.VoteRequest) else False
    net.emit("operator", [wire.Send("a", wire.Switchover("b"))])
    net.run_until(lambda: b.is_primary and a.joined)
    assert b.epoch == 2 and w.epoch == 2 and w.primary == "b" and w.counters["handovers_granted_unasked"] == 1
    # b asked on the Handover as ever, but every ask was lost: it promoted on the unasked grant.
    assert asked and all(m.node == "b" for m in asked)


def test_a_grant_before_the_handover_waits_for_it():
    net = _joined()
    b = net.machines["b"]
    grant = wire.Vote(2, "b", True, HANDOVER_GRANT, ("a",))
    assert b.handle("witness", grant, net.now) == []
    assert not b.is_primary and b.counters["handover_grants_early"] == 1
    out = b.handle("a", wire.Handover(1, 0, "a"), net.now)
    assert b.is_primary and b.epoch == 2
    assert not any(isinstance(o.msg, wire.VoteRequest) for o in out)  # no ask: granted already


def test_an_unasked_grant_is_never_served_without_the_handover_at_our_seq():
    net = _joined()
    b = net.machines["b"]
    grant = wire.Vote(2, "b", True, HANDOVER_GRANT, ("a",))
    assert b.handle("witness", grant, net.now) == [] and not b.is_primary
    b.handle("a", wire.Handover(1, 5, "a"), net.now)  # a Handover at a seq we do not hold: refused
    assert not b.is_primary
    assert b.handle("witness", grant, net.now) == [] and not b.is_primary
    # An ordinary grant (b asked, the witness checked its seq) is served as before.
    b.handle("witness", wire.Vote(2, "b", True, "granted", ("a",)), net.now)
    assert b.is_primary


def test_a_draining_primary_redirects_its_held_requests_after_the_handover():
    net = _joined()
    a = net.machines["a"]
    a.handle("operator", wire.Switchover("b"), net.now)
    assert a.role == wire.ROLE_DRAINING
    assert a.handle(b"c", wire.Request(7, 1, cmd(1)), net.now) == []  # held, not refused
    assert a.counters["requests_held_in_drain"] == 1
    out = a.tick(net.now + 0.001)  # b acked our seq: the drain ends
    kinds = [type(o.msg) for o in out if isinstance(o, wire.Send)]
    handover = kinds.index(wire.Handover)
    (refusal,) = [o for o in out if isinstance(o, wire.Send) and isinstance(o.msg, wire.Reply)]
    assert kinds.index(wire.Reply) > handover  # the target has the Handover first
    assert refusal.dest == b"c" and refusal.msg.status == wire.NOT_PRIMARY and refusal.msg.leader == "b"


def test_an_aborted_drain_serves_the_requests_it_held():
    net = _joined()
    a = net.machines["a"]
    c = add_client(net, b"c", 7, ["a", "b"])
    net.emit(b"c", c.submit(cmd(1), net.now)[1])
    net.run_until(lambda: not c.pending)
    net.down.add("b")  # b never acks what comes next: the drain cannot end
    net.emit(b"c", c.submit(cmd(2), net.now)[1])
    net.step()
    net.emit("operator", [wire.Send("a", wire.Switchover("b"))])
    net.deliver_all()
    assert a.role == wire.ROLE_DRAINING
    _, sends = c.submit(cmd(3), net.now)
    net.emit(b"c", sends)
    net.deliver_all()
    assert len(a.current_role.drain_held) == 1
    net.run_until(lambda: a.role == wire.ROLE_PRIMARY, seconds=net.settings.switchover_timeout + 1)
    assert not a.current_role.drain_held  # aborted: the held request is queued here again
    assert a.counters.get("requests_refused", 0) == 0
