"""``NodeMachine``: one replication node as a sans-IO state machine, and its role changes.

For: everything a node does whatever its role — recovering its replica from
the journal, heartbeats both ways, promoting (bump epoch, serve at once from
the hot book), stepping down when a higher epoch shows up (fencing),
switchover hand-over on the target side, diverging — and dispatching each
message to its role or component.
Not for: sockets or clocks: see the package docstring for the
``handle(src, msg, now)`` / ``tick(now)`` interface.

The node holds the state every role shares (epoch, history, journal,
replica, peers and what it heard of them, settings, counters, its timers),
the components that outlive role changes — ``candidacy`` (is the leader
dead; running for primary), ``lease_promise`` (a standby's async lease
promise), ``operator_promote`` (an operator's promote waiting for the
witness), ``journal_health`` (a failed or damaged journal) — and one role
object at a time, ``current_role``: ``PrimaryRole`` (primary, or draining
into a switchover target), ``StandbyRole`` (following a leader, or looking
for one) or ``DivergedRole`` (terminal: the book is wrong; never serves,
never promotes). Each role and component owns its state and reads the
shared state through the node; a role change builds the next role
(``_enter``) from what the last one hands over, here. ``handle`` looks the
message type up in one table: the node's handlers, overlaid by the current
role's (``handlers()``), rebuilt at each role change.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from itertools import pairwise
from typing import Any

from .. import wire
from ..group_time import Clock, virtual_clock
from ..journal_api import JournalFault
from ..replica import Replica, default_engine_factory, recover
from ..settings import Settings
from ..timers import Timers
from ..wire import Send
from .candidacy import Candidacy
from .journal_health import JournalHealth
from .lease import LeasePromise
from .operator_promote import OperatorPromote
from .primary import DRAIN, PrimaryRole
from .records import PendingHandover
from .service import not_primary
from .standby import HANDOVER, JOIN, DivergedRole, StandbyRole
from .status import report

log = logging.getLogger("replication.failover")

NEVER = float("-inf")
IDLE_CAP = 0.05  # idle_wait never exceeds this (seconds)
ENTITLEMENT_CHECKS = 65536  # deferred entitlement checks kept (see NodeMachine.defer_entitlement)
HEARTBEAT = "heartbeat"  # the node's timers (the roles name their own)
INF = float("inf")


def _ignore(src: wire.Address, m: wire.Message, now: float) -> list:
    """A message this role takes no action on."""
    return []


class NodeMachine:
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
    clock : callable
        ``clock(now)`` -> the group's time in int64 nanoseconds, read once per batch the node
        sequences as primary and stamped into its commands' ``ts`` (``group_time``). The
        driver passes the wall clock; the default, the machine's own ``now`` in nanoseconds,
        keeps a machine deterministic (the tests, the simulator's virtual time).
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
        clock: Clock = virtual_clock,
    ) -> None:
        self.name = name
        self.clock = clock
        self.peers = [p for p in peers if p != name]
        self.journal = journal
        self.settings = settings or Settings()
        self.witness = witness
        self.engine_factory = engine_factory
        self.perturb_seq = perturb_seq
        self.counters: dict[str, int] = {}
        # The node's components: each owns its state, and outlives role changes.
        self.journal_health = JournalHealth(self)  # a failed or damaged journal
        self.lease_promise = LeasePromise(self)  # a standby's promise not to help a newer epoch
        self.operator_promote = OperatorPromote(self)  # an operator's promote waiting for the witness
        self.lease_stamp = 0  # the last lease ask's stamp (grows for the node's life, across epochs)
        self._node_handlers = self._dispatch_table()
        meta = journal.load_meta()
        self.replica = self.journal_health.open_replica(meta)  # empty if the journal is damaged
        self.epoch = max(int(meta.get("epoch", 0)), self.replica.last_epoch)
        self.history: list[tuple[int, int]] = [(int(e), int(s)) for e, s in meta.get("history", [])]
        # The epoch this node was promoted into last (0: never). Restarted while still at
        # that epoch, it is the one node that holds all of it: it may run again by itself.
        self.led_epoch = int(meta.get("led_epoch", 0))
        self.leader = ""
        self.want_primary = start_role == "primary"
        self.followed_epoch = -1  # epoch in which we last followed a primary (may run for promotion)
        self.last_heard: dict[str, float] = {p: NEVER for p in self.peers}
        self.suspect_at: dict[str, float] = {p: NEVER for p in self.peers}
        self.peer_info: dict[str, wire.Heartbeat] = {}
        self.hb_sent_at = NEVER
        # The node's own timers: the heartbeat, an operator's promote waiting for the witness
        # (each role holds its own: ``current_role.timers``).
        # (client id, request id) -> the accounts of its restricted client: a cancel or replace
        # whose order was unknown when screened, checked again when sequenced (``entitlement``).
        self.entitlement_checks: dict[tuple[int, int], frozenset[int]] = {}
        self.timers = Timers()
        self.timers.arm(HEARTBEAT, self.hb_sent_at + self.settings.heartbeat_interval)
        self.message_since_tick = False  # (then the timers are re-armed by the next tick: it comes first)
        self.candidacy = Candidacy(self)  # the leader's health, and running for primary
        self.promotion_ms: float | None = None  # last promotion: decision -> serving (set by the driver)
        self.candidacy_ms: float | None = (
            None  # last promotion: candidacy start -> decision (vote round trip)
        )
        self.diverged_at = 0
        self.last_snapshot_seq = self.replica.seq
        self.current_role: PrimaryRole | StandbyRole | DivergedRole
        self._enter(StandbyRole(self))  # every node starts as a standby
        if self.damaged:
            self.journal_health.announce_damage()
        log.info(
            "node_start node=%s epoch=%d last_seq=%d digest=%016x start_role=%s",
            name,
            self.epoch,
            self.replica.seq,
            self.replica.digest,
            start_role,
        )

    # -- the role -------------------------------------------------------------------

    def defer_entitlement(self, keys: list[tuple[int, int]], accounts: frozenset[int]) -> None:
        """Requests ``keys`` (client id, request id) of a client restricted to ``accounts`` are
        cancels or replaces of an order unknown when screened: check them again when sequenced.

        Bounded: past ``ENTITLEMENT_CHECKS`` a primary forgets the checks of requests it no
        longer holds (sequenced or refused: a re-sent copy is screened again on arrival), any
        other role its oldest half. O(1), amortised."""
        checks = self.entitlement_checks
        for key in keys:
            checks[key] = accounts
        if len(checks) > ENTITLEMENT_CHECKS:
            role = self.current_role
            if isinstance(role, PrimaryRole):
                for key in [k for k in checks if not role.pending.queued(*k)]:
                    del checks[key]
            if len(checks) > ENTITLEMENT_CHECKS // 2:
                for key in list(checks)[: len(checks) // 2]:
                    del checks[key]

    def _enter(self, role: PrimaryRole | StandbyRole | DivergedRole) -> None:
        """Make ``role`` the node's role, and its handlers the ones messages go to."""
        self.current_role = role
        self._handlers = {**self._node_handlers, **role.handlers()}

    @property
    def role(self) -> int:
        """The role as the wire says it (``wire.ROLE_PRIMARY``, ``ROLE_DRAINING``, ...)."""
        return self.current_role.code

    @property
    def is_primary(self) -> bool:
        return type(self.current_role) is PrimaryRole

    # Read-only views of the role's state, for the driver, ``status`` and the tests (a role
    # that does not have the state shows it empty).

    @property
    def pending(self):
        """The primary's queued requests (``PendingQueue``); empty off the primary."""
        role = self.current_role
        return role.pending if isinstance(role, PrimaryRole) else ()

    @property
    def waiting(self):
        """The primary's replies waiting for their commit (``ReplyQueue``); empty off the primary."""
        role = self.current_role
        return role.waiting if isinstance(role, PrimaryRole) else ()

    @property
    def acked(self) -> dict[str, int]:
        role = self.current_role
        return role.acked if isinstance(role, PrimaryRole) else {}

    @property
    def isr(self) -> list[str]:
        role = self.current_role
        return role.isr if isinstance(role, PrimaryRole) else []

    @property
    def isr_confirmed(self) -> tuple[str, ...]:
        role = self.current_role
        return role.isr_confirmed if isinstance(role, PrimaryRole) else ()

    @property
    def drain_target(self) -> str:
        role = self.current_role
        return role.drain_target if isinstance(role, PrimaryRole) else ""

    @property
    def commit(self) -> int:
        """The primary's commit; a standby's heartbeat field (its seq when it became one)."""
        return self.current_role.commit

    @property
    def joined(self) -> bool:
        return getattr(self.current_role, "joined", False)

    @property
    def future(self) -> dict:
        """A standby's reorder buffer (seq -> entry beyond a gap)."""
        return self.current_role.future if type(self.current_role) is StandbyRole else {}

    @property
    def held(self):
        """A standby's requests held while it runs for primary (``HeldRequest``s)."""
        return self.current_role.held if type(self.current_role) is StandbyRole else ()

    @property
    def solo(self) -> bool:
        """Sync mode with an empty in-sync set: replies need no ack, and no standby may be promoted."""
        role = self.current_role
        return isinstance(role, PrimaryRole) and role.solo

    def lease_held(self, now: float) -> bool:
        """May this node acknowledge at ``now`` (async: its lease runs; else always)? O(peers)."""
        role = self.current_role
        if isinstance(role, PrimaryRole):
            return role.lease.held(now)
        return not (self.settings.mode == "async" and bool(self.witness or self.peers))

    @property
    def journal_error(self) -> str:
        """Why the journal failed while running ("" : it did not; see ``journal_health``)."""
        return self.journal_health.error

    @property
    def damaged(self) -> str:
        """Why the journal is damaged ("" : it is not, or is repaired; see ``journal_health``)."""
        return self.journal_health.damaged

    @property
    def repairing(self) -> bool:
        """The damaged files were replaced: catching up with the leader."""
        return self.journal_health.repairing

    def on_journal_fault(self, exc: JournalFault) -> list:
        """A handler or a tick hit a journal fault: its outputs are gone; act on it (``journal_health``)."""
        return self.journal_health.on_journal_fault(exc)

    @property
    def candidate_since(self) -> float | None:
        """When the node's candidacy started (None: not running for primary; see ``candidacy``)."""
        return self.candidacy.since

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
            # Written in the background where the journal can (a file journal's thread): every
            # entry it covers is durable already; it only shortens a restart's replay.
            self.journal.save_snapshot_later(
                self.replica.seq, self.replica.last_epoch, self.replica.snapshot()
            )
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
            self.current_role.commit,
            self.drain_target or self.leader,
            self.replica.digest,
            self.isr_confirmed if self.is_primary else (),
            self.replica.last_epoch,
        )

    def heartbeat_to(self, dest: wire.Address) -> Send:
        return Send(dest, self.heartbeat())

    def tell_news(self, src: str, hb: wire.Heartbeat) -> list:
        """A primary of an older epoch: our heartbeat tells it the news (it fences itself on it)."""
        return [self.heartbeat_to(src)] if hb.role in (wire.ROLE_PRIMARY, wire.ROLE_DRAINING) else []

    def stale_entries(self, src: wire.Address) -> list:
        """Entries of an older epoch: its primary learns the news from our heartbeat."""
        self.count("stale_entries")
        return [self.heartbeat_to(src)] if isinstance(src, str) else []

    def rebuild(self) -> Replica:
        """The replica recovered from the journal (snapshot and tail)."""
        s = self.settings
        r = recover(
            self.journal,
            self.engine_factory,
            s.dedupe_window,
            report_window=s.report_window,
            order_window=s.order_window,
        )
        r.perturb_seq = self.perturb_seq
        return r

    def fresh_replica(self) -> Replica:
        """An empty replica with this node's settings (a damaged journal's stand-in)."""
        s = self.settings
        return Replica(
            self.engine_factory, s.dedupe_window, self.perturb_seq, s.report_window, s.order_window
        )

    # -- the sans-IO interface -----------------------------------------------------

    def handle(self, src: wire.Address, msg: wire.Message, now: float) -> list:
        """Feed one inbound message; return outputs to perform in order."""
        if self.journal_error:
            return self.journal_health.failed_answer(src, msg)
        self.message_since_tick = True
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
        common case takes a batch path (``PrimaryRole.on_requests``).
        O(len(requests)).
        """
        if not requests:
            return []
        self.message_since_tick = True
        role = self.current_role
        if (
            not isinstance(role, PrimaryRole)
            or role.code != wire.ROLE_PRIMARY
            or isinstance(src, str)
            or not role.lease.held(now)
        ):
            # Refusals, holds (a standby), peers' addresses, no lease: one request at a time.
            handle = self.handle
            out: list = []
            for r in requests:
                out += handle(src, r, now)
            return out
        try:
            return role.on_requests(src, requests, now)
        except JournalFault as exc:
            return self.on_journal_fault(exc)

    def _dispatch_table(self) -> dict:
        """Message type -> the node's handler ``(src, msg, now) -> outputs``, whatever its role.

        A role's ``handlers()`` overlay this (``_enter``); a message no role of
        ours takes in its present role is ignored (but counted as unexpected if
        no role ever takes it)."""
        ignore = _ignore
        return {
            wire.Request: ignore,  # (every role answers requests)
            wire.Ack: ignore,
            wire.Entries: ignore,
            wire.Heartbeat: self.on_heartbeat,
            wire.Join: ignore,
            wire.Refill: ignore,
            wire.Fence: ignore,
            wire.SnapshotChunk: ignore,
            wire.Vote: lambda src, m, now: self.candidacy.on_vote(m, now),
            wire.IsrAck: ignore,
            wire.PeerDown: self.on_peer_down,
            wire.StatusRequest: lambda src, m, now: [Send(src, self.status_message())],
            wire.Switchover: lambda src, m, now: [Send(src, self.status_message())],  # a primary's
            wire.Handover: self.on_handover,
            wire.Promote: self.operator_promote.on_promote,
            wire.Lease: self.lease_promise.on_ask,  # (the primary's echoes: ``PrimaryRole.handlers``)
            **not_primary(self),  # report fetches and queries (the primary's: ``PrimaryRole.handlers``)
        }

    def on_peer_down(self, src: wire.Address, m: wire.PeerDown, now: float) -> list:
        """The driver saw our connection to ``m.node`` drop: suspect it (see ``Candidacy.leader_dead``)."""
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
            self.lease_promise.from_start(now)
        self.ticked_at = now
        self.message_since_tick = False
        out: list = []
        role = self.current_role
        if type(role) is PrimaryRole:
            if role.pending:
                out += role.sequence_pending(now)
            out += role.check_drain(now)
            if self.current_role is role:  # (not handed over just now)
                out += role.time_due(now)
            if role.service.expiry:
                out += role.service.expire(now)
            if self.current_role is role:  # (not handed over just now)
                out += role.in_sync.check(now)
        else:
            if type(role) is StandbyRole:
                out += role.standby_tick(now)
                out += role.check_leader(now)
            out += self.operator_promote.tick(now)  # an operator's promote waiting for the witness
        if now - self.hb_sent_at >= self.settings.heartbeat_interval:
            self.hb_sent_at = now
            self.timers.arm(HEARTBEAT, now + self.settings.heartbeat_interval)
            if self.damaged and not self.leader:
                return out  # a damaged node is down to the group until a primary takes it back
            hb = self.heartbeat()
            out += [Send(p, hb) for p in self.peers]
            if self.witness:
                out.append(Send(self.witness, hb))
            role = self.current_role
            if isinstance(role, PrimaryRole):
                out += role.lease.asks(now)
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

        The earliest armed deadline: the node's (``timers``: heartbeat, an
        operator's promote) and its role's (``current_role.timers``: the
        primary's switchover abort and in-sync set checks; the standby's
        handover re-send, Join retry, refill re-ask and leader checks). Each is
        armed by the logic that waits for it, as it decides (see ``protocol.timers``).
        At once when requests are queued (the next batch) or a message was
        handled since the last tick (the tick that follows re-arms the timers).

        Exact, not rounded: for every ``t`` in ``[now, timer_due(now))``,
        ``tick(t)`` returns nothing and changes no state (but ``ticked_at``),
        provided no message arrives meanwhile (``tests/protocol/test_node_idle_wait.py`` checks that
        ticking only then gives the very outputs and states ticking every
        0.1 ms does). O(timers).
        """
        if self.journal_error:
            return INF  # tick does nothing any more
        role = self.current_role
        if self.message_since_tick or (type(role) is PrimaryRole and role.pending and role.lease.held(now)):
            return now  # (without the lease, only a message can renew it: no batch until then)
        return min(self.timers.earliest(), role.timers.earliest())

    # -- heartbeats and failure detection ---------------------------------------------

    def on_heartbeat(self, src: wire.Address, hb: wire.Heartbeat, now: float) -> list:
        """Remember what the peer says of itself, then the role acts on it."""
        if not isinstance(src, str):
            return []
        self.peer_info[src] = hb
        return self.current_role.on_heartbeat(src, hb, now)

    # -- role changes ---------------------------------------------------------------------

    def promote(self, now: float, reason: str, isr: tuple[str, ...] | None = None) -> list:
        """Become primary of a new epoch and serve at once from the hot book.

        ``isr``: the in-sync set the witness recorded with its grant (None: every other node).
        """
        standby = self.current_role
        if type(standby) is not StandbyRole:
            return []
        old_leader = self.leader
        decided = self.candidacy.since if self.candidacy.since is not None else now
        log.info("epoch_change node=%s from=%d to=%d", self.name, self.epoch, self.epoch + 1)
        self.epoch += 1
        self.history.append((self.epoch, self.replica.seq + 1))
        self.led_epoch = self.epoch
        self.save_meta()  # one durable write (epoch and history) on the promotion's critical path
        self.leader = self.name
        self.want_primary = False
        self.candidacy.since = None
        primary = PrimaryRole(self, isr)
        self._enter(primary)
        primary.arm_time(now)
        self.lease_promise.until = NEVER  # our own epoch now: our promises were to the old primary
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
        self.timers.arm(HEARTBEAT, now + self.settings.heartbeat_interval)
        out = [Send(p, hb) for p in self.peers]
        if self.witness:
            out.append(Send(self.witness, hb))
        out += primary.lease.asks(now)  # async: what we hold is sequenced once the first echo is back
        for h in standby.held:  # queued for the next tick's batch (or answered from the dedupe table)
            out += primary.on_request(h.src, h.request, now)
        return out + self.operator_promote.answer()

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
        out = self.current_role.refuse_all(
            lambda r: wire.Reply(r.client_id, r.request_id, wire.NOT_PRIMARY, epoch, 0, leader)
        )
        self.set_epoch(max(epoch, self.epoch))
        return out + self.become_standby(leader, epoch, now)

    def become_standby(
        self,
        leader: str,
        epoch: int,
        now: float,
        handover: PendingHandover | None = None,
        handover_replies: list | None = None,
    ) -> list:
        """Become a standby following ``leader`` of ``epoch`` ("" : nobody yet).

        After a switchover the old primary hands over the Handover it sent its
        target and the replies that wait for the target's proof."""
        self.standby_since = now
        standby = StandbyRole(self, None, handover, handover_replies)
        self._enter(standby)
        self.leader = ""
        self.want_primary = False
        if not leader or leader == self.name:
            return []
        return standby.follow(leader, epoch, now)

    def diverge(self, e: wire.Entry) -> None:
        """A digest differs at ``e``: stop for good (the held requests go with the standby: never
        served by this book; their clients time out and look elsewhere)."""
        standby = self.current_role
        assert isinstance(standby, StandbyRole), "only a standby applies entries"
        self._enter(DivergedRole(self, standby))
        self.count("divergences")
        self.diverged_at = e.seq
        log.critical(
            "DIVERGENCE node=%s seq=%d epoch=%d primary_digest=%016x local_digest=%016x: "
            "standby stops serving and will never promote with this book",
            self.name,
            e.seq,
            e.epoch,
            e.digest,
            self.replica.digest,
        )

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
            self.lease_promise.until = NEVER  # the primary we echoed stopped acknowledging: it handed over
        self.candidacy.handover_at = (m.epoch, m.seq)
        if not self.witness:
            self.candidacy.since = now
            return self.promote(now, "switchover")
        # With a witness, the next epoch is the witness's to give, even for a handover:
        # promoting by ourselves would take an epoch number the witness has not heard of,
        # which it could then grant again (say to the old primary, restarted after a crash,
        # while we are cut off). The witness grants a handover's target at once (the
        # draining primary's heartbeat names us); the old primary re-sends its Handover
        # until we serve, and each one re-asks.
        self.candidacy.vote_sent_at = NEVER
        promoted = self.candidacy.handover_vote(now)  # the witness granted it unasked (HANDOVER_GRANT)
        if promoted or self.is_primary:
            return promoted
        return self.candidacy.run(now, "handover")

    # -- status -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What ``matchcore status`` prints for this node (``status.report``)."""
        return report(self)

    def status_message(self) -> wire.Status:
        return wire.Status(json.dumps(self.status(), sort_keys=True).encode())

    # -- invariants (tests and the simulator; never on the production path) ---------------

    def invariants(self) -> None:
        """Check what must hold of this node's state after every step; AssertionError if not.

        For the simulator (after each step) and the tests: O(state), never called
        by ``handle`` or ``tick``."""
        who = f"node {self.name} ({wire.ROLE_NAMES.get(self.role, self.role)}, epoch {self.epoch})"
        r = self.replica
        assert self.role in wire.ROLE_NAMES, f"{who}: unknown role {self.role!r}"
        # Not an invariant, though tempting: "the book's last epoch is at most the node's" (simulator
        # seed 821, async, overlapping faults: a node at epoch 1 held an epoch-3 entry for a few steps).
        if not self.damaged and not self.journal_error and self.role != wire.ROLE_DIVERGED:
            # (a diverged book applied the entry whose digest did not match; the journal did not)
            assert r.seq == self.journal.last_seq, (
                f"{who}: replica at seq {r.seq}, journal at {self.journal.last_seq}"
            )
        hist = self.history
        assert all(a[0] < b[0] and a[1] <= b[1] for a, b in pairwise(hist)), (
            f"{who}: history {hist} unordered"
        )
        role = self.current_role
        assert self._handlers[wire.Request] == role.handlers()[wire.Request], f"{who}: stale handler table"
        if type(role) is PrimaryRole:
            assert not self.journal_error and not self.damaged, f"{who}: serves with a bad journal"
            assert self.leader == self.name, f"{who}: primary names {self.leader!r} as leader"
            assert self.led_epoch == self.epoch and hist and hist[-1][0] == self.epoch, (
                f"{who}: primary of an epoch it did not start (led {self.led_epoch}, history {hist[-1:]})"
            )
            assert self.candidate_since is None, f"{who}: a primary runs for primary"
            assert 0 <= role.commit <= r.seq, f"{who}: commit {role.commit} past seq {r.seq}"
            assert all(0 <= a <= r.seq for a in role.acked.values()), (
                f"{who}: acks {role.acked} past seq {r.seq}"
            )
            assert set(role.isr) <= set(self.peers), f"{who}: in-sync set {role.isr} not of peers"
            assert set(role.isr_confirmed) <= set(self.peers), f"{who}: confirmed set {role.isr_confirmed}"
            assert not role.drain_target or role.drain_target in self.peers, (
                f"{who}: drains into {role.drain_target}"
            )
            assert bool(role.drain_target) == (DRAIN in role.timers.armed()), f"{who}: drain timer"
            role.service.invariants(who)
            stamps = [a.stamp for a in role.lease.sent]
            assert stamps == list(range(stamps[0], stamps[0] + len(stamps))) if stamps else True, (
                f"{who}: lease ask stamps {stamps} not consecutive"
            )
        elif type(role) is StandbyRole:
            assert not (role.joined and not self.leader), f"{who}: joined nobody"
            armed = role.timers.armed()
            assert not (role.joined and JOIN in armed), f"{who}: joined, yet its Join retry is armed"
            assert (role.handover is None) == (HANDOVER not in armed), (
                f"{who}: handover {role.handover}, timers {armed}"
            )
            assert all(s > r.seq for s in role.future), (
                f"{who}: reorder buffer holds seqs at or below {r.seq}"
            )
        if self.journal_error:
            assert type(role) is StandbyRole and not self.leader, f"{who}: failed journal yet {self.leader!r}"
            assert not role.held, f"{who}: failed journal holds requests"
        if type(role) is DivergedRole:
            assert self.diverged_at > 0, f"{who}: diverged at no seq"
