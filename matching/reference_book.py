"""The reference engine's data: orders, waiting stops, price levels and books.

For: the plain-Python structures ``matching.reference`` (the executable
specification) keeps its state in — a resting ``Order``, a waiting ``Stop``,
a FIFO ``Level``, a ``Book`` with both sides, its waiting stops and its
instrument rules. Not for: the rules of matching (``reference``) or of time,
stops and risk (``reference_timed``).
"""

from __future__ import annotations

from collections.abc import Iterator

from sortedcontainers import SortedDict

from . import codes
from .commands import CommandRecord

TIF_LABELS = tuple(codes.TIF_NAMES)  # code -> name (the codes are 0..4 in this order)
RESTING_TIFS = (codes.TIF_GTC, codes.TIF_DAY, codes.TIF_GTD)  # a limit remainder of these rests


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
        "tif",
        "expire_ts",
        "seq",
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
        self.tif = codes.TIF_GTC
        self.expire_ts = 0
        self.seq = 0  # acceptance order (the index of the accepting command): DAY/GTD expiry order


class Stop:
    """One stop or stop-limit order waiting for its trigger (outside the book)."""

    __slots__ = (
        "id",
        "instrument",
        "side",
        "type",
        "price",
        "qty",
        "display",
        "account",
        "stp",
        "tif",
        "expire_ts",
        "stop_price",
        "seq",
    )

    def __init__(self, c: CommandRecord, seq: int) -> None:
        self.id, self.instrument, self.side, self.type = c.id, c.instrument, c.side, c.type
        self.price = c.price if c.type == codes.TYPE_STOP_LIMIT else 0
        self.qty, self.display, self.account, self.stp = c.qty, c.display_qty, c.account, c.stp
        self.tif, self.expire_ts, self.stop_price, self.seq = c.tif, c.expire_ts, c.stop_price, seq

    def triggered_by(self, lo: int, hi: int) -> bool:
        """Whether a print in ``lo .. hi`` reaches the stop price (buy: at or above, sell: at or below)."""
        return self.stop_price <= hi if self.side == codes.SIDE_BUY else self.stop_price >= lo

    def words(self) -> tuple[int, ...]:
        return (
            self.id,
            self.side,
            self.type,
            self.price,
            self.qty,
            self.display,
            self.account,
            self.stp,
            self.tif,
            self.expire_ts,
            self.stop_price,
            self.seq,
        )


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
        self.stops: dict[int, Stop] = {}  # untriggered stops by id; insertion order is not used
        self.last_price = 0  # the latest trade print (0 before the first): the band's reference
        self.rules: tuple[int, int, int, int, int, int] | None = None  # tick, lot, min, max, band, ref

    def rules_reason(self, has_limit: bool, price: int, stop_price: int | None, qty: int | None) -> int:
        """The first instrument rule a new (or replaced) price, stop price or qty breaks, or 0.

        ``None`` (and a qty of 0, a replace that cancels) is not checked. Order: bad_tick,
        bad_lot, qty_limit, price_band (band ticks around the last print, or around the
        reference price before any print; no reference, no band).
        """
        if self.rules is None:
            return 0
        tick, lot, min_qty, max_qty, band, ref_price = self.rules
        if (has_limit and price % tick) or (stop_price is not None and stop_price % tick):
            return codes.R_BAD_TICK
        if qty:
            if qty % lot:
                return codes.R_BAD_LOT
            if (min_qty and qty < min_qty) or (max_qty and qty > max_qty):
                return codes.R_QTY_LIMIT
        ref = self.last_price or ref_price
        if has_limit and band and ref and abs(price - ref) > band * tick:
            return codes.R_PRICE_BAND
        return 0

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
