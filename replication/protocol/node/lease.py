"""The async primary's lease: acknowledge only while no other node can have been granted the next epoch.

For: ``failover.NodeMachine`` in ``async`` mode (this is a mixin over its
state), both sides of the lease:

- the primary asks for it with every heartbeat (``wire.Lease`` with a fresh
  stamp, to the witness and to every peer) and remembers when it sent each
  ask; an echo of an ask sent at ``t`` lets it acknowledge until
  ``t + Settings.lease``. It holds the lease while the witness's latest echo,
  or every peer's, is that recent (:meth:`LeaseMixin.lease_held`). Without it
  nothing is sequenced (so nothing is acknowledged): requests already queued
  wait, and new ones get ``UNAVAILABLE`` once a lease held this epoch ran out;
- a standby echoes the asks of the leader it follows in its epoch, and from
  its echo on promises for ``lease + lease_margin``: it sends no vote request
  and takes no grant before then (:meth:`LeaseMixin.lease_promise_open`). The
  witness makes the same promise (``witness.WitnessMachine.on_lease``).

Why it bounds what async can lose: a supporter echoes at some time ``w`` after
the primary sent the ask at ``t``, so its promise runs past ``t + lease``, when
the primary's lease ends. Every new epoch needs the witness's grant, and every
grant needs the candidate to ask: neither happens while either promise runs.
So the old primary stops acknowledging before the next epoch exists, and a
fail-over loses at most what the standby lacked when the lease last ran
(its lag) plus what was acknowledged within that lease. Timers are data here:
the ask times, the support times, the promise's end; ``now`` is an argument.
A restarted node or witness cannot know what it promised: it promises a lease
from its first tick. A grant may still reach a standby whose promise runs (it
echoed after asking: its candidacy dropped, or it restarted): it defers the
grant (the witness re-sends it) and echoes the old primary no more, so its
promise ends and it takes the epoch; the old primary may acknowledge after the
grant, never after the new epoch serves. An operator's ``promote`` overrides all of this.

Not for: sync mode (the in-sync set keeps every acknowledged entry on a
promotable standby there), sockets or clocks.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING

from .. import wire
from ..wire import Send
from .records import LeaseAsk

if TYPE_CHECKING:  # pragma: no cover
    from .machine import NodeMachine

log = logging.getLogger("replication.lease")

NEVER = float("-inf")
INF = float("inf")


class LeaseMixin:
    """Lease handlers and checks; see ``failover.NodeMachine`` for the shared state."""

    lease_stamp = 0  # the last ask's stamp (grows for the node's life, across epochs)
    lease_promised = NEVER  # a standby: no vote request, no grant taken before this time
    # A standby: the epoch the witness granted us while our promise ran (we took it not yet).
    # Above our epoch, we echo the old primary no more, so our promise ends and we take it.
    grant_deferred = 0

    def _reset_lease(self: NodeMachine) -> None:
        """A primary's lease state, empty at each promotion and step-down."""
        self.lease_sent: deque[LeaseAsk] = deque()  # oldest first, stamps consecutive
        self.lease_support: dict[str, float] = {}  # supporter -> send time of its newest echoed ask
        self.lease_ever = False  # held once this epoch: after that, new requests are refused when not
        self.lease_lapse_logged = False

    def lease_applies(self: NodeMachine) -> bool:
        """Async mode with someone who could be promoted or grant a promotion."""
        return self.settings.mode == "async" and bool(self.witness or self.peers)

    def lease_until(self: NodeMachine) -> float:
        """When the primary's lease ends (INF: no lease needed). O(peers)."""
        if not self.lease_applies():
            return INF
        support = self.lease_support
        t = support.get(self.witness, NEVER) if self.witness else NEVER
        if self.peers:
            t = max(t, min(support.get(p, NEVER) for p in self.peers))
        return t + self.settings.lease

    def lease_held(self: NodeMachine, now: float) -> bool:
        """May the primary acknowledge at ``now``? O(peers)."""
        return now < self.lease_until()

    def lease_lapsed(self: NodeMachine, now: float) -> bool:
        """Held this epoch, and ran out: new requests are refused until it is renewed."""
        return self.lease_ever and not self.lease_held(now)

    def lease_asks(self: NodeMachine, now: float) -> list:
        """A primary's asks (one stamp) to the witness and every peer; with each heartbeat. O(peers)."""
        if not self.lease_applies():
            return []
        self.lease_stamp += 1
        asks = self.lease_sent
        asks.append(LeaseAsk(self.lease_stamp, now))
        # An ask older than a lease could only give a lease already over: forget it.
        while asks and asks[0].sent_at + self.settings.lease <= now:
            asks.popleft()
        msg = wire.Lease(self.epoch, self.lease_stamp, self.name)
        out = [Send(p, msg) for p in self.peers]
        if self.witness:
            out.append(Send(self.witness, msg))
        return out

    def lease_promise_open(self: NodeMachine, now: float) -> bool:
        """A standby that echoed a lease ask promised not to help any node to a newer epoch until then."""
        return self.settings.mode == "async" and now < self.lease_promised

    def promise_lease_from_start(self: NodeMachine, now: float) -> None:
        """First tick: we may have echoed asks before a restart, and cannot know until when.

        (Not at epoch 0: no node has led yet, so no ask was ever echoed.)"""
        if self.settings.mode == "async" and self.epoch > 0:
            self.lease_promised = max(
                self.lease_promised, now + self.settings.lease + self.settings.lease_margin
            )

    def on_lease(self: NodeMachine, src: wire.Address, m: wire.Lease, now: float) -> list:
        """An echo (on a primary) or an ask (on a standby). O(1) amortised."""
        if m.node != src or self.settings.mode != "async":
            return []
        if self.is_primary:
            return self._lease_echoed(src, m, now)
        if (
            self.role == wire.ROLE_STANDBY
            and src == self.leader
            and m.epoch == self.epoch == self.followed_epoch
            and self.candidate_since is None
            and self.operator_ask is None  # an operator's promote asks the witness: no promise now
            # Granted the next epoch (the witness serves the old primary no more): renewing our
            # promise would keep the old primary acknowledging, and us from ever taking it.
            and self.grant_deferred <= self.epoch
        ):
            self.lease_promised = max(
                self.lease_promised, now + self.settings.lease + self.settings.lease_margin
            )
            return [Send(src, wire.Lease(m.epoch, m.seq, self.name))]
        return []

    def _lease_echoed(self: NodeMachine, src: str, m: wire.Lease, now: float) -> list:
        if m.epoch != self.epoch or (src not in self.peers and src != self.witness):
            return []
        asks = self.lease_sent
        if not asks or not asks[0].stamp <= m.seq <= asks[-1].stamp:
            return []  # an echo of an ask too old to help, or of none we sent
        sent = asks[m.seq - asks[0].stamp].sent_at  # stamps in the deque are consecutive
        if sent > self.lease_support.get(src, NEVER):
            self.lease_support[src] = sent
        if self.lease_held(now):
            if self.lease_lapse_logged:
                log.warning(
                    "lease_renewed node=%s epoch=%d by=%s: acknowledging again", self.name, self.epoch, src
                )
                self.lease_lapse_logged = False
            self.lease_ever = True
        return []

    def note_lease_lapse(self: NodeMachine, now: float) -> None:
        """Say once per lapse that the primary stopped acknowledging, and why."""
        if not self.lease_lapse_logged:
            self.lease_lapse_logged = True
            log.warning(
                "lease_expired node=%s epoch=%d seq=%d: heard neither the witness nor every standby for "
                "%.0f ms; not acknowledging until one answers (async mode)",
                self.name,
                self.epoch,
                self.replica.seq,
                self.settings.lease * 1000,
            )

    def lease_status(self: NodeMachine, now: float | None) -> str:
        """``held``, ``expired``, ``pending`` (not yet held this epoch) or ``none`` (not needed)."""
        if not self.is_primary or not self.lease_applies():
            return "none"
        if now is not None and self.lease_held(now):
            return "held"
        return "expired" if self.lease_ever else "pending"
