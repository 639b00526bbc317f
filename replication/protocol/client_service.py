"""The client's side of execution reports and queries, sans-IO: components of ``ClientCore``.

For: ``ReportFeed``, which keeps one ``ReportFetch`` outstanding at the
primary the core believes in and takes its committed reports in number order
(each exactly once: a number at or below the last taken is a duplicate and
dropped; a number past the next is never taken), re-sends the fetch to a new
primary after a fail-over (the reports are replicated state, numbered the same
on every node), and can resume after a restart from a group seq; and
``PendingQueries``, queries waiting for their answer, re-sent like requests.
Not for: sockets, clocks, or turning reports into dicts (``client``).

Both follow the core's primary (``ClientCore.primary``): a ``NOT_PRIMARY``
answer with a leader hint moves the core there (as a request's would; not back
to the node a refusal just moved it from: ``ClientCore.follow_hint``), and a
primary silent past ``fetch_timeout`` is lost for them as for requests.
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import wire
from .reports import REPORT_SIZE
from .wire import Send

if TYPE_CHECKING:  # pragma: no cover
    from .client_core import ClientCore

log = logging.getLogger("replication.client")

# Reports taken but not yet read by the application: past this, the feed stops fetching
# until the application reads (the group keeps them meanwhile, up to its report_window).
MAX_BUFFERED = 262_144
# A fetch unanswered this long is re-sent (the primary answers a parked fetch within its
# report_poll, 1 s by default, so silence this long means the primary is lost).
FETCH_TIMEOUT = 2.5
_SEQ = struct.Struct("<Q")  # a report's first word: its seq
REFUSED_BACKOFF = 0.001  # after a refusal, re-sent after this times the refusals in a row (capped)


@dataclass(slots=True)
class _Outstanding:
    target: str
    sent_at: float
    next_at: float  # re-sent then if unanswered


class ReportFeed:
    """Execution reports of one client, fetched from the group (see the module docstring).

    Parameters
    ----------
    core : ClientCore
        The client core whose primary, session and client id the fetches use.
    resume_from : int or None
        A group seq: from the reports of entries after it (a restarted client
        resuming where it stopped). None: from the session's open on.
    """

    def __init__(
        self, core: ClientCore, resume_from: int | None = None, fetch_timeout: float = FETCH_TIMEOUT
    ):
        self.core = core
        self.fetch_timeout = fetch_timeout
        self.resume_seq = resume_from  # the first fetch asks by seq, while this is not None
        self.after = 0  # the number of the last report taken
        self.last_seq = 0  # and its seq (the primary checks it is of the same entry)
        self.ready: list[bytes] = []  # reports taken, not yet read (REPORT_SIZE bytes each)
        self.gone = ""  # a GONE answer's detail, until the application is told (take_gone)
        self.running = False
        self.started = False  # (start() sets the resume point once)
        self.out: _Outstanding | None = None
        self.refusals = 0  # refusals in a row (the backoff)
        self.gones = 0  # GONE answers since invariants() last looked
        self._seen = (0, 0)  # invariants() only: the number taken and the newest seq ready at its last call

    def start(self, now: float, open_seq: int) -> list:
        """Begin fetching, once the session is open (its open was entry ``open_seq``). O(1)."""
        if self.resume_seq is None and not self.started:
            self.resume_seq = open_seq  # no resume point: this session's reports
        self.running = self.started = True
        return self._fetch(now) if self.out is None else []

    def _fetch(self, now: float, wait: float = 0.0) -> list:
        """Send (or, with ``wait``, schedule) the next fetch to the core's primary."""
        core = self.core
        if not self.running or core.fenced or len(self.ready) >= MAX_BUFFERED:
            self.out = None
            return []
        target = core.primary
        if wait:
            self.out = _Outstanding(target, now, now + wait)  # sent by tick at next_at
            return []
        self.out = _Outstanding(target, now, now + self.fetch_timeout)
        by_seq = self.resume_seq is not None
        seq = self.resume_seq if by_seq else self.last_seq
        msg = wire.ReportFetch(core.client_id, core.session, self.after, seq or 0, by_seq)
        core.count("report_fetches")
        return [Send(target, msg)]

    def take(self, now: float) -> tuple[list[bytes], list]:
        """The reports taken so far (each once), and the outputs that resume fetching if a full
        buffer had stopped it. O(reports)."""
        out, self.ready = self.ready, []
        resume = self._fetch(now) if self.running and self.out is None and not self.gone else []
        return out, resume

    def take_gone(self, now: float) -> tuple[str, list]:
        """A GONE answer's detail (once; "" if none), and the outputs that go on fetching from the
        oldest report the group still keeps."""
        detail, self.gone = self.gone, ""
        return detail, (self._fetch(now) if detail and self.running else [])

    def on_reports(self, src: wire.Address, m: wire.Reports, now: float) -> list:
        core = self.core
        if m.client_id != core.client_id or m.session != core.session:
            core.count("stale_reports")  # another session's (an older fetch of ours): never taken
            return []
        if m.status == wire.OK:
            if isinstance(src, str) and src in core.heard_at:
                core.heard_at[src] = now
            if not self._take(m.first, m.records):
                return []  # past a missing report (a stale answer): the outstanding fetch decides
            self.refusals = 0
            if self.out is not None and src == self.out.target:
                return self._fetch(now)
            return []
        if m.status == wire.FENCED:
            core.fence()
            self.out = None
            return []
        if m.status == wire.GONE:
            if m.after != self.after or self.gone:
                core.count("stale_reports")  # the answer to an earlier fetch: where we were then
                return []
            self.gone = m.detail or "execution reports past the group's retention window"
            self.after = m.first - 1 if m.first else self.after  # go on from where the group says
            self.gones += 1  # (invariants: the one place the number may go back)
            self.last_seq = 0  # (its report ``after`` is the group's: nothing to check it by)
            self.resume_seq = None
            self.out = None
            log.warning("client_reports_gone client=%d: %s", core.client_id, self.gone)
            return []
        # NOT_PRIMARY or UNAVAILABLE: follow the hint (as a request would), then ask again soon.
        if self.out is None or src != self.out.target:
            return []  # a refusal of an earlier fetch: the outstanding one decides
        self.refusals += 1
        out = core.follow_hint(src, m.leader, now, "report_redirect")
        return out + self._fetch(now, min(REFUSED_BACKOFF * self.refusals, 0.025))

    def _take(self, first: int, records: bytes) -> bool:
        """Take reports ``first, first + 1, ...``: those above ``after``, only if none is missing
        (False: this answer starts past a missing one, and nothing was taken)."""
        if self.resume_seq is not None:
            # The answer to a fetch by seq: the group numbered where that seq falls.
            if first > self.after + 1:
                self.after = first - 1
            self.resume_seq = None  # from now on by number
        n = len(records) // REPORT_SIZE
        if first > self.after + 1:
            self.core.count("report_gaps_refused")  # never taken past a missing one
            return False
        skip = self.after + 1 - first  # duplicates (an earlier fetch's answer, re-sent)
        if n and skip >= n:
            self.core.count("duplicate_reports")
        elif n:
            self.ready += [records[i * REPORT_SIZE : (i + 1) * REPORT_SIZE] for i in range(skip, n)]
            self.after = first + n - 1
            self.last_seq = _SEQ.unpack_from(records, (n - 1) * REPORT_SIZE)[0]
        return True

    def tick(self, now: float) -> list:
        """Re-send a fetch that is due: scheduled after a refusal, unanswered too long, or
        aimed at a node the core no longer believes is primary. O(1)."""
        o = self.out
        if o is None or not self.running:
            return []
        core = self.core
        if o.target != core.primary:
            return self._fetch(now)
        if now < o.next_at:
            return []
        if (
            now - o.sent_at >= self.fetch_timeout
            and now - core.heard_at.get(o.target, -1e18) >= self.fetch_timeout
        ):
            core.count("report_fetch_timeouts")
            return core.lose_primary(now) + self._fetch(now)
        return self._fetch(now)

    def next_due(self) -> float:
        """When :meth:`tick` next has work (inf: never)."""
        return self.out.next_at if self.out is not None and self.running else float("inf")

    def invariants(self, ordered_seqs: bool = True) -> None:
        """Raise ``AssertionError`` naming the first rule the feed's state breaks (tests and the
        simulator, after every step; it remembers what it saw at its last call):

        - the number of the last report taken never decreases, but where the group said GONE
          (an async fail-over lost reported entries: the new primary numbers from its own);
        - every report ready is ``REPORT_SIZE`` bytes;
        - with ``ordered_seqs``, the seqs of the reports ready never decrease, nor fall below the
          newest seen ready at the last call (reports are numbered in seq order; in async mode a
          fail-over may take reports back, and the new primary's may then carry lower seqs).

        O(ready)."""
        where = f"report feed of client {self.core.client_id} (after {self.after})"
        seen_after, seen_seq = self._seen
        if self.after < seen_after and not self.gones:
            raise AssertionError(f"{where}: went back from report {seen_after}")
        self.gones = 0
        seq = seen_seq
        for rec in self.ready:
            if len(rec) != REPORT_SIZE:
                raise AssertionError(f"{where}: a ready report of {len(rec)} bytes")
            s = int.from_bytes(rec[:8], "little")
            if ordered_seqs and s < seq:
                raise AssertionError(f"{where}: a ready report at seq {s} after one at seq {seq}")
            seq = max(seq, s)
        self._seen = (self.after, seq)


@dataclass(slots=True)
class _Query:
    msg: wire.Query
    target: str
    sent_at: float
    next_at: float
    refusals: int = 0


@dataclass(frozen=True, slots=True)
class QueryRefused:
    """A query's final answer when the group refused it: ``reason`` (``not_entitled``: the client's
    key may not see that account's orders) and the answer's JSON ``detail``."""

    reason: str
    detail: object


class PendingQueries:
    """Queries waiting for their answer; ``done`` maps a query id to its decoded JSON answer (a
    :class:`QueryRefused` for one the group refused)."""

    def __init__(self, core: ClientCore, timeout: float = 0.05) -> None:
        self.core = core
        self.timeout = timeout
        self.next_id = 1
        self.pending: dict[int, _Query] = {}
        self.done: dict[int, object] = {}

    def ask(
        self, kind: int, now: float, instrument: int = 0, order_id: int = 0, account: int | None = None
    ) -> tuple[int, list]:
        """Send a query; return its id and the outputs. O(1)."""
        core = self.core
        qid, self.next_id = self.next_id, self.next_id + 1
        msg = wire.Query(
            core.client_id, core.session, qid, kind, instrument, order_id, account or 0, account is not None
        )
        self.pending[qid] = _Query(msg, core.primary, now, now + self.timeout)
        return qid, [Send(core.primary, msg)]

    def on_reply(self, src: wire.Address, m: wire.QueryReply, now: float) -> list:
        core = self.core
        q = self.pending.get(m.query_id)
        if m.client_id != core.client_id or q is None or q.msg.session != core.session:
            core.count("stale_query_replies")
            return []
        if m.status == wire.OK:
            del self.pending[m.query_id]
            self.done[m.query_id] = json.loads(m.body)
            if isinstance(src, str) and src in core.heard_at:
                core.heard_at[src] = now
            return []
        if m.status == wire.FENCED:
            core.fence()
            return []
        if m.status == wire.NOT_ENTITLED:  # final, from any node: every node applies the same rule
            del self.pending[m.query_id]
            self.done[m.query_id] = QueryRefused("not_entitled", json.loads(m.body or b"null"))
            return []
        if src != q.target:
            return []
        q.refusals += 1
        out = core.follow_hint(src, m.leader, now, "query_redirect")
        q.next_at = now + min(REFUSED_BACKOFF * q.refusals, 0.025)
        return out

    def tick(self, now: float) -> list:
        out: list = []
        core = self.core
        for q in self.pending.values():
            if now < q.next_at and q.target == core.primary:
                continue
            if (
                now - q.sent_at >= self.timeout
                and now - core.heard_at.get(q.target, -1e18) >= self.timeout
                and q.target == core.primary
            ):
                out += core.lose_primary(now)
            q.target, q.sent_at, q.next_at = core.primary, now, now + self.timeout
            out.append(Send(core.primary, q.msg))
        return out

    def next_due(self) -> float:
        return min((q.next_at for q in self.pending.values()), default=float("inf"))
