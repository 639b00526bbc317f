"""Timers as data: named deadlines a sans-IO machine arms where a wait starts and clears where it ends.

For: the node machine and its roles (``protocol/node``): each timer is one
entry, ``name -> deadline`` (seconds on the caller's clock, ``now`` as the
machine is given it), set by the code that starts the wait (a Join sent: its
retry; a switchover started: its abort) and removed by the code that ends it
(joined; drained). The machine's ``tick`` runs the logic the timers belong
to, which acts once a deadline has come; the driver sleeps until the
earliest armed deadline (``earliest``). Not for: deciding anything (the
logic compares times itself, in the float order it always did), clocks or
sleeping (the driver's).
"""

from __future__ import annotations

INF = float("inf")


class Timers:
    """Named deadlines; at most one per name. Every operation O(1) but ``earliest``, O(timers)."""

    __slots__ = ("_at",)

    def __init__(self) -> None:
        self._at: dict[str, float] = {}

    def arm(self, name: str, at: float) -> None:
        """(Re)arm ``name`` to fire at ``at`` (INF: clear it)."""
        if at == INF:
            self._at.pop(name, None)
        else:
            self._at[name] = at

    def clear(self, name: str) -> None:
        """Stop waiting for ``name`` (nothing if it was not armed)."""
        self._at.pop(name, None)

    def at(self, name: str) -> float:
        """When ``name`` fires (INF: not armed)."""
        return self._at.get(name, INF)

    def earliest(self) -> float:
        """The earliest armed deadline (INF: none)."""
        return min(self._at.values(), default=INF)

    def armed(self) -> dict[str, float]:
        """A copy of every armed deadline, by name (for tests and status)."""
        return dict(self._at)
