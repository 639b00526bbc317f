"""The market-data feed's batch path in C: ``BookFeed.apply_batch`` with the updates as wire records.

For: ``FastBookFeed``, what a replication node runs on every command
(``replication.transport.md_engine``): the same rules as
``matching.book_feed.BookFeed`` (its specification: docs/semantics.md
"Market data"), the same per-instrument seqs and checksums, but the resting
orders in a C hash map, each side's levels in a sorted C array, the checksum
computed in C, and the updates written straight into 64-byte records (the
layout of ``replication.protocol.market_data``: kind, side, 0, instrument,
seq, instrument seq, a, b, c, d, checksum, 0; little-endian) — no Python
object per event, per order or per update.

Not for: the embedded API (``BookFeed`` gives update tuples), nor a
subscriber's book (``LocalBook``). tests/engine/test_book_feed_fast.py holds
it equal to ``BookFeed`` on random flows.
"""

from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memmove, memset

import numpy as np

from .market_data import BookSnapshot


# CRC-32 (the zlib / IEEE 802.3 one, reflected, polynomial 0xEDB88320): docs/semantics.md
# "The checksum". Eight tables, filled once at import, so that the loop takes eight bytes a step
# ("slicing by 8") instead of one: a checksum covers up to 496 bytes and is taken after every
# top-10 level change, so a byte-at-a-time loop was the feed's largest cost per order.
cdef uint32_t CRC_TABLES[8][256]


cdef void _crc_init() noexcept:
    cdef uint32_t c
    cdef int n, k
    for n in range(256):
        c = n
        for k in range(8):
            c = (<uint32_t>0xEDB88320 ^ (c >> 1)) if (c & 1) else (c >> 1)
        CRC_TABLES[0][n] = c
    for n in range(256):
        for k in range(1, 8):
            c = CRC_TABLES[k - 1][n]
            CRC_TABLES[k][n] = (c >> 8) ^ CRC_TABLES[0][c & 0xFF]


_crc_init()


cdef inline uint32_t crc32(const unsigned char *buf, Py_ssize_t n) noexcept nogil:
    """CRC-32 of ``buf[:n]``; the words are read little-endian (the feed's byte order)."""
    cdef uint32_t c = <uint32_t>0xFFFFFFFF
    cdef uint32_t lo, hi
    cdef Py_ssize_t i = 0
    while i + 8 <= n:
        memcpy(&lo, buf + i, 4)
        memcpy(&hi, buf + i + 4, 4)
        lo ^= c
        c = (CRC_TABLES[7][lo & 0xFF] ^ CRC_TABLES[6][(lo >> 8) & 0xFF]
             ^ CRC_TABLES[5][(lo >> 16) & 0xFF] ^ CRC_TABLES[4][lo >> 24]
             ^ CRC_TABLES[3][hi & 0xFF] ^ CRC_TABLES[2][(hi >> 8) & 0xFF]
             ^ CRC_TABLES[1][(hi >> 16) & 0xFF] ^ CRC_TABLES[0][hi >> 24])
        i += 8
    while i < n:
        c = CRC_TABLES[0][(c ^ buf[i]) & 0xFF] ^ (c >> 8)
        i += 1
    return c ^ <uint32_t>0xFFFFFFFF

cdef enum:
    CHECKSUM_LEVELS = 10  # matching.market_data.CHECKSUM_LEVELS
    REC = 64  # an update record's bytes
    EV_ACCEPTED = 1  # matching.codes
    EV_TRADE = 3
    EV_CANCELLED = 4
    EV_REPLACED = 5
    EV_TRIGGERED = 6
    TYPE_LIMIT = 0
    TYPE_STOP = 2
    TYPE_STOP_LIMIT = 3
    KIND_LEVEL = 1  # replication.protocol.market_data
    KIND_TRADE = 2
    KIND_BBO = 3

EMPTY_CHECKSUM = 0xECBB4B55  # docs/semantics.md: the empty book's


ctypedef struct level_t:
    int64_t price
    int64_t qty
    int64_t orders

ctypedef struct side_t:
    level_t *lv
    Py_ssize_t n
    Py_ssize_t cap

ctypedef struct book_t:
    uint32_t instrument
    uint64_t seq
    side_t sides[2]
    uint32_t crc
    int dirty

ctypedef struct order_t:
    uint64_t id
    uint32_t instrument
    uint8_t side
    uint8_t used
    int64_t price
    int64_t open
    int64_t visible
    int64_t display

ctypedef struct touch_t:  # a level one command touched, with its pending totals
    Py_ssize_t book
    uint8_t side
    int64_t price
    int64_t qty
    int64_t orders

ctypedef struct trade_t:
    Py_ssize_t book
    int64_t price
    int64_t qty
    uint8_t side


cdef inline uint64_t _mix(uint64_t x) noexcept nogil:
    x ^= x >> 30
    x *= <uint64_t>0xbf58476d1ce4e5b9
    x ^= x >> 27
    x *= <uint64_t>0x94d049bb133111eb
    x ^= x >> 31
    return x


cdef inline Py_ssize_t _find(side_t *s, int side, int64_t price, bint *found) noexcept nogil:
    """Rank of ``price`` in a side kept best first (bids descending, asks ascending)."""
    cdef Py_ssize_t lo = 0, hi = s.n, mid
    cdef int64_t p
    while lo < hi:
        mid = (lo + hi) >> 1
        p = s.lv[mid].price
        if (p > price) if side == 0 else (p < price):
            lo = mid + 1
        else:
            hi = mid
    found[0] = lo < s.n and s.lv[lo].price == price
    return lo


cdef class FastBookFeed:
    """``BookFeed``'s state and batch path in C (see the module)."""

    cdef order_t *orders
    cdef uint64_t mask
    cdef uint64_t n_orders
    cdef book_t *books
    cdef Py_ssize_t n_books, cap_books
    cdef dict book_index  # instrument -> index in books
    # Waiting stops (not in any book until triggered): id -> (instrument, side, limit price
    # or 0, qty, display qty). A dict: only commands with stops touch it.
    cdef dict stops
    cdef touch_t *touches
    cdef Py_ssize_t n_touches, cap_touches
    cdef trade_t *trades
    cdef Py_ssize_t n_trades, cap_trades
    cdef unsigned char *out
    cdef Py_ssize_t n_out, cap_out
    cdef public uint64_t seq

    def __cinit__(self):
        self.stops = {}
        self.mask = 1023
        self.orders = <order_t *>malloc((self.mask + 1) * sizeof(order_t))
        self.cap_books = 8
        self.books = <book_t *>malloc(self.cap_books * sizeof(book_t))
        self.cap_touches = 64
        self.touches = <touch_t *>malloc(self.cap_touches * sizeof(touch_t))
        self.cap_trades = 64
        self.trades = <trade_t *>malloc(self.cap_trades * sizeof(trade_t))
        self.cap_out = 64 * REC
        self.out = <unsigned char *>malloc(self.cap_out)
        if not (self.orders and self.books and self.touches and self.trades and self.out):
            raise MemoryError()
        memset(self.orders, 0, (self.mask + 1) * sizeof(order_t))
        self.book_index = {}
        self.n_books = self.n_orders = self.n_touches = self.n_trades = self.n_out = 0
        self.seq = 0

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self.books != NULL:
            for i in range(self.n_books):
                free(self.books[i].sides[0].lv)
                free(self.books[i].sides[1].lv)
        free(self.orders)
        free(self.books)
        free(self.touches)
        free(self.trades)
        free(self.out)

    # -- orders --------------------------------------------------------------------------

    cdef order_t *_get(self, uint64_t oid) noexcept:
        cdef uint64_t i = _mix(oid) & self.mask
        while self.orders[i].used:
            if self.orders[i].id == oid:
                return &self.orders[i]
            i = (i + 1) & self.mask
        return NULL

    cdef int _grow_orders(self) except -1:
        cdef order_t *old = self.orders
        cdef uint64_t old_cap = self.mask + 1, cap = old_cap * 2, k, i
        cdef order_t *fresh = <order_t *>malloc(cap * sizeof(order_t))
        if fresh == NULL:
            raise MemoryError()
        memset(fresh, 0, cap * sizeof(order_t))
        for k in range(old_cap):
            if old[k].used:
                i = _mix(old[k].id) & (cap - 1)
                while fresh[i].used:
                    i = (i + 1) & (cap - 1)
                fresh[i] = old[k]
        free(old)
        self.orders = fresh
        self.mask = cap - 1
        return 0

    cdef int _put(self, order_t *o) except -1:
        cdef uint64_t i
        if (self.n_orders + 1) * 2 > self.mask + 1:
            self._grow_orders()
        i = _mix(o.id) & self.mask
        while self.orders[i].used:
            i = (i + 1) & self.mask
        self.orders[i] = o[0]
        self.orders[i].used = 1
        self.n_orders += 1
        return 0

    cdef void _del(self, order_t *o) noexcept:
        """Remove the order at ``o`` (a slot of the table): backward shift, no tombstones."""
        cdef uint64_t mask = self.mask
        cdef uint64_t i = <uint64_t>(o - self.orders), j = i, home
        while True:
            j = (j + 1) & mask
            if not self.orders[j].used:
                break
            home = _mix(self.orders[j].id) & mask
            if ((j - home) & mask) >= ((j - i) & mask):
                self.orders[i] = self.orders[j]
                i = j
        self.orders[i].used = 0
        self.n_orders -= 1

    # -- books ---------------------------------------------------------------------------

    cdef Py_ssize_t _book(self, uint32_t instrument) except -1:
        got = self.book_index.get(instrument)
        if got is not None:
            return <Py_ssize_t>got
        cdef book_t *grown
        if self.n_books == self.cap_books:
            grown = <book_t *>realloc(self.books, self.cap_books * 2 * sizeof(book_t))
            if grown == NULL:
                raise MemoryError()
            self.books = grown
            self.cap_books *= 2
        cdef book_t *b = &self.books[self.n_books]
        memset(b, 0, sizeof(book_t))
        b.instrument = instrument
        b.dirty = 1  # its checksum, the empty book's, computed when first asked for
        self.book_index[instrument] = self.n_books
        self.n_books += 1
        return self.n_books - 1

    cdef void _level(self, Py_ssize_t bi, int side, int64_t price, int64_t *qty, int64_t *orders) noexcept:
        cdef bint found
        cdef side_t *s = &self.books[bi].sides[side]
        cdef Py_ssize_t r = _find(s, side, price, &found)
        if found:
            qty[0] = s.lv[r].qty
            orders[0] = s.lv[r].orders
        else:
            qty[0] = 0
            orders[0] = 0

    cdef int _set_level(self, Py_ssize_t bi, int side, int64_t price, int64_t qty, int64_t orders) except -1:
        """1 if the level changed (qty 0 removes it), else 0; marks the checksum stale in the top 10."""
        cdef book_t *b = &self.books[bi]
        cdef side_t *s = &b.sides[side]
        cdef bint found
        cdef Py_ssize_t r = _find(s, side, price, &found)
        cdef level_t *grown
        if not found:
            if qty == 0:
                return 0
            if s.n == s.cap:
                grown = <level_t *>realloc(s.lv, (s.cap * 2 + 16) * sizeof(level_t))
                if grown == NULL:
                    raise MemoryError()
                s.lv = grown
                s.cap = s.cap * 2 + 16
            memmove(&s.lv[r + 1], &s.lv[r], (s.n - r) * sizeof(level_t))
            s.lv[r].price = price
            s.lv[r].qty = qty
            s.lv[r].orders = orders
            s.n += 1
        elif qty == 0:
            memmove(&s.lv[r], &s.lv[r + 1], (s.n - r - 1) * sizeof(level_t))
            s.n -= 1
        else:
            if s.lv[r].qty == qty and s.lv[r].orders == orders:
                return 0
            s.lv[r].qty = qty
            s.lv[r].orders = orders
        if r < CHECKSUM_LEVELS:
            b.dirty = 1
        return 1

    cdef uint32_t _checksum(self, Py_ssize_t bi) noexcept:
        cdef book_t *b = &self.books[bi]
        cdef int64_t words[2 + 6 * CHECKSUM_LEVELS]
        cdef Py_ssize_t n = 0, k, m
        cdef int side
        if b.dirty:
            for side in range(2):
                m = b.sides[side].n if b.sides[side].n < CHECKSUM_LEVELS else CHECKSUM_LEVELS
                words[n] = m
                n += 1
                for k in range(m):
                    words[n] = b.sides[side].lv[k].price
                    words[n + 1] = b.sides[side].lv[k].qty
                    words[n + 2] = b.sides[side].lv[k].orders
                    n += 3
            b.crc = crc32(<const unsigned char *>words, n * 8)
            b.dirty = 0
        return b.crc

    # -- per command ---------------------------------------------------------------------

    cdef touch_t *_touch(self, Py_ssize_t bi, int side, int64_t price) except NULL:
        cdef Py_ssize_t k
        cdef touch_t *t
        for k in range(self.n_touches):
            t = &self.touches[k]
            if t.book == bi and t.side == side and t.price == price:
                return t
        if self.n_touches == self.cap_touches:
            t = <touch_t *>realloc(self.touches, self.cap_touches * 2 * sizeof(touch_t))
            if t == NULL:
                raise MemoryError()
            self.touches = t
            self.cap_touches *= 2
        t = &self.touches[self.n_touches]
        self.n_touches += 1
        t.book = bi
        t.side = side
        t.price = price
        self._level(bi, side, price, &t.qty, &t.orders)
        return t

    cdef int _trade(self, Py_ssize_t bi, int64_t price, int64_t qty, uint8_t side) except -1:
        cdef trade_t *grown
        if self.n_trades == self.cap_trades:
            grown = <trade_t *>realloc(self.trades, self.cap_trades * 2 * sizeof(trade_t))
            if grown == NULL:
                raise MemoryError()
            self.trades = grown
            self.cap_trades *= 2
        self.trades[self.n_trades].book = bi
        self.trades[self.n_trades].price = price
        self.trades[self.n_trades].qty = qty
        self.trades[self.n_trades].side = side
        self.n_trades += 1
        return 0

    cdef int _emit(self, uint8_t kind, uint8_t side, uint32_t instrument, uint64_t seq, uint64_t iseq,
                   int64_t a, int64_t b, int64_t c, int64_t d, uint32_t crc) except -1:
        cdef unsigned char *grown
        cdef unsigned char *p
        if self.n_out + REC > self.cap_out:
            grown = <unsigned char *>realloc(self.out, self.cap_out * 2)
            if grown == NULL:
                raise MemoryError()
            self.out = grown
            self.cap_out *= 2
        p = self.out + self.n_out
        memset(p, 0, REC)
        p[0] = kind
        p[1] = side
        memcpy(p + 4, &instrument, 4)
        memcpy(p + 8, &seq, 8)
        memcpy(p + 16, &iseq, 8)
        memcpy(p + 24, &a, 8)
        memcpy(p + 32, &b, 8)
        memcpy(p + 40, &c, 8)
        memcpy(p + 48, &d, 8)
        memcpy(p + 56, &crc, 4)
        self.n_out += REC
        return 0

    cdef int _publish(self, uint64_t seq, Py_ssize_t bi) except -1:
        """One instrument's updates of the command: changed levels, trades, then BBO."""
        cdef book_t *b = &self.books[bi]
        cdef int64_t bid0p = 0, bid0q = 0, ask0p = 0, ask0q = 0, bidp = 0, bidq = 0, askp = 0, askq = 0
        cdef uint64_t n
        cdef Py_ssize_t k
        cdef touch_t *t
        cdef uint32_t crc
        if b.sides[0].n:
            bid0p, bid0q = b.sides[0].lv[0].price, b.sides[0].lv[0].qty
        if b.sides[1].n:
            ask0p, ask0q = b.sides[1].lv[0].price, b.sides[1].lv[0].qty
        n = b.seq
        for k in range(self.n_touches):
            t = &self.touches[k]
            if t.book != bi:
                continue
            if self._set_level(bi, t.side, t.price, t.qty, t.orders):
                n += 1
                b = &self.books[bi]
                self._emit(KIND_LEVEL, t.side, b.instrument, seq, n, t.price, t.qty, t.orders, 0,
                           self._checksum(bi))
        b = &self.books[bi]
        crc = self._checksum(bi)
        for k in range(self.n_trades):
            if self.trades[k].book != bi:
                continue
            n += 1
            self._emit(KIND_TRADE, self.trades[k].side, b.instrument, seq, n, self.trades[k].price,
                       self.trades[k].qty, 0, 0, crc)
        if b.sides[0].n:
            bidp, bidq = b.sides[0].lv[0].price, b.sides[0].lv[0].qty
        if b.sides[1].n:
            askp, askq = b.sides[1].lv[0].price, b.sides[1].lv[0].qty
        if bidp != bid0p or bidq != bid0q or askp != ask0p or askq != ask0q:
            n += 1
            self._emit(KIND_BBO, 0, b.instrument, seq, n, bidp, bidq, askp, askq, crc)
        b.seq = n
        return 0

    cdef int _finish(self, uint64_t seq) except -1:
        """Publish the command's work, per instrument (ascending when a mass cancel touched several)."""
        cdef Py_ssize_t k, first, bi
        cdef bint several = False
        if self.n_touches == 0:
            return 0
        first = self.touches[0].book
        for k in range(1, self.n_touches):
            if self.touches[k].book != first:
                several = True
                break
        if not several:
            self._publish(seq, first)
        else:
            order = sorted({(self.books[self.touches[k].book].instrument, self.touches[k].book)
                            for k in range(self.n_touches)})
            for _, bi in order:
                self._publish(seq, bi)
        self.n_touches = 0
        self.n_trades = 0
        return 0

    # -- the batch ---------------------------------------------------------------------------

    def apply_records(self, commands, events, uint64_t first_seq) -> bytes:
        """The updates of one ``Engine.apply_batch`` call as back-to-back 64-byte records.

        ``commands``: the ``COMMAND_DTYPE`` array given to ``apply_batch``;
        ``events``: the ``EVENT_DTYPE`` array it returned (``cmd`` = index in
        the batch, not yet zeroed). Command ``i`` gets seq ``first_seq + i``.
        O(commands + events + changed levels x log levels).
        """
        cdef const unsigned char[::1] cb = np.ascontiguousarray(commands).view(np.uint8).reshape(-1)
        cdef const unsigned char[::1] eb = np.ascontiguousarray(events).view(np.uint8).reshape(-1)
        cdef Py_ssize_t n_cmd = len(commands), n_ev = len(events), e = 0, cur = -1
        cdef const unsigned char *ev
        cdef const unsigned char *cmd
        cdef uint64_t ev_cmd, eid, maker_id, taker_id = 0
        cdef int64_t price, qty, open_a, open_b
        cdef uint32_t instrument
        cdef uint8_t kind
        cdef order_t taker
        cdef bint has_taker = False
        cdef order_t *o
        cdef touch_t *t
        cdef Py_ssize_t bi
        self.n_out = 0
        self.n_touches = 0
        self.n_trades = 0
        if n_cmd == 0:
            return b""
        for e in range(n_ev):
            ev = &eb[e * 64]
            memcpy(&ev_cmd, ev, 8)
            if <Py_ssize_t>ev_cmd != cur:
                if cur >= 0:
                    self._end_command(first_seq + cur, &taker, has_taker, taker_id)
                cur = <Py_ssize_t>ev_cmd
                has_taker = False
            memcpy(&eid, ev + 8, 8)
            memcpy(&maker_id, ev + 16, 8)
            memcpy(&price, ev + 24, 8)
            memcpy(&qty, ev + 32, 8)
            memcpy(&open_a, ev + 40, 8)
            memcpy(&open_b, ev + 48, 8)
            memcpy(&instrument, ev + 56, 4)
            kind = ev[60]
            if kind == EV_TRADE:
                o = self._get(maker_id)
                if o == NULL:
                    raise ValueError(f"feed: a trade with maker {maker_id}, which it does not know")
                bi = self._book(instrument)
                t = self._touch(bi, o.side, price)
                t.qty -= qty
                o.visible -= qty
                o.open = open_b
                if o.visible == 0:
                    if o.open == 0:
                        t.orders -= 1
                        self._del(o)
                    else:  # iceberg refill
                        o.visible = o.display if o.display < o.open else o.open
                        t.qty += o.visible
                if has_taker:
                    taker.open = open_a
                    self._trade(bi, price, qty, taker.side)
            elif kind == EV_ACCEPTED and cb[cur * 80 + 46] >= TYPE_STOP:
                # A stop waits outside the book until its `triggered` event.
                cmd = &cb[cur * 80]
                memcpy(&price, cmd + 16, 8)
                memcpy(&qty, cmd + 24, 8)
                memcpy(&open_a, cmd + 32, 8)
                self.stops[eid] = (instrument, cmd[45], price if cmd[46] == TYPE_STOP_LIMIT else 0, qty, open_a)
            elif kind == EV_TRIGGERED:
                # The aggressor so far rests (it may be this stop's maker), then the stop aggresses.
                self._rest_taker(&taker, has_taker, taker_id)
                instrument, side, price, qty, open_a = self.stops.pop(eid)
                memset(&taker, 0, sizeof(order_t))
                taker.instrument = instrument
                taker.side = side
                taker.price = price
                taker.open = qty
                taker.display = open_a
                has_taker = True
                taker_id = eid
            elif kind == EV_ACCEPTED:
                cmd = &cb[cur * 80]  # COMMAND_DTYPE.itemsize
                memset(&taker, 0, sizeof(order_t))
                taker.instrument = instrument
                taker.side = cmd[45]
                if cmd[46] == TYPE_LIMIT:
                    memcpy(&taker.price, cmd + 16, 8)
                memcpy(&taker.open, cmd + 24, 8)
                memcpy(&taker.display, cmd + 32, 8)
                has_taker = True
                taker_id = eid
            elif kind == EV_CANCELLED:
                if has_taker and eid == taker_id:
                    has_taker = False
                elif self.stops and self.stops.pop(eid, None) is not None:
                    pass  # a waiting stop: in no book
                else:
                    o = self._get(eid)
                    if o == NULL:
                        raise ValueError(f"feed: a cancel of order {eid}, which it does not know")
                    bi = self._book(o.instrument)
                    t = self._touch(bi, o.side, o.price)
                    t.qty -= o.visible
                    t.orders -= 1
                    self._del(o)
            elif kind == EV_REPLACED and self.stops and eid in self.stops:
                instrument, side, _, _, open_a = self.stops[eid]
                self.stops[eid] = (instrument, side, price, qty, open_a if open_a < qty else qty)
            elif kind == EV_REPLACED:
                o = self._get(eid)
                if o == NULL:
                    raise ValueError(f"feed: a replace of order {eid}, which it does not know")
                bi = self._book(o.instrument)
                t = self._touch(bi, o.side, o.price)
                if price == o.price and qty <= o.open:
                    open_a = o.visible if o.visible < qty else qty  # the new visible qty
                    t.qty -= o.visible - open_a
                    o.visible = open_a
                    o.open = qty
                else:
                    t.qty -= o.visible
                    t.orders -= 1
                    memset(&taker, 0, sizeof(order_t))
                    taker.instrument = o.instrument
                    taker.side = o.side
                    taker.price = price
                    taker.open = qty
                    taker.display = o.display
                    has_taker = True
                    taker_id = eid
                    self._del(o)
            # EV_REJECTED: nothing
        if cur >= 0:
            self._end_command(first_seq + cur, &taker, has_taker, taker_id)
        self.seq = first_seq + n_cmd - 1
        return bytes(self.out[: self.n_out])

    cdef int _end_command(self, uint64_t seq, order_t *taker, bint has_taker, uint64_t taker_id) except -1:
        self._rest_taker(taker, has_taker, taker_id)
        return self._finish(seq)

    cdef int _rest_taker(self, order_t *taker, bint has_taker, uint64_t taker_id) except -1:
        # An aggressor's remainder that was not cancelled rests at the back of its level.
        cdef touch_t *t
        cdef Py_ssize_t bi
        if has_taker and taker.open > 0:
            if taker.display and taker.display < taker.open:
                taker.visible = taker.display
            else:
                taker.visible = taker.open
            taker.id = taker_id
            self._put(taker)
            bi = self._book(taker.instrument)
            t = self._touch(bi, taker.side, taker.price)
            t.qty += taker.visible
            t.orders += 1
        return 0

    # -- out -------------------------------------------------------------------------------------

    def _rows(self, Py_ssize_t bi, int side):
        cdef side_t *s = &self.books[bi].sides[side]
        return [(s.lv[k].price, s.lv[k].qty, s.lv[k].orders) for k in range(s.n)]

    def depth(self, uint32_t instrument):
        """(bids, asks) of one instrument in ``Engine.depth`` form. O(levels)."""
        got = self.book_index.get(instrument)
        if got is None:
            return [], []
        return self._rows(got, 0), self._rows(got, 1)

    def snapshot(self, uint32_t instrument):
        """Full-depth L2 of one instrument now (``BookFeed.snapshot``). O(levels)."""
        got = self.book_index.get(instrument)
        if got is None:  # an instrument never touched: empty (and no book is made for it)
            return BookSnapshot(instrument, self.seq, 0, [], [], EMPTY_CHECKSUM)
        bids, asks = self._rows(got, 0), self._rows(got, 1)
        return BookSnapshot(instrument, self.seq, self.books[<Py_ssize_t>got].seq, bids, asks,
                            self._checksum(got))

    def instruments(self):
        return sorted(self.book_index)

    def instrument_seqs(self):
        """``(instrument, instrument seq)`` for every instrument, ascending. O(instruments)."""
        return [(i, self.books[<Py_ssize_t>self.book_index[i]].seq) for i in sorted(self.book_index)]

    def state(self):
        """``BookFeed.state()``: ``(seq, instrument_seqs, orders)``, orders ascending by id. O(orders log orders)."""
        cdef uint64_t k
        orders = [
            (self.orders[k].id, self.orders[k].instrument, self.orders[k].side, self.orders[k].price,
             self.orders[k].open, self.orders[k].visible, self.orders[k].display)
            for k in range(self.mask + 1) if self.orders[k].used
        ]
        # Waiting stops ride along as orders that show nothing (visible 0; a resting order never does).
        orders += [(oid, i, side, price, qty, 0, display) for oid, (i, side, price, qty, display) in self.stops.items()]
        orders.sort()
        return self.seq, self.instrument_seqs(), orders

    @classmethod
    def from_state(cls, seq, instrument_seqs, orders):
        """The feed that :meth:`state` (or ``BookFeed.state``) described. O(orders log levels)."""
        cdef FastBookFeed feed = cls()
        cdef order_t o
        cdef Py_ssize_t bi
        cdef int64_t q, c
        feed.seq = seq
        for instrument, iseq in instrument_seqs:
            bi = feed._book(instrument)
            feed.books[bi].seq = iseq
        for oid, instrument, side, price, open_qty, visible, display in orders:
            if visible == 0:  # a waiting stop
                feed.stops[oid] = (instrument, side, price, open_qty, display)
                continue
            if instrument not in feed.book_index:
                raise ValueError(f"feed state: an order of instrument {instrument}, which has no seq")
            memset(&o, 0, sizeof(order_t))
            o.id, o.instrument, o.side, o.price = oid, instrument, side, price
            o.open, o.visible, o.display = open_qty, visible, display
            feed._put(&o)
            bi = feed.book_index[instrument]
            feed._level(bi, side, price, &q, &c)
            feed._set_level(bi, side, price, q + visible, c + 1)
        for bi in range(feed.n_books):
            feed.books[bi].dirty = 1
        return feed
