"""The embedded engine's call surface, built on a pipelined send/poll/wait core.

For: what ``replication.Client`` (one group) and ``replication.Router``
(several groups) share above their plumbing: blocking ``apply``, the
``Engine``-shaped ``submit`` / ``cancel`` / ``replace`` / ``mass_cancel``,
and ``submit_many`` (a window of requests in flight). A subclass provides
``send(cmd) -> request id``, ``send_many(cmds) -> ids``, ``poll(timeout)``,
``wait(request_id)`` and a ``timeout`` attribute. Not for: sockets,
re-sending or routing (those are the subclasses').
"""

from __future__ import annotations

import itertools
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any

from matching import commands


class EngineCalls(ABC):
    """Mixin: the ``matching.Engine`` call surface over ``send``/``send_many``/``poll``/``wait``."""

    timeout: float

    @abstractmethod
    def send(self, command: Mapping | tuple) -> int:
        """Send one command without waiting; its request id."""

    @abstractmethod
    def send_many(self, commands: Iterable[Mapping | tuple]) -> list[int]:
        """Send several commands without waiting; their request ids in order."""

    @abstractmethod
    def poll(self, timeout: float = 0.0) -> list[tuple[int, list]]:
        """Finished requests ``[(request_id, events)]``, waiting up to ``timeout`` s for one."""

    @abstractmethod
    def wait(self, request_id: int, timeout: float | None = None) -> list:
        """Block until ``request_id`` is answered; its events."""

    def submit_many(self, commands: Iterable[Mapping | tuple], window: int = 1024) -> list[list]:
        """Send many commands pipelined (at most ``window`` in flight); return their events in order."""
        rids: list[int] = []
        got: dict[int, list] = {}
        todo = iter(commands)
        more = True
        deadline = time.monotonic() + self.timeout
        while more or len(got) < len(rids):
            room = window - (len(rids) - len(got))
            if more and room > 0:
                chunk = list(itertools.islice(todo, room))
                more = len(chunk) == room
                if chunk:
                    rids += self.send_many(chunk)
                    deadline = time.monotonic() + self.timeout
                continue
            for rid, evs in self.poll(0.005):
                got[rid] = evs
                deadline = time.monotonic() + self.timeout
            if time.monotonic() > deadline:
                raise TimeoutError("submit_many: replies stopped coming")
        return [got[r] for r in rids]

    def apply(self, cmd: Mapping[str, Any]) -> list:
        """Apply one command-log dict; block until its events come back."""
        return self.wait(self.send(cmd))

    def submit(
        self,
        instrument: int,
        id: int,
        side: str,
        price: int | None = None,
        qty: int = 0,
        type: str = "limit",
        tif: str = "GTC",
        account: int = 0,
        post_only: bool = False,
        display_qty: int = 0,
        stp: str = "none",
    ) -> list:
        """A new order; same arguments and events as ``Engine.submit``."""
        return self.apply(
            commands.new_order_dict(
                instrument, id, side, price, qty, type, tif, account, post_only, display_qty, stp
            )
        )

    def cancel(self, instrument: int, id: int) -> list:
        return self.apply(commands.cancel_dict(instrument, id))

    def replace(self, instrument: int, id: int, price: int | None = None, qty: int | None = None) -> list:
        return self.apply(commands.replace_dict(instrument, id, price, qty))

    def mass_cancel(self, account: int | None = None, instrument: int | None = None) -> list:
        return self.apply(commands.mass_cancel_dict(account, instrument))
