"""``busy_poll``: the loop's poll spins with timeout 0 instead of sleeping, and ends when the
sleeping poll would have (a socket ready, or its timeout passed).

The poller here is a stand-in that records each call's timeout: the checks are on what
the loop asks of it, never on how long anything took.
"""

from __future__ import annotations

from replication.transport import loop
from replication.transport.loop import SocketLoop


class _Loop(SocketLoop):
    def run_once(self, timeout_ms: float) -> None:  # pragma: no cover - not used here
        raise AssertionError


class _Poller:
    """Ready after ``ready_after`` calls (never if None); records each call's timeout."""

    def __init__(self, ready_after: int | None) -> None:
        self.ready_after = ready_after
        self.timeouts: list[float] = []

    def poll(self, timeout: float) -> list:
        self.timeouts.append(timeout)
        if self.ready_after is not None and len(self.timeouts) > self.ready_after:
            return [("router", 1)]
        return []


class _Clock:
    """``time.monotonic`` advancing 1 ms a reading."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        self.t += 0.001
        return self.t


def _loop(monkeypatch, poller: _Poller, busy: bool) -> _Loop:
    monkeypatch.setattr(loop.time, "monotonic", _Clock())
    lp = _Loop.__new__(_Loop)  # no sockets: only what poll() reads
    lp.poller = poller
    lp.busy_poll = busy
    return lp


def test_off_by_default_one_sleeping_poll(monkeypatch):
    poller = _Poller(ready_after=None)
    lp = _loop(monkeypatch, poller, busy=False)
    assert SocketLoop.busy_poll is False
    events, _ = lp.poll(7.0)
    assert events == {} and poller.timeouts == [7.0]


def test_busy_poll_spins_with_timeout_zero_until_a_socket_is_ready(monkeypatch):
    poller = _Poller(ready_after=3)
    lp = _loop(monkeypatch, poller, busy=True)
    events, _ = lp.poll(50.0)
    assert events == {"router": 1}
    assert poller.timeouts == [0, 0, 0, 0]  # never a sleeping poll


def test_busy_poll_ends_when_the_wait_would_have(monkeypatch):
    poller = _Poller(ready_after=None)
    lp = _loop(monkeypatch, poller, busy=True)
    events, now = lp.poll(5.0)  # the clock moves 1 ms a reading: the deadline is 5 readings on
    assert events == {} and set(poller.timeouts) == {0}
    assert len(poller.timeouts) == 5 and now >= 100.006


def test_busy_poll_with_something_due_polls_once(monkeypatch):
    poller = _Poller(ready_after=None)
    lp = _loop(monkeypatch, poller, busy=True)
    lp.poll(0)
    assert poller.timeouts == [0]
