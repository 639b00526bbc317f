"""``ClientCore.invariants``: it holds through the client core's own steps, and each rule catches
a state that breaks it."""

from __future__ import annotations

import pytest

from replication.protocol import wire
from replication.protocol.client_core import ClientCore, Timer
from replication.protocol.session import OPEN_REQUEST, first_id, opened_id

CMD = bytes(80)


def _busy() -> ClientCore:
    """A client with requests 1, 2 (alone) and 3..6 (a window) unanswered, 2 answered."""
    c = ClientCore(7, ["a", "b"], 1, retry_timeout=0.05)
    c.invariants()
    c.submit(CMD, 0.0)
    c.submit(CMD, 0.0)
    c.invariants()
    assert c.submit_window([CMD] * 4, 0.001) == 3
    c.invariants()
    c.handle("a", wire.Reply(7, 2, wire.OK, 1, 1, "a"), 0.002)
    c.invariants()
    return c


def test_the_invariants_hold_through_windows_redirects_timeouts_and_a_session():
    c = _busy()
    c.handle("a", wire.Reply(7, 4, wire.NOT_PRIMARY, 1, 0, "b"), 0.003)  # 4 gets its own state
    c.invariants()
    c.tick(0.2)  # b never answers: re-sent, on to the next node
    c.invariants()
    for rid in (1, 3, 4, 5, 6):
        c.handle("b", wire.Reply(7, rid, wire.OK, 1, rid, "b"), 0.3)
    c.invariants()
    c.open(99, 0.4)
    c.invariants()
    c.handle("b", wire.Reply(7, opened_id(3), wire.OK, 1, 7, "b"), 0.41)
    assert c.session == 3 and c.next_id == first_id(3)
    c.invariants()


def test_a_next_id_going_back_is_caught():
    c = _busy()
    c.next_id = 5
    c.session_first = 1
    with pytest.raises(AssertionError, match="went back from session 0, next id 7"):
        c.invariants()


def test_a_counter_going_back_is_caught():
    c = _busy()
    c.counters["sessions_opened"] = 1
    c.invariants()
    c.counters["sessions_opened"] = 0
    with pytest.raises(AssertionError, match="counter sessions_opened went back from 1"):
        c.invariants()


def test_a_pending_id_this_session_never_sent_is_caught():
    c = _busy()
    c.pending[99] = c.pending[1]
    with pytest.raises(AssertionError, match="request 99 pending, not an id this session sent"):
        c.invariants()


def test_an_open_beside_other_requests_is_caught():
    c = _busy()
    c.pending[OPEN_REQUEST] = c.pending[1]
    with pytest.raises(AssertionError, match="an open is in flight beside"):
        c.invariants()


def test_a_request_sharing_a_window_it_is_not_in_is_caught():
    c = _busy()
    c.pending[1] = c.pending[3]  # 3..6's shared state
    with pytest.raises(AssertionError, match="request 1 shares the state of a window it is not in"):
        c.invariants()


def test_a_request_without_a_timer_is_caught():
    c = _busy()
    c.timers = [t for t in c.timers if not t.first <= 1 <= t.last]
    with pytest.raises(AssertionError, match="request 1 pending with no timer"):
        c.invariants()


def test_timers_out_of_heap_order_are_caught():
    c = _busy()
    c.timers.insert(0, Timer(9.0, 1, 1))
    with pytest.raises(AssertionError, match="not a heap"):
        c.invariants()
