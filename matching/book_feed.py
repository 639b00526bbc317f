"""The public market-data feed of an engine: its events in, L2 level updates, trades and BBO out.

For: a backtester, or a replication node, that runs commands through an
``Engine`` (or the ``ReferenceEngine``) and wants the public feed a third
party would see: ``BookFeed.apply(seq, command, events)`` after each command
returns that command's updates (``matching.market_data``), each with its
group seq, per-instrument seq and top-10 checksum. ``snapshot(instrument)``
gives the full-depth book a late subscriber starts from. The rules (which
events give which updates, in which order) are in docs/semantics.md
"Market data".

Not for: matching (the feed only follows the engine: it must see every
command from the engine's first, and it trusts the events), nor transport.

How: the feed keeps its own table of resting orders (side, price, open and
visible qty, display qty), built from the events plus, for a new order, the
command's side, price, qty and display qty. While one command's events are
read, the levels they touch are gathered with their new totals; only then
are the changed levels written to the book, one update each, so a subscriber
that applies the updates in order holds the same book after each of them as
the feed did when it computed that update's checksum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import codes
from .commands import command_record
from .events import Accepted, Cancelled, Replaced, Trade, Triggered, events_from_array
from .market_data import (
    SIDE_NAMES,
    BboUpdate,
    BookSnapshot,
    L2Book,
    LevelUpdate,
    TradeUpdate,
    Update,
)


class _Order:
    """One resting (or, during its own command, aggressing) order as the feed knows it."""

    __slots__ = ("instrument", "side", "price", "open", "visible", "display")

    def __init__(self, instrument: int, side: int, price: int, open: int, display: int) -> None:
        self.instrument = instrument
        self.side = side
        self.price = price
        self.open = open  # total open qty, hidden included
        self.display = display  # iceberg display qty; 0 = not an iceberg
        self.visible = min(display, open) if display else open


class _Work:
    """What one command did to one instrument: touched levels' new totals (in first-touch order) and trades."""

    __slots__ = ("book", "levels", "trades")

    def __init__(self, book: L2Book) -> None:
        self.book = book
        self.levels: dict[tuple[int, int], list[int]] = {}  # (side, price) -> [qty, orders]
        self.trades: list[tuple[int, int, int]] = []  # (price, qty, aggressor side)

    def level(self, side: int, price: int) -> list[int]:
        """The pending [qty, orders] of a level, starting from the book's when first touched."""
        key = (side, price)
        lv = self.levels.get(key)
        if lv is None:
            lv = self.levels[key] = list(self.book.level(side, price))
        return lv


class BookFeed:
    """Public L2 / trade / BBO updates of every instrument of one engine.

    Feed it every command the engine runs, in order, from the engine's first:
    ``updates = feed.apply(seq, command, engine.apply(command))``.
    Deterministic: the same commands and events give the same updates.
    """

    def __init__(self) -> None:
        self._books: dict[int, L2Book] = {}
        self._orders: dict[int, _Order] = {}  # resting orders by id (look-up only, never iterated)
        self._stops: dict[int, _Order] = {}  # waiting stops by id (in no book until triggered)
        self.seq = 0  # group seq of the last command applied

    # ----- in ----------------------------------------------------------------

    def apply(self, seq: int, command: Any, events: Sequence[Any]) -> list[Update]:
        """The public updates of one command, given the events the engine returned for it.

        Parameters
        ----------
        seq : int
            The command's group seq (in a backtest, its index); every update carries it.
        command : Mapping or tuple
            The command: a command-log dict, or a record in ``COMMAND_DTYPE``
            field order (``CommandRecord``, tuple, array row). Only a new
            order's side, price, qty and display qty are read from it.
        events : sequence of Event
            The engine's events for this command, in order.

        Returns
        -------
        list
            ``LevelUpdate``s (in the order their levels were first touched),
            then ``TradeUpdate``s (in trade order), then a ``BboUpdate`` if the
            best bid or ask changed; grouped by instrument, ascending for a
            mass cancel. O(events + changed levels x log levels).
        """
        self.seq = seq
        work: dict[int, _Work] = {}
        taker: _Order | None = None
        taker_id = -1
        orders = self._orders
        for ev in events:
            kind = type(ev)
            if kind is Trade:
                w = work.get(ev.instrument) or self._work(work, ev.instrument)
                maker = orders[ev.maker]
                lv = w.level(maker.side, ev.price)
                lv[0] -= ev.qty
                maker.visible -= ev.qty
                maker.open = ev.maker_open
                if maker.visible == 0:
                    if maker.open == 0:
                        lv[1] -= 1
                        del orders[ev.maker]
                    else:  # iceberg refill: a fresh slice (at the back of the same level)
                        maker.visible = min(maker.display, maker.open)
                        lv[0] += maker.visible
                if taker is not None:  # always, for engine events: trades follow accepted / replaced
                    taker.open = ev.taker_open
                    w.trades.append((ev.price, ev.qty, taker.side))
            elif kind is Accepted:
                taker = self._new_order(command, ev.instrument)
                taker_id = ev.id
                if self._is_stop(command):  # it waits outside the book until its `triggered` event
                    self._stops[ev.id] = taker
                    taker, taker_id = None, -1
            elif kind is Triggered:
                # The aggressor so far rests (it may be this stop's maker), then the stop aggresses.
                self._rest(work, taker, taker_id)
                taker, taker_id = self._stops.pop(ev.id), ev.id
            elif kind is Cancelled:
                if ev.id == taker_id:
                    taker = None  # the aggressor's remainder (or a self-trade cancel): it never rests
                    taker_id = -1
                elif self._stops.pop(ev.id, None) is not None:
                    pass  # a waiting stop: in no book
                else:
                    o = orders.pop(ev.id)
                    w = work.get(o.instrument) or self._work(work, o.instrument)
                    lv = w.level(o.side, o.price)
                    lv[0] -= o.visible
                    lv[1] -= 1
            elif kind is Replaced and ev.id in self._stops:
                stop = self._stops[ev.id]
                stop.price, stop.open = ev.price, ev.qty
                stop.display = min(stop.display, ev.qty)
            elif kind is Replaced:
                o = orders[ev.id]
                w = work.get(o.instrument) or self._work(work, o.instrument)
                lv = w.level(o.side, o.price)
                if ev.price == o.price and ev.qty <= o.open:
                    # Only the qty shrinks: the order keeps its place, and shows no more than before.
                    visible = min(o.visible, ev.qty)
                    lv[0] -= o.visible - visible
                    o.visible = visible
                    o.open = ev.qty
                else:
                    # Out of its level, then it aggresses like a new order with the new price and qty.
                    lv[0] -= o.visible
                    lv[1] -= 1
                    del orders[ev.id]
                    taker = _Order(o.instrument, o.side, ev.price, ev.qty, o.display)
                    taker_id = ev.id
            # Rejected: nothing changed.
        self._rest(work, taker, taker_id)
        if not work:
            return []
        out: list[Update] = []
        for instrument in sorted(work) if len(work) > 1 else work:
            self._publish(seq, work[instrument], out)
        return out

    def _rest(self, work: dict[int, _Work], taker: _Order | None, taker_id: int) -> None:
        """An aggressor's remainder that was not cancelled rests at the back of its level."""
        if taker is not None and taker.open > 0:
            taker.visible = min(taker.display, taker.open) if taker.display else taker.open
            self._orders[taker_id] = taker
            w = work.get(taker.instrument) or self._work(work, taker.instrument)
            lv = w.level(taker.side, taker.price)
            lv[0] += taker.visible
            lv[1] += 1

    def apply_batch(self, commands: np.ndarray, events: np.ndarray, first_seq: int = 0) -> list[Update]:
        """The updates of a whole ``Engine.apply_batch`` call: command ``i`` gets seq ``first_seq + i``.

        ``commands`` is the ``COMMAND_DTYPE`` array given to ``apply_batch``,
        ``events`` the ``EVENT_DTYPE`` array it returned. O(commands + events).
        """
        rows = commands.tolist()
        evs = events_from_array(events)
        cmd_of = events["cmd"].tolist()
        out: list[Update] = []
        start = 0
        n = len(evs)
        for i, row in enumerate(rows):
            stop = start
            while stop < n and cmd_of[stop] == i:
                stop += 1
            if stop > start:
                out += self.apply(first_seq + i, row, evs[start:stop])
            else:
                self.seq = first_seq + i
            start = stop
        return out

    # ----- out ---------------------------------------------------------------

    def snapshot(self, instrument: int) -> BookSnapshot:
        """Full-depth L2 of one instrument now, with the seq of its last update. O(levels)."""
        book = self._books.get(instrument)
        if book is None:
            book = L2Book(instrument)
        bids, asks = book.depth()
        return BookSnapshot(instrument, self.seq, book.seq, bids, asks, book.checksum())

    def depth(self, instrument: int) -> tuple[list, list]:
        """(bids, asks) of one instrument as the feed holds it, in ``Engine.depth`` form. O(levels)."""
        book = self._books.get(instrument)
        return ([], []) if book is None else book.depth()

    def instruments(self) -> list[int]:
        """Every instrument the feed has published about, ascending."""
        return sorted(self._books)

    def instrument_seqs(self) -> list[tuple[int, int]]:
        """``(instrument, instrument seq of its last update)`` for every instrument, ascending. O(instruments)."""
        return [(i, self._books[i].seq) for i in sorted(self._books)]

    # ----- state (a replication node keeps it in its snapshots) ----------------------

    def state(self) -> tuple[int, list[tuple[int, int]], list[tuple[int, int, int, int, int, int, int]]]:
        """Everything the feed knows, as plain numbers: ``(seq, instrument_seqs, orders)``.

        ``instrument_seqs`` is ``(instrument, instrument seq)`` per instrument,
        ascending; ``orders`` is ``(id, instrument, side, price, open, visible,
        display)`` per resting order, ascending by id. The levels are not in
        it: they are the sums of the orders. O(orders log orders).
        """
        seqs = [(i, self._books[i].seq) for i in sorted(self._books)]
        orders = [
            (oid, o.instrument, o.side, o.price, o.open, o.visible, o.display)
            for oid, o in sorted(self._orders.items())
        ]
        # Waiting stops ride along as orders that show nothing (visible 0; a resting order never does).
        orders += [
            (oid, s.instrument, s.side, s.price, s.open, 0, s.display) for oid, s in self._stops.items()
        ]
        return self.seq, seqs, sorted(orders)

    @classmethod
    def from_state(
        cls, seq: int, instrument_seqs: Sequence[tuple[int, int]], orders: Sequence[tuple]
    ) -> BookFeed:
        """The feed that :meth:`state` described: same books, seqs and checksums. O(orders log levels)."""
        feed = cls()
        feed.seq = seq
        for instrument, iseq in instrument_seqs:
            feed._books[instrument] = L2Book(instrument)
            feed._books[instrument].seq = iseq
        totals: dict[tuple[int, int, int], list[int]] = {}
        for oid, instrument, side, price, open_qty, visible, display in orders:
            o = _Order(instrument, side, price, open_qty, display)
            if visible == 0:  # a waiting stop
                feed._stops[oid] = o
                continue
            o.visible = visible
            feed._orders[oid] = o
            t = totals.setdefault((instrument, side, price), [0, 0])
            t[0] += visible
            t[1] += 1
        for (instrument, side, price), (qty, count) in sorted(totals.items()):
            book = feed._books.get(instrument)
            if book is None:
                raise ValueError(f"feed state: an order of instrument {instrument}, which has no seq")
            book.set_level(side, price, qty, count)
        return feed

    # ----- internals -----------------------------------------------------------

    def _work(self, work: dict[int, _Work], instrument: int) -> _Work:
        book = self._books.get(instrument)
        if book is None:
            book = self._books[instrument] = L2Book(instrument)
        w = work[instrument] = _Work(book)
        return w

    @staticmethod
    def _is_stop(command: Any) -> bool:
        if isinstance(command, Mapping):
            return command.get("type") in ("stop", "stop_limit")
        if isinstance(command, np.void):
            command = command.tolist()
        return command[8] >= codes.TYPE_STOP

    @staticmethod
    def _new_order(command: Any, instrument: int) -> _Order:
        """The accepted order of a ``new`` command, from the command's side, price, qty and display qty."""
        if isinstance(command, Mapping):
            command = command_record(command)
        elif isinstance(command, np.void):
            command = command.tolist()
        # COMMAND_DTYPE field order: id, account, price, qty, display_qty, instrument, op, side, ...
        price = command[2] if command[8] in (codes.TYPE_LIMIT, codes.TYPE_STOP_LIMIT) else 0
        return _Order(instrument, command[7], price, command[3], command[4])

    def _publish(self, seq: int, w: _Work, out: list[Update]) -> None:
        """Write one instrument's changed levels to its book and emit its updates, numbered."""
        book = w.book
        bid0, ask0 = book.best(0), book.best(1)
        n = book.seq
        for (side, price), (qty, count) in w.levels.items():
            if book.set_level(side, price, qty, count):
                n += 1
                out.append(
                    LevelUpdate(seq, book.instrument, n, SIDE_NAMES[side], price, qty, count, book.checksum())
                )
        crc = book.checksum()
        for price, qty, side in w.trades:
            n += 1
            out.append(TradeUpdate(seq, book.instrument, n, price, qty, SIDE_NAMES[side], crc))
        bid, ask = book.best(0), book.best(1)
        if bid != bid0 or ask != ask0:
            n += 1
            out.append(BboUpdate(seq, book.instrument, n, bid[0], bid[1], ask[0], ask[1], crc))
        book.seq = n

    def _check(self) -> None:
        """Every invariant: each book's own, and the order table adding up to the books. O(orders + levels)."""
        totals: dict[tuple[int, int, int], list[int]] = {}
        for o in self._orders.values():
            assert 0 < o.visible <= o.open, "resting order shows nothing or more than it has"
            if o.display:
                assert o.visible <= o.display, "iceberg shows more than its display qty"
            else:
                assert o.visible == o.open, "a plain order shows less than it has"
            t = totals.setdefault((o.instrument, o.side, o.price), [0, 0])
            t[0] += o.visible
            t[1] += 1
        levels = 0
        for instrument, book in self._books.items():
            book._check()
            for side in (0, 1):
                for price, qty, count in book.rows(side):
                    assert totals.get((instrument, side, price)) == [qty, count], (
                        f"level {price} of {instrument}"
                    )
                    levels += 1
        assert levels == len(totals), "orders resting at a level the book does not have"
