"""Operator ``Promote`` in groups that have a witness, and the witness's record guard, sans-IO."""

from __future__ import annotations

from _net import add_client, cmd, group, settings

from replication.protocol import wire
from replication.protocol.witness import WitnessMachine


def started():
    net = group("sync")
    c = add_client(net, b"c1", 7, ["a", "b"])
    net.run_until(lambda: net.machines["b"].joined)
    return net, c


def submit(net, c, first, n):
    for i in range(first, first + n):
        net.emit(b"c1", c.submit(cmd(i, "buy" if i % 2 else "sell", 100 + i % 5), net.now)[1])


class Operator:
    """The operator tool as a machine of the test network: keeps what it is answered."""

    def __init__(self) -> None:
        self.answers: list = []

    def handle(self, src, msg, now):  # noqa: ARG002
        self.answers.append(msg)
        return []

    def tick(self, now):  # noqa: ARG002
        return []


def promote(net, node, force=False):
    """Send the operator's Promote; return the Status body the node answered with."""
    import json

    op = net.machines[b"op"] = Operator()
    net.emit(b"op", [wire.Send(node, wire.Promote(force))])
    net.step()
    del net.machines[b"op"]
    (status,) = op.answers
    return json.loads(status.body)


def acked(net):
    return sorted(d.request_id for d in net.done.get(b"c1", []) if d.reply.status == wire.OK)


def test_a_lagging_standby_refuses_promote_unless_forced():
    """Finding 2: a standby cut off while the primary acknowledged orders solo is not promoted by a
    plain Promote; --force promotes it and says what may be lost."""
    net, c = started()
    submit(net, c, 1, 5)
    net.run_until(lambda: len(acked(net)) == 5)
    # b hears only a's heartbeats: a drops it from the in-sync set (the witness agrees) and goes on solo.
    net.drop = lambda s, d, m: s == "a" and d == "b" and not isinstance(m, wire.Heartbeat)
    submit(net, c, 6, 15)
    net.run_until(lambda: len(acked(net)) == 20, 2.0)
    a, b = net.machines["a"], net.machines["b"]
    assert b.replica.seq == 5 and a.replica.seq == 20 and a.isr_confirmed == ()
    net.run(0.01)  # a heartbeat after the shrink (the node knows only what heartbeats told it)
    body = promote(net, "b")
    assert "acknowledged up to seq 20, we hold 5" in body["promote_refused"]
    assert body["role"] == "standby" and b.counters["promotes_refused"] == 1
    net.run(0.05)
    assert a.is_primary and a.epoch == 1 and acked(net) == list(range(1, 21))
    body = promote(net, "b", force=True)
    assert body["role"] == "primary" and b.counters["promotes_forced"] == 1 and b.epoch == 2


def test_promote_with_a_witness_that_cannot_decide_loses_nothing():
    """The case promote is for: the primary is dead and the witness, restarted without its state,
    refuses every automatic promotion. A caught-up standby takes the operator's Promote; the witness
    learns the new epoch from it; nothing acknowledged is lost or executed twice."""
    net, c = started()
    submit(net, c, 1, 10)
    net.run_until(lambda: len(acked(net)) == 10)
    net.run(0.02)
    net.machines["witness"] = WitnessMachine(["a", "b"], net.settings)  # restarted, no state file
    net.down.add("a")
    net.run(0.3)
    b, w = net.machines["b"], net.machines["witness"]
    assert not b.is_primary and w.counters.get("votes_denied", 0) > 0  # "in-sync set unknown"
    body = promote(net, "b")
    assert "promote_refused" not in body and body["role"] == "primary" and b.epoch == 2
    submit(net, c, 11, 5)
    net.run_until(lambda: len(acked(net)) == 15, 2.0)
    assert acked(net) == list(range(1, 16)) and b.replica.seq == 15  # each executed once
    net.run(0.02)
    assert w.epoch == 2 and w.primary == "b"


def test_a_node_that_heard_no_peer_refuses_promote():
    net = group("sync")
    b = net.machines["b"]
    net.down.add("a")
    net.run(0.01)
    body = promote(net, "b")
    assert "heard from no peer" in body["promote_refused"] and not b.is_primary


# -- the witness's record ------------------------------------------------------------------------


def test_the_witness_refuses_an_in_sync_set_that_does_not_fit_its_record():
    w = WitnessMachine(["a", "b", "c"], settings())
    (vote,) = w.handle("a", wire.VoteRequest(1, 0, "a", 0), 0.0)
    assert vote.msg.granted and w.isr == ("b", "c")
    for members in (("b",) * 500, ("x" * 5000,), ("a", "b"), ("b", "b")):
        (ack,) = w.handle("a", wire.IsrUpdate(1, 1, "a", members, 1), 0.01)
        assert not ack.msg.granted and w.isr == ("b", "c")
    w.handle("a", wire.Heartbeat(1000, 1, "a", wire.ROLE_PRIMARY, 0, "", 0, ("y" * 5000,)), 0.02)
    assert w.epoch == 1 and w.counters["heartbeats_refused"] == 1
    w.handle("evil", wire.Heartbeat(1000, 1, "evil", wire.ROLE_PRIMARY), 0.02)
    assert w.epoch == 1 and w.primary == "a" and w.counters["heartbeats_refused"] == 2


def test_a_witness_record_too_large_for_its_slot_is_not_fatal(tmp_path, monkeypatch):
    """The last line of defence behind trust.Policy and WitnessMachine.fits: a state that does not
    fit the state file stops the witness's decisions, never the witness."""
    from replication.transport import witness_driver as node
    from tests.storage.test_witness_state import _group

    cfg = _group(tmp_path)
    d = node.witness_driver(cfg)
    sent = []
    monkeypatch.setattr(d, "perform", sent.append)

    def too_large(path, state):
        raise ValueError("record larger than its slot")

    monkeypatch.setattr(node, "save_witness_state", too_large)
    try:
        (vote,) = d.machine.handle("a", wire.VoteRequest(1, 0, "a", 0), 0.0)
        d.run_once(0)
        assert d.state_error == "witness state: record larger than its slot"
        d.machine.handle("b", wire.VoteRequest(2, 0, "b", 1), 0.0)
        d.run_once(0)
        assert all(not isinstance(o.msg, wire.Vote) for outs in sent for o in outs)
    finally:
        d.close()


def test_a_late_fence_from_a_deposed_primary_changes_nothing():
    """The Fence guard (``standby.on_fence``): the policy lets a Fence through only from a node
    naming its recipient; the standby then ignores one of an older epoch. A deposed primary's
    late Fence, cutting to seq 0, reaches a standby of the newer epoch: nothing changes."""
    from replication.protocol.trust import Policy

    net = group("sync", n_standbys=2)
    c = add_client(net, b"c1", 7, ["a", "b", "c"])
    net.run_until(lambda: net.machines["b"].joined and net.machines["c"].joined)
    submit(net, c, 1, 10)
    net.run_until(lambda: len(acked(net)) == 10)
    net.down.add("a")
    net.run_until(lambda: any(net.machines[n].is_primary for n in "bc") and not c.pending, 2.0)
    new = next(n for n in "bc" if net.machines[n].is_primary)
    other = "c" if new == "b" else "b"
    net.run_until(lambda: net.machines[other].joined and net.machines[other].leader == new)
    follower = net.machines[other]
    before = (follower.epoch, follower.replica.seq, follower.replica.digest, follower.leader)
    assert before[0] == 2 and before[1] == 10
    late = wire.Fence(1, 0, other)
    assert Policy(other, "abc").check(Policy(other, "abc").identify(b"peer:a"), late) is None
    net.down.discard("a")
    assert follower.handle("a", late, net.now) == []
    assert (follower.epoch, follower.replica.seq, follower.replica.digest, follower.leader) == before
    assert net.machines[other].journal.last_seq == 10


def test_a_witness_restarted_without_state_refuses_a_later_epoch_before_any_heartbeat():
    """A candidate for epoch 2 says epoch 1 ran: a witness that lost its state file (epoch 0, in-sync
    set unknown) must not grant it just because no heartbeat reached it yet."""
    w = WitnessMachine(["a", "b"], settings())
    (vote,) = w.handle("b", wire.VoteRequest(2, 200, "b", 1), 0.0)
    assert not vote.msg.granted and "in-sync set" in vote.msg.reason
    fresh = WitnessMachine(["a", "b"], settings())
    (first,) = fresh.handle("a", wire.VoteRequest(1, 0, "a", 0), 0.0)
    assert first.msg.granted  # a group's very first epoch needs no history


def test_a_standby_whose_primary_is_alive_refuses_promote_unless_forced():
    net, c = started()
    submit(net, c, 1, 5)
    net.run_until(lambda: len(acked(net)) == 5)
    net.run(0.01)
    b = net.machines["b"]
    assert b.replica.seq == 5  # caught up: only the live primary stands in the way
    body = promote(net, "b")
    assert "primary a is alive" in body["promote_refused"] and not b.is_primary
    body = promote(net, "b", force=True)
    assert body["role"] == "primary" and b.epoch == 2
    net.run(0.05)
    assert not net.machines["a"].is_primary  # it heard the new epoch and stepped down
