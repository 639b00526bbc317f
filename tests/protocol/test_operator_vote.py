"""The witness's rules for an operator's promote (``VoteRequest.operator``), and the node's wait for them.

An operator's promote takes its epoch from the witness like any promotion: one
grant per epoch, each the next one, whatever the flag. Relaxed for an operator:
the in-sync set being unknown (the witness restarted without its state file);
with ``--force`` also the primary alive, the in-sync set and a standby further
ahead. Never relaxed: an async lease (a forced ask stops its renewal instead).
"""

from __future__ import annotations

import json

from _net import add_client, cmd, group, settings

from replication.protocol import wire
from replication.protocol.node.operator_promote import promote_wait
from replication.protocol.witness import WitnessMachine

PLAIN, FORCED = wire.VOTE_OPERATOR, wire.VOTE_FORCED


def hb(node, seq, role=wire.ROLE_STANDBY, isr=(), epoch=1):
    return wire.Heartbeat(
        epoch, seq, node, role, seq, "" if role == wire.ROLE_PRIMARY else "a", 0, isr, epoch
    )


def witness(mode="sync", isr=("b", "c"), b_seq=10, c_seq=10, state=True):
    """A witness of epoch 1 (primary a, in-sync set ``isr``); a falls silent at 0.1, b and c stay."""
    w = WitnessMachine(["a", "b", "c"], settings(mode=mode))
    if state:
        (vote,) = w.handle("a", wire.VoteRequest(1, 0, "a", 0), 0.0)
        assert vote.msg.granted
        if isr != ("b", "c"):
            (ack,) = w.handle("a", wire.IsrUpdate(1, 10, "a", isr, 1), 0.05)
            assert ack.msg.granted
        w.handle("a", hb("a", 10, wire.ROLE_PRIMARY, isr), 0.1)
    else:
        w.handle("b", hb("b", b_seq), 0.0)  # restarted: learns epoch 1 from heartbeats, a never heard
    for t in (0.12, 0.15, 0.18):
        w.handle("b", hb("b", b_seq), t)
        w.handle("c", hb("c", c_seq), t)
    return w


def ask(w, node, flag, now, epoch=2, seq=10):
    out = w.handle(node, wire.VoteRequest(epoch, seq, node, 1, flag), now)
    votes = [o.msg for o in out if isinstance(o.msg, wire.Vote) and o.dest == node]
    assert len(votes) == 1, out  # an operator's ask is always answered, never parked
    assert votes[0].operator == flag  # echoed: the node tells it from its own candidacy's
    return votes[0]


def test_one_grant_per_epoch_holds_for_a_forced_ask():
    w = witness()
    (vote,) = w.handle("c", wire.VoteRequest(2, 10, "c", 1), 0.19)  # a is lost: c is granted 2
    assert vote.msg.granted and (w.epoch, w.primary) == (2, "c")
    refused = ask(w, "b", FORCED, 0.19)
    assert not refused.granted and "not newer" in refused.reason and w.primary == "c"
    skipping = ask(w, "b", FORCED, 0.19, epoch=4)
    assert not skipping.granted and "skips" in skipping.reason and w.epoch == 2
    assert ask(w, "c", FORCED, 0.19).granted  # c's own epoch, re-asked: the same grant


def test_an_unknown_in_sync_set_refuses_the_automatic_promotion_not_the_operator():
    w = witness(state=False)
    assert w.isr is None and w.epoch == 1
    (vote,) = w.handle("b", wire.VoteRequest(2, 10, "b", 1), 0.19)
    assert not vote.msg.granted and "in-sync set" in vote.msg.reason
    granted = ask(w, "b", PLAIN, 0.19)
    assert granted.granted and (w.epoch, w.primary) == (2, "b")


def test_a_live_primary_refuses_a_plain_ask_at_once_and_a_forced_one_is_granted():
    w = witness()
    w.handle("a", hb("a", 10, wire.ROLE_PRIMARY, ("b", "c")), 0.18)  # a is alive
    plain = ask(w, "b", PLAIN, 0.19)
    assert not plain.granted and "alive" in plain.reason and not w.parked
    forced = ask(w, "b", FORCED, 0.19)
    assert forced.granted and (w.epoch, w.primary) == (2, "b")
    assert w.counters["operator_votes_granted"] == 1


def test_the_in_sync_set_binds_a_plain_ask_not_a_forced_one():
    w = witness(isr=("c",), b_seq=5)
    plain = ask(w, "b", PLAIN, 0.19, seq=5)
    assert not plain.granted and "not in the in-sync set" in plain.reason
    assert ask(w, "b", FORCED, 0.19, seq=5).granted and w.primary == "b"


def test_a_standby_further_ahead_binds_a_plain_ask_not_a_forced_one():
    w = witness(mode="async", b_seq=8, c_seq=10)
    w.lease_promised = float("-inf")  # no lease was asked in this test
    plain = ask(w, "b", PLAIN, 0.19, seq=8)
    assert not plain.granted and "further ahead" in plain.reason
    assert ask(w, "b", FORCED, 0.19, seq=8).granted


def test_a_forced_ask_waits_out_an_async_lease_which_the_witness_stops_renewing():
    w = witness(mode="async")
    s = w.settings
    (echo,) = w.handle("a", wire.Lease(1, 7, "a"), 0.18)  # a alive, its lease echoed
    assert echo.msg == wire.Lease(1, 7, "witness")
    refused = ask(w, "b", FORCED, 0.185)
    assert not refused.granted and "lease" in refused.reason
    assert w.handle("a", wire.Lease(1, 8, "a"), 0.186) == []  # no more echoes: the lease ends
    w.handle("a", hb("a", 10, wire.ROLE_PRIMARY), 0.186)
    end = 0.18 + s.lease + s.lease_margin
    assert not ask(w, "b", FORCED, end - 0.001).granted
    assert ask(w, "b", FORCED, end + 0.001).granted and w.primary == "b"
    assert w.handle("b", wire.Lease(2, 1, "b"), end + 0.002)  # the new primary's lease is echoed


def test_an_unknown_flag_and_the_grace_period_refuse_even_a_forced_ask():
    w = witness()
    odd = w.handle("b", wire.VoteRequest(2, 10, "b", 1, 7), 0.19)[0].msg
    assert not odd.granted and "unknown operator flag" in odd.reason and w.epoch == 1
    young = WitnessMachine(["a", "b", "c"], settings(witness_grace=0.5))
    young.handle("b", hb("b", 10), 0.0)
    assert "learning" in ask(young, "b", FORCED, 0.1).reason and young.epoch == 1


# -- the node's wait for the witness ------------------------------------------------------------


def answers_to_promote(net, node, force):
    """Send the operator's Promote; run until answered; return the Status body."""
    got = []

    class Operator:
        def handle(self, src, msg, now):  # noqa: ARG002
            got.append(json.loads(msg.body))
            return []

        def tick(self, now):  # noqa: ARG002
            return []

    net.machines[b"op"] = Operator()
    net.emit(b"op", [wire.Send(node, wire.Promote(force))])
    net.run_until(lambda: got, 1.0)
    del net.machines[b"op"]
    assert len(got) == 1
    return got[0]


def lost_primary_and_witness():
    """a dead, and the witness cut off from b: b is caught up and alone with the operator."""
    net = group("sync", n_standbys=1)
    c = add_client(net, b"c1", 7, ["a", "b"])
    net.run_until(lambda: net.machines["b"].joined)
    for i in range(1, 6):
        net.emit(b"c1", c.submit(cmd(i), net.now)[1])
    net.run_until(lambda: not c.pending, 1.0)
    net.run(0.01)
    net.down.add("a")
    net.drop = lambda s, d, m: {s, d} == {"b", "witness"}
    net.run(0.05)  # b has lost a
    return net


def test_a_plain_promote_with_the_witness_unreachable_is_refused_after_the_wait():
    net = lost_primary_and_witness()
    b = net.machines["b"]
    t0 = net.now
    body = answers_to_promote(net, "b", False)
    assert "witness did not answer" in body["promote_refused"] and not b.is_primary
    assert net.now - t0 >= promote_wait(net.settings)


def test_a_forced_promote_with_the_witness_unreachable_goes_ahead_after_the_wait():
    net = lost_primary_and_witness()
    b = net.machines["b"]
    t0 = net.now
    body = answers_to_promote(net, "b", True)
    assert body["role"] == "primary" and b.epoch == 2
    assert b.counters["promotes_without_witness"] == 1
    assert net.now - t0 >= promote_wait(net.settings)


def test_a_forced_promote_never_takes_an_epoch_the_reachable_witness_gave_another_node():
    net = lost_primary_and_witness()
    b, w = net.machines["b"], net.machines["witness"]
    w.epoch, w.primary = 2, "c"  # the witness granted epoch 2 elsewhere (c never shows up here)
    net.drop = None
    body = answers_to_promote(net, "b", True)
    assert "not newer" in body["promote_refused"] and not b.is_primary and b.epoch == 1
    assert b.counters.get("promotes_without_witness", 0) == 0


def test_a_forced_async_promote_while_the_primary_serves_waits_out_its_lease():
    """Async, a alive and acknowledging under its lease: b's forced promote is granted only once
    the lease the witness and b echoed ran out (neither renews it meanwhile); b then serves epoch
    2, a steps down, and nothing a acknowledged is missing from b's history."""
    net = group("async", n_standbys=1)
    c = add_client(net, b"c1", 7, ["a", "b"])
    net.run_until(lambda: net.machines["b"].joined)
    for i in range(1, 11):
        net.emit(b"c1", c.submit(cmd(i), net.now)[1])
    net.run_until(lambda: not c.pending, 1.0)
    net.run(0.02)  # b follows a and echoes its lease asks too
    a, b, w = net.machines["a"], net.machines["b"], net.machines["witness"]
    assert a.lease_held(net.now) and b.lease_promise.open(net.now)
    promised = max(w.lease_promised, b.lease_promise.until)
    body = answers_to_promote(net, "b", True)
    assert body["role"] == "primary" and b.epoch == 2 and (w.epoch, w.primary) == (2, "b")
    assert net.now >= promised  # not before the lease a may still acknowledge under ran out
    assert w.counters["votes_denied"] >= 1  # "the primary's lease echoed here still runs"
    net.run(0.05)
    assert not a.is_primary and a.leader == "b"
    acked = {d.request_id for d in net.done[b"c1"] if d.reply.status == wire.OK}
    held = {e.request_id for e in net.journals["b"].read(1) if e.client_id == 7}
    assert acked == set(range(1, 11)) and acked <= held


def test_a_grant_deferred_by_our_own_lease_promise_is_waited_for_not_refused():
    """The witness granted the operator's ask, but a lease b echoed still runs: b promotes when the
    grant comes again after it, and only then answers the operator (never a 'did not answer')."""
    net = lost_primary_and_witness()
    b = net.machines["b"]
    now = net.now
    (ask_out,) = b.handle(b"op", wire.Promote(True), now)
    assert ask_out.msg == wire.VoteRequest(2, 5, "b", 1, FORCED)
    b.settings.mode = "async"  # (the group ran sync: only b's lease promise matters here)
    b.lease_promise.until = now + 10 * promote_wait(b.settings)  # a lease b echoed, from before
    grant = wire.Vote(2, "b", True, "granted", (), FORCED)
    assert b.handle("witness", grant, now) == [] and b.counters["votes_deferred_by_lease"] == 1
    late = now + 3 * promote_wait(b.settings)
    assert all(o.dest != b"op" for o in b.tick(late)) and not b.is_primary
    b.lease_promise.until = late  # the promise ran out; the witness re-sends the grant on b's heartbeat
    out = b.handle("witness", wire.Vote(2, "b", True, "granted (re-sent)", ()), late + 0.001)
    (answer,) = [o for o in out if o.dest == b"op"]
    assert b.is_primary and json.loads(answer.msg.body)["role"] == "primary"
