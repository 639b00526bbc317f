"""The primary's client service beside requests: execution-report fetches and queries.

For: ``ClientService``, a component of ``PrimaryRole``. It answers a
client's ``ReportFetch`` with its committed execution reports from the
replicated ``reports.ReportBook`` (or parks the fetch until some commit, or
until ``report_poll`` passes: then an empty answer tells the client the
primary is alive), and a ``Query`` with an order's state or the client's
open orders, read now and released once the state it read is committed (a
query never tells what a fail-over could take back). And
``not_primary``: what every other role answers both with. Not for: what the
reports are (``reports``), requests, or the client's side
(``client_service``).

Committed means what a reply may tell: the commit in sync mode (every
in-sync standby acknowledged it), everything applied in async mode.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from typing import TYPE_CHECKING, NamedTuple

from .. import wire
from ..reports import ReportsGone
from ..wire import Send

if TYPE_CHECKING:  # pragma: no cover
    from .primary import PrimaryRole

log = logging.getLogger("replication.service")

FETCH = "fetch"  # the primary's timer: the oldest parked fetch's empty answer is due
MAX_REPORTS = 4096  # reports per answer (256 KiB): the client fetches again for more


class Parked(NamedTuple):
    """A fetch waiting for its client's next committed report."""

    src: wire.Address
    session: int
    after: int  # the client has reports up to this number
    deadline: float  # answered empty then


def not_primary(node) -> dict:  # noqa: ANN001 - a NodeMachine (no import cycle)
    """Handlers for a node that is not primary: both messages are answered ``NOT_PRIMARY`` with
    the leader it follows (or ``UNAVAILABLE`` if it knows none)."""

    def fetch(src: wire.Address, m: wire.ReportFetch, now: float) -> list:
        status = wire.NOT_PRIMARY if node.leader else wire.UNAVAILABLE
        return [Send(src, wire.Reports(m.client_id, m.session, status, 0, node.leader))]

    def query(src: wire.Address, m: wire.Query, now: float) -> list:
        status = wire.NOT_PRIMARY if node.leader else wire.UNAVAILABLE
        return [Send(src, wire.QueryReply(m.client_id, m.query_id, status, node.leader))]

    return {wire.ReportFetch: fetch, wire.Query: query}


class ClientService:
    """Report fetches and queries on a primary (see the module docstring)."""

    def __init__(self, role: PrimaryRole) -> None:
        self.role = role
        self.parked: dict[int, Parked] = {}  # client id -> its fetch waiting for reports
        self.expiry: deque[tuple[float, int]] = deque()  # (deadline, client id), oldest first
        # Client ids with reports not yet served to a parked fetch (ordered: a dict as a set).
        self.touched: dict[int, None] = {}
        self.held: deque[tuple[int, wire.Address, wire.QueryReply]] = deque()  # (seq read, dest, answer)

    def handlers(self) -> dict:
        return {wire.ReportFetch: self.on_fetch, wire.Query: self.on_query}

    def committed(self) -> int:
        """The highest seq whose effects a client may be told of."""
        role = self.role
        return role.node.replica.seq if role.node.settings.mode == "async" else role.commit

    def _refusal(self, src: wire.Address, m: wire.ReportFetch | wire.Query, now: float) -> list | None:
        """The answer if the primary may not serve ``m`` now (no lease, a fenced session).

        A draining primary still serves reads: it holds the group's state until its Handover
        leaves, and then tells every parked fetch to go to the target (``refuse_parked``).
        Refused at once, a fetch would send its client, and with it every request the client
        has in flight, to the target before the target knows of the drain (see
        ``PrimaryRole.hold_in_drain``)."""
        role = self.role
        if role.lease.lapsed(now) or not role.lease.held(now):
            status, leader = wire.UNAVAILABLE, ""
        elif m.session < role.session_now(m.client_id):
            status, leader = wire.FENCED, role.node.name
        else:
            return None
        role.node.count("service_refused")
        if type(m) is wire.Query:
            return [Send(src, wire.QueryReply(m.client_id, m.query_id, status, leader))]
        return [Send(src, wire.Reports(m.client_id, m.session, status, 0, leader))]

    # -- execution reports ----------------------------------------------------------------

    def on_fetch(self, src: wire.Address, m: wire.ReportFetch, now: float) -> list:
        refused = self._refusal(src, m, now)
        if refused is not None:
            return refused
        node = self.role.node
        book = node.replica.reports
        cid = m.client_id
        try:
            after = book.first_after_seq(cid, m.after_seq) if m.by_seq else m.after
            if not m.by_seq and after and self._lost(book, cid, after, m.after_seq):
                # The client took reports of entries this history does not have (an async
                # fail-over lost them): say so, and go on from our reports after its last seq.
                n = book.first_after_seq(cid, m.after_seq)
                raise ReportsGone(
                    f"client {cid}: reports after {after} (seq {m.after_seq}) were of entries a fail-over "
                    "lost (async mode); resync with open_orders",
                    n + 1,
                )
        except ReportsGone as exc:
            gone = self._gone(src, m.session, cid, exc, m.after)
            return [gone] if gone is not None else []  # (not yet: the client asks again)
        node.count("report_fetches")
        answer = self._answer(src, cid, m.session, after)
        if answer is not None:
            self.parked.pop(cid, None)
            return [answer]
        deadline = now + node.settings.report_poll
        self.parked[cid] = Parked(src, m.session, after, deadline)
        self.expiry.append((deadline, cid))
        self.role.timers.arm(FETCH, self.expiry[0][0])
        if book.last_report(cid) > after:
            self.touched[cid] = None  # reports not committed yet: served when they are
        return []

    @staticmethod
    def _lost(book, cid: int, after: int, after_seq: int) -> bool:  # noqa: ANN001 - a ReportBook
        """Whether the client's report ``after`` (of entry ``after_seq``) is not ours: we have fewer
        reports, or ours of that number is of another entry. (Trimmed: cannot tell, not lost.)"""
        if book.last_report(cid) < after:
            return True
        seq = book.seq_of(cid, after)
        return bool(after_seq) and seq is not None and seq != after_seq  # (0: the client cannot tell)

    def _gone(self, src: wire.Address, session: int, cid: int, exc: ReportsGone, after: int) -> Send | None:
        """The GONE answer, or None while the report it tells the client to go on from is not
        committed: the client would take up the numbering of reports a fail-over may still take
        back (an isolated primary's, say). Until then the fetch gets no answer."""
        oldest = self.role.node.replica.reports.seq_of(cid, exc.oldest)
        if oldest is not None and oldest > self.committed():
            self.role.node.count("reports_gone_deferred")
            return None
        self.role.node.count("reports_gone")
        log.warning("reports_gone client=%d: %s", cid, exc)
        return Send(src, wire.Reports(cid, session, wire.GONE, exc.oldest, "", str(exc), b"", after))

    def _answer(self, src: wire.Address, cid: int, session: int, after: int) -> Send | None:
        """The committed reports above ``after`` as an answer, or None if there are none yet."""
        try:
            first, records = self.role.node.replica.reports.reports_after(
                cid, after, self.committed(), MAX_REPORTS
            )
        except ReportsGone as exc:
            return self._gone(src, session, cid, exc, after)
        if not records:
            return None
        return Send(src, wire.Reports(cid, session, wire.OK, first, "", "", records))

    def note_applied(self) -> None:
        """After a batch: the clients it gave reports to, if their fetch is parked. O(clients touched)."""
        touched = self.role.node.replica.reports.take_touched()
        if self.parked:
            parked = self.parked
            for cid in sorted(touched):  # sorted: the same order on every run
                if cid in parked:
                    self.touched[cid] = None

    def serve(self) -> list:
        """Answers that the commit just released: parked fetches with committed reports, and
        held query answers. O(touched + released)."""
        out: list = []
        if self.touched:
            for cid in list(self.touched):
                p = self.parked.get(cid)
                if p is None:
                    del self.touched[cid]
                    continue
                answer = self._answer(p.src, cid, p.session, p.after)
                if answer is not None:
                    out.append(answer)
                    del self.parked[cid], self.touched[cid]
        if self.held:
            committed, held = self.committed(), self.held
            while held and held[0][0] <= committed:
                _, dest, reply = held.popleft()
                out.append(Send(dest, reply))
        return out

    def expire(self, now: float) -> list:
        """Empty answers for fetches parked ``report_poll`` ago. O(expired)."""
        out: list = []
        expiry, parked = self.expiry, self.parked
        while expiry and expiry[0][0] <= now:
            at, cid = expiry.popleft()
            p = parked.get(cid)
            if p is not None and p.deadline == at:
                del parked[cid]
                self.touched.pop(cid, None)
                out.append(Send(p.src, wire.Reports(cid, p.session, wire.OK, p.after + 1)))
        if expiry:
            self.role.timers.arm(FETCH, expiry[0][0])
        else:
            self.role.timers.clear(FETCH)
        return out

    def refuse_parked(self, status: int, leader: str) -> list:
        """The role ends: tell every parked fetch where to go (``status``, ``leader``), at once rather
        than after the client's fetch timeout. Held query answers are dropped: a query is a read,
        and the client asks again. O(parked)."""
        out = [Send(p.src, wire.Reports(cid, p.session, status, 0, leader)) for cid, p in self.parked.items()]
        self.parked.clear()
        self.touched.clear()
        self.held.clear()
        self.expiry.clear()
        self.role.timers.clear(FETCH)
        return out

    # -- queries --------------------------------------------------------------------------

    def on_query(self, src: wire.Address, m: wire.Query, now: float) -> list:
        refused = self._refusal(src, m, now)
        if refused is not None:
            return refused
        node = self.role.node
        book = node.replica.reports
        if m.kind == wire.QUERY_ORDER:
            o = book.order(m.order_id)
            if o is not None and o.instrument == m.instrument:
                body: object = o.as_dict()
            else:
                body = {
                    "status": "unknown",
                    "instrument": m.instrument,
                    "id": m.order_id,
                    "open": 0,
                    "filled": 0,
                }
        elif m.kind == wire.QUERY_OPEN_ORDERS:
            mine = book.open_orders(m.client_id, m.account if m.has_account else None)
            body = [o.as_dict() for o in mine]
        else:
            node.count("queries_malformed")
            return []
        node.count("queries")
        reply = wire.QueryReply(m.client_id, m.query_id, wire.OK, "", json.dumps(body).encode())
        seq = node.replica.seq
        if seq <= self.committed() and not self.held:
            return [Send(src, reply)]
        self.held.append((seq, src, reply))
        return []

    def invariants(self, who: str) -> None:
        """Raise ``AssertionError`` on a broken rule (the node's ``invariants`` calls it). O(parked + held)."""
        book = self.role.node.replica.reports
        armed = FETCH in self.role.timers.armed()
        assert armed == bool(self.expiry), f"{who}: fetch timer armed {armed} with {len(self.expiry)} parked"
        for cid, p in self.parked.items():
            assert p.after <= book.last_report(cid), f"{who}: client {cid} parked after report {p.after}"
            assert (p.deadline, cid) in self.expiry, f"{who}: client {cid}'s parked fetch has no expiry"
        seqs = [seq for seq, _, _ in self.held]
        assert seqs == sorted(seqs) and all(s <= self.role.node.replica.seq for s in seqs), (
            f"{who}: held query answers at seqs {seqs[:4]}..."
        )
