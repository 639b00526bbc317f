"""``WitnessMachine``: the tie-breaker that lets a standby promote only when it is safe.

For: granting a promotion to at most one candidate per epoch, and only when
the witness has also lost the current primary (no heartbeat from it for the
timeout), the candidate knows the current epoch, no live standby is ahead of
it, and (sync mode) the candidate is in the primary's in-sync set (ISR) — the
standbys that acked every entry a client was told about. Also: recording the
ISR a sync primary proposes (``IsrUpdate``), so a primary may drop a dead
standby only after the witness knows that standby is no longer eligible; an
empty ISR is "running solo". Not for: data — the witness holds no
book and no journal.

What it decides on must survive its restart: ``durable_state()`` (epoch,
primary, ISR) is written to the group file's ``[witness] state`` file by the
driver before any output of the pass that changed it leaves, and passed
back as ``state`` on start. A witness run without that file relearns the
epoch from heartbeats, but in sync mode it refuses every promotion until the
current primary has told it the ISR: otherwise a restart of the witness
together with the loss of the primary could promote a standby that missed
acknowledged orders (the operator's ``promote`` remains).

Same sans-IO interface as the nodes: ``handle(src, msg, now)``, ``tick(now)``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from . import wire
from .settings import Settings
from .wire import Send

log = logging.getLogger("replication.witness")

NEVER = float("-inf")
# A Vote's reason when the witness grants a switchover's target on its own, from the old
# primary's heartbeat after the Handover (``WitnessMachine.handover_grant``): no VoteRequest
# asked for it. The target promotes on it only once it holds the Handover at its own seq.
HANDOVER_GRANT = "granted (handover)"

# A message handler of the dispatch table: ``(src, msg, now) -> outputs``.
Handler = Callable[[wire.Address, Any, float], list[Send]]


class ParkedVote(NamedTuple):
    """A vote request refused only because the primary still looks alive here, kept to be
    decided the moment we lose it too (``WitnessMachine.unpark``)."""

    request: wire.VoteRequest
    since: float  # when the candidate first asked (the request is forgotten vote_retry later)


class _Seen(NamedTuple):
    """What ``WitnessMachine.invariants`` saw last time: the rules across steps compare with it."""

    epoch: int
    primary: str
    isr_proposal: int


class WitnessMachine:
    """Votes and solo leases; deterministic, no I/O.

    Parameters
    ----------
    nodes : list of str
        Names of the group's nodes.
    settings : Settings
        ``heartbeat_timeout`` (when a node counts as lost), ``witness_grace``.
    """

    def __init__(
        self,
        nodes: list[str],
        settings: Settings | None = None,
        name: str = "witness",
        state: dict | None = None,
    ) -> None:
        self.name = name
        self.nodes = list(nodes)
        self.settings = settings or Settings()
        self.epoch = 0  # highest epoch granted or seen
        self.primary = ""  # the primary of self.epoch
        self.isr: tuple[str, ...] | None = None  # in-sync set of self.epoch (None = unknown, after a restart)
        self.isr_proposal = 0  # highest IsrUpdate.proposal recorded in self.epoch
        self.last_heard: dict[str, float] = {n: NEVER for n in self.nodes}
        self.info: dict[str, wire.Heartbeat] = {}
        self.started: float | None = None
        self.counters: dict[str, int] = {}
        self.error = ""  # set by the driver when the state file cannot be written: no more decisions
        # Vote requests refused only because the primary still looks alive to us, kept
        # (candidate -> its request and when it first asked) and granted the moment we lose it too.
        self.parked: dict[str, ParkedVote] = {}
        # Async mode: no grant (but a handover's) before this time: an async primary may
        # acknowledge until then under a lease we echoed (see replication.protocol.node.lease; on_lease).
        self.lease_promised = NEVER
        # Async: no lease echoed before this time: a forced operator promote asked (operator_refusal).
        self.lease_frozen_until = NEVER
        # Our last unasked grant (``handover_grant``), (epoch, seq, last epoch) as the old primary
        # said them; None: none since we started. Re-sent, that grant stays ``HANDOVER_GRANT``
        # unless the target shows it holds that last entry itself (``proven``).
        self.unasked: tuple[int, int, int] | None = None
        if state:
            self.epoch = int(state["epoch"])
            self.primary = str(state["primary"])
            self.isr = None if state["isr"] is None else tuple(str(n) for n in state["isr"])
            self.isr_proposal = int(state["isr_proposal"])
        self._handlers = self._dispatch_table()
        self._seen: _Seen | None = None  # invariants() only: the record at its last call

    def durable_state(self) -> dict:
        """What must survive a restart of the witness (see the module docstring). O(nodes)."""
        return {
            "epoch": self.epoch,
            "primary": self.primary,
            "isr": None if self.isr is None else list(self.isr),
            "isr_proposal": self.isr_proposal,
        }

    def count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def alive(self, node: str, now: float) -> bool:
        return now - self.last_heard.get(node, NEVER) <= self.settings.heartbeat_timeout

    def handle(self, src: wire.Address, msg: wire.Message, now: float) -> list[Send]:
        """Feed one message; return outputs."""
        out = self._handle(src, msg, now)
        return out + self.unpark(now) if self.parked else out

    def _handle(self, src: wire.Address, msg: wire.Message, now: float) -> list[Send]:
        if self.started is None:
            self.start(now)
        if isinstance(src, str) and src in self.last_heard and type(msg) is not wire.PeerDown:
            self.last_heard[src] = now
        handler = self._handlers.get(type(msg))
        if handler is None:
            self.count("unexpected_messages")
            return []
        return handler(src, msg, now)

    def _dispatch_table(self) -> dict[type[wire.Message], Handler]:
        """Message type -> bound handler ``(src, msg, now) -> outputs`` (as the node's)."""
        return {
            wire.Heartbeat: self._on_heartbeat_message,
            wire.VoteRequest: self._on_vote_request_message,
            wire.IsrUpdate: lambda src, m, now: [Send(src, self.on_isr(m))],
            wire.Lease: self.on_lease,
            wire.PeerDown: self.on_peer_down,
            wire.StatusRequest: lambda src, m, now: [
                Send(src, wire.Status(json.dumps(self.status(), sort_keys=True).encode()))
            ],
        }

    def _on_heartbeat_message(self, src: wire.Address, hb: wire.Heartbeat, now: float) -> list[Send]:
        """Learn from a node's heartbeat (``on_heartbeat``); grant a switchover's target
        (``handover_grant``); re-send a grant it did not get."""
        self.on_heartbeat(src, hb)
        if src == self.primary and hb.role == wire.ROLE_STANDBY and hb.epoch == self.epoch and hb.leader:
            return self.handover_grant(src, hb, now)
        if (
            src == self.primary
            and hb.role == wire.ROLE_STANDBY
            and hb.epoch == self.epoch - 1
            and self.epoch > 0
        ):
            # We granted src this epoch but it still follows the previous one: the
            # Vote was lost (and its candidacy dropped when the old primary came
            # back). Re-send it, or the old primary, whose ISR changes we no longer
            # accept, and the group would be stuck without redundancy.
            self.count("votes_resent")
            # (An unasked handover grant stays one: the target serves on it only with the Handover.)
            reason = "granted (re-sent)" if self.proven(hb.seq, hb.last_epoch) else HANDOVER_GRANT
            return [Send(src, wire.Vote(self.epoch, src, True, reason, self.isr))]
        return []

    def handover_grant(self, src: str, hb: wire.Heartbeat, now: float) -> list[Send]:
        """The primary of our epoch handed over: it follows ``hb.leader`` at its final seq. Grant
        that target the next epoch now, unasked, rather than when its VoteRequest comes.

        The old primary hands over only once the target acknowledged its final seq in our
        epoch (``PrimaryRole.check_drain``), and sequences nothing after it; no newer epoch
        exists (we would have granted it), so nothing can have cut the target's journal
        since. The grant is recorded as the target's ``VoteRequest`` would have it (its
        seq and last epoch those of the old primary's heartbeat), and the Vote says
        ``HANDOVER_GRANT``: the target promotes on it only once it holds the Handover at
        its own seq (``Candidacy.on_vote``), so a target that lost its journal meanwhile
        never serves on this grant. It saves the target's ask: the grant, and the
        durable write before it, overlap the Handover's way to the target. O(nodes)."""
        target = hb.leader
        if (
            target == src
            or target not in self.last_heard
            or self.error
            or (self.started is not None and now - self.started < self.settings.witness_grace)
        ):
            return []
        m = wire.VoteRequest(self.epoch + 1, hb.seq, target, hb.last_epoch)
        self.count("handovers_granted")
        self.count("handovers_granted_unasked")
        vote = self.grant(m, now)
        self.unasked = (vote.epoch, hb.seq, hb.last_epoch)
        return [Send(target, wire.Vote(vote.epoch, target, True, HANDOVER_GRANT, vote.isr))]

    def proven(self, seq: int, last_epoch: int) -> bool:
        """Does a grantee at ``seq`` / ``last_epoch`` hold what our epoch's grant was for? Always,
        but for an unasked grant (``unasked``): then only if that is the old primary's last entry."""
        u = self.unasked
        return u is None or u[0] != self.epoch or (seq == u[1] and last_epoch == u[2])

    def _on_vote_request_message(self, src: wire.Address, m: wire.VoteRequest, now: float) -> list[Send]:
        """Answer a candidate at once, or (no output) park its request: see ``on_vote_request``."""
        vote = self.on_vote_request(m, now)
        return [Send(src, vote)] if vote is not None else []

    def on_peer_down(self, src: wire.Address, msg: wire.PeerDown, now: float) -> list[Send]:
        """A dropped connection means we lost that node now, not after a timeout."""
        if msg.node in self.last_heard:
            self.last_heard[msg.node] = min(self.last_heard[msg.node], now - self.settings.heartbeat_timeout)
            self.last_heard[msg.node] -= 1e-9
        return []

    def start(self, now: float) -> None:
        """First message or tick. Restarted, we cannot know what lease we echoed last: promise one."""
        self.started = now
        if self.settings.mode == "async":
            self.lease_promised = now + self.settings.lease + self.settings.lease_margin

    def on_lease(self, src: wire.Address, m: wire.Lease, now: float) -> list[Send]:
        """The primary of our epoch asks for its lease: echo it, and promise no grant for a lease."""
        if self.settings.mode != "async" or src != m.node or m.node != self.primary or m.epoch != self.epoch:
            return []
        if now < self.lease_frozen_until:
            return []  # a forced operator promote waits for this lease to end (operator_refusal)
        self.lease_promised = max(self.lease_promised, now + self.settings.lease + self.settings.lease_margin)
        return [Send(src, wire.Lease(m.epoch, m.seq, self.name))]

    def _lease_runs(self, m: wire.VoteRequest, now: float) -> bool:
        """Async: an old primary may still acknowledge under a lease we echoed (never for epoch 1:
        before it no node led, so no lease was ever asked for)."""
        return self.settings.mode == "async" and m.epoch > 1 and now < self.lease_promised

    def tick(self, now: float) -> list[Send]:
        if self.started is None:
            self.start(now)
        return self.unpark(now) if self.parked else []

    def idle_wait(self, now: float | None = None) -> float:  # noqa: ARG002 - same call as NodeMachine's
        """Seconds the driver may wait for a message before the next ``tick``.

        Only a parked vote needs the clock (the primary's silence timing out
        here); everything else the witness does answers a message, and a
        dropped connection is a message too.
        """
        return 0.001 if self.parked else 0.05

    def unpark(self, now: float) -> list[Send]:
        """Answer parked vote requests that can be decided now; forget those older than ``vote_retry``.

        A candidate that still runs re-asks every ``vote_retry``, so a grant
        never reaches a node that gave up long ago. O(parked).
        """
        out = []
        for node in self.nodes:  # list order: deterministic
            if node not in self.parked:
                continue
            m, since = self.parked.pop(node)  # a ParkedVote
            if now - since > self.settings.vote_retry:
                continue
            vote = self.on_vote_request(m, now, since)
            if vote is not None:
                out.append(Send(node, vote))
        return out

    def fits(self, node: str, names: tuple[str, ...]) -> bool:
        """An in-sync set the record may hold: distinct nodes of the group other than ``node``
        (its primary). So a record always fits the state file (``trust.Policy`` refuses the
        rest before they reach us; this keeps the machine safe on its own). O(len(names))."""
        return len(names) == len(set(names)) and set(names) <= set(self.nodes) - {node}

    def on_heartbeat(self, src: wire.Address, hb: wire.Heartbeat) -> None:
        if not isinstance(src, str) or src not in self.last_heard or not self.fits(src, hb.isr):
            self.count("heartbeats_refused")
            return
        self.info[src] = hb
        if hb.epoch > self.epoch:
            # Learned (after our restart, or a planned switchover) that a newer epoch exists.
            self.epoch = hb.epoch
            self.isr_proposal = 0
            self.primary = src if hb.role in (wire.ROLE_PRIMARY, wire.ROLE_DRAINING) else hb.leader
            self.isr = hb.isr if src == self.primary else None
            log.info("witness_epoch epoch=%d primary=%s (from heartbeat)", self.epoch, self.primary)
        elif hb.epoch == self.epoch and hb.role == wire.ROLE_PRIMARY and not self.primary:
            self.primary = src
        if (
            hb.epoch == self.epoch
            and src == self.primary
            and hb.role == wire.ROLE_PRIMARY
            and self.isr is None
        ):
            self.isr = hb.isr  # relearned after a restart (a primary only reports confirmed sets)

    def on_vote_request(
        self, m: wire.VoteRequest, now: float, parked_at: float | None = None
    ) -> wire.Vote | None:
        """Grant, refuse, or (None) park the request until the primary is lost here too."""

        def deny(reason: str) -> wire.Vote:
            self.count("votes_denied")
            log.info("vote_denied candidate=%s epoch=%d reason=%s", m.node, m.epoch, reason)
            return wire.Vote(m.epoch, m.node, False, reason, None, m.operator)

        # One grant per epoch, each epoch after the last: absolute, for an operator's ask too.
        if m.epoch == self.epoch and self.primary == m.node:
            # A retransmitted request.
            again = "already granted" if self.proven(m.seq, m.last_epoch) else HANDOVER_GRANT
            return wire.Vote(m.epoch, m.node, True, again, self.isr, m.operator)
        if m.epoch <= self.epoch:
            return deny(f"epoch {m.epoch} is not newer than {self.epoch}")
        if self.epoch and m.epoch != self.epoch + 1:
            return deny(f"candidate skips epochs ({m.epoch} after {self.epoch})")
        if self.started is not None and now - self.started < self.settings.witness_grace:
            return deny("witness still learning the group")
        if m.operator:
            # An operator's promote: never parked (the node must tell a refusal from silence).
            reason = self.operator_refusal(m, now)
            if reason is not None:
                return deny("operator promote: " + reason)
            self.count("operator_votes_granted")
            return self.grant(m, now)
        # The primary of our epoch handed over to the candidate: it follows it at the same
        # epoch (the heartbeat it sends the moment its Handover leaves), and the candidate
        # holds every entry it has. A draining primary's heartbeat is not enough: its seq
        # may still grow, and a target that crashed and restarted during the drain would be
        # granted on its shorter journal, the old primary's acknowledged suffix fenced away.
        drain = self.info.get(self.primary) if self.primary else None
        handover = (
            drain is not None
            and drain.role == wire.ROLE_STANDBY
            and drain.epoch == self.epoch
            and drain.leader == m.node
            and m.epoch == self.epoch + 1
            and m.seq >= drain.seq
        )
        if handover:
            # A planned switchover: the primary drained into this candidate, and the target
            # asks only once the Handover's seq is its own, so it holds everything the
            # primary did, acknowledged or not. Granted though the primary is alive (it
            # handed over), whatever the in-sync set.
            self.count("handovers_granted")
        elif self.primary_alive(m.node, now) or self._lease_runs(m, now):
            # The candidate lost the primary a little before we did (the same dropped
            # connection or heartbeat silence reaches us a moment later): decide then,
            # rather than refuse and wait for the candidate's next ask.
            if parked_at is None:
                self.count("votes_parked")
                log.debug(
                    "vote_parked candidate=%s epoch=%d (a primary is alive or its lease runs)",
                    m.node,
                    m.epoch,
                )
            self.parked[m.node] = ParkedVote(m, now if parked_at is None else parked_at)
            return None
        else:
            reason = self._refusal(m, now)
            if reason is not None:
                return deny(reason)
        return self.grant(m, now)

    def grant(self, m: wire.VoteRequest, now: float) -> wire.Vote:
        """Record ``m.node`` as the primary of ``m.epoch`` (checked: the next epoch) and say so."""
        self.epoch, self.primary = m.epoch, m.node
        self.isr_proposal = 0
        self.lease_frozen_until = NEVER  # (frozen for the old primary's lease: the new one's is echoed)
        # A new epoch starts with the nodes that hold what the candidate holds: nothing of the
        # new epoch is committed yet, but the previous epochs' commits are, and a node behind
        # the candidate lacks some of them (say, a standby restarted during the last
        # fail-over, not yet caught up); were it in the set, it could be promoted on its
        # shorter journal should the candidate die before it catches up. Left out too: those
        # we heard from and lost since (so the new primary's first commits need no shrink
        # round trip). Each is added back once caught up. Nodes never heard from count only at
        # a fresh start (the candidate holds nothing).
        self.isr = tuple(n for n in self.nodes if n != m.node and self._holds(n, m, now))
        self.count("votes_granted")
        log.warning(
            "vote_granted candidate=%s epoch=%d last_seq=%d operator=%d", m.node, m.epoch, m.seq, m.operator
        )
        return wire.Vote(m.epoch, m.node, True, "granted", self.isr, m.operator)

    def operator_refusal(self, m: wire.VoteRequest, now: float) -> str | None:
        """Why an operator's promote of ``m.node`` to the next epoch is refused; None grants it.

        The epoch rules were checked already (one grant per epoch, no skipping), and are
        never relaxed. Of the rest, an operator overrides:

        - always: an in-sync set unknown here (we restarted without our state file), which
          refuses every automatic promotion: the case ``matchcore promote`` is for. The
          node checked its own peers' reports first (``trust.promote_gap``);
        - with ``--force`` only: the primary still alive here, the candidate outside the
          in-sync set, a live standby further ahead. Each may lose acknowledged orders;
          the node logs what before it asks.

        Never overridden: an async lease we echoed (it runs out within ``lease +
        lease_margin``; for a forced ask we stop renewing it, so it does, and the node asks
        again). O(nodes).
        """
        forced = m.operator == wire.VOTE_FORCED
        if m.operator not in (wire.VOTE_OPERATOR, wire.VOTE_FORCED):
            return f"unknown operator flag {m.operator}"
        if self._lease_runs(m, now):
            if forced:
                self.lease_frozen_until = now + self.settings.lease + self.settings.lease_margin
            return "the primary's lease echoed here still runs: asked again when it ends"
        if forced:
            return None
        if self.primary_alive(m.node, now):
            return f"a primary ({self.primary or 'of a newer epoch'}) is alive here (--force overrides)"
        return self._refusal(m, now, operator=True)

    def _holds(self, node: str, m: wire.VoteRequest, now: float) -> bool:
        """Does ``node`` hold exactly the candidate's journal (alive, by their last heartbeats)?

        Same last entry, (epoch, seq), as the candidate's: the same history (one primary
        per epoch). A node at the same seq in another epoch lacks some of the
        candidate's entries (its primary's fence will cut them), however equal the
        books (a re-sent request sequenced in both epochs gives equal digests), as
        does a node behind; one ahead may hold a suffix that is not the candidate's
        either. All of them join once caught up. (Never heard from: only at a fresh
        start, when the candidate holds nothing.)
        """
        if self.last_heard[node] == NEVER:
            return m.seq == 0
        hb = self.info.get(node)
        return (
            self.alive(node, now)
            and hb is not None
            and hb.seq == m.seq
            and (hb.last_epoch == m.last_epoch or m.seq == 0)
        )

    def _refusal(self, m: wire.VoteRequest, now: float, operator: bool = False) -> str | None:
        """Why an ordinary vote request (the primary gone here too) is refused; None grants it.

        ``operator``: an operator's (unforced) ask, granted though the in-sync set is unknown here."""
        if (
            self.settings.mode == "sync"
            and (self.epoch > 0 or m.epoch > 1)
            and self.isr is None
            and not operator
        ):
            # Restarted without our state and not yet told the ISR by a live primary:
            # any standby may have missed acknowledged orders. Safe, not live. (A candidate
            # for epoch 2 or later says an epoch ran before, even when no heartbeat told us yet.)
            return (
                f"the in-sync set of epoch {self.epoch} is unknown here (witness restarted without "
                "its state file): no automatic promotion; an operator may `matchcore promote`"
            )
        # The primary of our epoch may run again (it crashed and restarted as a standby):
        # it sequenced, and journaled before replying, everything of that epoch.
        if (
            self.settings.mode == "sync"
            and self.isr is not None
            and m.node not in self.isr
            and m.node != self.primary
        ):
            return f"{m.node} is not in the in-sync set {','.join(self.isr) or '(empty: primary ran solo)'}"
        # Prefer the standby holding the most. In sync mode with a known in-sync set only its
        # members compare: every commit is on each of them, and a node outside it may be
        # "ahead" only by a suffix that was never acknowledged (an old primary's, to be
        # fenced away), which must not block the only node that may take over.
        sync_isr = self.isr if self.settings.mode == "sync" else None
        for node in self.nodes:
            hb = self.info.get(node)
            if node in (m.node, self.primary) or hb is None or not self.alive(node, now):
                continue
            if sync_isr is not None and node not in sync_isr:
                continue
            if hb.role == wire.ROLE_STANDBY and hb.epoch == self.epoch and hb.seq > m.seq:
                return f"standby {node} is further ahead ({hb.seq} > {m.seq})"
        return None

    def primary_alive(self, candidate: str, now: float) -> bool:
        """Our epoch's primary, or any other node claiming to be a current primary, is alive to us.

        Our primary is not, though, once its own heartbeat says it is a standby of our epoch
        following nobody (it restarted): it will not serve that epoch again, and waiting for
        it to fall silent would park every other candidate for good. (One that follows a node
        handed over to it: that node's vote is the handover branch's, on its final seq; a
        request it sent earlier, parked here, must not be granted by the ordinary rules on a
        seq it has since passed.)
        """
        hb = self.info.get(self.primary) if self.primary else None
        stepped_down = (
            hb is not None and hb.epoch == self.epoch and hb.role == wire.ROLE_STANDBY and not hb.leader
        )
        if self.primary and self.primary != candidate and self.alive(self.primary, now) and not stepped_down:
            return True
        for node in self.nodes:
            hb = self.info.get(node)
            if (
                node != candidate
                and hb is not None
                and self.alive(node, now)
                and hb.epoch >= self.epoch
                and hb.role in (wire.ROLE_PRIMARY, wire.ROLE_DRAINING)
            ):
                return True
        return False

    def on_isr(self, m: wire.IsrUpdate) -> wire.IsrAck:
        if (
            m.epoch != self.epoch
            or m.node != self.primary
            or (m.proposal and m.proposal < self.isr_proposal)
            or not self.fits(m.node, m.members)
        ):
            self.count("isr_refused")  # (or a reordered, older proposal: never undo a later one)
            return wire.IsrAck(m.epoch, m.node, m.members, False)
        self.isr_proposal = max(self.isr_proposal, m.proposal)
        if m.members != self.isr:
            log.warning(
                "witness_isr primary=%s epoch=%d isr=%s seq=%d",
                m.node,
                m.epoch,
                ",".join(m.members) or "-",
                m.seq,
            )
        self.isr = m.members
        return wire.IsrAck(m.epoch, m.node, m.members, True)

    def invariants(self) -> None:
        """Raise ``AssertionError`` naming the first rule the witness's state breaks.

        For the tests and the simulator (after every step), never the driver's hot path.
        It remembers the record it saw (``_seen``) to check the rules across steps:

        - the epoch never decreases, and an epoch's primary, once recorded, never changes
          (one grant per epoch);
        - within an epoch, the ISR proposal number never decreases (a reordered older
          ``IsrUpdate`` never undoes a later one);
        - the in-sync set, when known, is distinct nodes of the group other than the
          primary (``fits``: what the state file's slot holds);
        - heartbeats are remembered from the group's nodes only, and a parked vote is kept
          under its own candidate's name.

        O(nodes + parked).
        """
        where = f"witness {self.name} (epoch {self.epoch}, primary {self.primary or '-'})"
        seen = self._seen
        if self.epoch < 0 or self.isr_proposal < 0:
            raise AssertionError(f"{where}: negative epoch or ISR proposal ({self.isr_proposal})")
        if seen is not None:
            if self.epoch < seen.epoch:
                raise AssertionError(f"{where}: epoch went back from {seen.epoch}")
            if self.epoch == seen.epoch and seen.primary and self.primary != seen.primary:
                raise AssertionError(f"{where}: epoch {self.epoch} was granted to {seen.primary} already")
            if self.epoch == seen.epoch and self.isr_proposal < seen.isr_proposal:
                raise AssertionError(
                    f"{where}: ISR proposal went back from {seen.isr_proposal} to {self.isr_proposal}"
                )
        if self.isr is not None and not self.fits(self.primary, self.isr):
            raise AssertionError(
                f"{where}: in-sync set {self.isr} is not distinct nodes of {self.nodes} other than the primary"
            )
        if set(self.last_heard) != set(self.nodes) or not set(self.info) <= set(self.nodes):
            raise AssertionError(f"{where}: heard from {sorted(self.info)}, not only the nodes {self.nodes}")
        for node, parked in self.parked.items():
            if parked.request.node != node:
                raise AssertionError(f"{where}: a vote request of {parked.request.node} parked as {node}'s")
            # Not an invariant, though tempting: "a parked request is for an epoch not granted yet".
            # A request parked for epoch e stays parked when another candidate is granted e
            # (seed 8872, --overlap on --max-faults 10); it is refused once it is answered.
        if self.primary and self.primary not in self.nodes:
            raise AssertionError(f"{where}: primary {self.primary!r} is not a node of {self.nodes}")
        self._seen = _Seen(self.epoch, self.primary, self.isr_proposal)

    def status(self) -> dict:
        return {
            "node": self.name,
            "role": "witness",
            "epoch": self.epoch,
            "primary": self.primary,
            "isr": list(self.isr) if self.isr is not None else None,
            # Each node's last heartbeat (epoch, role, seq, commit, in-sync set): what
            # `matchcore promote` checks a target against (trust.promote_gap).
            "heard": {
                n: [hb.epoch, hb.role, hb.seq, hb.commit, list(hb.isr)] for n, hb in sorted(self.info.items())
            },
            "error": self.error,
            "counters": dict(sorted(self.counters.items())),
        }
