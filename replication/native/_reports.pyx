"""The execution-report book in C: ``replication.protocol.reports.ReportBook`` when built.

For: the same book as the plain-Python ``reports.ReportBookPy`` (owners and
states of live orders, the window of ended orders, per-client numbered
64-byte execution reports, its snapshot bytes), with no Python object per
order, per event or per report, so that feeding it every applied entry costs
a few hundred nanoseconds per order at most instead of several microseconds
(``benchmarks/report_book.py``). The Python class is the specification:
every answer and ``pack()`` byte must be the same (the tests run both on the
same entries). ``reports.py`` binds the result types (``OrderState``,
``ReportsGone``) here at import: this layer does not import the protocol
layer.

Where it differs, only on what the replica never does: windows must be
u64s (``OverflowError`` when set, where the Python book fails only at
``pack``); a malformed batch (offsets past the events, a short command)
raises ``ValueError`` before anything is taken; ``touched`` is a read-only
copy; a query key that is not an ``int`` finds nothing; an id accepted again
while live (the engine rejects it as ``duplicate_id``) moves to its new
owner's list.

The layout, all indices (the arrays grow by ``realloc``):

- ``orders``: a slab of order records; a record is either live (in the live
  list, in acceptance order, and in its owner's list) or ended (in the ended
  list, oldest first). Free records are chained through ``next``.
- ``ids``: an open-addressing hash (linear probing, backward-shift
  deletion) from order id to its record, live or ended (one table: an order
  that ends stays where it is, and the hot path makes fewer random memory
  accesses, which is what a per-order cost is made of here). The Python
  book could hold an id both live and ended only if restored from bytes its
  ``pack`` never makes; ``unpack`` here refuses such bytes.
- ``parties``: one per client id that owned an order or got a report (the
  owner's list of live orders, its kept reports and their seqs, in a ring:
  trimming moves nothing), found by ``party_ids``; ``logs`` lists those with reports in the order of their
  first one (the snapshot's order, as the Python dict's insertion order).

Not for: validating what the engine produced (the replica feeds it what
the engine returned) or windows outside ``0 .. 2**64 - 1``. Little-endian
hosts only (as the engine's records).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM
from cpython.long cimport PyLong_AsUnsignedLongLong
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset

import numpy as np

# The constants of reports.py, session.py and matching.codes (tests pin them equal).
cdef enum:
    REPORT_SIZE = 64
    EVENT_SIZE = 64
    COMMAND_SIZE = 80
    ROLE_OFFSET = 62
    TRIM_SLACK = 4
    # Snapshot record sizes (reports._LIVE, _ENDED, _CLIENT, _BOOK_HEAD).
    LIVE_SIZE = 53
    ENDED_SIZE = 54
    CLIENT_SIZE = 24
    HEAD_SIZE = 32
    # How far ahead absorb_batch prefetches (entries): hash slots first, then the records they
    # name (by then the slot is in cache); and at most this many events of an entry.
    SLOTS_AHEAD = 8
    RECORDS_AHEAD = 4
    WARM_EVENTS = 4
OP_SESSION = 0xF0
cdef uint8_t C_OP_SESSION = 0xF0
cdef uint8_t EV_ACCEPTED = 1, EV_REJECTED = 2, EV_TRADE = 3, EV_CANCELLED = 4, EV_REPLACED = 5
cdef uint8_t OP_NEW = 0
cdef uint8_t ROLE_NONE = 0, ROLE_TAKER = 1, ROLE_MAKER = 2
cdef uint8_t ST_OPEN = 0, ST_FILLED = 1, ST_CANCELLED = 2

# Set by reports.py (``bind``): the types the queries answer and raise.
_OrderState = None
_ReportsGone = None


def bind(order_state, reports_gone):
    """Name the query result type and the gone-reports exception (``reports.OrderState``, ``ReportsGone``)."""
    global _OrderState, _ReportsGone
    _OrderState, _ReportsGone = order_state, reports_gone


cdef extern from *:
    """
    #define mc_prefetch(p) __builtin_prefetch((const void *)(p))
    """
    void mc_prefetch(const void *p) noexcept nogil


# --- unaligned little-endian reads and writes ------------------------------------

cdef inline uint64_t rd_u64(const uint8_t *p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return v


cdef inline int64_t rd_i64(const uint8_t *p) noexcept nogil:
    cdef int64_t v
    memcpy(&v, p, 8)
    return v


cdef inline uint32_t rd_u32(const uint8_t *p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v


cdef inline uint8_t *wr_u64(uint8_t *p, uint64_t v) noexcept nogil:
    memcpy(p, &v, 8)
    return p + 8


cdef inline uint8_t *wr_i64(uint8_t *p, int64_t v) noexcept nogil:
    memcpy(p, &v, 8)
    return p + 8


# --- u64 -> index hash (open addressing, linear probing, backward-shift deletion) ---

cdef struct slot_t:
    uint64_t key
    int64_t val  # -1: empty


cdef struct map_t:
    slot_t *slots
    uint64_t mask
    uint64_t n


cdef inline uint64_t home(uint64_t x) noexcept nogil:
    # splitmix64's finaliser: ids come sequential, strided or random; a full mix keeps probes short.
    x ^= x >> 30
    x *= <uint64_t>0xbf58476d1ce4e5b9
    x ^= x >> 27
    x *= <uint64_t>0x94d049bb133111eb
    x ^= x >> 31
    return x


cdef int map_init(map_t *m, uint64_t cap) except -1:
    m.slots = <slot_t *>malloc(cap * sizeof(slot_t))
    if m.slots == NULL:
        raise MemoryError()
    memset(m.slots, 0xFF, cap * sizeof(slot_t))
    m.mask = cap - 1
    m.n = 0
    return 0


cdef inline int64_t map_get(const map_t *m, uint64_t key) noexcept nogil:
    cdef uint64_t i = home(key) & m.mask
    while m.slots[i].val >= 0:
        if m.slots[i].key == key:
            return m.slots[i].val
        i = (i + 1) & m.mask
    return -1


cdef int map_grow(map_t *m) except -1:
    cdef slot_t *old = m.slots
    cdef uint64_t old_cap = m.mask + 1, k, i
    map_init(m, old_cap * 2)
    for k in range(old_cap):
        if old[k].val >= 0:
            i = home(old[k].key) & m.mask
            while m.slots[i].val >= 0:
                i = (i + 1) & m.mask
            m.slots[i] = old[k]
            m.n += 1
    free(old)
    return 0


cdef int map_put(map_t *m, uint64_t key, int64_t val) except -1:
    """Insert ``key``, or point it at ``val`` if present."""
    cdef uint64_t i
    if 2 * (m.n + 1) > m.mask + 1:
        map_grow(m)
    i = home(key) & m.mask
    while m.slots[i].val >= 0:
        if m.slots[i].key == key:
            m.slots[i].val = val
            return 0
        i = (i + 1) & m.mask
    m.slots[i].key = key
    m.slots[i].val = val
    m.n += 1
    return 0


cdef slot_t *map_slot(map_t *m, uint64_t key) except NULL:
    """The slot of ``key``, or the empty one where it goes (its ``val`` -1: the caller fills it
    in, and must, as it is counted). One probe for a look-up followed by an insert."""
    cdef uint64_t i
    if 2 * (m.n + 1) > m.mask + 1:
        map_grow(m)
    i = home(key) & m.mask
    while m.slots[i].val >= 0:
        if m.slots[i].key == key:
            return &m.slots[i]
        i = (i + 1) & m.mask
    m.slots[i].key = key
    m.n += 1
    return &m.slots[i]


cdef int64_t map_del(map_t *m, uint64_t key) noexcept nogil:
    """Remove ``key``; its value, or -1 if absent."""
    cdef uint64_t i = home(key) & m.mask, j, k
    cdef int64_t val
    while True:
        if m.slots[i].val < 0:
            return -1
        if m.slots[i].key == key:
            break
        i = (i + 1) & m.mask
    val = m.slots[i].val
    j = i
    while True:  # shift back the entries of the probe run that would no longer be found
        j = (j + 1) & m.mask
        if m.slots[j].val < 0:
            break
        k = home(m.slots[j].key) & m.mask
        if (i <= j and i < k <= j) or (i > j and (i < k or k <= j)):
            continue  # its home lies after the hole: it stays
        m.slots[i] = m.slots[j]
        i = j
    m.slots[i].val = -1
    m.n -= 1
    return val


# --- records -----------------------------------------------------------------------

cdef struct order_t:
    uint64_t id
    uint64_t owner  # client id
    uint64_t account
    int64_t price
    int64_t open
    int64_t filled
    uint32_t instrument
    uint8_t side
    uint8_t status
    uint8_t live  # 1: in the live list (its status is then OPEN), 0: in the ended list
    int64_t prev  # the live list or the ended list (next: also the free chain)
    int64_t next
    int64_t oprev  # the owner's list of live orders
    int64_t onext
    int64_t party  # the owner's party (live orders)


cdef struct party_t:
    uint64_t cid
    int64_t ohead  # its live orders, acceptance order
    int64_t otail
    int64_t ocount
    uint8_t has_log
    uint8_t touched
    uint64_t first  # the n of the oldest kept report
    uint64_t last  # the n of the newest (0: none yet)
    # Its kept reports, a ring: report j (0: the oldest kept) is at (start + j) & (cap - 1) of buf
    # (64 bytes each) and of seqs (its seq). A ring, not a list trimmed at the front: trimming
    # copies nothing, and once it holds a window the memory is reused, never moved.
    uint8_t *buf
    uint64_t *seqs
    uint64_t start
    uint64_t count
    uint64_t cap  # a power of two


cdef struct list_t:
    int64_t head
    int64_t tail
    uint64_t n


cdef inline uint64_t seq_at(const party_t *log, uint64_t j) noexcept nogil:
    """The seq of ``log``'s kept report ``j`` (0: the oldest kept)."""
    return log.seqs[(log.start + j) & (log.cap - 1)]


cdef void copy_reports(const party_t *log, uint64_t lo, uint64_t n, uint8_t *dst) noexcept nogil:
    """Kept reports ``lo .. lo + n`` of ``log``, back to back into ``dst`` (the ring in two pieces)."""
    cdef uint64_t at = (log.start + lo) & (log.cap - 1) if log.cap else 0
    cdef uint64_t first = n if at + n <= log.cap else log.cap - at
    if n:
        memcpy(dst, log.buf + at * REPORT_SIZE, first * REPORT_SIZE)
        memcpy(dst + first * REPORT_SIZE, log.buf, (n - first) * REPORT_SIZE)


cdef void copy_seqs(const party_t *log, uint64_t lo, uint64_t n, uint64_t *dst) noexcept nogil:
    """The seqs of kept reports ``lo .. lo + n`` of ``log`` into ``dst``."""
    cdef uint64_t at = (log.start + lo) & (log.cap - 1) if log.cap else 0
    cdef uint64_t first = n if at + n <= log.cap else log.cap - at
    if n:
        memcpy(dst, log.seqs + at, first * sizeof(uint64_t))
        memcpy(dst + first, log.seqs, (n - first) * sizeof(uint64_t))


cdef inline bint as_u64(object x, uint64_t *out):
    """``x`` as a u64 key, or False when no u64 equals it (then no table holds it)."""
    if not isinstance(x, int) or x < 0 or x > 0xFFFFFFFFFFFFFFFF:
        return False
    out[0] = PyLong_AsUnsignedLongLong(int(x))
    return True


cdef class ReportBook:
    """Owners, order states and execution reports, fed entry by entry (``reports.ReportBookPy``'s twin)."""

    cdef uint64_t _report_window
    cdef uint64_t _order_window
    cdef uint64_t trim_at  # a client's reports are trimmed when more than this are kept
    cdef order_t *orders
    cdef int64_t n_orders  # records ever used (the slab's high mark)
    cdef int64_t cap_orders
    cdef int64_t free_order  # the free chain's head (-1: none)
    cdef list_t live
    cdef list_t ended
    cdef map_t ids
    cdef party_t *parties
    cdef int64_t n_parties
    cdef int64_t cap_parties
    cdef map_t party_ids
    cdef int64_t *logs  # parties with reports, in the order of their first one
    cdef int64_t n_logs
    cdef int64_t *touched_list
    cdef int64_t n_touched

    def __cinit__(self, report_window=65536, order_window=65536):
        self.live.head = self.live.tail = self.ended.head = self.ended.tail = -1
        self.free_order = -1
        map_init(&self.ids, 1024)
        map_init(&self.party_ids, 64)
        self.cap_orders = 1024
        self.orders = <order_t *>malloc(self.cap_orders * sizeof(order_t))
        self.cap_parties = 64
        self.parties = <party_t *>malloc(self.cap_parties * sizeof(party_t))
        self.logs = <int64_t *>malloc(self.cap_parties * sizeof(int64_t))
        self.touched_list = <int64_t *>malloc(self.cap_parties * sizeof(int64_t))
        if not (self.orders and self.parties and self.logs and self.touched_list):
            raise MemoryError()

    def __init__(self, report_window=65536, order_window=65536):
        self.report_window = report_window
        self.order_window = order_window

    def __dealloc__(self):
        cdef int64_t p
        for p in range(self.n_parties):
            free(self.parties[p].buf)
            free(self.parties[p].seqs)
        free(self.parties)
        free(self.orders)
        free(self.logs)
        free(self.touched_list)
        free(self.ids.slots)
        free(self.party_ids.slots)

    @property
    def report_window(self):
        """Reports kept per client id (at least this many; trimmed in steps)."""
        return self._report_window

    @report_window.setter
    def report_window(self, value):
        cdef uint64_t w = value, slack
        self._report_window = w
        slack = w // TRIM_SLACK
        self.trim_at = w + slack if w <= 0xFFFFFFFFFFFFFFFF - slack else 0xFFFFFFFFFFFFFFFF

    @property
    def order_window(self):
        """Ended orders remembered for queries, over all clients."""
        return self._order_window

    @order_window.setter
    def order_window(self, value):
        self._order_window = value

    @property
    def touched(self):
        """The client ids that got reports since ``take_touched`` (a copy: read-only here)."""
        return {self.parties[self.touched_list[i]].cid for i in range(self.n_touched)}

    # -- tables ---------------------------------------------------------------------

    cdef int64_t new_order(self) except -1:
        cdef int64_t s = self.free_order
        if s >= 0:
            self.free_order = self.orders[s].next
            return s
        if self.n_orders == self.cap_orders:
            grown = <order_t *>realloc(self.orders, 2 * self.cap_orders * sizeof(order_t))
            if grown == NULL:
                raise MemoryError()
            self.orders = grown
            self.cap_orders *= 2
        s = self.n_orders
        self.n_orders += 1
        return s

    cdef inline int64_t live_get(self, uint64_t oid) noexcept:
        """The record of live order ``oid``, or -1."""
        cdef int64_t s = map_get(&self.ids, oid)
        return s if s >= 0 and self.orders[s].live else -1

    cdef inline void free_record(self, int64_t s) noexcept:
        self.orders[s].next = self.free_order
        self.free_order = s

    cdef inline void list_append(self, list_t *l, int64_t s) noexcept:
        self.orders[s].prev = l.tail
        self.orders[s].next = -1
        if l.tail >= 0:
            self.orders[l.tail].next = s
        else:
            l.head = s
        l.tail = s
        l.n += 1

    cdef inline void list_unlink(self, list_t *l, int64_t s) noexcept:
        cdef int64_t p = self.orders[s].prev, n = self.orders[s].next
        if p >= 0:
            self.orders[p].next = n
        else:
            l.head = n
        if n >= 0:
            self.orders[n].prev = p
        else:
            l.tail = p
        l.n -= 1

    cdef inline void owner_append(self, int64_t s, int64_t p) noexcept:
        cdef party_t *party = &self.parties[p]
        self.orders[s].party = p
        self.orders[s].oprev = party.otail
        self.orders[s].onext = -1
        if party.otail >= 0:
            self.orders[party.otail].onext = s
        else:
            party.ohead = s
        party.otail = s
        party.ocount += 1

    cdef inline void owner_unlink(self, int64_t s) noexcept:
        cdef party_t *party = &self.parties[self.orders[s].party]
        cdef int64_t p = self.orders[s].oprev, n = self.orders[s].onext
        if p >= 0:
            self.orders[p].onext = n
        else:
            party.ohead = n
        if n >= 0:
            self.orders[n].oprev = p
        else:
            party.otail = p
        party.ocount -= 1

    cdef int64_t party_of(self, uint64_t cid) except -1:
        """The party of client id ``cid``, made if new."""
        cdef int64_t p = map_get(&self.party_ids, cid)
        cdef size_t size
        if p >= 0:
            return p
        if self.n_parties == self.cap_parties:
            size = 2 * self.cap_parties * sizeof(int64_t)
            grown = <party_t *>realloc(self.parties, 2 * self.cap_parties * sizeof(party_t))
            if grown == NULL:
                raise MemoryError()
            self.parties = grown
            grown_logs = <int64_t *>realloc(self.logs, size)
            if grown_logs == NULL:
                raise MemoryError()
            self.logs = grown_logs
            grown_touched = <int64_t *>realloc(self.touched_list, size)
            if grown_touched == NULL:
                raise MemoryError()
            self.touched_list = grown_touched
            self.cap_parties *= 2
        p = self.n_parties
        memset(&self.parties[p], 0, sizeof(party_t))
        self.parties[p].cid = cid
        self.parties[p].ohead = self.parties[p].otail = -1
        map_put(&self.party_ids, cid, p)
        self.n_parties += 1
        return p

    cdef int open_log(self, int64_t p) except -1:
        """Party ``p``'s report log, emptied (``clients[cid] = _ClientReports()``)."""
        cdef party_t *party = &self.parties[p]
        if not party.has_log:
            party.has_log = 1
            self.logs[self.n_logs] = p
            self.n_logs += 1
        party.first, party.last, party.count, party.start = 1, 0, 0, 0
        return 0

    cdef int reserve(self, party_t *party, uint64_t need) except -1:
        """Room for ``need`` reports in ``party``'s ring (its reports then start at 0)."""
        cdef uint64_t cap = party.cap if party.cap else 16
        while cap < need:
            cap *= 2
        if cap == party.cap:
            return 0
        buf = <uint8_t *>malloc(cap * REPORT_SIZE)
        seqs = <uint64_t *>malloc(cap * sizeof(uint64_t))
        if buf == NULL or seqs == NULL:
            free(buf)
            free(seqs)
            raise MemoryError()
        copy_reports(party, 0, party.count, buf)
        copy_seqs(party, 0, party.count, seqs)
        free(party.buf)
        free(party.seqs)
        party.buf, party.seqs, party.cap, party.start = buf, seqs, cap, 0
        return 0

    # -- feeding --------------------------------------------------------------------

    cdef int report(self, int64_t p, uint64_t seq, const uint8_t *ev, uint8_t role) except -1:
        """Report event ``ev`` of entry ``seq`` to party ``p`` (``ReportBookPy._report``)."""
        cdef party_t *party = &self.parties[p]
        cdef uint8_t *rec
        cdef uint64_t drop, at
        if party.cid == 0:
            return 0
        if not party.has_log:
            self.open_log(p)
        if party.count == party.cap:
            self.reserve(party, party.count + 1)
        at = (party.start + party.count) & (party.cap - 1)
        rec = party.buf + at * REPORT_SIZE
        memcpy(rec, ev, REPORT_SIZE)
        wr_u64(rec, seq)
        rec[ROLE_OFFSET] = role
        rec[ROLE_OFFSET + 1] = 0
        party.seqs[at] = seq
        party.count += 1
        party.last += 1
        if not party.touched:
            party.touched = 1
            self.touched_list[self.n_touched] = p
            self.n_touched += 1
        if party.count > self.trim_at:
            drop = party.count - self._report_window
            party.count -= drop
            party.start = (party.start + drop) & (party.cap - 1)
            party.first += drop
        return 0

    cdef int end(self, int64_t s, uint8_t status) except -1:
        """Live order ``s`` ended: out of the live tables, into the window of ended ones."""
        cdef order_t *o = &self.orders[s]
        cdef int64_t old
        self.list_unlink(&self.live, s)
        self.owner_unlink(s)
        if status != ST_FILLED:
            o.open = 0
        o.status = status
        o.live = 0
        self.list_append(&self.ended, s)
        if self.ended.n > self._order_window:
            old = self.ended.head
            self.list_unlink(&self.ended, old)
            map_del(&self.ids, self.orders[old].id)
            self.free_record(old)
            # The next ones out are the oldest: their records and slots are cold. Ask for the
            # next one's slot and the one after's record now, so they are there when their turn comes.
            old = self.ended.head
            if old >= 0:
                mc_prefetch(&self.ids.slots[home(self.orders[old].id) & self.ids.mask])
                if self.orders[old].next >= 0:
                    mc_prefetch(&self.orders[self.orders[old].next])
        return 0

    cdef int fill(self, int64_t s, int64_t qty, int64_t left) except -1:
        self.orders[s].filled += qty
        self.orders[s].open = left
        if not left:
            self.end(s, ST_FILLED)
        return 0

    cdef int64_t put_live(
        self, uint64_t oid, int64_t p, uint64_t account, uint32_t instrument, uint8_t side,
        int64_t price, int64_t qty, int64_t filled,
    ) except -1:
        """``ended.pop(oid)``, ``live[oid] = [...]`` and ``by_owner[cid][oid] = None`` for the
        client of party ``p``: a new id goes last, a live id keeps its place."""
        cdef slot_t *slot = map_slot(&self.ids, oid)
        cdef int64_t s = slot.val
        cdef order_t *o
        cdef bint fresh = True
        if s < 0:
            s = self.new_order()  # (no table grows in between: the slot stays valid)
            slot.val = s
            self.orders[s].id = oid
        elif not self.orders[s].live:  # out of the ended window, its record reused
            self.list_unlink(&self.ended, s)
        else:
            fresh = False
        if fresh:
            self.orders[s].live = 1
            self.list_append(&self.live, s)
            self.owner_append(s, p)
        elif self.orders[s].party != p:
            self.owner_unlink(s)
            self.owner_append(s, p)
        o = &self.orders[s]
        o.owner, o.account, o.instrument, o.side = self.parties[p].cid, account, instrument, side
        o.price, o.open, o.filled, o.status = price, qty, filled, ST_OPEN
        return s

    cdef inline void warm_id(self, uint64_t oid, bint record) noexcept:
        """Prefetch the hash slot of order ``oid`` or, with ``record``, the record it names."""
        cdef int64_t s
        if not record:
            mc_prefetch(&self.ids.slots[home(oid) & self.ids.mask])
            return
        s = map_get(&self.ids, oid)
        if s >= 0:
            mc_prefetch(&self.orders[s])
            mc_prefetch(<const uint8_t *>&self.orders[s] + 64)  # a record spans two cache lines

    cdef void warm(
        self, const uint8_t *cmd, const uint8_t *ev_base, const int64_t *offs, Py_ssize_t i, bint record,
    ) noexcept:
        """Prefetch what entry ``i`` (command ``cmd``) will look up: see ``absorb_batch``. A hint:
        the tables are only read, and may change before the entry's turn (no harm: a miss)."""
        cdef const uint8_t *ev = ev_base + offs[i]
        cdef const uint8_t *end = ev_base + offs[i + 1]
        cdef uint8_t kind
        if ev == end or cmd[44] == C_OP_SESSION:
            return
        while ev < end and ev < ev_base + offs[i] + WARM_EVENTS * EVENT_SIZE:
            kind = ev[60]
            if kind == EV_TRADE:
                self.warm_id(rd_u64(ev + 8), record)
                self.warm_id(rd_u64(ev + 16), record)
            elif kind == EV_ACCEPTED or kind == EV_REJECTED:
                self.warm_id(rd_u64(cmd), record)
            else:
                self.warm_id(rd_u64(ev + 8), record)
            ev += EVENT_SIZE

    cdef int absorb_entry(
        self, uint64_t seq, uint64_t cid, const uint8_t *cmd, const uint8_t *evs, Py_ssize_t n,
    ) except -1:
        """One entry's ``n`` events (``ReportBookPy.absorb``)."""
        cdef Py_ssize_t k
        cdef const uint8_t *ev
        cdef uint8_t kind
        cdef int64_t s, sender = -1, owner
        cdef uint64_t oid = 0
        if cmd[44] == C_OP_SESSION:
            return 0  # a session open: no order, no report
        for k in range(n):
            ev = evs + k * EVENT_SIZE
            kind = ev[60]
            if kind == EV_TRADE:
                s = self.live_get(rd_u64(ev + 8))
                if s >= 0:
                    owner = self.orders[s].party
                    self.fill(s, rd_i64(ev + 32), rd_i64(ev + 40))
                    self.report(owner, seq, ev, ROLE_TAKER)
                s = self.live_get(rd_u64(ev + 16))
                if s >= 0:
                    owner = self.orders[s].party
                    self.fill(s, rd_i64(ev + 32), rd_i64(ev + 48))
                    self.report(owner, seq, ev, ROLE_MAKER)
            elif kind == EV_ACCEPTED or kind == EV_REJECTED:
                oid = rd_u64(cmd)
                if sender < 0:
                    sender = self.party_of(cid)
                if kind == EV_ACCEPTED and cmd[44] == OP_NEW and oid == rd_u64(ev + 8):
                    self.put_live(  # account, instrument, side, price, qty (cmd: COMMAND_DTYPE)
                        oid, sender, rd_u64(cmd + 8), rd_u32(cmd + 40), cmd[45], rd_i64(cmd + 16),
                        rd_i64(cmd + 24), 0,
                    )
                self.report(sender, seq, ev, ROLE_NONE)
            else:
                s = self.live_get(rd_u64(ev + 8))
                if s < 0:
                    continue  # an order this book never saw accepted (restored from an old snapshot)
                owner = self.orders[s].party
                if kind == EV_CANCELLED:
                    self.end(s, ST_CANCELLED)
                elif kind == EV_REPLACED:
                    self.orders[s].price = rd_i64(ev + 24)
                    self.orders[s].open = rd_i64(ev + 32)
                self.report(owner, seq, ev, ROLE_NONE)
        return 0

    def absorb(self, seq, client_id, command, events):
        """Take one applied entry: its client, its 80-byte command and its events. O(events)."""
        cdef const uint8_t[::1] cmd_view
        cdef const uint8_t[::1] ev_view
        cdef const uint8_t *cmd
        cdef const uint8_t *evs
        cdef Py_ssize_t cmd_size, size
        if type(command) is bytes and type(events) is bytes:  # the replica's case: no memoryview
            cmd, cmd_size = <const uint8_t *>PyBytes_AS_STRING(command), PyBytes_GET_SIZE(command)
            evs, size = <const uint8_t *>PyBytes_AS_STRING(events), PyBytes_GET_SIZE(events)
        else:
            cmd_view, ev_view = command, events
            cmd_size, size = cmd_view.shape[0], ev_view.shape[0]
            cmd = &cmd_view[0] if cmd_size else NULL
            evs = &ev_view[0] if size else NULL
        if size == 0:
            return
        if size % EVENT_SIZE:
            raise ValueError(f"events of {size} bytes: not whole {EVENT_SIZE}-byte records")
        if cmd_size < COMMAND_SIZE:
            raise ValueError(f"a command of {cmd_size} bytes (want {COMMAND_SIZE})")
        self.absorb_entry(seq, client_id, cmd, evs, size // EVENT_SIZE)

    def absorb_batch(self, first_seq, client_ids, commands, events, ends):
        """:meth:`absorb` for consecutive entries from ``first_seq``: entry ``i`` has client
        ``client_ids[i]``, command ``commands[80 i : 80 (i + 1)]`` and events
        ``events[ends[i]:ends[i + 1]]`` (``ends``: byte offsets, one more than entries). O(events)."""
        cdef Py_ssize_t n = len(client_ids), i, j
        cdef uint64_t seq = first_seq
        cdef const uint8_t[::1] cmd_view
        cdef const uint8_t[::1] ev_view
        cdef Py_ssize_t cmd_size, ev_size
        cdef const uint64_t[::1] cid_view
        cdef const int64_t[::1] end_view
        cdef uint64_t *cids = NULL
        cdef const uint8_t *cmd_base
        cdef const uint8_t *ev_base
        cdef int64_t *offs = NULL
        cdef list cid_list, end_list
        if n == 0:
            return
        if type(commands) is bytes:  # no memoryview for the common case (a batch of one, at low load)
            cmd_base, cmd_size = <const uint8_t *>PyBytes_AS_STRING(commands), PyBytes_GET_SIZE(commands)
        else:
            cmd_view = commands
            cmd_size = cmd_view.shape[0]
            cmd_base = &cmd_view[0] if cmd_size else NULL
        if type(events) is bytes:
            ev_base, ev_size = <const uint8_t *>PyBytes_AS_STRING(events), PyBytes_GET_SIZE(events)
        else:
            ev_view = events
            ev_size = ev_view.shape[0]
            ev_base = &ev_view[0] if ev_size else NULL
        if cmd_size < n * COMMAND_SIZE or len(ends) < n + 1:
            raise ValueError(f"{n} entries need {n} commands and {n + 1} offsets")
        try:
            if type(client_ids) is list:
                cid_list = client_ids
                cids = <uint64_t *>malloc(n * sizeof(uint64_t))
                if cids == NULL:
                    raise MemoryError()
                for i in range(n):
                    cids[i] = <object>PyList_GET_ITEM(cid_list, i)  # (any int-like: Cython converts)
            else:
                cid_view = np.ascontiguousarray(client_ids, dtype=np.uint64)
            if type(ends) is list:
                end_list = ends
                offs = <int64_t *>malloc((n + 1) * sizeof(int64_t))
                if offs == NULL:
                    raise MemoryError()
                for i in range(n + 1):
                    offs[i] = <object>PyList_GET_ITEM(end_list, i)
            else:
                end_view = np.ascontiguousarray(ends, dtype=np.int64)
            if offs == NULL:
                offs = <int64_t *>malloc((n + 1) * sizeof(int64_t))
                if offs == NULL:
                    raise MemoryError()
                memcpy(offs, &end_view[0], (n + 1) * sizeof(int64_t))
            if cids == NULL:
                cids = <uint64_t *>malloc(n * sizeof(uint64_t))
                if cids == NULL:
                    raise MemoryError()
                memcpy(cids, &cid_view[0], n * sizeof(uint64_t))
            # Check every bound before taking anything: a bad batch changes nothing.
            for i in range(n):
                if offs[i] < 0 or offs[i] > offs[i + 1] or offs[i + 1] > ev_size:
                    raise ValueError(f"entry {i}: events {offs[i]}..{offs[i + 1]} of {ev_size} bytes")
                if (offs[i + 1] - offs[i]) % EVENT_SIZE:
                    raise ValueError(f"entry {i}: events not whole {EVENT_SIZE}-byte records")
            for i in range(n):
                # The ids an entry looks up are in its events: ask for their hash slots a few
                # entries ahead, and for the records those slots name a little later, so that
                # the look-ups below find them in cache (a hint: it changes nothing). In a node,
                # whose other work between batches evicts the book, a third less time here.
                if i + SLOTS_AHEAD < n:
                    j = i + SLOTS_AHEAD
                    self.warm(cmd_base + j * COMMAND_SIZE, ev_base, offs, j, False)
                if i + RECORDS_AHEAD < n:
                    j = i + RECORDS_AHEAD
                    self.warm(cmd_base + j * COMMAND_SIZE, ev_base, offs, j, True)
                if offs[i] != offs[i + 1]:
                    self.absorb_entry(
                        seq + i, cids[i], cmd_base + i * COMMAND_SIZE, ev_base + offs[i],
                        (offs[i + 1] - offs[i]) // EVENT_SIZE,
                    )
        finally:
            free(cids)
            free(offs)

    def take_touched(self):
        """The client ids that got reports since the last call (and forget them). O(touched)."""
        cdef Py_ssize_t i
        cdef set out = set()
        for i in range(self.n_touched):
            self.parties[self.touched_list[i]].touched = 0
            out.add(self.parties[self.touched_list[i]].cid)
        self.n_touched = 0
        return out

    # -- reading --------------------------------------------------------------------

    cdef party_t *log_of(self, object client_id):
        """The party of ``client_id`` if it has reports, else NULL."""
        cdef uint64_t cid = 0
        cdef int64_t p
        if not as_u64(client_id, &cid):
            return NULL
        p = map_get(&self.party_ids, cid)
        if p < 0 or not self.parties[p].has_log:
            return NULL
        return &self.parties[p]

    def last_report(self, client_id):
        """The ``n`` of the client's newest report (0: none yet). O(1)."""
        cdef party_t *log = self.log_of(client_id)
        return log.last if log != NULL else 0

    def reports_after(self, client_id, after, max_seq, limit):
        """The client's reports numbered above ``after`` with seq at most ``max_seq``, at most
        ``limit`` of them: ``(n of the first, records)``. ``ReportsGone`` if report ``after + 1``
        is no longer kept. O(limit)."""
        cdef party_t *log = self.log_of(client_id)
        cdef Py_ssize_t lo, hi, kept
        cdef uint64_t bound
        if log == NULL or after >= log.last:
            return after + 1, b""
        if after + 1 < log.first:
            raise _ReportsGone(
                f"client {client_id}: reports {after + 1}..{log.first - 1} are past the retention window "
                f"(the group keeps the last {self.report_window}); resync with open_orders",
                log.first,
            )
        kept = log.count
        lo = after + 1 - log.first
        top = lo + limit  # Python ints: limit may be anything an int is
        hi = kept if top >= kept else (top if top >= -kept else -kept)
        if max_seq < 0:
            bound, hi = 0, (lo if hi > lo else hi)
        else:
            bound = max_seq if max_seq <= 0xFFFFFFFFFFFFFFFF else 0xFFFFFFFFFFFFFFFF
        while hi > lo and seq_at(log, hi - 1) > bound:  # the newest are the uncommitted ones, if any
            hi -= 1
        if hi < 0:  # a slice's negative end counts from the end
            hi += kept
        if hi <= lo:
            return after + 1, b""
        out = PyBytes_FromStringAndSize(NULL, (hi - lo) * REPORT_SIZE)
        copy_reports(log, lo, hi - lo, <uint8_t *>PyBytes_AS_STRING(out))
        return after + 1, out

    def first_after_seq(self, client_id, seq):
        """The ``n`` just before the client's first report with a seq above ``seq`` (so that
        ``reports_after(client, that)`` resumes after ``seq``). ``ReportsGone`` if reports
        above ``seq`` may have been dropped. O(log kept)."""
        cdef party_t *log = self.log_of(client_id)
        cdef Py_ssize_t lo = 0, hi, mid
        cdef uint64_t x
        if log == NULL:
            return 0
        hi = log.count
        if seq < 0:
            hi = 0
        elif seq > 0xFFFFFFFFFFFFFFFF:
            lo = hi
        else:
            x = seq
            while lo < hi:  # bisect_right, step for step
                mid = (lo + hi) // 2
                if x < seq_at(log, mid):
                    hi = mid
                else:
                    lo = mid + 1
        if lo == 0 and log.first > 1:
            raise _ReportsGone(
                f"client {client_id}: reports after seq {seq} are past the retention window "
                f"(the oldest kept is at seq {seq_at(log, 0) if log.count else '?'}); "
                "resync with open_orders",
                log.first,
            )
        return log.first - 1 + lo

    def seq_of(self, client_id, n):
        """The seq of the client's report number ``n``; None if it has no such report (yet, or no
        longer: trimmed). O(1)."""
        cdef party_t *log = self.log_of(client_id)
        if log == NULL or n < log.first or n > log.last:
            return None
        return seq_at(log, n - log.first)

    cdef object state(self, int64_t s, object order_id, uint8_t status):
        cdef order_t *o = &self.orders[s]
        return _OrderState(
            order_id, o.owner, o.account, o.instrument, o.side, o.price, o.open, o.filled, status
        )

    def order(self, order_id):
        """A live or recently ended order's state, or None. O(1)."""
        cdef uint64_t oid = 0
        cdef int64_t s
        if not as_u64(order_id, &oid):
            return None
        s = map_get(&self.ids, oid)
        if s < 0:
            return None
        if self.orders[s].live:
            return self.state(s, order_id, ST_OPEN)
        return self.state(s, self.orders[s].id, self.orders[s].status)

    def account_of(self, order_id):
        """The account of a live order, or None. O(1)."""
        cdef uint64_t oid = 0
        cdef int64_t s
        if not as_u64(order_id, &oid):
            return None
        s = self.live_get(oid)
        return self.orders[s].account if s >= 0 else None

    def open_orders(self, client_id, account=None):
        """The client's live orders, in acceptance order (``account``: only that one's). O(its orders)."""
        cdef uint64_t cid = 0
        cdef int64_t p, s
        cdef list out = []
        if not as_u64(client_id, &cid):
            return out
        p = map_get(&self.party_ids, cid)
        if p < 0:
            return out
        s = self.parties[p].ohead
        while s >= 0:
            out.append(self.state(s, self.orders[s].id, ST_OPEN))
            s = self.orders[s].onext
        return out if account is None else [o for o in out if o.account == account]

    # -- snapshot -------------------------------------------------------------------

    def pack(self):
        """The whole book as bytes (``ReportBookPy.pack``'s, byte for byte). O(state)."""
        cdef Py_ssize_t size = HEAD_SIZE + self.live.n * LIVE_SIZE + self.ended.n * ENDED_SIZE + 8
        cdef Py_ssize_t i
        cdef party_t *log
        cdef int64_t s
        cdef uint8_t *w
        for i in range(self.n_logs):
            size += CLIENT_SIZE + self.parties[self.logs[i]].count * (8 + REPORT_SIZE)
        out = PyBytes_FromStringAndSize(NULL, size)
        w = <uint8_t *>PyBytes_AS_STRING(out)
        w = wr_u64(w, self._report_window)
        w = wr_u64(w, self._order_window)
        w = wr_u64(w, self.live.n)
        w = wr_u64(w, self.ended.n)
        s = self.live.head
        while s >= 0:
            w = self.pack_order(w, s)
            s = self.orders[s].next
        s = self.ended.head
        while s >= 0:
            w = self.pack_order(w, s)
            w[0] = self.orders[s].status
            w += 1
            s = self.orders[s].next
        w = wr_u64(w, self.n_logs)
        for i in range(self.n_logs):
            log = &self.parties[self.logs[i]]
            w = wr_u64(w, log.cid)
            w = wr_u64(w, log.first)
            w = wr_u64(w, log.last)
            copy_seqs(log, 0, log.count, <uint64_t *>w)
            w += log.count * 8
            copy_reports(log, 0, log.count, w)
            w += log.count * REPORT_SIZE
        return out

    cdef inline uint8_t *pack_order(self, uint8_t *w, int64_t s) noexcept:
        cdef order_t *o = &self.orders[s]
        w = wr_u64(w, o.id)
        w = wr_u64(w, o.owner)
        w = wr_u64(w, o.account)
        memcpy(w, &o.instrument, 4)
        w[4] = o.side
        w += 5
        w = wr_i64(w, o.price)
        w = wr_i64(w, o.open)
        return wr_i64(w, o.filled)

    @classmethod
    def unpack(cls, blob, pos):
        """A book from :meth:`pack` bytes at ``pos``; returns it and the position after it.
        ``ValueError`` on bytes that run short. O(state)."""
        cdef const uint8_t[::1] b = blob
        cdef Py_ssize_t at = pos, end = b.shape[0], k
        cdef uint64_t nlive, nended, nclients, _, cid, first, last
        cdef const uint8_t *r
        cdef int64_t e, p
        cdef party_t *log
        cdef order_t *o
        cdef ReportBook book
        if at < 0 or at + HEAD_SIZE > end:
            raise ValueError("report table damaged: its head runs short")
        book = cls(rd_u64(&b[at]), rd_u64(&b[at + 8]))
        nlive, nended = rd_u64(&b[at + 16]), rd_u64(&b[at + 24])
        at += HEAD_SIZE
        if nlive > <uint64_t>(end - at) // LIVE_SIZE:
            raise ValueError("report table damaged: live orders run short")
        for _ in range(nlive):
            r = &b[at]
            p = book.party_of(rd_u64(r + 8))
            book.put_live(
                rd_u64(r), p, rd_u64(r + 16), rd_u32(r + 24), r[28], rd_i64(r + 29),
                rd_i64(r + 37), rd_i64(r + 45),
            )
            at += LIVE_SIZE
        if nended > <uint64_t>(end - at) // ENDED_SIZE:
            raise ValueError("report table damaged: ended orders run short")
        for _ in range(nended):
            r = &b[at]
            e = map_get(&book.ids, rd_u64(r))
            if e < 0:
                e = book.new_order()
                book.orders[e].id = rd_u64(r)
                book.orders[e].live = 0
                book.list_append(&book.ended, e)
                map_put(&book.ids, rd_u64(r), e)
            elif book.orders[e].live:
                raise ValueError(f"report table damaged: order {rd_u64(r)} both live and ended")
            o = &book.orders[e]
            o.owner, o.account, o.instrument, o.side = rd_u64(r + 8), rd_u64(r + 16), rd_u32(r + 24), r[28]
            o.price, o.open, o.filled, o.status = rd_i64(r + 29), rd_i64(r + 37), rd_i64(r + 45), r[53]
            at += ENDED_SIZE
        if at + 8 > end:
            raise ValueError("report table damaged: the client count runs short")
        nclients = rd_u64(&b[at])
        at += 8
        for _ in range(nclients):
            if at + CLIENT_SIZE > end:
                raise ValueError("report table damaged: a client's head runs short")
            cid, first, last = rd_u64(&b[at]), rd_u64(&b[at + 8]), rd_u64(&b[at + 16])
            at += CLIENT_SIZE
            kept = <object>last - <object>first + 1
            if kept < 0 or at + kept * (8 + REPORT_SIZE) > end:
                raise ValueError("report table runs past its end")
            k = kept
            p = book.party_of(cid)
            book.open_log(p)
            log = &book.parties[p]
            book.reserve(log, k)
            log.first, log.last, log.count, log.start = first, last, k, 0
            memcpy(log.seqs, &b[at], k * 8)
            at += k * 8
            memcpy(log.buf, &b[at], k * REPORT_SIZE)
            at += k * REPORT_SIZE
        return book, at
