"""``NodeMachine``: one replication node as a sans-IO state machine, and its role changes.

For: everything a node does whatever its role — recovering its replica from
the journal, heartbeats both ways, failure detection (heartbeat timeout,
shortened by connection-loss hints), asking the witness for a promotion and
promoting (bump epoch, serve at once from the hot book), stepping down when
a higher epoch shows up (fencing), switchover hand-over on the target side,
status reports — and dispatching each message to the primary logic
(``sequencer.SequencerMixin``) or the standby logic (``standby.StandbyMixin``).
Not for: sockets or clocks: see the package docstring for the
``handle(src, msg, now)`` / ``tick(now)`` interface.

Roles: ``ROLE_STANDBY`` (following a leader, or looking for one),
``ROLE_PRIMARY``, ``ROLE_DRAINING`` (primary in a planned switchover: no new
requests), ``ROLE_DIVERGED`` (terminal: the book is wrong; never serves,
never promotes).
"""

from __future__ import annotations

import json
import logging
import math
from collections import deque
from collections.abc import Callable
from typing import Any

from .. import wire
from ..journal_api import JournalFault
from ..replica import default_engine_factory
from ..settings import Settings
from ..wire import Send
from .journal_health import JournalHealthMixin
from .lease import LeaseMixin
from .operator_promote import OperatorPromoteMixin
from .primary import SequencerMixin
from .standby import StandbyMixin

log = logging.getLogger("replication.failover")

NEVER = float("-inf")
QUICK_VOTE_RETRIES = 5  # refused votes re-asked after Settings.vote_retry_refused, then vote_retry
IDLE_CAP = 0.05  # idle_wait never exceeds this (seconds)
INF = float("inf")


class NodeMachine(SequencerMixin, StandbyMixin, JournalHealthMixin, LeaseMixin, OperatorPromoteMixin):
    """One node of a group (primary or standby) — deterministic, no I/O.

    Parameters
    ----------
    name : str
        This node's name in the group file.
    peers : list of str
        The other nodes' names (their order fixes output order).
    journal : JournalBase
        ``FileJournal`` or ``MemoryJournal``; the replica is rebuilt from it.
    settings : Settings
        Mode and timings.
    witness : str or None
        The witness's address, or None (then only an operator ``Promote``
        promotes a standby, and a sync primary never drops a standby from its in-sync set).
    engine_factory : callable
        Makes a fresh engine (default ``matching.Engine`` or the reference).
    start_role : str
        ``"primary"``: try to become primary at start (through the witness);
        ``"standby"``: follow whichever primary shows up.
    perturb_seq : int
        Test-only fault: corrupt this replica's book just before seq N.
    """

    def __init__(
        self,
        name: str,
        peers: list[str],
        journal: Any,
        settings: Settings | None = None,
        witness: str | None = "witness",
        engine_factory: Callable[[], Any] = default_engine_factory,
        start_role: str = "standby",
        perturb_seq: int = 0,
    ) -> None:
        self.name = name
        self.peers = [p for p in peers if p != name]
        self.journal = journal
        self.settings = settings or Settings()
        self.witness = witness
        self.engine_factory = engine_factory
        self.perturb_seq = perturb_seq
        self.counters: dict[str, int] = {}
        self._handlers = self._dispatch_table()
        meta = journal.load_meta()
        self.replica = self.open_replica(meta)  # empty if the journal is damaged (journal_health)
        self.epoch = max(int(meta.get("epoch", 0)), self.replica.last_epoch)
        self.history: list[tuple[int, int]] = [(int(e), int(s)) for e, s in meta.get("history", [])]
        # The epoch this node was promoted into last (0: never). Restarted while still at
        # that epoch, it is the one node that holds all of it: it may run again by itself.
        self.led_epoch = int(meta.get("led_epoch", 0))
        self.role = wire.ROLE_STANDBY
        self.leader = ""
        self.want_primary = start_role == "primary"
        self.followed_epoch = -1  # epoch in which we last followed a primary (may run for promotion)
        self.last_heard: dict[str, float] = {p: NEVER for p in self.peers}
        self.suspect_at: dict[str, float] = {p: NEVER for p in self.peers}
        self.peer_info: dict[str, wire.Heartbeat] = {}
        self.hb_sent_at = NEVER
        self.candidate_since: float | None = None
        self.vote_sent_at = NEVER
        self.votes_refused = 0  # refusals in the current candidacy (the first few are re-asked soon)
        self.promotion_ms: float | None = None  # last promotion: decision -> serving (set by the driver)
        self.candidacy_ms: float | None = (
            None  # last promotion: candidacy start -> decision (vote round trip)
        )
        self.diverged_at = 0
        self.last_snapshot_seq = self.replica.seq
        # Client requests that reached us while we ran for primary: served if we
        # promote (the first replies need no client re-send), refused otherwise.
        self.held: deque = deque()
        self._reset_primary_state()
        self._reset_standby_state()
        if self.damaged:
            self.announce_damage()
        log.info(
            "node_start node=%s epoch=%d last_seq=%d digest=%016x start_role=%s",
            name,
            self.epoch,
            self.replica.seq,
            self.replica.digest,
            start_role,
        )

    # -- small helpers --------------------------------------------------------------

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def save_meta(self) -> None:
        self.history = self.trimmed_history()
        meta = {"epoch": self.epoch, "history": [list(h) for h in self.history], "led_epoch": self.led_epoch}
        if self.damaged:
            meta["damaged"] = self.damaged  # until repaired: a crash mid-repair comes back damaged
        self.journal.save_meta(meta)

    def trimmed_history(self) -> list[tuple[int, int]]:
        """The epoch history from the epoch holding our journal's first entry (``base_seq + 1``) on.

        Older epochs ended inside what a snapshot covers: a joiner whose last
        entry is there is caught up by snapshot whatever it shares with us
        (``common_prefix``), so they are not kept, and the metadata stays
        bounded by the epochs the journal spans. O(epochs kept)."""
        h, base = self.history, self.journal.base_seq
        k = 0
        while k + 1 < len(h) and h[k + 1][1] <= base + 1:
            k += 1
        return h[k:] if k else h

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            log.info("epoch_change node=%s from=%d to=%d", self.name, self.epoch, epoch)
            self.epoch = epoch
            self.save_meta()

    def note_epoch_start(self, epoch: int, first_seq: int) -> None:
        self.history.append((epoch, first_seq))
        self.save_meta()

    def maybe_snapshot(self) -> list:
        every = self.settings.snapshot_every
        if every and self.replica.seq - self.last_snapshot_seq >= every:
            self.journal.save_snapshot(self.replica.seq, self.replica.last_epoch, self.replica.snapshot())
            self.last_snapshot_seq = self.replica.seq
            self.count("snapshots_saved")
            if self.settings.journal_retain >= 0:
                # Bounded disk: whole old segments go (a rename and a few unlinks, no copy).
                dropped = self.journal.compact(self.replica.seq - self.settings.journal_retain)
                self.count("journal_entries_compacted", dropped)
        return []

    def heartbeat(self) -> wire.Heartbeat:
        # A draining primary names its switchover target as leader: that is how the
        # witness knows which candidate the handover is for (``WitnessMachine.on_vote_request``).
        return wire.Heartbeat(
            self.epoch,
            self.replica.seq,
            self.name,
            self.role,
            self.commit,
            self.drain_target if self.role == wire.ROLE_DRAINING else self.leader,
            self.replica.digest,
            self.isr_confirmed if self.is_primary else (),
            self.replica.last_epoch,
        )

    def heartbeat_to(self, dest: wire.Address) -> Send:
        return Send(dest, self.heartbeat())

    @property
    def is_primary(self) -> bool:
        return self.role in (wire.ROLE_PRIMARY, wire.ROLE_DRAINING)

    # -- the sans-IO interface -----------------------------------------------------

    def handle(self, src: wire.Address, msg: wire.Message, now: float) -> list:
        """Feed one inbound message; return outputs to perform in order."""
        if self.journal_error:
            return self.failed_answer(src, msg)
        if isinstance(src, str) and src in self.last_heard:
            self.last_heard[src] = now
        handler = self._handlers.get(type(msg))
        if handler is None:
            self.count("unexpected_messages")
            return []
        try:
            return handler(src, msg, now)
        except JournalFault as exc:
            return self.on_journal_fault(exc)

    def handle_requests(self, src: wire.Address, requests: tuple | list, now: float) -> list:
        """Feed a client's ``wire.Requests`` bundle: its ``wire.Request`` messages, in order.

        The outputs, their order and the resulting state are exactly those of
        ``handle(src, r, now)`` for each request in turn; on a primary the
        common case takes a batch path (``SequencerMixin.on_requests``).
        O(len(requests)).
        """
        if not requests:
            return []
        if self.role != wire.ROLE_PRIMARY or isinstance(src, str) or not self.lease_held(now):
            # Refusals, holds (a standby), peers' addresses, no lease: one request at a time.
            handle = self.handle
            out: list = []
            for r in requests:
                out += handle(src, r, now)
            return out
        try:
            return self.on_requests(src, requests, now)
        except JournalFault as exc:
            return self.on_journal_fault(exc)

    def _dispatch_table(self) -> dict:
        """Message type -> bound handler ``(src, msg, now) -> outputs``."""
        return {
            wire.Request: self.on_request,
            wire.Ack: self.on_ack,
            wire.Entries: self.on_entries,
            wire.Heartbeat: self.on_heartbeat,
            wire.Join: self.on_join,
            wire.Refill: self.on_refill,
            wire.Fence: self.on_fence,
            wire.SnapshotChunk: self.on_snapshot_chunk,
            wire.Vote: lambda src, m, now: self.on_vote(m, now),
            wire.IsrAck: lambda src, m, now: self.on_isr_ack(m, now),
            wire.PeerDown: self.on_peer_down,
            wire.StatusRequest: lambda src, m, now: [Send(src, self.status_message())],
            wire.Switchover: self.on_switchover,
            wire.Handover: self.on_handover,
            wire.Promote: self.on_promote,
            wire.Lease: self.on_lease,
        }

    def on_peer_down(self, src: wire.Address, m: wire.PeerDown, now: float) -> list:
        """The driver saw our connection to ``m.node`` drop: suspect it (see ``leader_dead``)."""
        if m.node in self.suspect_at:
            self.suspect_at[m.node] = now
            self.count("peer_down_hints")
        return []

    def tick(self, now: float) -> list:
        """Timers and queued work: sequence pending requests, detect failures, heartbeat."""
        if self.journal_error:
            return []  # silent, as a crashed node (journal_health)
        try:
            return self._tick(now)
        except JournalFault as exc:
            return self.on_journal_fault(exc)

    def _tick(self, now: float) -> list:
        if self.ticked_at is None:
            self.standby_since = now  # every node starts as a standby
            self.promise_lease_from_start(now)
        self.ticked_at = now
        out: list = []
        if self.pending:
            out += self.sequence_pending(now)
        if self.is_primary:
            out += self.check_drain(now)
            out += self.check_isr(now)
        else:
            out += self.standby_tick(now)
            out += self.check_leader(now)
            out += self.operator_tick(now)  # an operator's promote waiting for the witness
        if now - self.hb_sent_at >= self.settings.heartbeat_interval:
            self.hb_sent_at = now
            if self.damaged and not self.leader:
                return out  # a damaged node is down to the group until a primary takes it back
            hb = self.heartbeat()
            out += [Send(p, hb) for p in self.peers]
            if self.witness:
                out.append(Send(self.witness, hb))
            if self.is_primary:
                out += self.lease_asks(now)
        return out

    # -- when tick() next has work: the driver sleeps until then -----------------------

    ticked_at: float | None = None  # ``now`` of the last tick (None: never ticked)
    # When the node last became a standby: its first tick (it starts as one), or when it
    # stepped down or handed over as a primary.
    standby_since: float = NEVER

    def idle_wait(self, now: float | None = None) -> float:
        """Seconds the driver may wait for a message before the next ``tick``.

        Messages wake the driver at once; this covers what ``tick`` does on its
        own, in every role: see :meth:`timer_due`. ``now`` defaults to the last
        tick's (the driver calls this right after a pass, without a clock). 0
        when something is due or queued, or before the first tick.

        The wait is rounded *up* to whole milliseconds and capped at
        ``IDLE_CAP``: the driver's poll counts whole milliseconds and truncates,
        so 2.4 ms would wake at 2 ms, find nothing due, and spin the rest. A
        timer thus fires less than 1 ms after it is due (plus the time the
        pass took after its tick), as with a fixed 1 ms poll. O(peers).
        """
        if now is None:
            now = self.ticked_at
            if now is None:
                return 0.0
        wait = self.timer_due(now) - now
        if wait <= 0.0:
            return 0.0
        # (k / 1000.0 * 1000.0 == k for every k <= 50: the driver gets k ms exactly. The 1e-6
        # lets a due time a float rounding past a whole millisecond count as on it.)
        return math.ceil(min(wait, IDLE_CAP) * 1000.0 - 1e-6) / 1000.0

    def timer_due(self, now: float) -> float:
        """The earliest time at which ``tick`` acts on its own; ``<= now`` means at once.

        Exact, not rounded: for every ``t`` in ``[now, timer_due(now))``,
        ``tick(t)`` returns nothing and changes no state (but ``ticked_at``),
        provided no message arrives meanwhile (``tests/protocol/test_node_idle_wait.py`` checks that
        ticking only then gives the very outputs and states ticking every
        0.1 ms does). Covers the heartbeat, queued requests, and the role's
        timers: ``primary_due`` (switchover drain, in-sync set), or
        ``standby_due`` (handover re-send, Join retry, refill re-ask) and
        ``_leader_due`` (leader silence, disconnect grace, vote retries, held
        requests). O(peers).
        """
        if self.journal_error:
            return INF  # tick does nothing any more
        if self.pending and self.role in (wire.ROLE_PRIMARY, wire.ROLE_DRAINING) and self.lease_held(now):
            return now  # the next batch (without the lease, only a message can renew it)
        due = self.hb_sent_at + self.settings.heartbeat_interval
        if self.is_primary:
            return min(due, self.primary_due(now))
        return min(due, self.standby_due(now), self._leader_due(now), self.operator_due())

    def _leader_due(self, now: float) -> float:
        """When :meth:`check_leader` next acts on its own; mirrors it branch by branch."""
        if self.role != wire.ROLE_STANDBY:
            return INF
        if self.damaged:
            return now if self.held else INF
        if not self.leader:
            start = self.want_primary and self.followed_epoch != self.epoch
            if (
                start
                or self._followers_waiting(now)
                or (self.led_epoch == self.epoch > 0 and self.followed_epoch != self.epoch)
            ):
                return self._candidacy_due(now, start)
        unled = self._unled_due()
        if unled <= now:
            return self._candidacy_due(now, False)
        if not self.leader:
            return min(unled, now if self.held and not self._may_hold() else INF)
        dead = self.leader_dead(now)
        if self.followed_epoch == self.epoch and dead:
            due = self._candidacy_due(now, False)
            if self.held:
                due = min(due, self.held[0][2] + self.settings.heartbeat_timeout)  # refused after (>)
            return due
        if (self.candidate_since is not None and not dead and not self._handed_over_to_us()) or (
            self.held and not self._may_hold()
        ):
            return now  # candidacy dropped, held requests refused
        if self.followed_epoch != self.epoch:
            return unled  # no leader timer until we follow this epoch's leader
        return self._leader_dead_at()

    def _candidacy_due(self, now: float, start: bool) -> float:
        """When :meth:`run_for_primary` next acts: starts the candidacy, or (re-)asks the witness."""
        if self.candidate_since is None:
            return now
        if not self.witness:
            return now if start and not self.peers else INF  # a group of one promotes at once
        # After a refusal on_vote moved vote_sent_at back: this is vote_retry_refused then.
        due = self.vote_sent_at + self.settings.vote_retry
        return max(due, self.lease_promised) if self.settings.mode == "async" else due

    def _leader_dead_at(self) -> float:
        """The earliest time at which :meth:`leader_dead` holds, as things stand."""
        heard = self.last_heard.get(self.leader, NEVER)
        due = heard + self.settings.heartbeat_timeout  # silence (>: counts from just after)
        down = self.suspect_at.get(self.leader, NEVER)
        if down >= heard:
            due = min(due, down + self.settings.suspect_timeout)  # the connection dropped
        return due

    # -- heartbeats and failure detection ---------------------------------------------

    def on_heartbeat(self, src: wire.Address, hb: wire.Heartbeat, now: float) -> list:
        if not isinstance(src, str):
            return []
        self.peer_info[src] = hb
        if hb.epoch > self.epoch:
            leader = src if hb.role in (wire.ROLE_PRIMARY, wire.ROLE_DRAINING) else hb.leader
            if self.is_primary:
                return self.step_down(leader, hb.epoch, now)
            if self.role == wire.ROLE_STANDBY and leader and leader != self.name:
                self.want_primary = False
                if self.handover_proven(src, hb):
                    return self.resume_after_handover(src, hb, now)
                return self.follow(leader, hb.epoch, now)
            return []
        if (
            self.is_primary
            and hb.role == wire.ROLE_STANDBY
            and hb.leader == self.name
            and hb.epoch == self.epoch
        ):
            # A heartbeat is also an ack (lost acks must not stall sync replies),
            # trusted only if its digest proves the standby's history is ours.
            # (At our own seq our digest proves it too: that entry may be inside a snapshot we
            # installed, not in our journal, and without new orders no Ack would ever come.)
            mine = self.journal.entry(hb.seq)
            proven = (mine is not None and mine.digest == hb.digest) or (
                hb.seq == self.replica.seq and hb.digest == self.replica.digest
            )
            if proven and hb.seq > self.acked.get(src, -1):
                return self.on_ack(src, wire.Ack(hb.epoch, hb.seq, src, hb.digest), now)
            return []
        if hb.epoch < self.epoch:
            # A node from an older epoch: tell it the news (it fences itself on our heartbeat).
            return [self.heartbeat_to(src)] if hb.role in (wire.ROLE_PRIMARY, wire.ROLE_DRAINING) else []
        if hb.role in (wire.ROLE_PRIMARY, wire.ROLE_DRAINING):
            if self.is_primary:
                if src != self.name:
                    self.count("same_epoch_primaries")
                    log.error("two_primaries node=%s other=%s epoch=%d", self.name, src, self.epoch)
                return []
            if self.role != wire.ROLE_STANDBY:
                return []
            self.want_primary = False
            if src != self.leader:
                return self.follow(src, hb.epoch, now)
            self.leader_seq = max(self.leader_seq, hb.seq)
            self.leader_commit = max(self.leader_commit, hb.commit)
        return []

    def leader_dead(self, now: float) -> bool:
        heard = self.last_heard.get(self.leader, NEVER)
        if now - heard > self.settings.heartbeat_timeout:
            return True
        down = self.suspect_at.get(self.leader, NEVER)
        return down >= heard and now - down >= self.settings.suspect_timeout

    def check_leader(self, now: float) -> list:
        """Standby: run for promotion when the leader we followed this epoch is gone."""
        if self.role != wire.ROLE_STANDBY:
            return []
        if self.damaged:
            return self.refuse_held() if self.held else []  # never a candidate (journal_health)
        if self.want_primary and self.followed_epoch != self.epoch and not self.leader:
            return self.run_for_primary(now, "start")
        if not self.leader and self._followers_waiting(now):
            # We were this epoch's primary (crashed, restarted as a standby) and live
            # standbys still follow us: nobody else may hold our epoch's history.
            return self.run_for_primary(now, "followers_waiting")
        if not self.leader and self.led_epoch == self.epoch > 0 and self.followed_epoch != self.epoch:
            # We were this epoch's primary and restarted (say the whole group did, with
            # us started as a standby): ask. The witness refuses while a primary lives,
            # and a newer epoch's heartbeat makes us follow it instead.
            return self.run_for_primary(now, "restarted_last_primary")
        if self._unled_due() <= now:
            # We follow nobody in our epoch, and no node has claimed to lead it (or a later
            # one) for a heartbeat timeout: say we stepped down to an epoch whose primary
            # then restarted as a standby. Ask; the witness decides (and refuses while a
            # primary lives, or a node that holds more may take over).
            return self.run_for_primary(now, "leaderless")
        if not self.leader or self.followed_epoch != self.epoch or not self.leader_dead(now):
            if (
                self.candidate_since is not None
                and self.leader
                and not self.leader_dead(now)
                and not self._handed_over_to_us()
            ):
                log.info("candidacy_dropped node=%s leader=%s is back", self.name, self.leader)
                self.candidate_since = None
            return self.refuse_held() if self.held and not self._may_hold() else []
        out = self.run_for_primary(now, "primary_lost")
        if self.held and now - self.held[0][2] > self.settings.heartbeat_timeout:
            out += self.refuse_held()  # a long candidacy: let the clients look elsewhere
        return out

    def _unled_due(self) -> float:
        """When a standby that follows nobody in its epoch may run for primary (INF: it does follow).

        A heartbeat timeout after the latest of: it last heard a node claim to lead its
        epoch or a later one; it became a standby (started, stepped down, handed over);
        after a handover, it last heard its target (which asks the witness meanwhile). Never in
        epoch 0 (a new group waits for the node started as primary). O(peers).
        """
        if self.epoch == 0 or self.followed_epoch == self.epoch:
            return INF
        last = self.standby_since
        if self.handover is not None:  # our switchover's target: not while it is alive (it asks)
            last = max(last, self.last_heard.get(self.handover[0], NEVER))
        for p in self.peers:  # list order: deterministic
            hb = self.peer_info.get(p)
            if (
                hb is not None
                and hb.epoch >= self.epoch
                and hb.role in (wire.ROLE_PRIMARY, wire.ROLE_DRAINING)
            ):
                last = max(last, self.last_heard.get(p, NEVER))
        return last + self.settings.heartbeat_timeout

    def _suspecting(self) -> bool:
        """Our leader's connection dropped and we have not heard from it since."""
        return bool(self.leader) and self.suspect_at.get(self.leader, NEVER) >= self.last_heard.get(
            self.leader, NEVER
        )

    def _may_hold(self) -> bool:
        """Running for primary, suspecting the leader, or the leader hands over to us (switchover)."""
        return self.candidate_since is not None or self._suspecting() or self._handed_over_to_us()

    def _handed_over_to_us(self) -> bool:
        """Our leader drains into us, or has handed over and follows us, in our epoch.

        Its heartbeat says so (a draining primary names its target as leader). Our
        candidacy then waits for the witness's grant with the leader alive, as it should.
        """
        hb = self.peer_info.get(self.leader) if self.leader else None
        return (
            hb is not None
            and hb.epoch == self.epoch
            and hb.leader == self.name
            and hb.role in (wire.ROLE_DRAINING, wire.ROLE_STANDBY)
        )

    def hold_request(self, src: wire.Address, m: wire.Request, now: float) -> bool:
        """While running for primary (or suspecting the leader), keep a client request to serve it once promoted."""
        if len(self.held) >= 4 * self.settings.max_batch:
            return False
        if not self._may_hold():
            return False
        self.held.append((src, m, now))
        self.count("requests_held")
        return True

    def refuse_held(self) -> list:
        out = []
        while self.held:
            src, m, _ = self.held.popleft()
            self.count("requests_refused")
            out.append(
                Send(src, wire.Reply(m.client_id, m.request_id, wire.NOT_PRIMARY, self.epoch, 0, self.leader))
            )
        return out

    def _followers_waiting(self, now: float) -> bool:
        for p in self.peers:  # list order: deterministic
            hb = self.peer_info.get(p)
            if (
                hb is not None
                and hb.role == wire.ROLE_STANDBY
                and hb.leader == self.name
                and hb.epoch == self.epoch
                and now - self.last_heard.get(p, NEVER) <= self.settings.heartbeat_timeout
            ):
                return True
        return False

    def run_for_primary(self, now: float, reason: str) -> list:
        if self.candidate_since is None:
            self.candidate_since = now
            self.votes_refused = 0
            log.warning(
                "candidate node=%s reason=%s leader=%s epoch=%d last_seq=%d",
                self.name,
                reason,
                self.leader,
                self.epoch,
                self.replica.seq,
            )
        if not self.witness:
            # No tie-breaker: a group of one may start alone; a standby waits for the operator.
            return self.promote(now, "no_witness") if reason == "start" and not self.peers else []
        if now - self.vote_sent_at < self.settings.vote_retry or self.lease_promise_open(now):
            return []  # (a lease we echoed may still let the primary acknowledge: no vote before)
        self.vote_sent_at = now
        return [
            Send(
                self.witness,
                wire.VoteRequest(self.epoch + 1, self.replica.seq, self.name, self.replica.last_epoch),
            )
        ]

    def on_vote(self, m: wire.Vote, now: float) -> list:
        if m.operator and not m.granted:
            self.on_operator_vote(m)  # our operator's ask, refused (operator_promote)
            return []
        if not m.granted:
            self.count("votes_denied")
            if m.node == self.name and self.candidate_since is not None and m.epoch == self.epoch + 1:
                self.votes_refused += 1
                if self.votes_refused <= QUICK_VOTE_RETRIES:
                    # Ask again soon rather than after a whole vote_retry (see Settings.vote_retry_refused).
                    soon = now - self.settings.vote_retry + self.settings.vote_retry_refused
                    self.vote_sent_at = min(self.vote_sent_at, soon)
            return []
        if m.node != self.name or m.epoch != self.epoch + 1 or self.role != wire.ROLE_STANDBY:
            return []
        if self.lease_promise_open(now):
            # The old primary may still acknowledge under a lease we echoed: not yet. The witness
            # re-sends the grant on our heartbeats (it holds the epoch for us).
            self.count("votes_deferred_by_lease")
            self.grant_deferred = max(self.grant_deferred, m.epoch)  # no more echoes (lease.on_lease)
            if self.operator_ask is not None:
                self.operator_ask.granted = True  # the operator waits for this promotion, not the witness
            return []
        # Honour a grant even if we meanwhile dropped the candidacy (the old primary
        # came back): the witness has moved to this epoch and will not serve the old
        # primary's ISR changes any more, so declining would leave the group stuck.
        return self.promote(now, "witness", m.isr)

    # -- role changes ---------------------------------------------------------------------

    def promote(self, now: float, reason: str, isr: tuple[str, ...] | None = None) -> list:
        """Become primary of a new epoch and serve at once from the hot book.

        ``isr``: the in-sync set the witness recorded with its grant (None: every other node).
        """
        if self.role != wire.ROLE_STANDBY:
            return []
        old_leader = self.leader
        decided = self.candidate_since if self.candidate_since is not None else now
        log.info("epoch_change node=%s from=%d to=%d", self.name, self.epoch, self.epoch + 1)
        self.epoch += 1
        self.history.append((self.epoch, self.replica.seq + 1))
        self.led_epoch = self.epoch
        self.save_meta()  # one durable write (epoch and history) on the promotion's critical path
        self.role = wire.ROLE_PRIMARY
        self.leader = self.name
        self.want_primary = False
        self.candidate_since = None
        self._reset_primary_state()
        self._reset_standby_state()
        self.lease_promised = NEVER  # our own epoch now: our promises were to the old primary
        if isr is not None:
            self.isr = [p for p in self.peers if p in isr]
            self.isr_confirmed = self.isr_proposed = tuple(self.isr)
            self.recompute_commit()
        # The vote round trip (0 for a handover or an operator promote). The decision ->
        # serving time needs a clock: the driver measures it around the promoting pass
        # (durable epoch record, new-epoch heartbeats sent) and sets promotion_ms.
        self.candidacy_ms = (now - decided) * 1000.0
        self.promotion_ms = 0.0
        self.count("promotions")
        log.warning(
            "role_change node=%s role=primary epoch=%d reason=%s last_seq=%d digest=%016x "
            "old_leader=%s candidacy_ms=%.3f",
            self.name,
            self.epoch,
            reason,
            self.replica.seq,
            self.replica.digest,
            old_leader,
            self.candidacy_ms,
        )
        hb = self.heartbeat()
        self.hb_sent_at = now
        out = [Send(p, hb) for p in self.peers]
        if self.witness:
            out.append(Send(self.witness, hb))
        out += self.lease_asks(now)  # async: what we hold is sequenced once the first echo is back
        held, self.held = self.held, deque()
        for src, m, _ in held:  # queued for the next tick's batch (or answered from the dedupe table)
            out += self.on_request(src, m, now)
        return out + self.answer_operator()

    def step_down(self, leader: str, epoch: int, now: float) -> list:
        """A higher epoch exists: stop serving, refuse what waited, rejoin as a standby (fenced)."""
        log.warning(
            "role_change node=%s role=standby epoch=%d new_epoch=%d new_leader=%s last_seq=%d (fenced)",
            self.name,
            self.epoch,
            epoch,
            leader,
            self.replica.seq,
        )
        self.count("step_downs")
        out = []
        for _, dest, r, _ in self.waiting:
            out.append(Send(dest, wire.Reply(r.client_id, r.request_id, wire.NOT_PRIMARY, epoch, 0, leader)))
        for src, m in self.pending:
            out.append(Send(src, wire.Reply(m.client_id, m.request_id, wire.NOT_PRIMARY, epoch, 0, leader)))
        self.set_epoch(max(epoch, self.epoch))
        return out + self.become_standby(leader, epoch, now)

    def become_standby(self, leader: str, epoch: int, now: float) -> list:
        self.role = wire.ROLE_STANDBY
        self.standby_since = now
        self._reset_primary_state()
        self._reset_standby_state()
        self.leader = ""
        self.want_primary = False
        if not leader or leader == self.name:
            return []
        return self.follow(leader, epoch, now)

    def on_handover(self, src: wire.Address, m: wire.Handover, now: float) -> list:
        """Switchover target: the old primary drained into us; take over with the next epoch."""
        if (
            self.role != wire.ROLE_STANDBY
            or m.epoch != self.epoch
            or m.seq != self.replica.seq
            or self.damaged
        ):
            log.warning(
                "handover_refused node=%s from=%s their=(%d,%d) mine=(%d,%d)",
                self.name,
                m.node,
                m.epoch,
                m.seq,
                self.epoch,
                self.replica.seq,
            )
            return []
        if src == self.leader:
            self.lease_promised = NEVER  # the primary we echoed stopped acknowledging: it handed over
        if not self.witness:
            self.candidate_since = now
            return self.promote(now, "switchover")
        # With a witness, the next epoch is the witness's to give, even for a handover:
        # promoting by ourselves would take an epoch number the witness has not heard of,
        # which it could then grant again (say to the old primary, restarted after a crash,
        # while we are cut off). The witness grants a handover's target at once (the
        # draining primary's heartbeat names us); the old primary re-sends its Handover
        # until we serve, and each one re-asks.
        self.vote_sent_at = NEVER
        return self.run_for_primary(now, "handover")

    # -- status -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What ``matchcore status`` prints for this node."""
        if self.is_primary:
            best = max((self.acked.get(p, 0) for p in self.peers), default=self.replica.seq)
            lag = self.replica.seq - best
        else:
            lag = max(0, self.leader_seq - self.replica.seq)
        return {
            "node": self.name,
            "role": wire.ROLE_NAMES[self.role],
            "epoch": self.epoch,
            "last_seq": self.replica.seq,
            "digest": f"{self.replica.digest:016x}",
            "commit": self.commit if self.is_primary else self.leader_commit,
            "leader": self.leader,
            "lag": lag,
            "mode": self.settings.mode,
            "solo": self.solo,
            "isr": list(self.isr_confirmed) if self.is_primary else [],
            "witness_solo": self.solo,  # kept for tools written before the ISR: same as "solo"
            "joined": self.joined,
            "promotion_ms": self.promotion_ms,
            "candidacy_ms": self.candidacy_ms,
            "epoch_start_seq": self.history[-1][1] if self.history else 1,
            "diverged_at": self.diverged_at,
            "error": self.journal_error,
            "damaged": self.damaged,
            "lease": self.lease_status(self.ticked_at),
            "counters": dict(sorted(self.counters.items())),
        }

    def status_message(self) -> wire.Status:
        return wire.Status(json.dumps(self.status(), sort_keys=True).encode())

    def invariants(self) -> None:
        """Raise AssertionError if a rule of this node is broken. For the simulator and tests, not production.

        The book never runs ahead of a healthy journal (a diverged node's book
        stops at the bad entry it refused to journal). Not an invariant, though
        tempting: "the book's last epoch is at most the node's" (simulator seed
        821, async, overlapping faults: a node at epoch 1 held an epoch-3 entry
        for a few steps). O(1).
        """
        r, j = self.replica, self.journal
        healthy = not (self.journal_error or self.damaged) and self.role != wire.ROLE_DIVERGED
        if healthy and r.seq > j.last_seq:
            raise AssertionError(f"{self.name}: replica at seq {r.seq}, journal at {j.last_seq}")
