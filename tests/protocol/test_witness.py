"""The witness, sans-IO: one grant per epoch, only when it lost the primary too, solo leases."""

from __future__ import annotations

from _net import settings

from replication.protocol import wire
from replication.protocol.witness import HANDOVER_GRANT, WitnessMachine


def hb(node, epoch, seq, role=wire.ROLE_STANDBY, leader="", last_epoch=None):
    """A heartbeat; its last entry is of ``epoch`` unless ``last_epoch`` says otherwise."""
    return wire.Heartbeat(
        epoch, seq, node, role, 0, leader, 0, (), epoch if last_epoch is None else last_epoch
    )


def vote(w, node, epoch, seq, now):
    (out,) = w.handle(node, wire.VoteRequest(epoch, seq, node, epoch - 1), now)
    assert out.dest == node
    return out.msg


def test_first_primary_then_one_grant_per_epoch():
    w = WitnessMachine(["a", "b", "c"], settings())
    assert vote(w, "a", 1, 0, 0.0).granted
    assert vote(w, "a", 1, 0, 0.0).granted  # a retransmission is answered the same
    assert not vote(w, "b", 1, 0, 0.0).granted
    w.handle("a", hb("a", 1, 5, wire.ROLE_PRIMARY, "a"), 0.01)
    # a is alive: nobody may take epoch 2 (b's request is parked, unanswered).
    assert w.handle("b", wire.VoteRequest(2, 5, "b", 1), 0.02) == []
    assert w.epoch == 1 and w.primary == "a"
    # a falls silent; b asks: granted; then c asks for the same epoch: refused.
    assert vote(w, "b", 2, 5, 0.2).granted
    assert not vote(w, "c", 2, 5, 0.2).granted
    assert w.epoch == 2 and w.primary == "b"


def test_candidate_must_know_the_current_epoch():
    w = WitnessMachine(["a", "b"], settings())
    assert vote(w, "a", 1, 0, 0.0).granted
    assert not vote(w, "b", 3, 0, 1.0).granted  # skipping an epoch: it never followed epoch 1


def test_standby_further_ahead_wins():
    w = WitnessMachine(["a", "b", "c"], settings())
    assert vote(w, "a", 1, 0, 0.0).granted
    w.handle("b", hb("b", 1, 10, leader="a"), 1.0)
    w.handle("c", hb("c", 1, 12, leader="a"), 1.0)
    assert not vote(w, "b", 2, 10, 1.01).granted
    assert vote(w, "c", 2, 12, 1.01).granted


def test_only_in_sync_standbys_may_be_promoted():
    w = WitnessMachine(["a", "b", "c"], settings())
    assert vote(w, "a", 1, 0, 0.0).granted
    assert w.isr == ("b", "c")  # a new epoch starts with everyone in sync
    (ack,) = w.handle("a", wire.IsrUpdate(1, 7, "a", ("b",)), 0.1)
    assert ack.msg.granted and w.isr == ("b",)
    assert not vote(w, "c", 2, 7, 1.0).granted  # c missed acknowledged entries
    assert vote(w, "b", 2, 7, 1.0).granted


def test_empty_isr_is_solo_and_blocks_promotion():
    w = WitnessMachine(["a", "b"], settings())
    assert vote(w, "a", 1, 0, 0.0).granted
    (ack,) = w.handle("a", wire.IsrUpdate(1, 7, "a", ()), 0.1)
    assert ack.msg.granted and w.isr == ()
    assert not vote(w, "b", 2, 3, 1.0).granted  # a released replies b never saw
    w.handle("a", wire.IsrUpdate(1, 9, "a", ("b",)), 1.1)
    assert vote(w, "b", 2, 9, 2.0).granted


def test_isr_only_from_the_current_primary():
    w = WitnessMachine(["a", "b"], settings())
    assert vote(w, "a", 1, 0, 0.0).granted
    (out,) = w.handle("b", wire.IsrUpdate(1, 7, "b", ()), 0.1)
    assert not out.msg.granted and w.isr == ("b",)


def test_connection_loss_hint_counts_as_lost():
    w = WitnessMachine(["a", "b"], settings())
    assert vote(w, "a", 1, 0, 0.0).granted
    w.handle("a", hb("a", 1, 0, wire.ROLE_PRIMARY, "a"), 1.0)
    w.handle("a", wire.PeerDown("a"), 1.001)
    assert vote(w, "b", 2, 0, 1.002).granted


def test_learns_newer_epoch_from_heartbeats_after_restart():
    w = WitnessMachine(["a", "b"], settings(witness_grace=0.05))
    w.handle("b", hb("b", 4, 9, wire.ROLE_PRIMARY, "b"), 0.0)
    assert w.epoch == 4 and w.primary == "b"
    assert not vote(w, "a", 3, 20, 0.01).granted
    assert not vote(w, "a", 5, 20, 0.02).granted  # warming up, and b is alive anyway


def test_status():
    w = WitnessMachine(["a"], settings())
    (out,) = w.handle("operator", wire.StatusRequest(), 0.0)
    assert b'"witness"' in out.msg.body


def test_restart_without_state_refuses_promotion_until_the_primary_reports():
    """A witness restart plus a dead primary must not promote a standby that missed acked orders."""
    w = WitnessMachine(["a", "b"], settings())
    assert vote(w, "a", 1, 0, 0.0).granted
    (ack,) = w.handle("a", wire.IsrUpdate(1, 7, "a", ()), 0.1)  # a runs solo: b misses acked orders
    assert ack.msg.granted
    fresh = WitnessMachine(["a", "b"], settings())  # restarted, nothing saved; a is dead
    fresh.handle("b", hb("b", 1, 3, leader="a"), 1.0)
    assert fresh.epoch == 1 and fresh.isr is None
    refused = vote(fresh, "b", 2, 3, 1.0)
    assert not refused.granted and "in-sync set" in refused.reason
    # Once a live primary reports its confirmed ISR, decisions resume.
    fresh.handle("a", wire.Heartbeat(1, 9, "a", wire.ROLE_PRIMARY, 9, "a", 0, ("b",)), 1.1)
    assert fresh.isr == ("b",)


def test_restart_with_saved_state_decides_as_before():
    w = WitnessMachine(["a", "b", "c"], settings())
    assert vote(w, "a", 1, 0, 0.0).granted
    w.handle("a", wire.IsrUpdate(1, 7, "a", ("b",)), 0.1)
    back = WitnessMachine(["a", "b", "c"], settings(), state=w.durable_state())
    assert back.durable_state() == w.durable_state()
    assert not vote(back, "c", 2, 7, 1.0).granted  # not in the ISR it saved
    assert vote(back, "b", 2, 7, 1.0).granted
    assert not vote(back, "c", 2, 7, 1.0).granted  # one grant per epoch, across the restart too


def test_a_fresh_group_needs_no_state():
    w = WitnessMachine(["a", "b"], settings())
    assert w.durable_state() == {"epoch": 0, "primary": "", "isr": None, "isr_proposal": 0}
    assert vote(w, "a", 1, 0, 0.0).granted


def test_only_a_parked_vote_needs_the_clock():
    w = WitnessMachine(["a", "b"], settings())
    assert vote(w, "a", 1, 0, 0.0).granted
    assert w.idle_wait() > 0.01  # nothing timed: the driver may sleep until a message
    w.handle("a", hb("a", 1, 5, wire.ROLE_PRIMARY, "a"), 0.01)
    assert w.handle("b", wire.VoteRequest(2, 5, "b", 1), 0.02) == []  # parked: a looks alive here
    assert w.idle_wait() <= 0.001  # a's silence must be noticed on time


def test_a_handover_is_granted_once_the_old_primary_follows_the_target_with_its_final_seq():
    w = WitnessMachine(["a", "b"], settings())
    assert vote(w, "a", 1, 0, 0.0).granted
    w.handle("a", hb("a", 1, 20, wire.ROLE_DRAINING, "b"), 0.01)
    # Draining: a is alive and its seq may still grow, so the target's vote waits.
    assert w.handle("b", wire.VoteRequest(2, 20, "b", 1), 0.011) == []
    assert w.epoch == 1
    # a handed over (it follows b at epoch 1, seq final): b is granted at once, unasked, and
    # its parked request is answered (it holds that final seq: an ordinary grant).
    outs = w.handle("a", hb("a", 1, 20, wire.ROLE_STANDBY, "b"), 0.012)
    assert [(o.dest, o.msg.granted, o.msg.reason) for o in outs] == [
        ("b", True, HANDOVER_GRANT),
        ("b", True, "already granted"),
    ]
    assert w.epoch == 2 and w.primary == "b" and w.isr == ("a",)
    assert w.handle("a", hb("a", 1, 20, wire.ROLE_STANDBY, "b"), 0.013) == []  # once


def test_a_handover_is_granted_unasked_without_the_targets_request():
    w = WitnessMachine(["a", "b"], settings())
    assert vote(w, "a", 1, 0, 0.0).granted
    w.handle("a", hb("a", 1, 20, wire.ROLE_DRAINING, "b"), 0.01)
    (out,) = w.handle("a", hb("a", 1, 20, wire.ROLE_STANDBY, "b"), 0.012)
    assert out.dest == "b" and out.msg == wire.Vote(2, "b", True, HANDOVER_GRANT, ("a",))
    assert w.counters["handovers_granted_unasked"] == 1


def test_a_handover_target_missing_entries_gets_only_a_grant_it_may_not_serve_on():
    # b crashed during the drain and restarted with a shorter journal; a ran solo meanwhile
    # (seq 51 acknowledged without b). a names b in its heartbeat, but b lacks 28..51. The
    # witness grants from a's word (a hands over only once b acked 51), as HANDOVER_GRANT: b
    # serves on it only holding a's Handover at its own seq (Candidacy.on_vote), which it
    # cannot. Asked or re-sent, the grant stays one until b shows that last entry itself.
    w = WitnessMachine(["a", "b"], settings())
    assert vote(w, "a", 1, 0, 0.0).granted
    w.handle("a", wire.IsrUpdate(1, 28, "a", ()), 0.01)
    w.handle("a", hb("a", 1, 51, wire.ROLE_DRAINING, "b"), 0.02)
    assert w.handle("b", wire.VoteRequest(2, 27, "b", 1), 0.021) == []  # a is alive: parked
    outs = w.handle("a", hb("a", 1, 51, wire.ROLE_STANDBY, "b"), 0.022)
    assert [o.msg.reason for o in outs] == [HANDOVER_GRANT, HANDOVER_GRANT]
    (again,) = w.handle("b", wire.VoteRequest(2, 27, "b", 1), 0.03)
    assert again.msg.granted and again.msg.reason == HANDOVER_GRANT
    (resent,) = w.handle("b", hb("b", 1, 27), 0.04)  # b still a standby of epoch 1
    assert resent.msg.reason == HANDOVER_GRANT
    (proven,) = w.handle("b", hb("b", 1, 51), 0.05)  # b holds a's last entry itself
    assert proven.msg.reason == "granted (re-sent)"


def test_a_stale_request_parked_before_a_handover_is_not_granted_on_the_ordinary_rules():
    """sim seed 1666 (--max-faults 10): granted on a seq the target had since passed.

    b asked while at seq 1 (parked: a served). a then drained into b (b caught up to
    12) and handed over. The parked request must not be granted on the ordinary rules: its
    seq says b holds (1, 1), and the new epoch's in-sync set would be computed from that.
    The handover grant is computed from a's final seq (c, at 1, is not in sync); the parked
    request's answer is only a grant b may serve on holding the Handover.
    """
    w = WitnessMachine(["a", "b", "c"], settings())
    assert vote(w, "a", 1, 0, 0.0).granted
    w.handle("a", hb("a", 1, 12, wire.ROLE_PRIMARY, "a"), 1.0)
    w.handle("c", hb("c", 1, 1, leader="a"), 1.0)
    assert w.handle("b", wire.VoteRequest(2, 1, "b", 1), 1.001) == []  # parked
    outs = w.handle("a", hb("a", 1, 12, wire.ROLE_STANDBY, "b"), 1.002)  # handed over
    assert [o.msg.reason for o in outs] == [HANDOVER_GRANT, HANDOVER_GRANT]
    assert w.epoch == 2 and w.isr == ("a",)  # c, at 1, is not in sync
    outs = w.handle("b", wire.VoteRequest(2, 12, "b", 1), 1.003)  # b's fresh request
    assert outs[0].msg.granted and outs[0].msg.reason == "already granted" and w.isr == ("a",)


def test_a_new_epoch_leaves_out_the_nodes_behind_the_candidate():
    # c (seq 32) is granted epoch 2 while b, restarted during the fail-over, is at 16. Were b
    # counted in sync, c's death would let b take epoch 3 without 17..32, acknowledged in epoch 1.
    w = WitnessMachine(["a", "b", "c"], settings())
    assert vote(w, "a", 1, 0, 0.0).granted
    w.handle("b", hb("b", 1, 16), 1.0)
    w.handle("c", hb("c", 1, 32, leader="a"), 1.0)
    assert vote(w, "c", 2, 32, 1.01).granted
    assert w.isr == ()  # a is gone, b is behind: the new primary adds b back once caught up
    assert not vote(w, "b", 3, 16, 2.0).granted
    # A node at the candidate's seq is in sync from the start.
    w2 = WitnessMachine(["a", "b", "c"], settings())
    assert vote(w2, "a", 1, 0, 0.0).granted
    w2.handle("b", hb("b", 1, 32), 1.0)
    w2.handle("c", hb("c", 1, 32, leader="a"), 1.0)
    assert vote(w2, "c", 2, 32, 1.01).granted and w2.isr == ("b",)
    # At the candidate's seq but in another epoch: another history (a re-sent request
    # sequenced by two primaries may even give equal digests). Out, until caught up.
    w3 = WitnessMachine(["a", "b", "c"], settings())
    w3.handle("b", hb("b", 3, 32, last_epoch=2), 1.0)
    asks = wire.VoteRequest(4, 32, "c", 3)  # c's last entry is (3, 32), b's is (2, 32)
    assert not w3._holds("b", asks, 1.01)
    assert w3._holds("b", wire.VoteRequest(4, 32, "c", 2), 1.01)  # the same last entry


def test_a_node_ahead_only_outside_the_in_sync_set_blocks_no_promotion():
    # b took epoch 2 while a, the old primary, was cut off (so the set is empty) with entries
    # 2..5 of epoch 1 that nobody acknowledged. b restarted and asks again; a is back, a
    # standby of epoch 2 whose seq counts that suffix. a may not be promoted (it is not in
    # sync), so it must not block b either: with both refused, the group had no primary.
    w = WitnessMachine(["a", "b"], settings())
    assert vote(w, "a", 1, 0, 0.0).granted
    w.handle("b", hb("b", 1, 1, leader="a"), 1.0)
    assert vote(w, "b", 2, 1, 1.01).granted and w.isr == ()
    w.handle("a", hb("a", 2, 5), 1.5)
    w.handle("b", hb("b", 2, 1), 1.5)
    assert vote(w, "b", 3, 1, 1.51).granted
    # In the in-sync set, the standby further ahead still wins (test_standby_further_ahead_wins).


def test_a_primary_that_restarted_as_a_standby_parks_no_vote():
    # Async (no in-sync set): b led epoch 2, crashed, and came back a standby of epoch 2.
    # b is alive but will not serve epoch 2 again; a (ahead: it holds more) asks for epoch 3.
    # Waiting for b to fall silent would park a's vote for good.
    w = WitnessMachine(["a", "b"], settings(mode="async"))
    assert vote(w, "a", 1, 0, 0.0).granted
    w.handle("b", hb("b", 1, 1, leader="a"), 1.0)
    assert vote(w, "b", 2, 1, 1.01).granted
    w.handle("b", hb("b", 2, 1, wire.ROLE_PRIMARY, "b"), 1.02)
    assert w.handle("a", wire.VoteRequest(3, 2, "a", 1), 1.03) == []  # b serves: parked
    w.handle("b", hb("b", 2, 1), 1.5)  # b restarted: a standby of its own epoch
    w.handle("a", hb("a", 2, 2), 1.5)
    assert vote(w, "a", 3, 2, 1.51).granted
