"""The async primary's lease: acknowledge only while no other node can have been granted the next epoch.

For: ``NodeMachine`` in ``async`` mode, both sides of the lease: the
primary's (``PrimaryLease``, owned by ``PrimaryRole``, built afresh at each
promotion) and the standby's promise (``LeasePromise``, a
component the node holds: a promise outlives role changes):

- the primary asks for it with every heartbeat (``wire.Lease`` with a fresh
  stamp, to the witness and to every peer) and remembers when it sent each
  ask; an echo of an ask sent at ``t`` lets it acknowledge until
  ``t + Settings.lease``. It holds the lease while the witness's latest echo,
  or every peer's, is that recent (:meth:`PrimaryLease.held`). Without it
  nothing is sequenced (so nothing is acknowledged): requests already queued
  wait, and new ones get ``UNAVAILABLE`` once a lease held this epoch ran out;
- a standby echoes the asks of the leader it follows in its epoch, and from
  its echo on promises for ``lease + lease_margin``: it sends no vote request
  and takes no grant before then (:meth:`LeasePromise.open`). The
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


class PrimaryLease:
    """A primary's lease in one epoch: the asks it sent, who echoed them, whether it held it yet."""

    def __init__(self, node: NodeMachine) -> None:
        self.node = node
        self.sent: deque[LeaseAsk] = deque()  # oldest first, stamps consecutive
        self.support: dict[str, float] = {}  # supporter -> send time of its newest echoed ask
        self.ever = False  # held once this epoch: after that, new requests are refused when not
        self.lapse_logged = False

    def applies(self) -> bool:
        """Async mode with someone who could be promoted or grant a promotion."""
        node = self.node
        return node.settings.mode == "async" and bool(node.witness or node.peers)

    def until(self) -> float:
        """When the lease ends (INF: no lease needed). O(peers)."""
        if not self.applies():
            return INF
        node, support = self.node, self.support
        t = support.get(node.witness, NEVER) if node.witness else NEVER
        if node.peers:
            t = max(t, min(support.get(p, NEVER) for p in node.peers))
        return t + node.settings.lease

    def held(self, now: float) -> bool:
        """May the primary acknowledge at ``now``? O(peers)."""
        return now < self.until()

    def lapsed(self, now: float) -> bool:
        """Held this epoch, and ran out: new requests are refused until it is renewed."""
        return self.ever and not self.held(now)

    def asks(self, now: float) -> list:
        """The asks (one stamp) to the witness and every peer; with each heartbeat. O(peers)."""
        if not self.applies():
            return []
        node = self.node
        node.lease_stamp += 1
        asks = self.sent
        asks.append(LeaseAsk(node.lease_stamp, now))
        # An ask older than a lease could only give a lease already over: forget it.
        while asks and asks[0].sent_at + node.settings.lease <= now:
            asks.popleft()
        msg = wire.Lease(node.epoch, node.lease_stamp, node.name)
        out = [Send(p, msg) for p in node.peers]
        if node.witness:
            out.append(Send(node.witness, msg))
        return out

    def echoed(self, src: wire.Address, m: wire.Lease, now: float) -> list:
        """An echo of one of our asks: the supporter's newest echoed ask time moves up. O(1)."""
        node = self.node
        if m.node != src or node.settings.mode != "async":
            return []
        if m.epoch != node.epoch or (src not in node.peers and src != node.witness):
            return []
        asks = self.sent
        if not asks or not asks[0].stamp <= m.seq <= asks[-1].stamp:
            return []  # an echo of an ask too old to help, or of none we sent
        sent = asks[m.seq - asks[0].stamp].sent_at  # stamps in the deque are consecutive
        if sent > self.support.get(src, NEVER):
            self.support[src] = sent
        if self.held(now):
            if self.lapse_logged:
                log.warning(
                    "lease_renewed node=%s epoch=%d by=%s: acknowledging again", node.name, node.epoch, src
                )
                self.lapse_logged = False
            self.ever = True
        return []

    def note_lapse(self, now: float) -> None:
        """Say once per lapse that the primary stopped acknowledging, and why."""
        if not self.lapse_logged:
            self.lapse_logged = True
            node = self.node
            log.warning(
                "lease_expired node=%s epoch=%d seq=%d: heard neither the witness nor every standby for "
                "%.0f ms; not acknowledging until one answers (async mode)",
                node.name,
                node.epoch,
                node.replica.seq,
                node.settings.lease * 1000,
            )

    def status(self, now: float | None) -> str:
        """``held``, ``expired``, ``pending`` (not yet held this epoch) or ``none`` (not needed)."""
        if not self.applies():
            return "none"
        if now is not None and self.held(now):
            return "held"
        return "expired" if self.ever else "pending"


class LeasePromise:
    """A standby's promise (``node.lease_promise``): it outlives role changes, so the node holds it.

    State: ``until`` (no vote request, no grant taken before this time) and
    ``grant_deferred`` (the epoch the witness granted us while the promise ran,
    not taken yet: above our epoch, we echo the old primary no more, so the
    promise ends and we take it). Reads the node's shared state through ``node``.
    """

    def __init__(self, node: NodeMachine) -> None:
        self.node = node
        self.until = NEVER
        self.grant_deferred = 0

    def open(self, now: float) -> bool:
        """A standby that echoed a lease ask promised not to help any node to a newer epoch until then."""
        return self.node.settings.mode == "async" and now < self.until

    def from_start(self, now: float) -> None:
        """First tick: we may have echoed asks before a restart, and cannot know until when.

        (Not at epoch 0: no node has led yet, so no ask was ever echoed.)"""
        node = self.node
        if node.settings.mode == "async" and node.epoch > 0:
            self.until = max(self.until, now + node.settings.lease + node.settings.lease_margin)

    def on_ask(self, src: wire.Address, m: wire.Lease, now: float) -> list:
        """A lease ask off the primary (the primary's own role takes echoes): echo it, promise. O(1)."""
        node = self.node
        if m.node != src or node.settings.mode != "async":
            return []
        if (
            node.role == wire.ROLE_STANDBY
            and src == node.leader
            and m.epoch == node.epoch == node.followed_epoch
            and node.candidacy.since is None
            and node.operator_promote.ask is None  # an operator's promote asks the witness: no promise now
            # Granted the next epoch (the witness serves the old primary no more): renewing our
            # promise would keep the old primary acknowledging, and us from ever taking it.
            and self.grant_deferred <= node.epoch
        ):
            self.until = max(self.until, now + node.settings.lease + node.settings.lease_margin)
            return [Send(src, wire.Lease(m.epoch, m.seq, node.name))]
        return []
