"""``ClientCore``: the sans-IO heart of the replication client.

For: opening a session (``open``: the group gives it the client id's next
session number, and request ids are ``session << 40 | counter``, never a
clock: see ``session``), numbering requests within it, checking that every
reply answers a request of this session it sent (any other is counted as
``foreign_replies`` and never becomes a result), noticing that a newer
session fenced this one (``fenced``), tracking the requests not yet
answered, choosing which node to send to (the believed primary, a leader
hint from a ``NOT_PRIMARY`` reply, or the next node after a timeout or a
connection-loss hint), and re-sending every unanswered request to the new
primary on fail-over. The replicated dedupe table makes re-sending safe: a
request that already executed returns its first result. A ``BUSY`` answer
(the primary already holds ``max_in_flight`` of this client's requests) is
backpressure, not an error: the request is re-sent to the same primary after
a growing backoff (``BUSY_BACKOFF``), never given up. A ``NOT_ENTITLED``
answer (the client's key may not use the command's account; never
sequenced) is final, like ``OK``: its one ``rejected not_entitled`` event is
the result. Not for: sockets,
blocking, or turning events into named tuples (``client.Client`` does that).

Interface: ``submit(command, now) -> (request_id, outputs)``,
``handle(src, reply, now) -> outputs``, ``tick(now) -> outputs``; outputs are
``wire.Send`` and ``Done(request_id, reply)`` (``Output``). The pipelined driver path has
batch forms with the same effect: ``submit_window`` (a window of commands,
one timer; ``submit_records`` for packed records) and ``handle_replies`` (a
``Replies`` bundle, answers into a dict); ``handle_answered`` takes a bundle
the C decoder parsed, for the common all-OK case.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from . import wire
from .client_service import PendingQueries, ReportFeed
from .session import (
    COUNTER_MASK,
    OPEN_REQUEST,
    SESSION_SHIFT,
    SessionFenced,
    first_id,
    open_command,
    opened_id,
)
from .wire import Send

if TYPE_CHECKING:
    from ._client_fast import ReplyBlock

log = logging.getLogger("replication.client")

NEVER = float("-inf")
# A request answered ``busy`` (the primary holds max_in_flight of ours) is re-sent after this,
# doubled with each busy answer it gets, up to half the retry timeout. The primary did not
# sequence it; if a copy did run meanwhile, the dedupe table answers the re-send with its result.
BUSY_BACKOFF = 0.001


@dataclass(slots=True)
class Done:
    """Output: request ``request_id`` has its final ``reply`` (status OK, EXPIRED, FENCED or
    NOT_ENTITLED)."""

    request_id: int
    reply: wire.Reply


# What the client core returns, and a message handler of its dispatch table.
Output = Send | Done
Handler = Callable[[wire.Address, Any, float], list[Output]]


class Timer(NamedTuple):
    """An item of the retry heap: request ids ``first .. last`` are due at ``at`` (one id, or a
    window's run armed together). Stale once a request is answered or re-armed: skipped on pop."""

    at: float
    first: int
    last: int


class _Seen(NamedTuple):
    """What ``ClientCore.invariants`` saw last time: the rules across steps compare with it."""

    next_id: int
    session: int
    counters: dict[str, int]


class RequestState(NamedTuple):
    """What ``ClientCore.request_state`` tells of one unanswered request."""

    command: bytes
    target: str  # the node it was last sent to
    sent_at: float
    next_at: float  # when it is (re)sent if still unanswered
    bounces: int  # refusals (NOT_PRIMARY, UNAVAILABLE) it got
    resends: int  # times re-sent alone to a primary that answers others


@dataclass(slots=True)
class _Pending:
    command: bytes
    target: str
    sent_at: float
    next_at: float  # when to (re)send if still unanswered
    bounces: int = 0
    resends: int = 0  # re-sent alone to a primary that answers others (backoff)


@dataclass(slots=True)
class _Window(_Pending):
    """The state all requests of one window share while none has needed its own.

    Every pending id of the window maps to this one object (a window costs a
    dict slot per request, not an object). The first change to one request's
    state gives that request its own ``_Pending`` (``ClientCore._own``); ``command``
    is unused here: request ``first + i`` carries ``commands[i]``, or the ``i``-th
    80-byte record when ``commands`` is one ``bytes`` of records.
    """

    first: int = 0
    commands: Sequence[bytes] | bytes = ()

    def size(self) -> int:
        """How many requests the window holds. O(1)."""
        c = self.commands
        return len(c) // wire.COMMAND_SIZE if isinstance(c, bytes) else len(c)

    def command_of(self, rid: int) -> bytes:
        i = rid - self.first
        c = self.commands
        if isinstance(c, bytes):
            return c[i * wire.COMMAND_SIZE : (i + 1) * wire.COMMAND_SIZE]
        return c[i]


class ClientCore:
    """Pending requests and primary tracking for one client id.

    Parameters
    ----------
    client_id : int
        Non-zero; ids identify the client in every node's dedupe table.
    nodes : list of str
        Node names in group-file order (the first is tried first).
    first_request_id : int
        Request ids start here and grow by one until :meth:`open` opens a
        session (then they are that session's, from ``session << 40 | 1``).
        Without a session (session 0) the caller must keep ids unique for the
        client id; the group never fences such a client until the id opens one.
    retry_timeout : float
        Seconds without any reply from the believed primary (while a request
        to it is unanswered) before it is suspected and every unanswered
        request is re-sent to the next node. A primary that keeps answering
        other requests is not suspected because one request is slow: that
        request alone is re-sent to it, with a growing interval.

    Timers live in a heap of ``Timer(at, first, last)`` items: one per
    request armed alone (``first == last``), one per window from
    :meth:`submit_window` standing for a run of ids armed together (stale ids
    skipped on pop), so
    ``tick`` costs O(expired · log n), not O(pending), and a window costs one
    heap push, not one per request.
    """

    def __init__(
        self,
        client_id: int,
        nodes: list[str],
        first_request_id: int = 1,
        retry_timeout: float = 0.05,
        reports: bool = False,
        resume_from: int | None = None,
    ) -> None:
        if client_id <= 0:
            raise ValueError("client_id must be a positive integer")
        self.client_id = client_id
        self.nodes = list(nodes)
        self.next_id = first_request_id
        self.session = first_request_id >> SESSION_SHIFT  # 0: none opened
        self.session_first = first_request_id  # the lowest id this session sends
        self.opening = 0  # the nonce of the open in flight (0: none)
        self.fenced = False  # a newer session of this client id fenced this one
        self.retry_timeout = retry_timeout
        self.primary = self.nodes[0]
        self.pending: dict[int, _Pending] = {}  # insertion order == request id order
        self.timers: list[Timer] = []  # the retry heap; may hold stale items
        self.suspect_until: dict[str, float] = {n: NEVER for n in self.nodes}
        self.heard_at: dict[str, float] = {n: NEVER for n in self.nodes}  # last reply from each node
        # The node a refusal's leader hint last moved us away from, and when (None: none yet):
        # a hint back to it soon after is a standby's stale word (see follow_hint). A move to
        # the next node (a refusal that named no other leader) is not one.
        self.redirected_from: tuple[str, float] | None = None
        self.counters: dict[str, int] = {}
        # Execution reports (``reports``: fetched once the session is open) and queries.
        self.feed = ReportFeed(self, resume_from)
        self.wants_reports = reports
        self.queries = PendingQueries(self, retry_timeout)
        self._handlers = self._dispatch_table()
        self._seen: _Seen | None = None  # invariants() only: what it saw at its last call

    def count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def open(self, nonce: int, now: float) -> list[Output]:
        """Open a new session (``nonce``: a non-zero u64 the caller draws, unique to this open):
        the outputs that send it. Re-sent like any request until answered; meanwhile nothing
        else may be submitted. The answer sets :attr:`session`; ids restart from its first. O(1)."""
        if self.pending:
            raise RuntimeError("open a session before sending requests (or once they are all answered)")
        cmd = open_command(nonce)
        self.opening = nonce
        at = now + self.retry_timeout
        self.pending[OPEN_REQUEST] = _Pending(cmd, self.primary, now, at)
        heapq.heappush(self.timers, Timer(at, OPEN_REQUEST, OPEN_REQUEST))
        return [Send(self.primary, wire.Request(self.client_id, OPEN_REQUEST, cmd))]

    def _check_submit(self) -> None:
        if self.fenced:
            raise SessionFenced(self.client_id, self.session)
        if self.opening:
            raise RuntimeError("the session is still opening: wait for its answer before submitting")

    def submit(self, command: bytes, now: float) -> tuple[int, list]:
        """Queue one command (a 80-byte record); return its request id and the send."""
        self._check_submit()
        rid = self.next_id
        self.next_id += 1
        at = now + self.retry_timeout
        self.pending[rid] = _Pending(command, self.primary, now, at)
        if len(self.timers) > 2 * len(self.pending) + 4096:
            # Mostly answered requests' timers: rebuild (a sorted list is a heap). Amortised O(1).
            self.timers = sorted(Timer(q.next_at, r, r) for r, q in self.pending.items())
        heapq.heappush(self.timers, Timer(at, rid, rid))
        return rid, [Send(self.primary, wire.Request(self.client_id, rid, command))]

    def submit_many(self, commands: list[bytes], now: float) -> tuple[str, list[wire.Request]]:
        """Queue several commands at once: the node they go to and their requests (ids in order).

        The same state as one :meth:`submit` per command (see :meth:`submit_window`). O(n).
        """
        target, cid = self.primary, self.client_id
        rid = self.submit_window(commands, now)
        return target, [wire.Request(cid, rid + i, c) for i, c in enumerate(commands)]

    def submit_window(self, commands: Sequence[bytes], now: float) -> int:
        """Queue a window of commands for the believed primary; return the first request id.

        Their ids are consecutive from it, in order. The same state and the same
        later ``tick`` outputs as one :meth:`submit` per command, but one timer item
        stands for the whole window and the requests share one state object until
        one of them needs its own (see :meth:`request_state`): the caller sends
        ``Request(client_id, first + i, commands[i])`` to :attr:`primary`. O(n) dict
        inserts and one heap push.
        """
        return self._window(commands, len(commands), now)

    def submit_records(self, records: bytes, now: float) -> int:
        """:meth:`submit_window` of the 80-byte command records packed back to back in ``records``.

        No ``bytes`` object per command is made until a request is re-sent alone. O(n).
        """
        if len(records) % wire.COMMAND_SIZE:
            raise ValueError(f"{len(records)} bytes is not a whole number of command records")
        return self._window(bytes(records), len(records) // wire.COMMAND_SIZE, now)

    def _window(self, commands: Sequence[bytes] | bytes, n: int, now: float) -> int:
        self._check_submit()
        rid = self.next_id
        if not n:
            return rid
        at = now + self.retry_timeout
        pending, timers = self.pending, self.timers
        if len(timers) > 2 * (len(pending) + n) + 4096:
            # Mostly answered requests' timers: rebuild (a sorted list is a heap). Amortised O(1).
            self.timers = timers = sorted(Timer(q.next_at, r, r) for r, q in pending.items())
        shared = _Window(b"", self.primary, now, at, first=rid, commands=commands)
        pending.update(dict.fromkeys(range(rid, rid + n), shared))
        heapq.heappush(timers, Timer(at, rid, rid + n - 1))
        self.next_id = rid + n
        return rid

    def _own(self, rid: int, p: _Pending) -> _Pending:
        """Request ``rid``'s own state object, split off its window's shared one if need be."""
        if type(p) is _Window:
            p = self.pending[rid] = _Pending(p.command_of(rid), p.target, p.sent_at, p.next_at)
        return p

    def request_state(self) -> dict[int, RequestState]:
        """Each unanswered request's state (command, target, sent_at, next_at, bounces, resends).

        What :attr:`pending` means, whether a request shares its window's state
        object or has its own: for tests and debugging. O(pending).
        """
        return {
            rid: RequestState(
                p.command_of(rid) if type(p) is _Window else p.command,
                p.target,
                p.sent_at,
                p.next_at,
                p.bounces,
                p.resends,
            )
            for rid, p in self.pending.items()
        }

    def _set_timer(self, rid: int, p: _Pending, at: float) -> None:
        self._own(rid, p).next_at = at
        heapq.heappush(self.timers, Timer(at, rid, rid))

    def _send(self, rid: int, p: _Pending, now: float, wait: float = 0.0) -> Send:
        p = self._own(rid, p)
        p.target, p.sent_at = self.primary, now
        self._set_timer(rid, p, now + (wait or self.retry_timeout))
        return Send(self.primary, wire.Request(self.client_id, rid, p.command))

    def _switch(self, node: str, now: float, why: str, hinted: bool = False) -> list[Output]:
        """Believe ``node`` is primary now and re-send everything unanswered to it (``hinted``: a
        refusal named it as leader; remembered in ``redirected_from``)."""
        if node == self.primary:
            return []
        log.info(
            "client_switch client=%d from=%s to=%s why=%s pending=%d",
            self.client_id,
            self.primary,
            node,
            why,
            len(self.pending),
        )
        if hinted:
            self.redirected_from = (self.primary, now)
        self.primary = node
        self.count("switches")
        return [self._send(rid, p, now) for rid, p in self.pending.items()]

    def _next_node(self, after: str, now: float) -> str:
        i = self.nodes.index(after) if after in self.nodes else -1
        n = len(self.nodes)
        for k in range(1, n + 1):
            cand = self.nodes[(i + k) % n]
            if self.suspect_until[cand] <= now or k == n:
                return cand
        return after  # pragma: no cover

    def handle(self, src: wire.Address, msg: wire.Message, now: float) -> list[Output]:
        """Feed a reply (or a ``PeerDown`` hint); return outputs."""
        handler = self._handlers.get(type(msg))
        if handler is None:
            self.count("unexpected_messages")
            return []
        return handler(src, msg, now)

    def _dispatch_table(self) -> dict[type[wire.Message], Handler]:
        """Message type -> bound handler ``(src, msg, now) -> outputs`` (as the node's)."""
        return {
            wire.Reply: self.on_reply,
            wire.PeerDown: self.on_peer_down,
            wire.Reports: self.feed.on_reports,
            wire.QueryReply: self.queries.on_reply,
        }

    # -- what the report feed and the queries ask of the core (``client_service``) -----------

    def fence(self) -> None:
        """A newer session of our client id holds it: this one sends nothing more."""
        if not self.fenced:
            log.warning("client_fenced client=%d session=%d", self.client_id, self.session)
        self.fenced = True

    def follow_hint(self, src: wire.Address, hint: str, now: float, why: str) -> list[Output]:
        """A node refused (``NOT_PRIMARY``/``UNAVAILABLE``) naming ``hint`` as leader: believe it
        (re-sending every unanswered request there), or the next node if it named none or
        itself; stay if it named a node we lost (it is about to be replaced: ask again soon), or
        the node a refusal moved us away from less than ``retry_timeout`` ago (``redirected_from``:
        a switchover's target names the old primary until it serves). Used by the report feed and
        the queries; a request's own refusal is :meth:`on_reply`'s."""
        here = src if isinstance(src, str) else self.primary
        back = self.redirected_from
        if back is not None and hint == back[0] and hint != src and now - back[1] < self.retry_timeout:
            # A planned switchover: the old primary's refusal sent us here, to its target, which
            # (a standby until the witness's grant) still names the old primary as its leader.
            # Following that back would move every request to a node that only refuses them
            # and bounce between the two until the target serves: ask here again soon instead.
            self.count("redirects_back_ignored")
            return []
        if hint and hint in self.suspect_until and hint != src and self.suspect_until[hint] <= now:
            return self._switch(hint, now, why, hinted=True)
        if not hint or hint == src:
            return self._switch(self._next_node(here, now), now, why)
        return []

    def lose_primary(self, now: float) -> list[Output]:
        """The believed primary went silent (a fetch or query timed out): suspect it, move on."""
        return self._primary_lost(now)

    def on_peer_down(self, src: wire.Address, msg: wire.PeerDown, now: float) -> list[Output]:
        """The driver lost its connection to ``msg.node``: suspect it; if it was the believed
        primary, re-send everything unanswered to the next node."""
        if msg.node in self.suspect_until:
            self.suspect_until[msg.node] = now + 10 * self.retry_timeout
        if msg.node == self.primary and self.pending:
            return self._switch(self._next_node(msg.node, now), now, "connection_lost")
        return []

    def on_reply(self, src: wire.Address, msg: wire.Reply, now: float) -> list[Output]:
        """A node's answer to one of our requests (or to none: counted, never a result)."""
        if msg.client_id != self.client_id:
            self.count("unexpected_messages")
            self.count("foreign_replies")  # another client id's: never a result here
            return []
        if isinstance(src, str) and src in self.heard_at and msg.status in (wire.OK, wire.BUSY):
            self.heard_at[src] = now  # the node is alive and serving: see tick()
        rid = msg.request_id
        if (
            self.opening
            and rid >> SESSION_SHIFT > self.session
            and not rid & COUNTER_MASK
            and msg.status == wire.OK
        ):
            return self._opened(src, msg, now)  # (a session newer than any we had: not an old open's twin)
        p = self.pending.get(rid)
        if p is None:
            self._unmatched(rid)
            return []
        if isinstance(src, str) and src in self.suspect_until:
            self.suspect_until[src] = NEVER
        if msg.status == wire.FENCED:
            # A newer session holds our client id: this request was never executed. The
            # others are still re-sent, so that each learns its fate (first result or FENCED).
            if not self.fenced:
                log.warning("client_fenced client=%d session=%d", self.client_id, self.session)
            self.fenced = True
            self.count("fenced_replies")
            del self.pending[rid]
            if rid == OPEN_REQUEST:
                self.opening = 0  # an open of a session fenced since (its first answer was lost)
            return [Done(rid, msg)]
        if msg.status == wire.BUSY:
            # Backpressure: the primary serves, but holds as many of ours as it takes. Re-send
            # this one to it later (tick), backing off; nothing else changes.
            self.count("busy")
            p = self._own(msg.request_id, p)
            p.resends += 1
            wait = min(BUSY_BACKOFF * (1 << min(p.resends - 1, 10)), self.retry_timeout / 2)
            self._set_timer(msg.request_id, p, now + wait)
            return []
        if msg.status in (wire.OK, wire.EXPIRED, wire.NOT_ENTITLED):
            # NOT_ENTITLED: refused before sequencing, whichever node answers (every node applies
            # the same entitlements), so final as it is; its events say why.
            del self.pending[msg.request_id]
            if isinstance(src, str) and src != self.primary and msg.status == wire.OK:
                self.primary = src
            return [Done(msg.request_id, msg)]
        if isinstance(src, str) and src != p.target:
            # A refusal of an earlier send: the request already went to the node we now
            # believe is primary, whose answer is what counts. Acting on it would re-send
            # again and count a bounce that makes the real next refusal wait.
            self.count("stale_redirects")
            return []
        # NOT_PRIMARY or UNAVAILABLE: follow the hint unless it points at a node we lost.
        self.count("redirects")
        p = self._own(msg.request_id, p)
        p.bounces += 1
        hint = msg.leader
        here = src if isinstance(src, str) else self.primary
        if hint and hint in self.suspect_until and hint != src and self.suspect_until[hint] <= now:
            target, why = hint, "redirect"
        elif msg.status == wire.UNAVAILABLE or not hint or hint == src:
            target, why = self._next_node(here, now), "unavailable"
        else:
            target, why = here, "hint_lost"  # the hint is a node we lost: ask here again shortly
        if p.bounces <= 1 and target != self.primary:
            return self._switch(target, now, why, hinted=why == "redirect")  # first bounce: follow at once
        # Bounced before: two nodes mid-hand-over may point at each other, so wait
        # a little (growing) before the re-send; tick() sends it to the new target.
        if target != self.primary:
            log.info(
                "client_switch client=%d from=%s to=%s why=%s (delayed)",
                self.client_id,
                self.primary,
                target,
                why,
            )
            self.primary = target
            self.count("switches")
        # Told to wait for a node we lost: the node that answered is likely about to
        # promote (and holds requests once it suspects its leader): probe every 1 ms.
        delay = 0.001 if why == "hint_lost" else min(0.001 * p.bounces, self.retry_timeout / 2)
        for rid, q in self.pending.items():
            if q is p:
                self._set_timer(rid, q, now + delay)
            elif q.target != target and q.next_at > now + delay:
                self._set_timer(rid, q, now + delay)
        return []

    def _opened(self, src: wire.Address, msg: wire.Reply, now: float) -> list[Output]:
        """The answer to our open (the group's replies come back on our own connection only):
        the session number it gives. A twin (an open re-sent) carries the same number."""
        del self.pending[OPEN_REQUEST]
        self.opening = 0
        self.fenced = False
        self.session = msg.request_id >> SESSION_SHIFT
        self.next_id = self.session_first = first_id(self.session)
        if isinstance(src, str) and src in self.nodes:
            self.primary = src
            self.suspect_until[src] = NEVER
        self.count("sessions_opened")
        log.info("client_session client=%d session=%d", self.client_id, self.session)
        return self.feed.start(now, msg.seq) if self.wants_reports else []

    def _unmatched(self, rid: int) -> None:
        """Count a reply that answers no pending request: a re-send's twin of one this session
        sent and had answered (late, harmless), or one it never sent (foreign: an error)."""
        if self.session_first <= rid < self.next_id or (self.session and rid == opened_id(self.session)):
            self.count("late_replies")
        else:
            self.count("foreign_replies")
            if self.counters["foreign_replies"] == 1:  # the counter tells how many; one line tells why
                log.warning(
                    "client_foreign_reply client=%d session=%d request=%d (a reply to no request of "
                    "this session: ignored)",
                    self.client_id,
                    self.session,
                    rid,
                )

    def handle_replies(
        self, src: str, replies: Sequence[wire.Reply], now: float, done: dict[int, wire.Reply]
    ) -> list[Output]:
        """:meth:`handle` for each of a ``Replies`` bundle from node ``src``, in order.

        A final reply goes into ``done`` (request id -> reply, in the order the
        ``Done`` outputs would come) instead of a ``Done`` output; the other
        outputs are returned. The common case, an OK answer from a known node
        to a pending request, is done inline with the same effect as
        :meth:`handle`; anything else goes through it. O(len(replies)).
        """
        out: list[Output] = []
        if src not in self.heard_at:
            for reply in replies:
                _take_done(self.handle(src, reply, now), done, out)
            return out
        cid, pending, handle, Reply, OK = self.client_id, self.pending, self.handle, wire.Reply, wire.OK
        pop, heard, suspect = pending.pop, self.heard_at, self.suspect_until
        for reply in replies:
            if (
                type(reply) is not Reply
                or reply.status != OK
                or reply.client_id != cid
                or not reply.request_id & COUNTER_MASK  # an open's answer
            ):
                _take_done(handle(src, reply, now), done, out)
                continue
            heard[src] = now
            rid = reply.request_id
            if pop(rid, None) is None:
                self._unmatched(rid)
                continue
            suspect[src] = NEVER
            self.primary = src
            done[rid] = reply
        return out

    def handle_answered(self, src: str, block: ReplyBlock, now: float) -> bool:
        """:meth:`handle_replies` of a decoded ``Replies`` bundle with no reply object per answer.

        When every reply in ``block`` (a ``replication.protocol._client_fast.ReplyBlock``)
        is an OK to this client from a known node, the bundle's effect is done
        here (the block pops its answered ids from :attr:`pending` and keeps them:
        they are the ``done`` answers, in order) and True returned. Otherwise
        nothing changes and False says: use :meth:`handle_replies` on
        ``block.replies()``. O(len(block)).
        """
        if src not in self.heard_at or not len(block):
            return False
        if not block.all_ok(self.client_id, self.session_first, self.next_id):
            return False  # also when one answers no request of this session: handle_replies sorts it
        late = block.pop_answered(self.pending)
        self.heard_at[src] = now
        if late:
            self.counters["late_replies"] = self.counters.get("late_replies", 0) + late
        if late < len(block):
            self.suspect_until[src] = NEVER
            self.primary = src
        return True

    def invariants(self) -> None:
        """Raise ``AssertionError`` naming the first rule the client core's state breaks.

        For the tests and the simulator (after every step), never the client's hot path.
        It remembers what it saw (``_seen``) to check the rules across steps:

        - the session and the next request id never decrease, nor does any counter;
        - every unanswered request is of this session (an id from ``session_first`` below
          ``next_id``), or is the open in flight: then it is the only one, and ``opening``
          says so;
        - a request sharing its window's state is inside that window;
        - every unanswered request has a timer due when it is (``Timer`` covering its id at
          its ``next_at``), and the timers are a heap, so ``tick`` re-sends it.

        O(pending + timers).
        """
        where = f"client {self.client_id} (session {self.session}, next id {self.next_id})"
        seen = self._seen
        if seen is not None:
            if self.session < seen.session or self.next_id < seen.next_id:
                raise AssertionError(
                    f"{where}: went back from session {seen.session}, next id {seen.next_id}"
                )
            for key, n in seen.counters.items():
                if self.counters.get(key, 0) < n:
                    raise AssertionError(f"{where}: counter {key} went back from {n}")
        if not self.session_first <= self.next_id:
            raise AssertionError(f"{where}: the session's first id {self.session_first} is past the next id")
        if OPEN_REQUEST in self.pending and (not self.opening or len(self.pending) != 1):
            raise AssertionError(f"{where}: an open is in flight beside {len(self.pending) - 1} requests")
        due: dict[float, list[Timer]] = {}
        for i, t in enumerate(self.timers):
            if i and t < self.timers[(i - 1) // 2]:
                raise AssertionError(f"{where}: the timers are not a heap at item {i}")
            due.setdefault(t.at, []).append(t)
        ids = list(self.pending)
        if ids != sorted(set(ids)):
            raise AssertionError(f"{where}: pending ids {ids[:8]} not in request id order")
        if self.primary not in self.nodes:
            raise AssertionError(f"{where}: primary {self.primary!r} is not a node")
        for rid, p in self.pending.items():
            if rid != OPEN_REQUEST and not self.session_first <= rid < self.next_id:
                raise AssertionError(f"{where}: request {rid} pending, not an id this session sent")
            if type(p) is _Window and not 0 <= rid - p.first < p.size():
                raise AssertionError(f"{where}: request {rid} shares the state of a window it is not in")
            if not any(t.first <= rid <= t.last for t in due.get(p.next_at, ())):
                raise AssertionError(f"{where}: request {rid} pending with no timer at {p.next_at}")
        self._seen = _Seen(self.next_id, self.session, dict(self.counters))

    def next_due(self) -> float:
        """When :meth:`tick` next has work: the earliest re-send, report fetch or query timer
        (``inf``: none). A driver that sleeps between ticks (``replication.aio``) sleeps until
        then at most. O(pending queries)."""
        first = self.timers[0].at if self.timers else float("inf")
        return min(first, self.feed.next_due(), self.queries.next_due())

    def tick(self, now: float) -> list[Output]:
        """Re-send requests whose timer expired; rotate to the next node when the primary went silent.

        O(expired · log pending).
        """
        out: list = []
        if self.feed.running:
            out += self.feed.tick(now)
        if self.queries.pending:
            out += self.queries.tick(now)
        timers, pending = self.timers, self.pending
        while timers and timers[0].at <= now:
            at, first, last = heapq.heappop(timers)  # a window's run of ids, or one id
            for rid in range(first, last + 1):
                p = pending.get(rid)
                if p is None or p.next_at != at:
                    continue  # answered, or re-armed since
                if p.target == self.primary and now - p.sent_at >= self.retry_timeout:
                    if now - self.heard_at.get(self.primary, NEVER) >= self.retry_timeout:
                        if rid < last:  # the rest of the run stays armed, as single items would
                            heapq.heappush(timers, Timer(at, rid + 1, last))
                        return out + self._primary_lost(now)
                    # The primary is answering others: only this request is slow (or was
                    # lost). Re-send it alone, backing off, and keep the primary.
                    self.count("slow_resends")
                    p = self._own(rid, p)
                    p.resends += 1
                    out.append(self._send(rid, p, now, self.retry_timeout * (1 << min(p.resends, 3))))
                    continue
                out.append(self._send(rid, p, now))
        return out

    def _primary_lost(self, now: float) -> list[Output]:
        lost = self.primary
        self.suspect_until[lost] = now + 10 * self.retry_timeout
        self.count("timeouts")
        nxt = self._next_node(lost, now)
        if nxt == lost:
            return [self._send(rid, p, now) for rid, p in self.pending.items()]
        return self._switch(nxt, now, "timeout")


def _take_done(outputs: list[Output], done: dict[int, wire.Reply], out: list[Output]) -> None:
    """``Done`` outputs into ``done``, the rest onto ``out`` (order kept)."""
    for o in outputs:
        if type(o) is Done:
            done[o.request_id] = o.reply
        else:
            out.append(o)
