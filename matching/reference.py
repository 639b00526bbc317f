"""The reference engine: the matching rules in plain, readable Python.

This is the executable specification of ``docs/semantics.md`` and the oracle
the Cython core is tested against (``tests/differential``). It favours being
obviously right over being fast: books are ``sortedcontainers.SortedDict``
maps of price levels, each level an insertion-ordered dict of orders (FIFO
with O(1) removal). It exposes the same surface as ``matching.Engine``.

Not for production use: it is one to two orders of magnitude slower.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

from sortedcontainers import SortedDict

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

SNAPSHOT_MAGIC = b"MCREF"
SNAPSHOT_VERSION = 1


class Order:
    """One live order resting in a book."""

    __slots__ = (
        "id",
        "instrument",
        "side",
        "price",
        "open",
        "visible",
        "display",
        "account",
        "stp",
        "post_only",
    )

    def __init__(self, id, instrument, side, price, open, display, account, stp, post_only):
        self.id = id
        self.instrument = instrument
        self.side = side
        self.price = price
        self.open = open  # total open qty, hidden part included
        self.display = display  # iceberg display qty; 0 = not an iceberg
        self.visible = min(display, open) if display else open
        self.account = account
        self.stp = stp
        self.post_only = post_only


class Level:
    """The orders at one price, first in first out."""

    __slots__ = ("price", "orders", "total")

    def __init__(self, price: int) -> None:
        self.price = price
        self.orders: dict[int, Order] = {}  # insertion order is time priority
        self.total = 0  # sum of visible qty

    def append(self, o: Order) -> None:
        self.orders[o.id] = o
        self.total += o.visible

    def remove(self, o: Order) -> None:
        del self.orders[o.id]
        self.total -= o.visible


class Book:
    """Both sides of one instrument. Bids are keyed by -price so both sides iterate best first."""

    def __init__(self, instrument: int) -> None:
        self.instrument = instrument
        self.sides = (SortedDict(), SortedDict())  # index by codes.SIDE_BUY / SIDE_SELL

    @staticmethod
    def key(side: int, price: int) -> int:
        return -price if side == codes.SIDE_BUY else price

    def levels(self, side: int) -> Iterator[Level]:
        """Levels of one side, best first."""
        return iter(self.sides[side].values())

    def best(self, side: int) -> Level | None:
        levels = self.sides[side]
        return levels.peekitem(0)[1] if levels else None

    def rest(self, o: Order) -> None:
        """Put an order at the back of its price level."""
        levels = self.sides[o.side]
        k = self.key(o.side, o.price)
        level = levels.get(k)
        if level is None:
            level = levels[k] = Level(o.price)
        level.append(o)

    def take_out(self, o: Order) -> None:
        """Remove an order from its level, dropping the level when it empties."""
        levels = self.sides[o.side]
        k = self.key(o.side, o.price)
        level = levels[k]
        level.remove(o)
        if not level.orders:
            del levels[k]

    def crosses(self, side: int, price: int) -> bool:
        """Would a limit order of this side and price trade on arrival?"""
        best = self.best(1 - side)
        if best is None:
            return False
        return price >= best.price if side == codes.SIDE_BUY else price <= best.price

    def live_orders(self) -> Iterator[Order]:
        """Every order, bids best first then asks best first, FIFO within a level."""
        for side in (codes.SIDE_BUY, codes.SIDE_SELL):
            for level in self.levels(side):
                yield from level.orders.values()


class ReferenceEngine:
    """Price-time matching for many instruments; see docs/semantics.md for every rule."""

    def __init__(self) -> None:
        self.books: dict[int, Book] = {}
        self.orders: dict[int, Order] = {}  # live orders by id (lookup only, never iterated)
        self.digest = 0
        self.commands_applied = 0

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
    ) -> list[Event]:
        """A new order. Returns its events."""
        return self.apply_record(
            new_order_record(
                instrument, id, side, price, qty, type, tif, account, post_only, display_qty, stp
            )
        )

    def cancel(self, instrument: int, id: int) -> list[Event]:
        return self.apply(cancel_dict(instrument, id))

    def replace(
        self, instrument: int, id: int, price: int | None = None, qty: int | None = None
    ) -> list[Event]:
        return self.apply(replace_dict(instrument, id, price, qty))

    def mass_cancel(self, account: int | None = None, instrument: int | None = None) -> list[Event]:
        return self.apply(mass_cancel_dict(account, instrument))

    def apply(self, cmd: Mapping) -> list[Event]:
        """Apply one command-log dict."""
        return self.apply_record(command_record(cmd))

    def apply_record(self, rec: Any) -> list[Event]:
        """Apply one command record (a tuple in ``COMMAND_DTYPE`` field order)."""
        c = rec if isinstance(rec, CommandRecord) else CommandRecord(*(int(v) for v in rec))
        words: list[tuple[int, ...]] = []
        handler = {
            codes.OP_NEW: self._new,
            codes.OP_CANCEL: self._cancel,
            codes.OP_REPLACE: self._replace,
            codes.OP_MASS_CANCEL: self._mass_cancel,
        }.get(c.op)
        if handler is None:
            self._reject(words, c, codes.R_INVALID_OP)
        elif c.flags & codes.BAD_FIELD:
            self._reject(words, c, codes.R_BAD_FIELD)
        else:
            handler(c, words)
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
        is_market = c.type == codes.TYPE_MARKET
        limit = None if is_market else c.price
        o = Order(c.id, c.instrument, c.side, c.price, c.qty, c.display_qty, c.account, c.stp, c.post_only)
        self._match_and_rest(book, o, limit, rests=(not is_market and c.tif == codes.TIF_GTC), words=words)

    def _check_new(self, c: CommandRecord) -> int:
        """The reject reason of a new order, or 0; checks in the documented order."""
        if c.side not in (codes.SIDE_BUY, codes.SIDE_SELL):
            return codes.R_INVALID_SIDE
        if c.type not in (codes.TYPE_LIMIT, codes.TYPE_MARKET):
            return codes.R_INVALID_TYPE
        if c.tif not in (codes.TIF_GTC, codes.TIF_IOC, codes.TIF_FOK):
            return codes.R_INVALID_TIF
        if c.stp > codes.STP_CANCEL_BOTH:
            return codes.R_INVALID_STP
        if (
            c.flags & codes.OUT_OF_RANGE
            or c.price > codes.MAX_PRICE
            or c.qty > codes.MAX_QTY
            or c.display_qty > codes.MAX_QTY
        ):
            return codes.R_OUT_OF_RANGE
        if c.id == 0:
            return codes.R_INVALID_ID
        if c.qty < 1:
            return codes.R_INVALID_QTY
        if c.type == codes.TYPE_LIMIT:
            if not c.flags & codes.HAS_PRICE or c.price < 1:
                return codes.R_INVALID_PRICE
        elif c.flags & codes.HAS_PRICE:
            return codes.R_PRICE_ON_MARKET
        if c.display_qty < 0 or c.display_qty > c.qty:
            return codes.R_INVALID_DISPLAY
        if c.post_only and (c.type != codes.TYPE_LIMIT or c.tif != codes.TIF_GTC):
            return codes.R_INVALID_COMBINATION
        if c.id in self.orders:
            return codes.R_DUPLICATE_ID
        book = self.books.get(c.instrument)
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
        o = self.orders.get(c.id)
        if o is None or o.instrument != c.instrument:
            return self._reject(words, c, codes.R_UNKNOWN_ORDER)
        self._remove(o)
        self._cancelled(words, o.id, o.instrument, o.open, codes.R_USER)

    def _replace(self, c: CommandRecord, words: list) -> None:
        has_price = bool(c.flags & codes.HAS_PRICE)
        has_qty = bool(c.flags & codes.HAS_QTY)
        if (
            c.flags & codes.OUT_OF_RANGE
            or (has_price and c.price > codes.MAX_PRICE)
            or (has_qty and c.qty > codes.MAX_QTY)
        ):
            return self._reject(words, c, codes.R_OUT_OF_RANGE)
        if c.id == 0:
            return self._reject(words, c, codes.R_INVALID_ID)
        o = self.orders.get(c.id)
        if o is None or o.instrument != c.instrument:
            return self._reject(words, c, codes.R_UNKNOWN_ORDER)
        if has_qty and c.qty < 0:
            return self._reject(words, c, codes.R_INVALID_QTY)
        if has_price and c.price < 1:
            return self._reject(words, c, codes.R_INVALID_PRICE)
        book = self.books[o.instrument]
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
        victims = []
        for instrument in sorted(self.books):
            if c.flags & codes.HAS_INSTRUMENT and instrument != c.instrument:
                continue
            for o in self.books[instrument].live_orders():
                if not c.flags & codes.HAS_ACCOUNT or o.account == c.account:
                    victims.append(o)
        for o in victims:
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

    def order(self, id: int) -> dict | None:
        """The state of one live order, or None."""
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
        }

    @property
    def live_orders(self) -> int:
        return len(self.orders)

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
                count += 1
        return absorb(h, count)

    # ----- snapshot ----------------------------------------------------------------

    def snapshot(self) -> bytes:
        """Full state as bytes: magic, version, CRC-32, then a JSON body."""
        body = {
            "digest": self.digest,
            "commands_applied": self.commands_applied,
            "books": [
                [
                    instrument,
                    [
                        [o.id, o.side, o.price, o.open, o.visible, o.display, o.account, o.stp, o.post_only]
                        for o in self.books[instrument].live_orders()
                    ],
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
        if blob[n] != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported snapshot version {blob[n]}")
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
        for instrument, orders in body["books"]:
            book = e.books[instrument] = Book(instrument)
            for oid, side, price, open_, visible, display, account, stp, post_only in orders:
                o = Order(oid, instrument, side, price, open_, display, account, stp, post_only)
                o.visible = visible
                book.rest(o)
                e.orders[oid] = o
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
            bid, ask = book.best(codes.SIDE_BUY), book.best(codes.SIDE_SELL)
            assert bid is None or ask is None or bid.price < ask.price, f"book {instrument} crossed at rest"
        assert seen == len(self.orders), "index holds orders that are in no book"
