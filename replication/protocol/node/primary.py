"""The primary role: sequence requests, journal them, apply them, stream them, release replies.

For: ``PrimaryRole``, the role object a ``NodeMachine`` holds while it is
primary (or draining into a switchover target), built at each promotion and
owning the primary's state (queues, acks, the commit, the drain) and its
components: ``in_sync`` (the in-sync set, sync mode: ``in_sync.InSyncSet``),
``catch_up`` (joins, refills, snapshots: ``catch_up.CatchUp``) and ``lease``
(async: ``lease.PrimaryLease``). Here: queueing client requests
(``PendingQueue``: one queue per connection, batched in turn; a client's
window stays spans of its packed records), answering re-sent requests from
the replicated dedupe table, turning every queued request into one batch (one
journal append, one ``Entries`` message per peer, one ``Publish``), releasing
replies once a standby acked them (``sync``: every member of the in-sync set
acked) or at once (``async``), draining for a planned switchover, and opening
client sessions (a session-open request is sequenced like any other under
the client id's next session number; a request of an older session than its
client id's current one is answered ``FENCED``, never executed: see
``session``). Not for: sockets, clocks (``now`` is an argument), standby
work, or the role changes themselves (stepping down, the handover: the node
builds the next role).

Every method returns a list of outputs (``wire.Send`` / ``wire.Publish``, and
``wire.ReplyRun`` for a sequenced batch's replies: see ``ReplyQueue``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ...native.fastpath import fresh_requests, request_stretch
from .. import wire
from ..entitlement import entitled, refusal
from ..group_time import next_stamp, stamp_commands, time_command
from ..queues import SPAN_MIN, PendingQueue, ReplyQueue, Stretch
from ..replica import EXPIRED
from ..session import COUNTER_MASK, SESSION_SHIFT, Held, next_session, nonce_of, opened_id
from ..timers import Timers
from ..wire import COMMAND_SIZE, ROLE_PRIMARY, EventBlobs, Publish, ReplyColumns, ReplyRun, RequestRun, Send
from .catch_up import CatchUp
from .in_sync import InSyncSet
from .lease import PrimaryLease
from .records import PendingHandover
from .service import ClientService
from .standby import StandbyRole

if TYPE_CHECKING:  # pragma: no cover
    from .machine import NodeMachine

log = logging.getLogger("replication.sequencer")

INF = float("inf")
OPEN_NONCES = 4096  # queued opens remembered (PrimaryRole.open_nonces) before the sequenced ones are pruned
DRAIN_HELD = 4096  # new requests a draining primary holds until its Handover has left (drain_held)
# The primary's timers (``self.timers``).
DRAIN = "drain"  # a switchover's abort, armed when the drain starts, cleared when it ends
TIME = "time"  # the idle ``time`` command: re-armed at every batch (Settings.time_interval after it)


class PrimaryRole:
    """The primary's state and handlers; the node's shared state is ``self.node``.

    ``isr``: the in-sync set the witness recorded with its grant (None: every other node).
    """

    def __init__(self, node: NodeMachine, isr: tuple[str, ...] | None = None) -> None:
        self.node = node
        self.pending = PendingQueue()  # (src, Request) not yet sequenced
        self.waiting = ReplyQueue()  # (seq, dest, Reply, t) held until acked
        self.acked: dict[str, int] = {}  # standby -> highest acked seq (this epoch)
        self.commit = node.replica.seq
        self.drain_target = ""  # draining into this node (a planned switchover): no new requests
        self.drain_started = 0.0
        # New requests that arrived during the drain: (src, Request), answered when it ends (see
        # hold_in_drain). Bounded by DRAIN_HELD; past it a request is redirected at once.
        self.drain_held: list[tuple[wire.Address, wire.Request]] = []
        # Client id -> the session its last queued open will open (it counts only while that
        # open is still queued: see session_now).
        self.opens: dict[int, Held] = {}
        # (client id, nonce) of every open this role queued -> its session: an open re-sent while
        # a newer open of its client id is queued behind it is not opened twice.
        self.open_nonces: dict[tuple[int, int], int] = {}
        self.lease = PrimaryLease(node)
        self.timers = Timers()  # DRAIN, TIME, ISR (``in_sync``)
        self.catch_up = CatchUp(self)  # joins and refills: what each catching-up node has in flight
        # The in-sync set: standbys whose ack every committed entry needs (sync mode).
        self.in_sync = InSyncSet(self, isr)
        self.service = ClientService(self)  # execution-report fetches and queries
        if isr is not None:
            self.recompute_commit()

    @property
    def code(self) -> int:
        """The role as the wire says it: ``ROLE_DRAINING`` during a switchover, else ``ROLE_PRIMARY``."""
        return wire.ROLE_DRAINING if self.drain_target else ROLE_PRIMARY

    def handlers(self) -> dict:
        """Message type -> handler ``(src, msg, now) -> outputs`` (the node's table adds the rest)."""
        return {
            wire.Request: self.on_request,
            wire.Ack: self.on_ack,
            wire.Join: self.catch_up.on_join,
            wire.Refill: self.catch_up.on_refill,
            wire.IsrAck: lambda src, m, now: self.in_sync.on_isr_ack(m, now),
            wire.Switchover: self.on_switchover,
            wire.Entries: self.on_entries,
            wire.Fence: self.on_fence,
            wire.Lease: self.lease.echoed,  # (a standby's promise takes the asks: ``node.lease_promise``)
            **self.service.handlers(),
        }

    def refuse_all(self, reply) -> list:
        """The role ends: an answer (``reply(request)``) for every reply held and request queued,
        and the same refusal for every parked report fetch."""
        out = [Send(dest, reply(r)) for _, dest, r, _ in self.waiting]
        out += [Send(src, reply(m)) for src, m in self.pending]
        out += [Send(src, reply(m)) for src, m in self.drain_held]
        self.drain_held = []
        if self.service.parked:
            probe = reply(wire.Request(0, 0, b""))  # the refusal's status and leader hint
            out += self.service.refuse_parked(probe.status, probe.leader)
        return out

    # -- a newer epoch, a peer's heartbeat ------------------------------------------

    def on_heartbeat(self, src: str, hb: wire.Heartbeat, now: float) -> list:
        node = self.node
        if hb.epoch > node.epoch:
            return node.step_down(
                src if hb.role in (wire.ROLE_PRIMARY, wire.ROLE_DRAINING) else hb.leader, hb.epoch, now
            )
        if hb.role == wire.ROLE_STANDBY and hb.leader == node.name and hb.epoch == node.epoch:
            # A heartbeat is also an ack (lost acks must not stall sync replies),
            # trusted only if it proves the standby's history is ours: the same last entry,
            # (epoch, seq), as a Join names it (``CatchUp.common_prefix``), with the same
            # digest. The digest alone proves the same books, not the same history: a request
            # re-sent to the next epoch's primary is sequenced again at the same seq with an
            # equal digest. Trusting it let a draining primary count a restarted ex-primary's
            # older-epoch suffix as its own, hand over to it, and the new epoch then grew on a
            # journal that was not a prefix of the acknowledged one (simulator seeds 6114, 6877).
            # (At our own seq our digest proves it too: that entry may be inside a snapshot we
            # installed, not in our journal, and without new orders no Ack would ever come.)
            if hb.seq <= self.acked.get(src, -1):
                return []  # nothing it could prove is new: no journal read (under load, acks lead)
            mine = node.journal.entry(hb.seq)
            proven = (mine is not None and mine.digest == hb.digest and mine.epoch == hb.last_epoch) or (
                hb.seq == node.replica.seq
                and hb.digest == node.replica.digest
                and hb.last_epoch == node.replica.last_epoch
            )
            if proven:
                return self.on_ack(src, wire.Ack(hb.epoch, hb.seq, src, hb.digest), now)
            return []
        if hb.epoch < node.epoch:
            return node.tell_news(src, hb)
        if hb.role in (wire.ROLE_PRIMARY, wire.ROLE_DRAINING) and src != node.name:
            node.count("same_epoch_primaries")
            log.error("two_primaries node=%s other=%s epoch=%d", node.name, src, node.epoch)
        return []

    def on_entries(self, src: wire.Address, m: wire.Entries, now: float) -> list:
        """Entries reach a primary only from another primary: of a newer epoch, we step down."""
        if m.epoch < self.node.epoch:
            return self.node.stale_entries(src)
        if m.epoch > self.node.epoch and isinstance(src, str):
            return self.node.step_down(src, m.epoch, now)
        return []

    def on_fence(self, src: wire.Address, m: wire.Fence, now: float) -> list:
        """A newer epoch's primary fenced a Join of ours: step down, then take it as the standby we are.

        (The step-down's refusals are not sent: as before the roles were objects.)"""
        if m.epoch <= self.node.epoch or not isinstance(src, str):
            return []
        self.node.step_down(src, m.epoch, now)
        standby = self.node.current_role
        assert isinstance(standby, StandbyRole), "a primary steps down into a standby"
        return standby.on_fence(src, m, now)

    # -- requests -----------------------------------------------------------------

    def on_request(self, src: wire.Address, m: wire.Request, now: float) -> list:
        # Runs once per client request: module constants rather than wire.X lookups, and the
        # usual case (a new request) with as few steps as the checks allow.
        if self.drain_target:  # new requests go to the switchover's target, once it has our Handover
            return self.hold_in_drain(src, m)
        if len(m.command) != COMMAND_SIZE:
            self.node.count("requests_malformed")
            return []
        if self.lease.lapsed(now):  # async: stopped acknowledging until a supporter answers
            self.lease.note_lapse(now)
            self.node.count("requests_refused_no_lease")
            return [
                Send(src, wire.Reply(m.client_id, m.request_id, wire.UNAVAILABLE, self.node.epoch, 0, ""))
            ]
        if not m.request_id & COUNTER_MASK:
            return self.on_open(src, m, now)
        got = self.node.replica.lookup(m.client_id, m.request_id)
        if got is None:
            if self.pending.queued(m.client_id, m.request_id):
                self.node.count("requests_deduplicated")
                return []
            if m.request_id >> SESSION_SHIFT < self.session_now(m.client_id):
                self.node.count("requests_fenced")  # a newer session holds the client id: never executed
                return [
                    Send(
                        src,
                        wire.Reply(
                            m.client_id, m.request_id, wire.FENCED, self.node.epoch, 0, self.node.name
                        ),
                    )
                ]
            if not self.pending.room(src, self.node.settings.max_in_flight):
                return self._busy(src, m)
            self.pending.add(src, m)
            return []
        return self._first_result(src, m.client_id, m.request_id, got, now)

    def _first_result(self, src: wire.Address, cid: int, rid: int, got, now: float) -> list:
        """The answer to a request the dedupe table knows (``got``: its first result or EXPIRED)."""
        if not self.lease.held(now):
            # Async, promoted and not yet renewed: a new request waits in the queue above; any
            # other answer waits for the lease too (an old primary answers nothing past its lease).
            self.node.count("requests_refused_no_lease")
            return [Send(src, wire.Reply(cid, rid, wire.UNAVAILABLE, self.node.epoch, 0, ""))]
        if got is EXPIRED:
            self.node.count("requests_expired")
            return [Send(src, wire.Reply(cid, rid, wire.EXPIRED, self.node.epoch, 0, self.node.name))]
        seq, events = got  # executed before: its first result
        self.node.count("requests_deduplicated")
        reply = wire.Reply(cid, rid, wire.OK, self.node.epoch, seq, self.node.name, events)
        if seq <= self.commit or self._replies_at_once():
            return [Send(src, reply)]
        self.waiting.append((seq, src, reply, now))
        return []

    def _queued_open(self, client_id: int) -> Held | None:
        """The session the client id's open still in the queue will open, if any (newer than the
        replica's: once sequenced, or dropped with the queue, it no longer counts). O(1 + spans)."""
        q = self.opens.get(client_id)
        if q is None:
            return None
        held = self.node.replica.sessions.get(client_id)
        if (held is not None and q.session <= held.session) or not self.pending.queued(
            client_id, opened_id(q.session)
        ):
            del self.opens[client_id]  # sequenced (or dropped): the replica's table says the rest
            return None
        return q

    def session_now_applied(self, client_id: int) -> int:
        """The client id's current session as applied (the replica's; 0: none). O(1)."""
        held = self.node.replica.sessions.get(client_id)
        return held.session if held is not None else 0

    def session_now(self, client_id: int) -> int:
        """The client id's current session as this primary will have sequenced it: the replica's,
        or the one its still-queued open opens (0: none). O(1 + the client's queued spans)."""
        held = self._queued_open(client_id) or self.node.replica.sessions.get(client_id)
        return held.session if held is not None else 0

    def on_open(self, src: wire.Address, m: wire.Request, now: float) -> list:
        """A session open (request id 0, an ``open_command``): queue it under the client id's next
        session number, which fences every older session once sequenced. A re-sent open (same
        nonce) opens nothing: it is answered with its first result, or waits for it if queued."""
        cid, nonce = m.client_id, nonce_of(m.command)
        if m.request_id or not nonce:
            self.node.count("requests_malformed")  # counter 0 of a session is the primary's to give
            return []
        if self.node.replica.fenced_open(cid, nonce):
            # A re-sent open of a session a newer one has fenced since (its answer was
            # lost): opening again would fence the newer one, a live client. Fenced it is.
            self.node.count("requests_fenced")
            return [Send(src, wire.Reply(cid, 0, wire.FENCED, self.node.epoch, 0, self.node.name))]
        queued = self._queued_open(cid)
        if (queued is not None and queued.nonce == nonce) or (
            (cid, nonce) in self.open_nonces and self.open_nonces[cid, nonce] > self.session_now_applied(cid)
        ):
            self.node.count("requests_deduplicated")  # queued already: answered once sequenced
            return []
        current = self.node.replica.sessions.get(cid)
        if current is not None and current.nonce == nonce:
            # The open of the current session, again (also while a newer open is queued: that
            # one will fence this session; this open is not a third one): its first result.
            rid = opened_id(current.session)
            got = self.node.replica.lookup(cid, rid)
            return self._first_result(src, cid, rid, EXPIRED if got is None else got, now)
        held = queued or current
        slot = self.node.replica.results.get(cid)
        floor, newest = (slot[0], max(slot[1], default=0)) if slot is not None else (0, 0)
        session = next_session(held, floor, newest)
        if session >> (64 - SESSION_SHIFT):
            self.node.count("sessions_exhausted")
            log.error("sessions_exhausted client=%d: every session number of this client id is used", cid)
            return [Send(src, wire.Reply(cid, 0, wire.UNAVAILABLE, self.node.epoch, 0, self.node.name))]
        self.opens[cid] = Held(session, nonce)
        self.open_nonces[cid, nonce] = session
        if len(self.open_nonces) > OPEN_NONCES:  # forget those sequenced (the replica knows them)
            for key in [k for k, s in self.open_nonces.items() if s <= self.session_now_applied(k[0])]:
                del self.open_nonces[key]
        self.pending.add(src, wire.Request(cid, opened_id(session), m.command))
        self.node.count("sessions_opened")
        log.info("session_open client=%d session=%d", cid, session)
        return []

    def _plain_bundle(self, requests: Sequence) -> bool:
        """No request of the bundle is an open or could be fenced: the batch paths may take it.
        O(len(requests)), and one look-up per request only for client ids that have sessions."""
        sessions, opens = self.node.replica.sessions, self.opens
        for m in requests:
            rid = m.request_id
            if not rid & COUNTER_MASK:
                return False
            if (m.client_id in sessions or m.client_id in opens) and rid >> SESSION_SHIFT < self.session_now(
                m.client_id
            ):
                return False
        return True

    def _busy(self, src: wire.Address, m: wire.Request) -> list:
        """``src`` has ``max_in_flight`` requests queued: refuse this one, unsequenced (it may re-send)."""
        self.node.count("requests_busy")
        return [
            Send(src, wire.Reply(m.client_id, m.request_id, wire.BUSY, self.node.epoch, 0, self.node.name))
        ]

    def _busy_run(self, src: wire.Address, cid: int, first: int, k: int) -> list:
        """:meth:`_busy` for requests ``first .. first + k - 1`` of ``cid``, all new, unqueued and
        unfenced, past ``src``'s room. O(k), with none of on_request's checks per request."""
        self.node.count("requests_busy", k)
        epoch, name = self.node.epoch, self.node.name
        return [Send(src, wire.Reply(cid, r, wire.BUSY, epoch, 0, name)) for r in range(first, first + k)]

    def on_requests(self, src: wire.Address, requests: tuple | list, now: float) -> list:
        """A client's bundle, on a primary: as :meth:`on_request` for each request in turn.

        The usual case (well-formed, not executed before, not queued already)
        is found by ``fastpath.fresh_requests`` (one look-up and one set insertion
        per request, in C), and the queue grows by runs (``pending.extend``); any
        other request goes through
        :meth:`on_request` at its place, after the run before it is queued, so
        outputs, counters and queue order are those of one call per request.
        A packed bundle (``wire.RequestRun``) goes by stretches instead (see
        :meth:`_on_request_run`). The caller has checked ``role == ROLE_PRIMARY``
        (``on_request`` never changes it). O(len(requests)).
        """
        if type(requests) is RequestRun:
            return self._on_request_run(src, requests, now)
        return self._on_each_request(src, requests, now)

    def _on_each_request(self, src: wire.Address, requests: Sequence, now: float) -> list:
        """:meth:`on_requests` request by request (pairs in the queue, no spans)."""
        if self.pending._spans or not self._plain_bundle(requests):
            # fresh_requests looks for queued keys in pairs only: with spans queued, one by one.
            out: list = []
            for m in requests:
                out += self.on_request(src, m, now)
            return out
        out = []
        keys, pending, n, i = self.pending.loose, self.pending, len(requests), 0
        limit = self.node.settings.max_in_flight
        while i < n:
            # The new requests from i on (in C when built: no bytecode per request); the
            # dedupe table is read flushed, as Replica.lookup reads it. No further than the
            # client's room (the scan marks what it finds as queued): past it, on_request says busy.
            room = pending.room(src, limit)
            upto = requests if n - i <= room else requests[: i + room]
            k = fresh_requests(upto, i, keys, self.node.replica.results, COMMAND_SIZE) if room else 0
            if k:
                pending.extend(src, requests[i : i + k])
                i += k
            if i < n:
                out += self.on_request(src, requests[i], now)
                i += 1
        return out

    def _on_request_run(self, src: wire.Address, run: RequestRun, now: float) -> list:
        """:meth:`on_requests` of a packed bundle: each stretch of one client's consecutive request
        ids (``fastpath.request_stretch``) has its new requests from the first (neither executed,
        ``Replica.fresh_count``, nor queued, ``PendingQueue.unqueued``) queued as one span; the
        request that ends them goes through :meth:`on_request`, and a stretch shorter than
        ``SPAN_MIN`` through the per-request path. O(stretches + the table probes), with no
        ``Request`` object for a spanned request."""
        out: list = []
        raw, pending, n, i = run.raw, self.pending, len(run), 0
        replica = self.node.replica  # nothing here adds to its dedupe table
        while i < n:
            k, cid, rid = request_stretch(raw, i)
            end = i + k
            # An open, a session boundary, or a fenced session: request by request.
            odd = not rid & COUNTER_MASK or (rid + k - 1) >> SESSION_SHIFT != rid >> SESSION_SHIFT
            if k < SPAN_MIN or odd or rid >> SESSION_SHIFT < self.session_now(cid):
                out += self._on_each_request(src, run[i:end], now)
                i = end
                continue
            while i < end:  # record i is request rid of client cid
                f = replica.fresh_count(cid, rid, end - i)
                if f:
                    f = pending.unqueued(cid, rid, f)
                room = min(f, pending.room(src, self.node.settings.max_in_flight))
                if room:
                    pending.add_span(src, run, i, i + room, cid, rid)
                    self.node.count("requests_spanned", room)
                    i, rid = i + room, rid + room
                if f > room and not self.lease.lapsed(now):
                    # New requests past the sender's room: each would be answered busy by
                    # on_request, so all of them are, at once (no re-scan of the rest per request).
                    out += self._busy_run(src, cid, rid, f - room)
                    i, rid = i + f - room, rid + f - room
                if i < end:
                    out += self.on_request(src, run[i], now)
                    i, rid = i + 1, rid + 1
        return out

    def hold_in_drain(self, src: wire.Address, m: wire.Request) -> list:
        """A request that reached us while we drain: held until the drain ends, then redirected to
        the target (handed over) or served here (aborted).

        Redirected at once, the client would reach the target before the target knows of the
        drain (the draining heartbeat and the client's re-send take different connections);
        it would refuse, naming us, and the client would bounce between the two with growing
        waits. Held, the refusal leaves after the Handover, which the target acts on first.
        Bounded: past ``DRAIN_HELD`` held requests, redirected at once. O(1)."""
        if len(self.drain_held) >= DRAIN_HELD:
            self.node.count("requests_refused")
            return [self._to_target(m)]
        self.drain_held.append((src, m))
        self.node.count("requests_held_in_drain")
        return []

    def _to_target(self, m: wire.Request) -> wire.Reply:
        """The refusal that sends ``m``'s client to the switchover's target."""
        return wire.Reply(m.client_id, m.request_id, wire.NOT_PRIMARY, self.node.epoch, 0, self.drain_target)

    def _release_drain_held(self, handed_over: bool, now: float) -> list:
        """The drain ended: its held requests redirected to the target, or (aborted) served here."""
        held, self.drain_held = self.drain_held, []
        if handed_over:
            self.node.count("requests_refused", len(held))
            return [Send(src, self._to_target(m)) for src, m in held]
        out: list = []
        for src, m in held:
            out += self.on_request(src, m, now)
        return out

    def _replies_at_once(self) -> bool:
        return self.node.settings.mode == "async"

    @property
    def isr(self) -> list[str]:
        """The in-sync set's members now (``in_sync``): whose ack a commit needs."""
        return self.in_sync.members

    @property
    def isr_confirmed(self) -> tuple[str, ...]:
        """The in-sync set the witness has recorded."""
        return self.in_sync.confirmed

    @property
    def solo(self) -> bool:
        """Sync mode with an empty in-sync set: replies need no ack, and no standby may be promoted."""
        return self.node.settings.mode == "sync" and not self.isr_confirmed

    def recompute_commit(self) -> None:
        if not self.isr:
            self.commit = self.node.replica.seq
        else:
            self.commit = max(self.commit, min(self.acked.get(m, 0) for m in self.isr))

    # -- batching -------------------------------------------------------------------

    def sequence_pending(self, now: float) -> list:
        """Sequence up to ``max_batch`` queued requests as one batch. O(batch).

        One batch per tick, so a backlog cannot hold the loop (and with it
        heartbeats, acks and fail-over detection) for long: the driver polls
        without waiting while requests are still queued.
        """
        out: list = []
        if self.pending and self.lease.held(now):
            n = min(self.pending.ready, self.node.settings.max_batch)
            stretches, cids, rids, commands = self.pending.take(n)
            checks = self.node.entitlement_checks
            if checks and any(key in checks for key in zip(list(cids), list(rids), strict=True)):
                return self._sequence_checked(stretches, cids, rids, commands, now)
            out += self._sequence_batch(stretches, cids, rids, commands, now)
        return out

    def arm_time(self, now: float) -> None:
        """Wait ``Settings.time_interval`` from ``now`` before an idle ``time`` command (0: never)."""
        interval = self.node.settings.time_interval
        if interval > 0:
            self.timers.arm(TIME, now + interval)

    def time_due(self, now: float) -> list:
        """The tick's part of time: the primary has sequenced nothing for ``time_interval``, so it
        sequences a ``time`` command (client id 0: nobody's request, no reply), which lets the
        engine expire what is due by then. Not while draining (the target gets a fixed history),
        or without the async lease (nothing is sequenced then): the wait starts again. O(1)."""
        if self.timers.at(TIME) > now:
            return []
        if self.drain_target or self.pending or not self.lease.held(now):
            self.arm_time(now)
            return []
        self.node.count("time_commands")
        return self._sequence_batch([], [0], [0], time_command(0), now)

    def _sequence_batch(self, stretches: list, cids, rids, commands: bytes, now: float) -> list:
        """Sequence one taken batch: stamp, apply, journal, stream, and hold or send its replies.

        Every command gets the batch's stamp in its ``ts`` (a client's own ``ts`` is overwritten:
        the group's time is the sequencer's, ``group_time``). O(batch)."""
        out: list = []
        if len(cids):
            n = len(cids)
            epoch, name, first = self.node.epoch, self.node.name, self.node.replica.seq + 1
            stamp = next_stamp(self.node.clock(now), self.node.replica.last_ts)
            commands = stamp_commands(commands, stamp)
            self.arm_time(now)
            # The batch's entries come back packed (an EntryRun): the journal, the Entries to
            # every peer and the published stream all take these bytes, each entry packed once.
            run, raw, ends = self.node.replica.execute_batch(epoch, cids, rids, commands)
            self.service.note_applied()
            # The replies stay columns (no Reply per request) until the driver packs them.
            cols = ReplyColumns(epoch, first, name, cids, rids, raw, ends)
            self.node.journal.append(run)
            self.node.count("entries_sequenced", n)
            self.recompute_commit()  # an empty ISR commits at once
            msg = wire.Entries(self.node.epoch, first, self.commit, run)
            out += [Send(p, msg, needs_sync=False) for p in self.node.peers]
            # Each entry's events sliced only if the stream is encoded (someone subscribes).
            out.append(Publish(wire.Entries(self.node.epoch, first, self.commit, run, EventBlobs(raw, ends))))
            if self._replies_at_once():
                out += [ReplyRun(dest, cols, lo, hi) for dest, lo, hi in stretches]
                out += self.service.serve()
            else:
                self.waiting.add_stretches(cols, stretches, now)
                out += self.release()
            out += self.node.maybe_snapshot()
        return out

    def _sequence_checked(self, stretches: list, cids, rids, commands: bytes, now: float) -> list:
        """A batch holding cancels or replaces whose order was unknown when their restricted
        client's request was screened (``entitlement``): each is checked now, against the
        entries before it, and sequenced only if the order is still unknown or of one of the
        client's accounts; else answered ``NOT_ENTITLED``, unsequenced. The batch is cut at each
        such request, so the check sees every entry before it applied. O(batch)."""
        checks = self.node.entitlement_checks
        cids, rids = [int(c) for c in cids], [int(r) for r in rids]
        dest_of: list = [None] * len(cids)
        for dest, lo, hi in stretches:
            dest_of[lo:hi] = [dest] * (hi - lo)
        out: list = []
        start = 0
        for i, key in enumerate(zip(cids, rids, strict=True)):
            accounts = checks.pop(key, None)
            if accounts is None:
                continue
            out += self._sequence_slice(dest_of, cids, rids, commands, start, i, now)
            command = commands[i * COMMAND_SIZE : (i + 1) * COMMAND_SIZE]
            if entitled(accounts, command, self.node.replica.order_account):
                start = i  # goes with the next slice
                continue
            self.node.count("refused_not_entitled")
            out.append(Send(dest_of[i], refusal(wire.Request(key[0], key[1], command))))
            start = i + 1
        return out + self._sequence_slice(dest_of, cids, rids, commands, start, len(cids), now)

    def _sequence_slice(
        self, dest_of: list, cids: list, rids: list, commands: bytes, a: int, b: int, now: float
    ) -> list:
        """:meth:`_sequence_batch` of requests ``a .. b - 1`` of a taken batch."""
        if a >= b:
            return []
        stretches: list = []
        for i in range(a, b):
            if stretches and stretches[-1][0] == dest_of[i]:
                stretches[-1] = (dest_of[i], stretches[-1][1], i + 1 - a)
            else:
                stretches.append((dest_of[i], i - a, i + 1 - a))
        return self._sequence_batch(
            [Stretch(*s) for s in stretches],
            cids[a:b],
            rids[a:b],
            commands[a * COMMAND_SIZE : b * COMMAND_SIZE],
            now,
        )

    def release(self) -> list:
        """Replies whose seq is now committed (or all of them, running solo/async), then the
        report fetches and query answers the commit releases (``service``)."""
        service = self.service
        if not self.waiting:
            return service.serve() if service.touched or service.held else []
        out: list = self.waiting.release(INF if self._replies_at_once() else self.commit)
        if service.touched or service.held:
            out += service.serve()
        return out

    # -- acks ------------------------------------------------------

    def on_ack(self, src: str, m: wire.Ack, now: float) -> list:
        if m.epoch != self.node.epoch:
            return []
        seq = min(m.seq, self.node.replica.seq)
        if m.node not in self.node.peers:
            return []
        progressed = seq > self.acked.get(m.node, -1)  # (seq 0 too: a standby that joined an empty journal)
        if progressed:
            self.acked[m.node] = seq
        out = self.in_sync.on_ack(m.node, seq, progressed, now)  # progress; caught up: joins (sync)
        self.recompute_commit()
        return out + self.release()

    # -- planned switchover ------------------------------------------------------------

    def on_switchover(self, src: wire.Address, m: wire.Switchover, now: float) -> list:
        if self.drain_target or m.target not in self.node.peers:
            return [Send(src, self.node.status_message())]
        self.drain_target = m.target
        self.drain_started = now
        self.timers.arm(DRAIN, now + self.node.settings.switchover_timeout)  # the abort (a > timeout)
        log.info(
            "switchover_start node=%s epoch=%d target=%s seq=%d",
            self.node.name,
            self.node.epoch,
            m.target,
            self.node.replica.seq,
        )
        # Tell the target at once: it holds the requests we now redirect to it until it serves.
        # The witness learns the drain and its target too: it grants the target's vote.
        out = [self.node.heartbeat_to(m.target)] + (
            [self.node.heartbeat_to(self.node.witness)] if self.node.witness else []
        )
        return out + [Send(src, self.node.status_message())]

    def check_drain(self, now: float) -> list:
        if not self.drain_target:
            return []
        target = self.drain_target
        # The target must have acknowledged our seq in this epoch: one that never joined us
        # (down, cut off, or restarted in an older epoch) holds nothing we can vouch for,
        # and a Handover would leave it refusing and us following it, with no primary at all.
        if self.acked.get(target, -1) >= self.node.replica.seq:
            stashed: list = []
            if self.node.witness:
                # The target serves only once the witness grants it the next epoch, and if it
                # never does (cut off), the witness may promote another in-sync node instead:
                # a reply may go out now only on the usual commit rule. The rest wait until
                # the target's first heartbeat as primary proves the handover
                # (resume_after_handover); if it never comes, the clients re-send.
                self.recompute_commit()
                out = self.release()
                stashed = [(dest, r) for _, dest, r, _ in self.waiting]
            else:
                # The target, about to serve by itself, holds everything: release all that waited.
                self.commit = self.node.replica.seq
                out = self.release()
            log.info(
                "switchover_handover node=%s epoch=%d target=%s seq=%d",
                self.node.name,
                self.node.epoch,
                target,
                self.node.replica.seq,
            )
            handover = wire.Handover(self.node.epoch, self.node.replica.seq, self.node.name)
            out.append(Send(target, handover))
            out += self._release_drain_held(True, now)  # after the Handover: to the target now
            out += self.service.refuse_parked(wire.NOT_PRIMARY, target)  # fetch from the target now
            # The standby we become re-sends the Handover until the target serves a newer
            # epoch (a lost Handover must not leave two standbys following each other), and
            # holds the stashed replies until the target proves it serves.
            out += self.node.become_standby(
                target, self.node.epoch, now, PendingHandover(target, handover, now), stashed
            )
            if self.node.witness:
                # Tell the witness at once that we follow the target with our final seq: that
                # (not the drain) is what lets it grant the target's vote.
                out.append(self.node.heartbeat_to(self.node.witness))
            return out
        if now - self.drain_started > self.node.settings.switchover_timeout:
            log.warning(
                "switchover_aborted node=%s target=%s acked=%d seq=%d",
                self.node.name,
                target,
                self.acked.get(target, 0),
                self.node.replica.seq,
            )
            self.drain_target = ""
            self.timers.clear(DRAIN)
            return self._release_drain_held(False, now)
        return []
