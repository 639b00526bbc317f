"""A standby's candidacy: is its leader dead, and asking the witness for the next epoch.

For: ``Candidacy``, a component the node holds (``node.candidacy``: a
candidacy may start while following a leader and ends in a promotion or a
new leader, so it outlives role changes). Failure detection, read off the
node's shared state: the leader is dead after a heartbeat timeout of
silence, or a ``suspect_timeout`` after the driver saw its connection drop
(``wire.PeerDown``) with nothing heard since (``leader_dead``,
``leader_dead_at``). The candidacy: from its start (``since``) the node asks
the witness for the next epoch (``wire.VoteRequest``) every ``vote_retry``
(the first few refusals are re-asked after ``vote_retry_refused``), never
while a lease promise it gave runs (``lease.LeasePromise``); a grant
promotes it (``NodeMachine.promote``). Without a witness only a group of one
promotes by itself. ``StandbyRole.check_leader`` decides when to run; timers
are data: ``due`` says when ``run`` next acts.

Not for: the promotion itself (``machine``), the operator's promote
(``operator_promote``), the witness's rules (``witness``), sockets or clocks.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .. import wire
from ..wire import Send
from ..witness import HANDOVER_GRANT

if TYPE_CHECKING:  # pragma: no cover
    from .machine import NodeMachine

log = logging.getLogger("replication.failover")

NEVER = float("-inf")
INF = float("inf")
QUICK_VOTE_RETRIES = 5  # refused votes re-asked after Settings.vote_retry_refused, then vote_retry


class Candidacy:
    """The node's candidacy (``since``: when it started; None: not running) and its leader's health."""

    def __init__(self, node: NodeMachine) -> None:
        self.node = node
        self.since: float | None = None
        self.vote_sent_at = NEVER
        self.votes_refused = 0  # refusals in the current candidacy (the first few are re-asked soon)
        # A switchover: the Handover we accepted, (epoch, seq), and a grant the witness sent us
        # unasked before it came (``witness.HANDOVER_GRANT``), kept for it (``handover_vote``).
        self.handover_at: tuple[int, int] | None = None
        self.early_grant: wire.Vote | None = None

    # -- failure detection ------------------------------------------------------------

    def leader_dead(self, now: float) -> bool:
        """Silent for a heartbeat timeout, or its connection dropped a suspect timeout ago."""
        node = self.node
        heard = node.last_heard.get(node.leader, NEVER)
        if now - heard > node.settings.heartbeat_timeout:
            return True
        down = node.suspect_at.get(node.leader, NEVER)
        return down >= heard and now - down >= node.settings.suspect_timeout

    def leader_dead_at(self) -> float:
        """The earliest time at which :meth:`leader_dead` holds, as things stand."""
        node = self.node
        heard = node.last_heard.get(node.leader, NEVER)
        due = heard + node.settings.heartbeat_timeout  # silence (>: counts from just after)
        down = node.suspect_at.get(node.leader, NEVER)
        if down >= heard:
            due = min(due, down + node.settings.suspect_timeout)  # the connection dropped
        return due

    def suspecting(self) -> bool:
        """Our leader's connection dropped and we have not heard from it since."""
        node = self.node
        return bool(node.leader) and node.suspect_at.get(node.leader, NEVER) >= node.last_heard.get(
            node.leader, NEVER
        )

    def handed_over_to_us(self) -> bool:
        """Our leader drains into us, or has handed over and follows us, in our epoch.

        Its heartbeat says so (a draining primary names its target as leader). Our
        candidacy then waits for the witness's grant with the leader alive, as it should.
        """
        node = self.node
        hb = node.peer_info.get(node.leader) if node.leader else None
        return (
            hb is not None
            and hb.epoch == node.epoch
            and hb.leader == node.name
            and hb.role in (wire.ROLE_DRAINING, wire.ROLE_STANDBY)
        )

    def followers_waiting(self, now: float) -> bool:
        """A live standby of our epoch names us its leader (heard from within a heartbeat timeout)."""
        node = self.node
        for p in node.peers:  # list order: deterministic
            hb = node.peer_info.get(p)
            if (
                hb is not None
                and hb.role == wire.ROLE_STANDBY
                and hb.leader == node.name
                and hb.epoch == node.epoch
                and now - node.last_heard.get(p, NEVER) <= node.settings.heartbeat_timeout
            ):
                return True
        return False

    # -- the candidacy ------------------------------------------------------------------

    def run(self, now: float, reason: str) -> list:
        """Start the candidacy (if not running), and ask the witness for the next epoch if it is time."""
        node = self.node
        if self.since is None:
            self.since = now
            self.votes_refused = 0
            # A node's own start is routine (INFO); running because a leader was lost is not.
            (log.info if reason == "start" else log.warning)(
                "candidate node=%s reason=%s leader=%s epoch=%d last_seq=%d",
                node.name,
                reason,
                node.leader,
                node.epoch,
                node.replica.seq,
            )
        if not node.witness:
            # No tie-breaker: a group of one may start alone; a standby waits for the operator.
            return node.promote(now, "no_witness") if reason == "start" and not node.peers else []
        if now - self.vote_sent_at < node.settings.vote_retry or node.lease_promise.open(now):
            return []  # (a lease we echoed may still let the primary acknowledge: no vote before)
        self.vote_sent_at = now
        return [
            Send(
                node.witness,
                wire.VoteRequest(node.epoch + 1, node.replica.seq, node.name, node.replica.last_epoch),
            )
        ]

    def holds_handover(self) -> bool:
        """We accepted a Handover at our epoch and seq, and our journal is whole."""
        node = self.node
        return self.handover_at == (node.epoch, node.replica.seq) and not node.damaged

    def handover_vote(self, now: float) -> list:
        """The Handover has come: promote on the witness's unasked grant if it came first."""
        m, self.early_grant = self.early_grant, None
        if m is None or m.epoch != self.node.epoch + 1:
            return []
        return self.on_vote(m, now)

    def due(self, now: float, start: bool) -> float:
        """When :meth:`run` next acts: starts the candidacy, or (re-)asks the witness."""
        node = self.node
        if self.since is None:
            return now
        if not node.witness:
            return now if start and not node.peers else INF  # a group of one promotes at once
        # After a refusal on_vote moved vote_sent_at back: this is vote_retry_refused then.
        due = self.vote_sent_at + node.settings.vote_retry
        return max(due, node.lease_promise.until) if node.settings.mode == "async" else due

    def on_vote(self, m: wire.Vote, now: float) -> list:
        """The witness's answer: a grant of the next epoch promotes us (unless a lease promise runs)."""
        node = self.node
        if m.operator and not m.granted:
            node.operator_promote.on_refused_vote(m)  # our operator's ask, refused
            return []
        if not m.granted:
            node.count("votes_denied")
            if m.node == node.name and self.since is not None and m.epoch == node.epoch + 1:
                self.votes_refused += 1
                if self.votes_refused <= QUICK_VOTE_RETRIES:
                    # Ask again soon rather than after a whole vote_retry (see Settings.vote_retry_refused).
                    soon = now - node.settings.vote_retry + node.settings.vote_retry_refused
                    self.vote_sent_at = min(self.vote_sent_at, soon)
            return []
        if m.node != node.name or m.epoch != node.epoch + 1 or node.role != wire.ROLE_STANDBY:
            return []
        if m.reason == HANDOVER_GRANT and not self.holds_handover():
            # Granted from the old primary's word that we acknowledged its final seq: we serve
            # on it only holding its Handover at our own seq (a journal lost meanwhile, or a
            # Handover still on its way). Kept for the Handover (``handover_vote``); if that
            # never comes, our heartbeats get the grant re-sent as any lost one.
            self.early_grant = m
            node.count("handover_grants_early")
            return []
        if node.damaged:
            node.count("votes_ignored_damaged")  # never serve a shortened history (journal_health)
            return []
        if node.lease_promise.open(now):
            # The old primary may still acknowledge under a lease we echoed: not yet. The witness
            # re-sends the grant on our heartbeats (it holds the epoch for us).
            node.count("votes_deferred_by_lease")
            promise = node.lease_promise
            promise.grant_deferred = max(promise.grant_deferred, m.epoch)  # no more echoes (on_ask)
            ask = node.operator_promote.ask
            if ask is not None:
                ask.granted = True  # the operator waits for this promotion, not the witness
            return []
        # Honour a grant even if we meanwhile dropped the candidacy (the old primary
        # came back): the witness has moved to this epoch and will not serve the old
        # primary's ISR changes any more, so declining would leave the group stuck.
        return node.promote(now, "witness", m.isr)
