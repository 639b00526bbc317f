"""The reference engine's rules of time, stops, instrument rules and risk (issue 19).

For: the part of ``matching.reference.ReferenceEngine`` that docs/semantics.md
describes under "Time and expiry", "Stops", "Instrument rules" and "Risk
limits" — a mixin the engine inherits, written as plainly as the rest of the
specification. Not for: matching itself, queries or snapshots (``reference``).
"""

from __future__ import annotations

import heapq

from . import codes
from .commands import CommandRecord
from .reference_book import RESTING_TIFS, Book, Order, Stop


class TimedRules:
    """Time, expiry, stops, instrument rules and risk; mixed into ``ReferenceEngine`` (its state)."""

    books: dict[int, Book]
    orders: dict[int, Order]
    stops: dict[int, Stop]
    now: int
    expiries: list[tuple[int, int, int]]
    commands_applied: int
    risk: dict[int, list[int]]
    positions: dict[tuple[int, int], int]
    _prints: tuple[int, int] | None

    def _replace_stop(self, stop: Stop, c: CommandRecord, words: list) -> None:
        """Replace an untriggered stop: new limit price, qty and/or stop price; no trade can follow."""
        has_price = bool(c.flags & codes.HAS_PRICE)
        has_qty = bool(c.flags & codes.HAS_QTY)
        has_stop = bool(c.flags & codes.HAS_STOP_PRICE)
        if has_qty and c.qty < 0:
            return self._reject(words, c, codes.R_INVALID_QTY)
        if has_price and stop.type == codes.TYPE_STOP:
            return self._reject(words, c, codes.R_PRICE_ON_MARKET)
        if has_price and c.price < 1:
            return self._reject(words, c, codes.R_INVALID_PRICE)
        if has_stop and c.stop_price < 1:
            return self._reject(words, c, codes.R_INVALID_STOP)
        reason = self.books[stop.instrument].rules_reason(
            has_price, c.price, c.stop_price if has_stop else None, c.qty if has_qty else None
        )
        if reason:
            return self._reject(words, c, reason)
        if (
            has_qty
            and c.qty > stop.qty
            and self._risk_breach(stop.account, stop.instrument, stop.side, c.qty - stop.qty, c.qty)
        ):
            return self._reject(words, c, codes.R_RISK_LIMIT)
        new_qty = c.qty if has_qty else stop.qty
        if new_qty == 0:
            self._remove_stop(stop)
            return self._cancelled(words, stop.id, stop.instrument, stop.qty, codes.R_USER)
        new_price = c.price if has_price else stop.price
        new_stop = c.stop_price if has_stop else stop.stop_price
        if new_price != stop.price or new_stop != stop.stop_price or new_qty > stop.qty:
            # Loses its place in the trigger order (and in the expiry order among equal expire_ts).
            stop.seq = self.commands_applied
            if stop.tif == codes.TIF_GTD:
                heapq.heappush(self.expiries, (stop.expire_ts, stop.seq, stop.id))
        stop.price, stop.qty, stop.stop_price = new_price, new_qty, new_stop
        stop.display = min(stop.display, new_qty)
        words.append((codes.EV_REPLACED, 0, stop.instrument, stop.id, 0, new_price, new_qty, 0, 0))
        return None

    def _time(self, c: CommandRecord, words: list) -> None:
        """``time``: only moves the clock (done before every command); an out-of-range ts is rejected."""
        if c.flags & codes.OUT_OF_RANGE:
            self._reject(words, c, codes.R_OUT_OF_RANGE)

    def _instrument(self, c: CommandRecord, words: list) -> None:
        """Set (replace) an instrument's rules; the fields as ``codes.COMMAND_DTYPE``'s comment maps them."""
        tick, lot, min_qty, max_qty, band, ref_price = (
            c.stop_price,
            c.account,
            c.display_qty,
            c.qty,
            c.expire_ts,
            c.price,
        )
        if (
            c.flags & codes.OUT_OF_RANGE
            or not 0 <= tick <= codes.MAX_PRICE
            or not 0 <= lot <= codes.MAX_QTY
            or not 0 <= min_qty <= codes.MAX_QTY
            or not 0 <= max_qty <= codes.MAX_QTY
            or not 0 <= band <= codes.MAX_PRICE
            or not 0 <= ref_price <= codes.MAX_PRICE
        ):
            return self._reject(words, c, codes.R_OUT_OF_RANGE)
        book = self.books.get(c.instrument)
        if book is None:
            book = self.books[c.instrument] = Book(c.instrument)
        book.rules = (tick or 1, lot or 1, min_qty, max_qty, band, ref_price)
        return None

    def _risk(self, c: CommandRecord, words: list) -> None:
        """Set (replace) an account's limits: qty = max_open_qty, display_qty = max_position."""
        if (
            c.flags & codes.OUT_OF_RANGE
            or not 0 <= c.qty <= codes.MAX_QTY
            or not 0 <= c.display_qty <= codes.MAX_QTY
        ):
            return self._reject(words, c, codes.R_OUT_OF_RANGE)
        self.risk[c.account] = [c.qty, c.display_qty]
        return None

    def _open_qty(self, account: int) -> int:
        """The open qty of an account's resting orders and waiting stops. O(orders): the spec, not fast."""
        total = sum(
            o.open for book in self.books.values() for o in book.live_orders() if o.account == account
        )
        return total + sum(s.qty for s in self.stops.values() if s.account == account)

    def _risk_breach(self, account: int, instrument: int, side: int, more_open: int, qty: int) -> bool:
        """Could an order of ``qty`` (adding ``more_open`` open qty) breach the account's limits?"""
        limits = self.risk.get(account)
        if limits is None:
            return False
        max_open, max_position = limits
        if max_open and self._open_qty(account) + more_open > max_open:
            return True
        pos = self.positions.get((account, instrument), 0)
        pos = pos + qty if side == codes.SIDE_BUY else pos - qty
        return bool(max_position) and abs(pos) > max_position

    def _end_of_day(self, c: CommandRecord, words: list) -> None:
        """Every DAY order of the instrument, resting or a waiting stop, expires in acceptance order."""
        if c.flags & codes.OUT_OF_RANGE:
            return self._reject(words, c, codes.R_OUT_OF_RANGE)
        book = self.books.get(c.instrument)
        if book is None:
            return None
        day: list = [o for o in book.live_orders() if o.tif == codes.TIF_DAY]
        day += [s for s in book.stops.values() if s.tif == codes.TIF_DAY]
        for o in sorted(day, key=lambda o: o.seq):
            self._expire(o, words)
        return None

    def _expire_due(self, words: list) -> None:
        """Every GTD order with expire_ts <= now, by (expire_ts, acceptance order)."""
        while self.expiries and self.expiries[0][0] <= self.now:
            expire_ts, seq, oid = heapq.heappop(self.expiries)
            o = self.stops.get(oid) or self.orders.get(oid)
            if o is not None and o.seq == seq and o.tif == codes.TIF_GTD and o.expire_ts == expire_ts:
                self._expire(o, words)

    def _expire(self, o, words: list) -> None:
        if isinstance(o, Stop):
            self._remove_stop(o)
            self._cancelled(words, o.id, o.instrument, o.qty, codes.R_EXPIRED)
        else:
            self._remove(o)
            self._cancelled(words, o.id, o.instrument, o.open, codes.R_EXPIRED)

    def _remove_stop(self, stop: Stop) -> None:
        del self.books[stop.instrument].stops[stop.id]
        del self.stops[stop.id]

    def _trigger_stops(self, instrument: int, words: list) -> None:
        """After a command that printed trades: trigger stops until none is reached (docs/semantics.md).

        Every print of the command so far (the cascade's included) counts: the stops reached
        by the lowest or highest price printed wait together, and the one accepted first
        enters next, after its ``triggered`` event, as an aggressor; its own prints may reach
        more.
        """
        book = self.books[instrument]
        while book.stops and self._prints is not None:
            lo, hi = self._prints
            reached = [s for s in book.stops.values() if s.triggered_by(lo, hi)]
            if not reached:
                return
            stop = min(reached, key=lambda s: s.seq)
            self._remove_stop(stop)
            words.append((codes.EV_TRIGGERED, 0, instrument, stop.id, 0, stop.stop_price, stop.qty, 0, 0))
            o = Order(
                stop.id, instrument, stop.side, stop.price, stop.qty, stop.display, stop.account, stop.stp, 0
            )
            o.tif, o.expire_ts, o.seq = stop.tif, stop.expire_ts, stop.seq
            is_limit = stop.type == codes.TYPE_STOP_LIMIT
            rests = is_limit and stop.tif in RESTING_TIFS
            self._match_and_rest(book, o, stop.price if is_limit else None, rests=rests, words=words)
