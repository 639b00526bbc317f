"""The primary's in-sync set (ISR, sync mode): the standbys whose ack every committed entry needs.

For: ``InSyncSet``, a component ``PrimaryRole`` owns (``role.in_sync``),
built afresh at each promotion. The witness starts each epoch with every
other node in the set (or the set it recorded with its grant), and only
members may be promoted, so an entry acked by the whole set survives any
fail-over. A standby that caught up with everything joins (``on_ack``); a
member that holds up the oldest waiting reply (dead, or no ack progress for
a heartbeat timeout) is dropped (``check``), each change only once the
witness records it: the primary proposes (``wire.IsrUpdate``, numbered
within the epoch) and re-proposes every ``vote_retry`` until the witness
acks exactly that set (``wire.IsrAck``). Without a witness the set never
shrinks: the primary stays blocked rather than risk losing acknowledged
entries. Timers are data: the role's ``ISR`` timer is armed by ``check``
for the next member that may lag, or the re-proposal.

Not for: the commit rule and the replies (``PrimaryRole.recompute_commit``,
``release``), async mode, sockets or clocks.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .. import wire
from ..wire import Send

if TYPE_CHECKING:  # pragma: no cover
    from .primary import PrimaryRole

log = logging.getLogger("replication.sequencer")

INF = float("inf")
INF_PAST = float("-inf")
ISR = "isr"  # the primary's timer: the next ISR member that may lag (by ack or heartbeat silence), a re-proposal


class InSyncSet:
    """The in-sync set of one primary in one epoch; the role is ``self.role``, the node ``self.node``.

    ``recorded``: the set the witness recorded with its grant (None: every other node).
    """

    def __init__(self, role: PrimaryRole, recorded: tuple[str, ...] | None = None) -> None:
        node = role.node
        self.role = role
        self.node = node
        self.members: list[str] = list(node.peers)  # whose ack a commit needs now
        self.confirmed: tuple[str, ...] = tuple(node.peers)  # what the witness has recorded
        self.proposed: tuple[str, ...] = self.confirmed  # the last set sent to the witness
        self.unsure = False  # a proposal is unanswered: the witness may hold it or an older set
        self.asked_at = -1.0
        self.proposals = 0  # numbers IsrUpdates within the epoch (the witness refuses older ones)
        self.progress_at: dict[str, float] = {}  # standby -> when its ack last moved up
        if recorded is not None:
            self.members = [p for p in node.peers if p in recorded]
            self.confirmed = self.proposed = tuple(self.members)

    def on_ack(self, member: str, seq: int, progressed: bool, now: float) -> list:
        """A peer acked ``seq`` (``progressed``: higher than before): note its progress, and if it
        caught up with everything, take it in (sync) and propose the larger set at once."""
        node = self.node
        if progressed:
            self.progress_at[member] = now
        if member in self.members or seq < node.replica.seq or node.settings.mode != "sync":
            return []
        # Caught up with everything: from now on its ack is required too, and
        # once the witness records it, it may be promoted.
        self.members = [p for p in node.peers if p in self.members or p == member]
        log.info(
            "isr_add node=%s epoch=%d member=%s isr=%s",
            node.name,
            node.epoch,
            member,
            ",".join(self.members),
        )
        return self.propose(now, tuple(self.members), force=True)

    def propose(self, now: float, members: tuple[str, ...], force: bool = False) -> list:
        """Send the witness ``members`` (not again within ``vote_retry`` unless ``force``)."""
        node = self.node
        if not node.witness or node.settings.mode != "sync":
            return []
        if not force and now - self.asked_at < node.settings.vote_retry:
            return []
        self.asked_at = now
        # Until the witness acks exactly this set, what it holds is uncertain
        # (the proposal or any earlier one): keep proposing.
        self.proposed = members
        self.unsure = True
        self.proposals += 1
        return [
            Send(
                node.witness,
                wire.IsrUpdate(node.epoch, node.replica.seq, node.name, members, self.proposals),
            )
        ]

    def check(self, now: float) -> list:
        """Drop members that hold up replies (dead, or no ack progress for a timeout) — with the
        witness's consent; arm the ISR timer for the next member that may lag, or the re-proposal."""
        node, role = self.node, self.role
        if node.settings.mode != "sync" or not node.witness:
            return []  # no witness: stay blocked rather than risk losing acknowledged entries
        out: list = []
        if role.waiting and role.waiting.head()[0] <= role.commit:
            out += role.release()
        desired = tuple(self.members)
        lagging, due = self._lagging(now)
        if lagging:
            desired = tuple(p for p in self.members if p not in lagging)
            if now - self.asked_at >= node.settings.vote_retry:
                log.warning(
                    "isr_shrink_request node=%s epoch=%d drop=%s keep=%s seq=%d",
                    node.name,
                    node.epoch,
                    ",".join(lagging),
                    ",".join(desired),
                    node.replica.seq,
                )
        if desired != self.confirmed or self.unsure:
            out += self.propose(now, desired)
            due = min(due, self.asked_at + node.settings.vote_retry)  # propose's re-send
        role.timers.arm(ISR, due)
        return out

    def _lagging(self, now: float) -> tuple[list[str], float]:
        """Members holding up the oldest waiting reply (dead, or no ack progress for a timeout),
        and when the next of the others would (INF: none waits). O(ISR)."""
        role = self.role
        if not role.waiting:
            return [], INF
        head_seq, head_t = role.waiting.head()
        if head_seq <= role.commit:
            return [], INF
        node, timeout = self.node, self.node.settings.heartbeat_timeout
        lagging, due = [], INF
        for p in self.members:
            if role.acked.get(p, 0) >= head_seq:
                continue
            since = max(head_t, self.progress_at.get(p, float("-inf")))
            if not self.peer_alive(p, now) or now - since >= timeout:
                lagging.append(p)
            else:  # lags from its ack silence, or from its heartbeat silence (> timeout)
                due = min(due, since + timeout, node.last_heard.get(p, INF_PAST) + timeout)
        return lagging, due

    def peer_alive(self, p: str, now: float) -> bool:
        """Heard within the timeout, and no connection drop since."""
        heard = self.node.last_heard.get(p, float("-inf"))
        return (
            now - heard <= self.node.settings.heartbeat_timeout
            and self.node.suspect_at.get(p, float("-inf")) < heard
        )

    def on_isr_ack(self, m: wire.IsrAck, now: float) -> list:
        """The witness recorded a set: if it is our last proposal, it is the set; release what it commits."""
        node, role = self.node, self.role
        if m.epoch != node.epoch or not m.granted:
            return []
        if m.members != self.proposed:
            return []  # a stale answer: the witness may hold a later proposal; check re-sends it
        self.unsure = False
        old = self.confirmed
        self.confirmed = m.members
        # Members dropped by this record stop counting, unless they caught up meanwhile
        # (then they stay, and the next check re-proposes them).
        self.members = [
            p
            for p in node.peers
            if p in m.members or (p in self.members and role.acked.get(p, 0) >= node.replica.seq)
        ]
        if old != m.members:
            node.count("isr_changes")
            log.warning(
                "isr_confirmed node=%s epoch=%d isr=%s%s",
                node.name,
                node.epoch,
                ",".join(m.members) or "-",
                " (solo: no automatic fail-over until a standby is back in sync)" if not m.members else "",
            )
        role.recompute_commit()
        return role.release()
