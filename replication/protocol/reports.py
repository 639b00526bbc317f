"""Order ownership and execution reports: replicated state derived from the entries.

For: ``ReportBook``, which the replica feeds with every applied entry (its
client id, its command and the events the engine gave) and which keeps, the
same on every node because it follows the journal:

- the owner of each order (client id, account, instrument, side, price, open
  and filled qty): every live order, and the last ``order_window`` orders that
  ended (filled, cancelled), so ``order`` and ``open_orders`` answer from
  replicated state (docs/operations.md "Queries");
- per client id, its execution reports (docs/operations.md "Execution reports"): one
  for every event about one of its orders, also when another client's
  command caused it (a resting order's fill, a mass cancel), numbered
  ``1, 2, 3, ...`` per client (``n``: what makes a gap visible to the client)
  and carrying the group ``seq`` of the entry that produced it. The last
  ``report_window`` of them are kept per client; older ones are gone, and a
  client that asks for them is told so (``ReportsGone``) and resyncs with
  ``open_orders``.

Who gets a report: a ``rejected`` event goes to the client that sent the
command (the id it names may be another client's live order: a duplicate);
``accepted`` to the sender, who becomes the order's owner; a trade to the
taker's owner (``side`` taker) and to the maker's owner (``side`` maker);
``cancelled`` and ``replaced`` to the order's owner. Client id 0 (entries of
no client) owns orders but gets no reports. A session open's entry produces
none.

A report is 64 bytes: the engine's event record with its ``cmd`` word
replaced by the entry's seq and its first padding byte by the trade side
(``ROLE_TAKER``/``ROLE_MAKER``, 0 otherwise). Not for: deciding what is
committed (the primary serves reports up to its commit), delivery, or I/O.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections import OrderedDict
from typing import NamedTuple

from .records import COMMAND_SIZE
from .session import OP_SESSION

REPORT_SIZE = 64
ROLE_NONE, ROLE_TAKER, ROLE_MAKER = 0, 1, 2
ROLE_NAMES = {ROLE_TAKER: "taker", ROLE_MAKER: "maker"}
_ROLE_OFFSET = 62  # the first padding byte of an EVENT_DTYPE record
_SEQ = struct.Struct("<Q")
# The event record's words (matching.codes.EVENT_DTYPE): cmd, id, maker, price, qty,
# open_a, open_b, instrument, kind, reason, 2 pad bytes.
EVENT_WORDS = struct.Struct("<QQQqqqqIBBxx")
# The command fields the book needs (matching.codes.COMMAND_DTYPE): id, account, price, qty,
# display, instrument, op, side.
_COMMAND_FIELDS = struct.Struct("<QQqqqIBB")

# Event kinds and cancel reasons (matching.codes; the protocol layer does not import matching).
EV_ACCEPTED, EV_REJECTED, EV_TRADE, EV_CANCELLED, EV_REPLACED = 1, 2, 3, 4, 5
OP_NEW = 0

# Order status codes, and their names as queries answer them.
OPEN, FILLED, CANCELLED, EXPIRED = 0, 1, 2, 3
STATUS_NAMES = {OPEN: "open", FILLED: "filled", CANCELLED: "cancelled", EXPIRED: "expired"}

# Trim a client's reports when they exceed the window by this fraction (amortised O(1) per
# report; the same trim points on every replica, as they follow the same entries).
_TRIM_SLACK = 4


class ReportsGone(Exception):
    """The reports asked for are older than the retention window: resync with ``open_orders``.

    ``oldest``: the number of the oldest report still kept (where the client may go on from).
    """

    def __init__(self, message: str, oldest: int = 0) -> None:
        super().__init__(message)
        self.oldest = oldest


class OrderState(NamedTuple):
    """An order as ``ReportBook.order`` tells it."""

    id: int
    owner: int
    account: int
    instrument: int
    side: int  # 0 buy, 1 sell
    price: int
    open: int
    filled: int
    status: int  # OPEN, FILLED, CANCELLED, EXPIRED

    def as_dict(self) -> dict:
        """The JSON form a query answers with (docs/operations.md "Queries": ``Client.order``)."""
        return {
            "status": STATUS_NAMES[self.status],
            "instrument": self.instrument,
            "id": self.id,
            "side": "buy" if self.side == 0 else "sell",
            "price": self.price,
            "account": self.account,
            "open": self.open,
            "filled": self.filled,
        }


def _live_state(oid: int, rec: list) -> OrderState:
    """A live order's record (``ReportBook.live``) as its state."""
    owner, account, instrument, side, price, open_qty, filled = rec
    return OrderState(oid, owner, account, instrument, side, price, open_qty, filled, OPEN)


class _ClientReports:
    """One client's kept reports: ``buf`` holds reports ``first .. last`` back to back."""

    __slots__ = ("buf", "first", "last", "seqs")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.first = 1  # the n of the oldest kept report
        self.last = 0  # the n of the newest report (0: none yet)
        self.seqs: list[int] = []  # the seq of each kept report (bisect for ``after_seq``)


class ReportBookPy:
    """Owners, order states and execution reports, fed entry by entry (see the module docstring).

    The plain-Python specification: ``ReportBook`` is the C twin
    (``replication.native._reports``) when built, which must answer the same.

    Parameters
    ----------
    report_window : int
        Reports kept per client id (at least this many; trimmed in steps).
    order_window : int
        Ended orders remembered for queries, over all clients.
    """

    def __init__(self, report_window: int = 65536, order_window: int = 65536) -> None:
        self.report_window = report_window
        self.order_window = order_window
        # Live orders: id -> [owner, account, instrument, side, price, open, filled]. Insertion
        # order is acceptance order, the same on every replica.
        self.live: dict[int, list] = {}
        # Ended orders, oldest first: id -> OrderState (an id reused later replaces its entry).
        self.ended: OrderedDict[int, OrderState] = OrderedDict()
        # Client id -> its live order ids (a dict used as an ordered set: acceptance order).
        self.by_owner: dict[int, dict[int, None]] = {}
        self.clients: dict[int, _ClientReports] = {}
        # Client ids that got reports since ``take_touched`` was last called (the primary
        # serves waiting fetches of these only). Not replicated state: a delivery hint.
        self.touched: set[int] = set()

    # -- feeding --------------------------------------------------------------------

    def absorb(self, seq: int, client_id: int, command: bytes, events: bytes) -> None:
        """Take one applied entry: its client, its 80-byte command and its events. O(events)."""
        if command[44] == OP_SESSION:
            return  # a session open: no order, no report
        live, owner_of = self.live, self.by_owner
        for ev in EVENT_WORDS.iter_unpack(events):
            kind = ev[8]
            if kind == EV_TRADE:
                taker, maker, qty, taker_open, maker_open = ev[1], ev[2], ev[4], ev[5], ev[6]
                t = live.get(taker)
                if t is not None:
                    self._fill(taker, t, qty, taker_open)
                    self._report(t[0], seq, ev, ROLE_TAKER)
                m = live.get(maker)
                if m is not None:
                    self._fill(maker, m, qty, maker_open)
                    self._report(m[0], seq, ev, ROLE_MAKER)
            elif kind == EV_ACCEPTED:
                oid, account, price, qty, _, instrument, op, side = _COMMAND_FIELDS.unpack_from(command)
                if op == OP_NEW and oid == ev[1]:
                    self.ended.pop(oid, None)
                    live[oid] = [client_id, account, instrument, side, price, qty, 0]
                    owner_of.setdefault(client_id, {})[oid] = None
                self._report(client_id, seq, ev, ROLE_NONE)
            elif kind == EV_REJECTED:
                self._report(client_id, seq, ev, ROLE_NONE)
            else:
                rec = live.get(ev[1])
                if rec is None:
                    continue  # an order this book never saw accepted (restored from an old snapshot)
                if kind == EV_CANCELLED:
                    self._end(ev[1], rec, CANCELLED)
                elif kind == EV_REPLACED:
                    rec[4], rec[5] = ev[3], ev[4]
                self._report(rec[0], seq, ev, ROLE_NONE)

    def absorb_batch(self, first_seq: int, client_ids, commands: bytes, events: bytes, ends) -> None:
        """:meth:`absorb` for consecutive entries from ``first_seq``: entry ``i`` has client
        ``client_ids[i]``, command ``commands[80 i : 80 (i + 1)]`` and events
        ``events[ends[i]:ends[i + 1]]`` (``ends``: byte offsets, one more than entries). O(events)."""
        absorb = self.absorb
        for i, cid in enumerate(client_ids.tolist() if hasattr(client_ids, "tolist") else client_ids):
            a, b = int(ends[i]), int(ends[i + 1])
            if a != b:
                absorb(first_seq + i, cid, commands[COMMAND_SIZE * i : COMMAND_SIZE * (i + 1)], events[a:b])

    def _fill(self, oid: int, rec: list, qty: int, left: int) -> None:
        rec[6] += qty
        rec[5] = left
        if not left:
            self._end(oid, rec, FILLED)

    def _end(self, oid: int, rec: list, status: int) -> None:
        """Order ``oid`` ended: out of the live table, into the window of ended ones."""
        del self.live[oid]
        mine = self.by_owner.get(rec[0])
        if mine is not None:
            mine.pop(oid, None)
            if not mine:
                del self.by_owner[rec[0]]
        open_qty = rec[5] if status == FILLED else 0
        self.ended[oid] = OrderState(oid, rec[0], rec[1], rec[2], rec[3], rec[4], open_qty, rec[6], status)
        if len(self.ended) > self.order_window:
            self.ended.popitem(last=False)

    def _report(self, client_id: int, seq: int, ev: tuple, role: int) -> None:
        if not client_id:
            return
        log = self.clients.get(client_id)
        if log is None:
            log = self.clients[client_id] = _ClientReports()
        log.buf += EVENT_WORDS.pack(seq, *ev[1:])
        if role:
            log.buf[-REPORT_SIZE + _ROLE_OFFSET] = role
        log.last += 1
        log.seqs.append(seq)
        self.touched.add(client_id)
        kept = log.last - log.first + 1
        if kept > self.report_window + self.report_window // _TRIM_SLACK:
            drop = kept - self.report_window
            del log.buf[: drop * REPORT_SIZE]
            del log.seqs[:drop]
            log.first += drop

    def take_touched(self) -> set[int]:
        """The client ids that got reports since the last call (and forget them). O(1)."""
        touched, self.touched = self.touched, set()
        return touched

    # -- reading --------------------------------------------------------------------

    def last_report(self, client_id: int) -> int:
        """The ``n`` of the client's newest report (0: none yet). O(1)."""
        log = self.clients.get(client_id)
        return log.last if log is not None else 0

    def reports_after(self, client_id: int, after: int, max_seq: int, limit: int) -> tuple[int, bytes]:
        """The client's reports numbered above ``after`` with seq at most ``max_seq``, at most
        ``limit`` of them: ``(n of the first, records)``. ``ReportsGone`` if report ``after + 1``
        is no longer kept. O(limit)."""
        log = self.clients.get(client_id)
        if log is None or after >= log.last:
            return after + 1, b""
        if after + 1 < log.first:
            raise ReportsGone(
                f"client {client_id}: reports {after + 1}..{log.first - 1} are past the retention window "
                f"(the group keeps the last {self.report_window}); resync with open_orders",
                log.first,
            )
        lo = after + 1 - log.first
        hi = min(lo + limit, log.last - log.first + 1)
        seqs = log.seqs
        while hi > lo and seqs[hi - 1] > max_seq:  # the newest are the uncommitted ones, if any
            hi -= 1
        return after + 1, bytes(log.buf[lo * REPORT_SIZE : hi * REPORT_SIZE])

    def seq_of(self, client_id: int, n: int) -> int | None:
        """The seq of the client's report number ``n``; None if it has no such report (yet, or no
        longer: trimmed). O(1)."""
        log = self.clients.get(client_id)
        if log is None or not log.first <= n <= log.last:
            return None
        return log.seqs[n - log.first]

    def first_after_seq(self, client_id: int, seq: int) -> int:
        """The ``n`` just before the client's first report with a seq above ``seq`` (so that
        ``reports_after(client, that)`` resumes after ``seq``). ``ReportsGone`` if reports
        above ``seq`` may have been dropped. O(log kept)."""
        log = self.clients.get(client_id)
        if log is None:
            return 0
        i = bisect_right(log.seqs, seq)
        if i == 0 and log.first > 1:
            raise ReportsGone(
                f"client {client_id}: reports after seq {seq} are past the retention window "
                f"(the oldest kept is at seq {log.seqs[0] if log.seqs else '?'}); resync with open_orders",
                log.first,
            )
        return log.first - 1 + i

    def order(self, order_id: int) -> OrderState | None:
        """A live or recently ended order's state, or None. O(1)."""
        rec = self.live.get(order_id)
        if rec is not None:
            return _live_state(order_id, rec)
        return self.ended.get(order_id)

    def account_of(self, order_id: int) -> int | None:
        """The account of a live order, or None. O(1)."""
        rec = self.live.get(order_id)
        return rec[1] if rec is not None else None

    def open_orders(self, client_id: int, account: int | None = None) -> list[OrderState]:
        """The client's live orders, in acceptance order (``account``: only that one's). O(its orders)."""
        live = self.live
        out = [_live_state(oid, live[oid]) for oid in self.by_owner.get(client_id, ())]
        return out if account is None else [o for o in out if o.account == account]

    # -- snapshot -------------------------------------------------------------------

    def pack(self) -> bytes:
        """The whole book as bytes (for the replica's snapshot). O(state)."""
        parts = [_BOOK_HEAD.pack(self.report_window, self.order_window, len(self.live), len(self.ended))]
        parts += [_LIVE.pack(oid, *rec) for oid, rec in self.live.items()]
        parts += [_ENDED.pack(*o) for o in self.ended.values()]
        parts.append(_COUNT.pack(len(self.clients)))
        for cid, log in self.clients.items():
            parts.append(_CLIENT.pack(cid, log.first, log.last))
            parts += [_SEQ.pack(s) for s in log.seqs]
            parts.append(bytes(log.buf))
        return b"".join(parts)

    @classmethod
    def unpack(cls, blob: bytes | memoryview, pos: int) -> tuple[ReportBookPy, int]:
        """A book from :meth:`pack` bytes at ``pos``; returns it and the position after it.
        ``ValueError`` on bytes that run short. O(state)."""
        try:
            rw, ow, nlive, nended = _BOOK_HEAD.unpack_from(blob, pos)
            book = cls(rw, ow)
            pos += _BOOK_HEAD.size
            for _ in range(nlive):
                oid, *rec = _LIVE.unpack_from(blob, pos)
                pos += _LIVE.size
                book.live[oid] = rec
                book.by_owner.setdefault(rec[0], {})[oid] = None
            for _ in range(nended):
                o = OrderState(*_ENDED.unpack_from(blob, pos))
                pos += _ENDED.size
                book.ended[o.id] = o
            (nclients,) = _COUNT.unpack_from(blob, pos)
            pos += _COUNT.size
            for _ in range(nclients):
                cid, first, last = _CLIENT.unpack_from(blob, pos)
                pos += _CLIENT.size
                log = book.clients[cid] = _ClientReports()
                log.first, log.last = first, last
                kept = last - first + 1
                if kept < 0 or pos + kept * (8 + REPORT_SIZE) > len(blob):
                    raise ValueError("report table runs past its end")
                log.seqs = [s for (s,) in _SEQ.iter_unpack(bytes(blob[pos : pos + 8 * kept]))]
                pos += 8 * kept
                log.buf = bytearray(blob[pos : pos + kept * REPORT_SIZE])
                pos += kept * REPORT_SIZE
        except struct.error as exc:
            raise ValueError(f"report table damaged: {exc}") from None
        return book, pos


_BOOK_HEAD = struct.Struct("<QQQQ")  # report window, order window, n live, n ended
_LIVE = struct.Struct("<QQQIBqqq")  # id, owner, account, instrument, side, price, open, filled
_ENDED = struct.Struct("<QQQIBqqqB")  # OrderState fields
_COUNT = struct.Struct("<Q")
_CLIENT = struct.Struct("<QQQ")  # client id, first n kept, last n

# The C book, if built; else (a source checkout before `make build`) the same answers, slower.
try:
    from ..native import _reports
except ImportError:
    ReportBook: type[ReportBookPy] = ReportBookPy
else:
    _reports.bind(OrderState, ReportsGone)
    ReportBook = _reports.ReportBook  # type: ignore[assignment]
NATIVE = ReportBook is not ReportBookPy
