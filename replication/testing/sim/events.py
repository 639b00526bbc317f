"""The simulator's event queue: what happens next, in virtual time.

For: :class:`EventQueue`, one heap of ``(time, sequence number, kind, a, b,
c)`` events, and the event kinds. Ties in time go in the order the events
were pushed (the sequence number), so a run is a pure function of its
schedule. The kinds (a message delivered, a node's or a client's tick, a
client's submit, a fault healed, a hung node resumed, a forgery, a client's
restart or twin) are plain
integers; ``run.Sim`` dispatches them through a table keyed by kind. Not
for: deciding anything (``run``), or the network's losses (``network``).
"""

from __future__ import annotations

import heapq
from typing import Any

# The event kinds. Their values never decide an order (the sequence number does), they only
# name the handler: a, b, c are the handler's arguments.
DELIVER = 0  # a: source, b: destination, c: the frame (or a wire.PeerDown)
TICK = 1  # a: node name, b: the tick's generation (a stale one is ignored)
SUBMIT = 2  # a: client address
CLIENT_TICK = 3  # a: client address
HEAL = 4  # a: the fault's state dict (faults start from the run loop, not from the queue)
RESUME = 5  # a: node name
FORGE = 6  # the outsider sends one forgery
CLIENT_RESTART = 7  # a: the address of a chain's first client (sessions.restart)
CLIENT_TWIN = 8  # a: a client id already in use (sessions.twin)


class EventQueue:
    """Events ordered by (time, push order). O(log n) per push and pop."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, Any, Any, Any]] = []
        self._pushed = 0

    def push(self, t: float, kind: int, a: Any = None, b: Any = None, c: Any = None) -> None:
        self._pushed += 1
        heapq.heappush(self._heap, (t, self._pushed, kind, a, b, c))

    def due(self, t_end: float) -> bool:
        """Whether an event is queued at or before ``t_end``."""
        return bool(self._heap) and self._heap[0][0] <= t_end

    def pop(self) -> tuple[float, int, Any, Any, Any]:
        """The next event: (time, kind, a, b, c)."""
        t, _, kind, a, b, c = heapq.heappop(self._heap)
        return t, kind, a, b, c
