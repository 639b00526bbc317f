"""Public market data: the update records, the top-10 checksum, an L2 book and a subscriber's book.

For: what a public feed says about a book and how a subscriber checks it —
``LevelUpdate`` / ``TradeUpdate`` / ``BboUpdate`` (never an order id, account
or client id), ``BookSnapshot`` (full depth at a seq), ``depth_checksum`` (the
CRC-32 of the top 10 levels, defined in docs/semantics.md "Market data"),
``L2Book`` (one instrument's aggregated levels, kept sorted, with a cached
checksum) and ``LocalBook`` (a subscriber's books: snapshot + updates, each
checksum verified, gaps and mismatches detected and counted).

Not for: turning engine events into updates (``matching.book_feed.BookFeed``
does that), nor any transport; everything here is deterministic and pure.
"""

from __future__ import annotations

import struct
import zlib
from bisect import bisect_left
from typing import NamedTuple, Union

CHECKSUM_LEVELS = 10  # levels per side that the checksum covers
SIDE_NAMES = ("buy", "sell")  # index by side code (codes.SIDE_BUY / SIDE_SELL)
SIDE_CODES = {"buy": 0, "sell": 1}

DepthRow = tuple[int, int, int]  # (price, visible qty, orders), as Engine.depth gives it


class LevelUpdate(NamedTuple):
    """A price level's new state: ``qty`` is its total visible qty, ``orders`` its order count; qty 0 removes it."""

    seq: int  # group seq of the command it comes from
    instrument: int
    instrument_seq: int  # 1, 2, 3, ... per instrument, over every kind of update
    side: str  # "buy" (a bid level) or "sell" (an ask level)
    price: int
    qty: int
    orders: int
    checksum: int  # depth_checksum of the instrument's book after this update


class TradeUpdate(NamedTuple):
    """One trade: the maker's price, the qty, and the side of the aggressor (the taker)."""

    seq: int
    instrument: int
    instrument_seq: int
    price: int
    qty: int
    aggressor: str  # "buy" or "sell"
    checksum: int


class BboUpdate(NamedTuple):
    """The best bid and ask after a command that changed either's price or qty; an empty side is 0, 0."""

    seq: int
    instrument: int
    instrument_seq: int
    bid_price: int
    bid_qty: int
    ask_price: int
    ask_qty: int
    checksum: int


Update = Union[LevelUpdate, TradeUpdate, BboUpdate]  # noqa: UP007 - a runtime alias

UPDATE_KINDS = {LevelUpdate: "level", TradeUpdate: "trade", BboUpdate: "bbo"}


class BookSnapshot(NamedTuple):
    """Full-depth L2 of one instrument after group seq ``seq``; ``instrument_seq`` is its last update's."""

    instrument: int
    seq: int
    instrument_seq: int
    bids: list[DepthRow]
    asks: list[DepthRow]
    checksum: int


def update_dict(u: Update) -> dict:
    """The JSON form of an update: its fields plus ``kind`` ("level", "trade" or "bbo")."""
    d = {"kind": UPDATE_KINDS[type(u)]}
    d.update(u._asdict())
    return d


# --- the checksum --------------------------------------------------------------
# docs/semantics.md "Market data checksum" is the definition; this is its one implementation.

_WORDS = [struct.Struct(f"<{n}q") for n in range(2 + 6 * CHECKSUM_LEVELS + 1)]


def checksum_bytes(bids: list, asks: list) -> bytes:
    """The canonical byte string of the checksum: every number a little-endian int64.

    ``len(bids)`` (at most 10), then price, qty, orders of each of those bid
    levels best first; then the same for the asks. Rows beyond the tenth are
    ignored. O(1).
    """
    bids = bids[:CHECKSUM_LEVELS]
    asks = asks[:CHECKSUM_LEVELS]
    words = [len(bids)]
    for row in bids:
        words.extend(row)
    words.append(len(asks))
    for row in asks:
        words.extend(row)
    return _WORDS[len(words)].pack(*words)


def depth_checksum(bids: list, asks: list) -> int:
    """CRC-32 (zlib's, as unsigned) of :func:`checksum_bytes` of a book in ``Engine.depth`` form. O(1)."""
    return zlib.crc32(checksum_bytes(bids, asks))


# --- one instrument's levels --------------------------------------------------------


class L2Book:
    """The aggregated levels of one instrument, best first per side, and its checksum.

    A level is ``[price, qty, orders]``; each side keeps a dict of them by key
    and a sorted list of keys (a bid's key is ``-price``, so both lists run
    best first). The checksum is cached and recomputed only after a change in
    the top 10 levels of a side.
    """

    __slots__ = ("instrument", "seq", "_keys", "_levels", "_checksum", "_dirty")

    def __init__(self, instrument: int) -> None:
        self.instrument = instrument
        self.seq = 0  # instrument seq of the last update applied to or published from this book
        self._keys: tuple[list[int], list[int]] = ([], [])
        self._levels: tuple[dict[int, list[int]], dict[int, list[int]]] = ({}, {})
        self._checksum = depth_checksum([], [])
        self._dirty = False

    def level(self, side: int, price: int) -> tuple[int, int]:
        """(qty, orders) of one level; (0, 0) when there is none. O(1)."""
        lv = self._levels[side].get(-price if side == 0 else price)
        return (0, 0) if lv is None else (lv[1], lv[2])

    def set_level(self, side: int, price: int, qty: int, orders: int) -> bool:
        """Give a level its new qty and order count (qty 0 removes it); False if nothing changed.

        O(log levels) to find a level, plus the list shift of an insert or removal.
        """
        key = -price if side == 0 else price
        levels = self._levels[side]
        lv = levels.get(key)
        if lv is None:
            if qty == 0:
                return False
            keys = self._keys[side]
            rank = bisect_left(keys, key)
            keys.insert(rank, key)
            levels[key] = [price, qty, orders]
        elif qty == 0:
            keys = self._keys[side]
            rank = bisect_left(keys, key)
            del keys[rank]
            del levels[key]
        else:
            if lv[1] == qty and lv[2] == orders:
                return False
            lv[1] = qty
            lv[2] = orders
            if self._dirty:
                return True
            rank = bisect_left(self._keys[side], key)
        if rank < CHECKSUM_LEVELS:
            self._dirty = True
        return True

    def checksum(self) -> int:
        """:func:`depth_checksum` of this book. O(1); cached between changes in the top 10."""
        if self._dirty:
            self._checksum = depth_checksum(self.rows(0, CHECKSUM_LEVELS), self.rows(1, CHECKSUM_LEVELS))
            self._dirty = False
        return self._checksum

    def rows(self, side: int, limit: int | None = None) -> list[DepthRow]:
        """Levels of one side best first as ``(price, qty, orders)``, at most ``limit``. O(rows)."""
        levels = self._levels[side]
        keys = self._keys[side] if limit is None else self._keys[side][:limit]
        return [tuple(levels[k]) for k in keys]  # type: ignore[misc]

    def best(self, side: int) -> tuple[int, int]:
        """(price, qty) of a side's best level; (0, 0) when the side is empty. O(1)."""
        keys = self._keys[side]
        if not keys:
            return (0, 0)
        lv = self._levels[side][keys[0]]
        return (lv[0], lv[1])

    def depth(self) -> tuple[list[DepthRow], list[DepthRow]]:
        """(bids, asks) exactly as ``Engine.depth`` gives them. O(levels)."""
        return self.rows(0), self.rows(1)

    def load(self, bids: list, asks: list) -> None:
        """Replace every level with those of ``(bids, asks)`` in depth form. O(levels log levels)."""
        self._keys = ([], [])
        self._levels = ({}, {})
        for side, rows in ((0, bids), (1, asks)):
            for price, qty, orders in rows:
                self.set_level(side, price, qty, orders)
        self._dirty = True

    def _check(self) -> None:
        """Every invariant: keys sorted and unique, one level per key, no empty level. O(levels)."""
        for side in (0, 1):
            keys, levels = self._keys[side], self._levels[side]
            assert keys == sorted(set(keys)), "level keys not sorted or repeated"
            assert set(keys) == set(levels), "key list and level dict disagree"
            for key, (price, qty, orders) in levels.items():
                assert key == (-price if side == 0 else price), "level filed under the wrong key"
                assert qty > 0 and orders > 0, f"empty level {price} kept"
        if not self._dirty:
            assert self._checksum == depth_checksum(*self.depth()), "stale cached checksum"


# --- a subscriber's books ----------------------------------------------------------------

APPLIED = "applied"  # applied and its checksum verified
STALE = "stale"  # already in the book (instrument seq at or below the book's): skipped
GAP = "gap"  # an instrument seq was skipped: the instrument needs a new snapshot
MISMATCH = "mismatch"  # the checksum (or BBO) disagrees with the book: needs a new snapshot
UNSYNCED = "unsynced"  # no snapshot yet, or waiting for a new one since a gap or mismatch


class LocalBook:
    """A subscriber's view: for each instrument, a snapshot plus the updates after it, verified.

    ``load(snapshot)`` starts (or restarts) an instrument; ``apply(update)``
    applies one update and says what became of it (``APPLIED``, ``STALE``,
    ``GAP``, ``MISMATCH``, ``UNSYNCED``). After a gap or a mismatch the
    instrument ignores updates until the next ``load``: the caller takes a
    new snapshot. ``book(instrument)`` gives ``(bids, asks)`` in
    ``Engine.depth`` form. Counters: ``gaps``, ``checksum_failures``,
    ``resyncs`` (loads of an instrument that had lost sync).
    """

    def __init__(self) -> None:
        self._books: dict[int, L2Book] = {}
        self._synced: dict[int, bool] = {}
        self.gaps = 0
        self.checksum_failures = 0
        self.resyncs = 0

    def load(self, snap: BookSnapshot) -> bool:
        """Start ``snap.instrument`` from a snapshot; False (and unsynced) if its checksum is wrong."""
        book = L2Book(snap.instrument)
        book.load(snap.bids, snap.asks)
        book.seq = snap.instrument_seq
        if self._synced.get(snap.instrument) is False:
            self.resyncs += 1
        self._books[snap.instrument] = book
        ok = book.checksum() == snap.checksum
        if not ok:
            self.checksum_failures += 1
        self._synced[snap.instrument] = ok
        return ok

    def apply(self, u: Update) -> str:
        """Apply one update of any instrument; returns what became of it (see the class). O(log levels)."""
        book = self._books.get(u.instrument)
        if book is None or not self._synced[u.instrument]:
            return UNSYNCED
        if u.instrument_seq <= book.seq:
            return STALE
        if u.instrument_seq != book.seq + 1:
            self.gaps += 1
            self._synced[u.instrument] = False
            return GAP
        book.seq = u.instrument_seq
        ok = True
        if isinstance(u, LevelUpdate):
            book.set_level(SIDE_CODES[u.side], u.price, u.qty, u.orders)
        elif isinstance(u, BboUpdate):
            ok = book.best(0) == (u.bid_price, u.bid_qty) and book.best(1) == (u.ask_price, u.ask_qty)
        if not ok or book.checksum() != u.checksum:
            self.checksum_failures += 1
            self._synced[u.instrument] = False
            return MISMATCH
        return APPLIED

    def lost(self, instrument: int) -> None:
        """The caller learnt that updates of a synced instrument were lost (e.g. a feed's heartbeat
        names a later instrument seq than the book's): a gap; the instrument waits for a snapshot."""
        if self._synced.get(instrument):
            self.gaps += 1
            self._synced[instrument] = False

    def synced(self, instrument: int) -> bool:
        """Whether the instrument follows the feed (loaded, and no gap or mismatch since)."""
        return self._synced.get(instrument, False)

    def instrument_seq(self, instrument: int) -> int:
        """The instrument seq of the last update applied (or of the snapshot); 0 if none."""
        book = self._books.get(instrument)
        return 0 if book is None else book.seq

    def book(self, instrument: int) -> tuple[list[DepthRow], list[DepthRow]]:
        """(bids, asks) of an instrument in ``Engine.depth`` form; empty if never loaded. O(levels)."""
        book = self._books.get(instrument)
        return ([], []) if book is None else book.depth()

    def instruments(self) -> list[int]:
        """Every loaded instrument, ascending."""
        return sorted(self._books)
