"""``WitnessMachine.invariants``: it holds through the witness's own steps, and each rule catches
a state that breaks it."""

from __future__ import annotations

import pytest
from _net import settings

from replication.protocol import wire
from replication.protocol.witness import ParkedVote, WitnessMachine


def _granted() -> WitnessMachine:
    """A witness that granted epoch 1 to a, heard it lead, recorded its ISR and parked b's ask for epoch 2."""
    w = WitnessMachine(["a", "b", "c"], settings())
    w.invariants()
    (out,) = w.handle("a", wire.VoteRequest(1, 0, "a", 0), 0.0)
    assert out.msg.granted
    w.invariants()
    w.handle("a", wire.Heartbeat(1, 5, "a", wire.ROLE_PRIMARY, 5, "a", 0, ("b", "c"), 1), 0.01)
    w.invariants()
    assert w.handle("a", wire.IsrUpdate(1, 5, "a", ("b",), 1), 0.015)[0].msg.granted
    w.invariants()
    assert w.handle("b", wire.VoteRequest(2, 5, "b", 1), 0.02) == []  # a is alive: parked
    w.invariants()
    return w


def test_the_invariants_hold_through_grants_parks_isr_changes_and_a_new_epoch():
    w = _granted()
    assert w.tick(0.03) == [] and not w.parked  # b gave up on that ask (vote_retry)
    w.invariants()
    (out,) = w.handle("b", wire.VoteRequest(2, 5, "b", 1), 0.06)  # a fell silent: granted
    assert out.msg.granted and w.epoch == 2 and w.primary == "b"
    w.invariants()


def test_an_epoch_going_back_is_caught():
    w = _granted()
    w.epoch = 0
    with pytest.raises(AssertionError, match="epoch went back from 1"):
        w.invariants()


def test_a_second_grant_of_one_epoch_is_caught():
    w = _granted()
    w.primary = "c"
    with pytest.raises(AssertionError, match="epoch 1 was granted to a already"):
        w.invariants()


def test_an_isr_proposal_going_back_is_caught():
    w = _granted()
    w.isr_proposal = 0
    with pytest.raises(AssertionError, match="ISR proposal went back from 1 to 0"):
        w.invariants()


@pytest.mark.parametrize("isr", [("a",), ("b", "b"), ("b", "x")])
def test_an_isr_that_is_not_distinct_other_nodes_is_caught(isr):
    w = _granted()
    w.isr = isr
    with pytest.raises(AssertionError, match="in-sync set"):
        w.invariants()


def test_a_heartbeat_remembered_from_outside_the_group_is_caught():
    w = _granted()
    w.info["x"] = w.info["a"]
    with pytest.raises(AssertionError, match="not only the nodes"):
        w.invariants()


def test_a_vote_parked_under_another_candidate_is_caught():
    w = _granted()
    w.parked["c"] = ParkedVote(w.parked["b"].request, 0.02)
    with pytest.raises(AssertionError, match="a vote request of b parked as c's"):
        w.invariants()


def test_a_restarted_witness_starts_its_checks_afresh():
    w = _granted()
    back = WitnessMachine(w.nodes, settings(), state=w.durable_state())
    back.invariants()
    assert (back.epoch, back.primary, back.isr) == (1, "a", ("b",))


def test_a_negative_epoch_or_proposal_is_caught():
    w = WitnessMachine(["a", "b"], settings())
    w.isr_proposal = -1
    with pytest.raises(AssertionError, match="negative epoch or ISR proposal"):
        w.invariants()
