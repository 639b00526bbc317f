"""The reference engine: the matching rules in plain, readable Python.

This is the executable specification of ``docs/semantics.md`` and the oracle
the Cython core is tested against (``tests/differential``). It favours being
obviously right over being fast: books are ``sortedcontainers.SortedDict``
maps of price levels, each level an insertion-ordered dict of orders (FIFO
with O(1) removal). It exposes the same surface as ``matching.Engine``.

Not for production use: it is one to two orders of magnitude slower.
"""

from __future__ import annotations

import heapq
import json
import zlib
from collections.abc import Mapping
from typing import Any

from . import codes
from .codes import absorb
from .commands import (
    CommandRecord,
    cancel_dict,
    command_record,
    mass_cancel_dict,
    new_order_record,
    replace_dict,
)
from .events import Event, make_event
from .reference_book import RESTING_TIFS, TIF_LABELS, Book, Order, Stop
from .reference_timed import TimedRules

SNAPSHOT_MAGIC = b"MCREF"
SNAPSHOT_VERSION = 2  # 2: time, DAY/GTD, stops (issue 19); version 1 still restores


class ReferenceEngine(TimedRules):
    """Price-time matching for many instruments; see docs/semantics.md for every rule."""

    def __init__(self) -> None:
        self.books: dict[int, Book] = {}
        self.orders: dict[int, Order] = {}  # live orders by id (lookup only, never iterated)
        self.stops: dict[int, Stop] = {}  # untriggered stops by id (lookup only)
        self.digest = 0
        self.commands_applied = 0
        self.now = 0  # the latest command ts seen (time never goes back)
        # GTD expiries: (expire_ts, seq, id); an entry whose order is gone (or whose id now
        # names another order, of another seq) is skipped when it comes up.
        self.expiries: list[tuple[int, int, int]] = []
        self._prints: tuple[int, int] | None = None  # (lo, hi) of this command's trade prices
        # Risk limits by account: [max_open_qty, max_position]; positions by (account, instrument)
        # from fills since the account's first risk command.
        self.risk: dict[int, list[int]] = {}
        self.positions: dict[tuple[int, int], int] = {}

    # ----- the per-call API ------------------------------------------------

    def submit(
        self,
        instrument: int,
        id: int,
        side: str,
        price: int | None = None,
        qty: int = 0,
        type: str = "limit",
        tif: str = "GTC",
        account: int = 0,
        post_only: bool = False,
        display_qty: int = 0,
        stp: str = "none",
        stop_price: int | None = None,
        expire_ts: int | None = None,
        ts: int | None = None,
    ) -> list[Event]:
        """A new order. Returns its events."""
        return self.apply_record(
            new_order_record(
                instrument,
                id,
                side,
                price,
                qty,
                type,
                tif,
                account,
                post_only,
                display_qty,
                stp,
                stop_price,
                expire_ts,
                ts,
            )
        )

    def cancel(self, instrument: int, id: int) -> list[Event]:
        return self.apply(cancel_dict(instrument, id))

    def replace(
        self,
        instrument: int,
        id: int,
        price: int | None = None,
        qty: int | None = None,
        stop_price: int | None = None,
        ts: int | None = None,
    ) -> list[Event]:
        return self.apply(replace_dict(instrument, id, price, qty, stop_price, ts))

    def mass_cancel(self, account: int | None = None, instrument: int | None = None) -> list[Event]:
        return self.apply(mass_cancel_dict(account, instrument))

    def apply(self, cmd: Mapping) -> list[Event]:
        """Apply one command-log dict."""
        return self.apply_record(command_record(cmd))

    def apply_record(self, rec: Any) -> list[Event]:
        """Apply one command record (a tuple in ``COMMAND_DTYPE`` field order)."""
        c = rec if isinstance(rec, CommandRecord) else CommandRecord(*(int(v) for v in rec))
        words: list[tuple[int, ...]] = []
        # Time first, whatever the command: what its ts makes due expires before its own events.
        if c.ts > self.now:
            self.now = c.ts
        if self.expiries and self.expiries[0][0] <= self.now:
            self._expire_due(words)
        self._prints = None
        handler = {
            codes.OP_NEW: self._new,
            codes.OP_CANCEL: self._cancel,
            codes.OP_REPLACE: self._replace,
            codes.OP_MASS_CANCEL: self._mass_cancel,
            codes.OP_TIME: self._time,
            codes.OP_END_OF_DAY: self._end_of_day,
            codes.OP_INSTRUMENT: self._instrument,
            codes.OP_RISK: self._risk,
        }.get(c.op)
        if handler is None:
            self._reject(words, c, codes.R_INVALID_OP)
        elif c.flags & codes.BAD_FIELD:
            self._reject(words, c, codes.R_BAD_FIELD)
        else:
            handler(c, words)
            if self._prints is not None:
                self._trigger_stops(c.instrument, words)
        h = self.digest
        for w in words:
            for v in w:
                h = absorb(h, v)
        self.digest = absorb(h, len(words))
        self.commands_applied += 1
        return [make_event(*w) for w in words]

    def apply_batch(self, cmds, digests=None) -> Any:
        """Apply a ``COMMAND_DTYPE`` array; return an ``EVENT_DTYPE`` array (same as the Cython batch API).

        ``digests``, if given, is a writable ``uint64`` array of at least
        ``len(cmds)`` that receives the chained digest after each command.
        """
        import numpy as np

        from .events import event_words

        if digests is not None and len(digests) < len(cmds):
            raise ValueError(f"digests holds {len(digests)} values, the batch has {len(cmds)} commands")
        rows = []
        for i, rec in enumerate(cmds.tolist()):
            for ev in self.apply_record(rec):
                kind, reason, instrument, id_, maker, price, qty, a, b = event_words(ev)
                rows.append((i, id_, maker, price, qty, a, b, instrument, kind, reason))
            if digests is not None:
                digests[i] = self.digest
        return np.array(rows, dtype=codes.EVENT_DTYPE)

    # ----- events ------------------------------------------------------------

    @staticmethod
    def _reject(words: list, c: CommandRecord, reason: int) -> None:
        words.append((codes.EV_REJECTED, reason, c.instrument, c.id, 0, 0, 0, 0, 0))

    @staticmethod
    def _cancelled(words: list, o_or_id, instrument: int, open_qty: int, reason: int) -> None:
        words.append((codes.EV_CANCELLED, reason, instrument, o_or_id, 0, 0, 0, open_qty, 0))

    # ----- commands ------------------------------------------------------------

    def _new(self, c: CommandRecord, words: list) -> None:
        reason = self._check_new(c)
        if reason:
            self._reject(words, c, reason)
            return
        book = self.books.get(c.instrument)
        if book is None:
            book = self.books[c.instrument] = Book(c.instrument)
        words.append((codes.EV_ACCEPTED, 0, c.instrument, c.id, 0, 0, 0, 0, 0))
        seq = self.commands_applied
        if c.type >= codes.TYPE_STOP:
            stop = self.stops[c.id] = book.stops[c.id] = Stop(c, seq)
            if stop.tif == codes.TIF_GTD:
                heapq.heappush(self.expiries, (stop.expire_ts, seq, stop.id))
            return
        is_market = c.type == codes.TYPE_MARKET
        limit = None if is_market else c.price
        o = Order(c.id, c.instrument, c.side, c.price, c.qty, c.display_qty, c.account, c.stp, c.post_only)
        o.tif, o.expire_ts, o.seq = c.tif, c.expire_ts, seq
        self._match_and_rest(book, o, limit, rests=(not is_market and c.tif in RESTING_TIFS), words=words)
        if c.tif == codes.TIF_GTD and self.orders.get(c.id) is o:
            heapq.heappush(self.expiries, (o.expire_ts, seq, o.id))

    def _check_new(self, c: CommandRecord) -> int:
        """The reject reason of a new order, or 0; checks in the documented order."""
        if c.side not in (codes.SIDE_BUY, codes.SIDE_SELL):
            return codes.R_INVALID_SIDE
        if c.type > codes.TYPE_STOP_LIMIT:
            return codes.R_INVALID_TYPE
        if c.tif > codes.TIF_GTD:
            return codes.R_INVALID_TIF
        if c.stp > codes.STP_CANCEL_BOTH:
            return codes.R_INVALID_STP
        if (
            c.flags & codes.OUT_OF_RANGE
            or c.price > codes.MAX_PRICE
            or c.qty > codes.MAX_QTY
            or c.display_qty > codes.MAX_QTY
            or c.stop_price > codes.MAX_PRICE
        ):
            return codes.R_OUT_OF_RANGE
        if c.id == 0:
            return codes.R_INVALID_ID
        if c.qty < 1:
            return codes.R_INVALID_QTY
        is_stop = c.type >= codes.TYPE_STOP
        if c.type == codes.TYPE_LIMIT or c.type == codes.TYPE_STOP_LIMIT:
            if not c.flags & codes.HAS_PRICE or c.price < 1:
                return codes.R_INVALID_PRICE
        elif c.flags & codes.HAS_PRICE:
            return codes.R_PRICE_ON_MARKET
        if c.display_qty < 0 or c.display_qty > c.qty:
            return codes.R_INVALID_DISPLAY
        if c.post_only and (c.type != codes.TYPE_LIMIT or c.tif not in RESTING_TIFS):
            return codes.R_INVALID_COMBINATION
        if is_stop and c.tif == codes.TIF_FOK:
            return codes.R_INVALID_COMBINATION
        if (c.stop_price < 1) if is_stop else (c.stop_price != 0):
            return codes.R_INVALID_STOP
        if (c.expire_ts <= self.now) if c.tif == codes.TIF_GTD else (c.expire_ts != 0):
            return codes.R_INVALID_EXPIRY
        book = self.books.get(c.instrument)
        if book is not None:
            has_limit = c.type in (codes.TYPE_LIMIT, codes.TYPE_STOP_LIMIT)
            reason = book.rules_reason(has_limit, c.price, c.stop_price if is_stop else None, c.qty)
            if reason:
                return reason
        if self._risk_breach(c.account, c.instrument, c.side, c.qty, c.qty):
            return codes.R_RISK_LIMIT
        if c.id in self.orders or c.id in self.stops:
            return codes.R_DUPLICATE_ID
        if c.post_only and book is not None and book.crosses(c.side, c.price):
            return codes.R_WOULD_CROSS
        if c.tif == codes.TIF_FOK:
            limit = None if c.type == codes.TYPE_MARKET else c.price
            probe = Order(c.id, c.instrument, c.side, c.price, c.qty, 0, c.account, c.stp, 0)
            if book is None or not self._fok_fillable(book, probe, limit):
                return codes.R_FOK_UNFILLED
        return 0

    def _cancel(self, c: CommandRecord, words: list) -> None:
        if c.flags & codes.OUT_OF_RANGE:
            return self._reject(words, c, codes.R_OUT_OF_RANGE)
        if c.id == 0:
            return self._reject(words, c, codes.R_INVALID_ID)
        stop = self.stops.get(c.id)
        if stop is not None and stop.instrument == c.instrument:
            self._remove_stop(stop)
            return self._cancelled(words, stop.id, stop.instrument, stop.qty, codes.R_USER)
        o = self.orders.get(c.id)
        if o is None or o.instrument != c.instrument:
            return self._reject(words, c, codes.R_UNKNOWN_ORDER)
        self._remove(o)
        self._cancelled(words, o.id, o.instrument, o.open, codes.R_USER)

    def _replace(self, c: CommandRecord, words: list) -> None:
        has_price = bool(c.flags & codes.HAS_PRICE)
        has_qty = bool(c.flags & codes.HAS_QTY)
        has_stop = bool(c.flags & codes.HAS_STOP_PRICE)
        if (
            c.flags & codes.OUT_OF_RANGE
            or (has_price and c.price > codes.MAX_PRICE)
            or (has_qty and c.qty > codes.MAX_QTY)
            or (has_stop and c.stop_price > codes.MAX_PRICE)
        ):
            return self._reject(words, c, codes.R_OUT_OF_RANGE)
        if c.id == 0:
            return self._reject(words, c, codes.R_INVALID_ID)
        stop = self.stops.get(c.id)
        o = self.orders.get(c.id)
        if stop is not None and stop.instrument == c.instrument:
            return self._replace_stop(stop, c, words)
        if o is None or o.instrument != c.instrument:
            return self._reject(words, c, codes.R_UNKNOWN_ORDER)
        if has_qty and c.qty < 0:
            return self._reject(words, c, codes.R_INVALID_QTY)
        if has_price and c.price < 1:
            return self._reject(words, c, codes.R_INVALID_PRICE)
        if has_stop:
            return self._reject(words, c, codes.R_INVALID_STOP)  # a resting order has no stop price
        book = self.books[o.instrument]
        reason = book.rules_reason(has_price, c.price, None, c.qty if has_qty else None)
        if reason:
            return self._reject(words, c, reason)
        if (
            has_qty
            and c.qty > o.open
            and self._risk_breach(o.account, o.instrument, o.side, c.qty - o.open, c.qty)
        ):
            return self._reject(words, c, codes.R_RISK_LIMIT)
        new_price = c.price if has_price else o.price
        new_qty = c.qty if has_qty else o.open
        if new_qty == 0:
            self._remove(o)
            return self._cancelled(words, o.id, o.instrument, o.open, codes.R_USER)
        if o.post_only and new_price != o.price and book.crosses(o.side, new_price):
            return self._reject(words, c, codes.R_WOULD_CROSS)
        if new_price == o.price and new_qty <= o.open:
            # Only the quantity shrinks: the order keeps its place in the queue.
            level = book.sides[o.side][book.key(o.side, o.price)]
            new_visible = min(o.visible, new_qty)
            level.total -= o.visible - new_visible
            o.visible = new_visible
            o.open = new_qty
            words.append((codes.EV_REPLACED, 0, o.instrument, o.id, 0, new_price, new_qty, 0, 0))
            return None
        # A new price or a larger quantity loses priority and may trade on the way in.
        self._remove(o)
        o.price = new_price
        o.open = new_qty
        o.visible = min(o.display, new_qty) if o.display else new_qty
        words.append((codes.EV_REPLACED, 0, o.instrument, o.id, 0, new_price, new_qty, 0, 0))
        self._match_and_rest(book, o, new_price, rests=True, words=words)
        return None

    def _mass_cancel(self, c: CommandRecord, words: list) -> None:
        if c.flags & codes.OUT_OF_RANGE:
            return self._reject(words, c, codes.R_OUT_OF_RANGE)
        victims: list = []
        for instrument in sorted(self.books):
            if c.flags & codes.HAS_INSTRUMENT and instrument != c.instrument:
                continue
            book = self.books[instrument]
            for o in book.live_orders():
                if not c.flags & codes.HAS_ACCOUNT or o.account == c.account:
                    victims.append(o)
            for stop in sorted(book.stops.values(), key=lambda s: s.seq):
                if not c.flags & codes.HAS_ACCOUNT or stop.account == c.account:
                    victims.append(stop)
        for o in victims:
            if isinstance(o, Stop):
                self._remove_stop(o)
                self._cancelled(words, o.id, o.instrument, o.qty, codes.R_MASS_CANCEL)
            else:
                self._remove(o)
                self._cancelled(words, o.id, o.instrument, o.open, codes.R_MASS_CANCEL)
        return None

    # ----- matching -----------------------------------------------------------

    @staticmethod
    def _self_trade(taker: Order, maker: Order) -> bool:
        return taker.stp != codes.STP_NONE and taker.account != 0 and maker.account == taker.account

    @staticmethod
    def _within(side: int, limit: int | None, level_price: int) -> bool:
        if limit is None:
            return True
        return level_price <= limit if side == codes.SIDE_BUY else level_price >= limit

    def _fok_fillable(self, book: Book, taker: Order, limit: int | None) -> bool:
        """Could ``taker`` fill completely right now? The walk of docs/semantics.md."""
        stops_at_self = taker.stp in (codes.STP_CANCEL_TAKER, codes.STP_CANCEL_BOTH)
        available = 0
        for level in book.levels(1 - taker.side):
            if not self._within(taker.side, limit, level.price):
                break
            makers = list(level.orders.values())
            own = [i for i, m in enumerate(makers) if self._self_trade(taker, m)]
            if stops_at_self and own:
                available += sum(m.visible for m in makers[: own[0]])
                return available >= taker.open
            available += sum(m.open for m in makers if not self._self_trade(taker, m))
            if available >= taker.open:
                return True
        return False

    def _match_and_rest(self, book: Book, taker: Order, limit: int | None, rests: bool, words: list) -> None:
        """Trade ``taker`` against the other side, then rest or cancel what is left."""
        remaining = taker.open
        while remaining > 0:
            level = book.best(1 - taker.side)
            if level is None or not self._within(taker.side, limit, level.price):
                break
            maker = next(iter(level.orders.values()))
            if self._self_trade(taker, maker):
                if taker.stp in (codes.STP_CANCEL_MAKER, codes.STP_CANCEL_BOTH):
                    self._remove(maker)
                    self._cancelled(words, maker.id, maker.instrument, maker.open, codes.R_SELF_TRADE)
                if taker.stp in (codes.STP_CANCEL_TAKER, codes.STP_CANCEL_BOTH):
                    self._cancelled(words, taker.id, taker.instrument, remaining, codes.R_SELF_TRADE)
                    self.orders.pop(taker.id, None)
                    return
                continue
            qty = min(remaining, maker.visible)
            remaining -= qty
            maker.visible -= qty
            maker.open -= qty
            level.total -= qty
            book.last_price = level.price
            if self.risk:
                sign = 1 if taker.side == codes.SIDE_BUY else -1
                for account, signed in ((taker.account, sign * qty), (maker.account, -sign * qty)):
                    if account in self.risk:
                        key = (account, taker.instrument)
                        self.positions[key] = self.positions.get(key, 0) + signed
            lo_hi = self._prints
            self._prints = (
                (level.price, level.price)
                if lo_hi is None
                else (min(lo_hi[0], level.price), max(lo_hi[1], level.price))
            )
            words.append(
                (
                    codes.EV_TRADE,
                    0,
                    taker.instrument,
                    taker.id,
                    maker.id,
                    level.price,
                    qty,
                    remaining,
                    maker.open,
                )
            )
            if maker.visible == 0:
                if maker.open == 0:
                    self._remove(maker)
                else:
                    # Iceberg refill: a fresh slice, at the back of the queue.
                    book.take_out(maker)
                    maker.visible = min(maker.display, maker.open)
                    book.rest(maker)
        taker.open = remaining
        if remaining == 0:
            self.orders.pop(taker.id, None)
        elif rests:
            taker.visible = min(taker.display, remaining) if taker.display else remaining
            book.rest(taker)
            self.orders[taker.id] = taker
        else:
            self.orders.pop(taker.id, None)
            self._cancelled(words, taker.id, taker.instrument, remaining, codes.R_REMAINDER)

    def _remove(self, o: Order) -> None:
        self.books[o.instrument].take_out(o)
        del self.orders[o.id]

    # ----- queries --------------------------------------------------------------

    def depth(self, instrument: int, levels: int | None = None) -> tuple[list, list]:
        """Aggregated levels ``[(price, visible qty, orders), ...]`` per side, best first. O(levels)."""
        book = self.books.get(instrument)
        if book is None:
            return [], []
        out = []
        for side in (codes.SIDE_BUY, codes.SIDE_SELL):
            rows = [(lv.price, lv.total, len(lv.orders)) for lv in book.levels(side)]
            out.append(rows if levels is None else rows[:levels])
        return out[0], out[1]

    def instruments(self) -> list[int]:
        """Every instrument named by an accepted order, ascending."""
        return sorted(self.books)

    def bbo(self, instrument: int) -> tuple[int, int, int, int]:
        """``(bid_price, bid_qty, ask_price, ask_qty)`` of the best levels; 0s where a side is empty. O(1)."""
        book = self.books.get(instrument)
        out = [0, 0, 0, 0]
        for side in (codes.SIDE_BUY, codes.SIDE_SELL):
            level = book.best(side) if book is not None else None
            if level is not None:
                out[2 * side], out[2 * side + 1] = level.price, level.total
        return out[0], out[1], out[2], out[3]

    def order(self, id: int) -> dict | None:
        """The state of one live order (resting, or a stop waiting for its trigger), or None."""
        stop = self.stops.get(id)
        if stop is not None:
            return {
                "instrument": stop.instrument,
                "side": "buy" if stop.side == codes.SIDE_BUY else "sell",
                "price": stop.price,
                "open": stop.qty,
                "visible": 0,
                "display_qty": stop.display,
                "account": stop.account,
                "stp": codes.STP_LABELS[stop.stp],
                "post_only": False,
                "type": "stop" if stop.type == codes.TYPE_STOP else "stop_limit",
                "stop_price": stop.stop_price,
                "triggered": False,
                "tif": TIF_LABELS[stop.tif],
                "expire_ts": stop.expire_ts,
            }
        o = self.orders.get(id)
        if o is None:
            return None
        return {
            "instrument": o.instrument,
            "side": "buy" if o.side == codes.SIDE_BUY else "sell",
            "price": o.price,
            "open": o.open,
            "visible": o.visible,
            "display_qty": o.display,
            "account": o.account,
            "stp": codes.STP_LABELS[o.stp],  # named as submit() takes it
            "post_only": bool(o.post_only),
            "type": "limit",
            "tif": TIF_LABELS[o.tif],
            "expire_ts": o.expire_ts,
        }

    @property
    def live_orders(self) -> int:
        return len(self.orders)

    @property
    def waiting_stops(self) -> int:
        """Stops accepted and not yet triggered, cancelled or expired."""
        return len(self.stops)

    def book_digest(self) -> int:
        """Canonical digest of the whole state (docs/semantics.md). O(orders)."""
        h = self.digest
        count = 0
        for instrument in sorted(self.books):
            book = self.books[instrument]
            if not any(book.sides):
                continue
            h = absorb(h, instrument)
            for o in book.live_orders():
                for v in (o.id, o.price, o.open, o.visible, o.display, o.account, o.stp, o.side, o.post_only):
                    h = absorb(h, v)
                if o.tif != codes.TIF_GTC:  # DAY / GTD: what decides when it expires
                    for v in (o.tif, o.expire_ts, o.seq):
                        h = absorb(h, v)
                count += 1
        h = absorb(h, count)
        # Issue 19's state, absorbed only where present (so a state without it digests as before).
        for instrument in sorted(self.books):
            stops = sorted(self.books[instrument].stops.values(), key=lambda s: s.seq)
            if stops:
                h = absorb(h, instrument)
                for stop in stops:
                    for v in stop.words():
                        h = absorb(h, v)
                h = absorb(h, len(stops))
        if self.now:
            h = absorb(h, self.now)
        for instrument in sorted(self.books):
            book = self.books[instrument]
            if book.rules is not None:  # instrument rules, and the print their band is around
                for v in (instrument, *book.rules, book.last_price):
                    h = absorb(h, v)
        for account in sorted(self.risk):  # risk limits and the positions they watch
            for v in (account, *self.risk[account]):
                h = absorb(h, v)
            held = sorted((i, p) for (a, i), p in self.positions.items() if a == account and p)
            for i, p in held:
                h = absorb(absorb(h, i), p)
            h = absorb(h, len(held))
        return h

    # ----- snapshot ----------------------------------------------------------------

    def snapshot(self) -> bytes:
        """Full state as bytes: magic, version, CRC-32, then a JSON body."""
        body = {
            "digest": self.digest,
            "commands_applied": self.commands_applied,
            "now": self.now,
            "risk": [
                [a, *self.risk[a], sorted([i, p] for (acct, i), p in self.positions.items() if acct == a)]
                for a in sorted(self.risk)
            ],
            "books": [
                [
                    instrument,
                    [
                        [o.id, o.side, o.price, o.open, o.visible, o.display, o.account, o.stp, o.post_only]
                        + [o.tif, o.expire_ts, o.seq]
                        for o in self.books[instrument].live_orders()
                    ],
                    [
                        list(s.words())
                        for s in sorted(self.books[instrument].stops.values(), key=lambda s: s.seq)
                    ],
                    [self.books[instrument].last_price, self.books[instrument].rules],
                ]
                for instrument in sorted(self.books)
            ],
        }
        payload = json.dumps(body, separators=(",", ":")).encode()
        header = SNAPSHOT_MAGIC + bytes([SNAPSHOT_VERSION]) + zlib.crc32(payload).to_bytes(4, "little")
        return header + len(payload).to_bytes(8, "little") + payload

    @classmethod
    def restore(cls, blob: bytes) -> ReferenceEngine:
        """Rebuild an engine from :meth:`snapshot` bytes; refuses damaged input with ValueError."""
        n = len(SNAPSHOT_MAGIC)
        if len(blob) < n + 13 or blob[:n] != SNAPSHOT_MAGIC:
            raise ValueError("not a reference-engine snapshot (bad magic or too short)")
        version = blob[n]
        if version not in (1, SNAPSHOT_VERSION):
            raise ValueError(
                f"unsupported snapshot version {version} (this engine reads 1 and {SNAPSHOT_VERSION})"
            )
        crc = int.from_bytes(blob[n + 1 : n + 5], "little")
        length = int.from_bytes(blob[n + 5 : n + 13], "little")
        payload = blob[n + 13 :]
        if len(payload) != length:
            raise ValueError(f"truncated snapshot: {len(payload)} of {length} payload bytes")
        if zlib.crc32(payload) != crc:
            raise ValueError("corrupt snapshot: checksum mismatch")
        body = json.loads(payload)
        e = cls()
        e.digest = body["digest"]
        e.commands_applied = body["commands_applied"]
        e.now = body.get("now", 0)  # version 1: no time, no DAY/GTD, no stops
        for instrument, orders, *rest in body["books"]:
            book = e.books[instrument] = Book(instrument)
            for oid, side, price, open_, visible, display, account, stp, post_only, *timed in orders:
                o = Order(oid, instrument, side, price, open_, display, account, stp, post_only)
                o.visible = visible
                if timed:
                    o.tif, o.expire_ts, o.seq = timed
                book.rest(o)
                e.orders[oid] = o
                if o.tif == codes.TIF_GTD:
                    e.expiries.append((o.expire_ts, o.seq, oid))
            if len(rest) > 1:
                book.last_price, rules = rest[1]
                book.rules = tuple(rules) if rules is not None else None
            for words in rest[0] if rest else []:
                stop = Stop(CommandRecord(), 0)
                stop.instrument = instrument
                (
                    stop.id,
                    stop.side,
                    stop.type,
                    stop.price,
                    stop.qty,
                    stop.display,
                    stop.account,
                    stop.stp,
                ) = words[:8]
                stop.tif, stop.expire_ts, stop.stop_price, stop.seq = words[8:]
                book.stops[stop.id] = e.stops[stop.id] = stop
                if stop.tif == codes.TIF_GTD:
                    e.expiries.append((stop.expire_ts, stop.seq, stop.id))
        heapq.heapify(e.expiries)
        for account, max_open, max_position, positions in body.get("risk", []):
            e.risk[account] = [max_open, max_position]
            for instrument, pos in positions:
                e.positions[(account, instrument)] = pos
        return e

    # ----- invariants ----------------------------------------------------------------

    def _check(self) -> None:
        """Verify every invariant; raise AssertionError naming the first broken one. O(orders)."""
        seen = 0
        for instrument, book in self.books.items():
            for side in (codes.SIDE_BUY, codes.SIDE_SELL):
                for key, level in book.sides[side].items():
                    assert level.orders, f"empty level {level.price} kept in book {instrument}"
                    assert key == book.key(side, level.price), "level filed under the wrong key"
                    assert level.total == sum(o.visible for o in level.orders.values()), "level total"
                    for o in level.orders.values():
                        assert self.orders.get(o.id) is o, f"order {o.id} in book but not in index"
                        assert o.side == side and o.price == level.price and o.instrument == instrument
                        assert 0 < o.visible <= o.open, f"order {o.id} visible {o.visible} open {o.open}"
                        if o.display:
                            assert o.visible <= o.display, f"iceberg {o.id} shows more than its display"
                        else:
                            assert o.visible == o.open
                        seen += 1
            for stop in book.stops.values():
                assert self.stops.get(stop.id) is stop and stop.instrument == instrument, (
                    f"stop {stop.id} index"
                )
                assert stop.id not in self.orders, f"stop {stop.id} also rests"
            bid, ask = book.best(codes.SIDE_BUY), book.best(codes.SIDE_SELL)
            assert bid is None or ask is None or bid.price < ask.price, f"book {instrument} crossed at rest"
        assert seen == len(self.orders), "index holds orders that are in no book"
