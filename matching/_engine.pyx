"""The Cython matching core behind ``matching.Engine``.

What it is for: price-time matching of many instruments with the exact
semantics of ``docs/semantics.md`` (the same events, byte for byte, and the
same digests as ``matching.reference.ReferenceEngine``), fast enough to sit
on an exchange's hot path.  Two ways in over one C core: a per-call Python API
that returns event named tuples, and ``apply_batch``, which loops over a NumPy
command array in C with the GIL released and returns a NumPy event array.

What it is not for: parsing the JSON command log (``matching.commands``),
shaping events for users (``matching.events``), or replication.  Memory
layout and the C structs are documented in ``_engine.pxd``; the C code is
split by concern into ``_hashmap.pxi`` (id and instrument maps),
``_book.pxi`` (pools, levels, FIFO links), ``_match.pxi`` (commands,
matching, digest) and ``_state.pxi`` (queries, invariant check, snapshot).
"""

cimport cython
cimport numpy as cnp
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_AsUnsignedLongLong
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_SET_ITEM
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy, memmove, memset

import numpy as np

from . import codes as _codes
from . import commands as _commands
from . import events as _events

cnp.import_array()

cdef extern from *:
    """
    #if defined(__linux__)
    #include <sys/mman.h>
    #endif
    /* Ask for transparent huge pages on a big event buffer: a batch's output
       is written once, front to back, and 4 KiB page faults would otherwise
       cost more than the matching. A hint only; harmless where unsupported. */
    static void mc_hint_huge(void *p, size_t n) {
    #if defined(__linux__) && defined(MADV_HUGEPAGE)
        uintptr_t a = ((uintptr_t)p + 4095) & ~(uintptr_t)4095;
        uintptr_t e = ((uintptr_t)p + n) & ~(uintptr_t)4095;
        if (n >= ((size_t)4 << 20) && e > a) madvise((void *)a, e - a, MADV_HUGEPAGE);
    #endif
    }
    """
    void mc_hint_huge(void *p, size_t n) noexcept nogil

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define mc_prefetch(p) __builtin_prefetch((const void *)(p))
    #else
    #define mc_prefetch(p) ((void)(p))
    #endif
    """
    void mc_prefetch(const void *p) noexcept nogil

cdef extern from *:
    """
    /* An empty instance of a tuple subclass (a named tuple) with n slots,
       to be filled with PyTuple_SET_ITEM before anyone else sees it.  From
       3.14 tuples carry a hash cache that tp_alloc would leave at 0, so
       there we fill a plain tuple and convert it (MC_FAST_TUPLES == 0). */
    #if PY_VERSION_HEX < 0x030E0000
    #define MC_FAST_TUPLES 1
    #else
    #define MC_FAST_TUPLES 0
    #endif
    static PyObject *mc_tuple_alloc(PyObject *cls, Py_ssize_t n) {
    #if MC_FAST_TUPLES
        PyTypeObject *t = (PyTypeObject *)cls;
        return t->tp_alloc(t, n);
    #else
        (void)cls;
        return PyTuple_New(n);
    #endif
    }
    """
    const bint MC_FAST_TUPLES
    object mc_tuple_alloc(object cls, Py_ssize_t n)


cdef inline void put(object t, Py_ssize_t i, object v) noexcept:
    # PyTuple_SET_ITEM steals a reference; Cython's v is borrowed.
    Py_INCREF(v)
    PyTuple_SET_ITEM(t, i, v)

include "_hashmap.pxi"
include "_book.pxi"
include "_timed.pxi"
include "_risk.pxi"
include "_match.pxi"
include "_time_stops.pxi"

# Interned names the per-call parser compares against (identity first).
cdef str S_BUY = "buy"
cdef str S_SELL = "sell"
# Engine.order() names the self-trade prevention mode as submit() takes it (codes.STP_NAMES order).
cdef tuple STP_LABELS = ("none", "cancel_taker", "cancel_maker", "cancel_both")
cdef str S_LIMIT = "limit"
cdef str S_MARKET = "market"
cdef str S_GTC = "GTC"
cdef str S_IOC = "IOC"
cdef str S_FOK = "FOK"
cdef str S_NONE = "none"
cdef str S_CANCEL_TAKER = "cancel_taker"
cdef str S_CANCEL_MAKER = "cancel_maker"
cdef str S_CANCEL_BOTH = "cancel_both"

cdef object _COMMAND_DTYPE = _codes.COMMAND_DTYPE
cdef object _EVENT_DTYPE = _codes.EVENT_DTYPE
cdef object _tuple_new = tuple.__new__
cdef object _Accepted = _events.Accepted
cdef object _Rejected = _events.Rejected
cdef object _Trade = _events.Trade
cdef object _Cancelled = _events.Cancelled
cdef object _Replaced = _events.Replaced
cdef object _Triggered = _events.Triggered
cdef tuple TIF_LABELS = tuple(_codes.TIF_NAMES)
cdef tuple _REASONS = tuple(_codes.REASON_NAMES.get(i, "") for i in range(256))

# Per-call event buffers above this many events are given back after the call.
cdef int64_t EVENT_KEEP = 4096


# --- core lifetime -------------------------------------------------------------------

cdef int core_init(core_t *c, int64_t capacity) noexcept nogil:
    cdef uint64_t id_cap = 16
    memset(c, 0, sizeof(core_t))
    if capacity < 16:
        capacity = 16
    if capacity > 0x40000000:
        capacity = 0x40000000
    while id_cap < <uint64_t>capacity * 2:
        id_cap *= 2
    c.order_cap = <int32_t>capacity
    c.orders = <order_t *>malloc(<size_t>capacity * sizeof(order_t))
    c.order_free = -1
    c.ice_free = -1
    c.stop_free = -1
    c.level_cap = 64
    c.levels = <level_t *>malloc(<size_t>c.level_cap * sizeof(level_t))
    c.level_free = -1
    c.book_cap = 8
    c.books = <book_t *>malloc(<size_t>c.book_cap * sizeof(book_t))
    c.book_order = <int32_t *>malloc(<size_t>c.book_cap * sizeof(int32_t))
    c.event_cap = 64
    c.events = <event_t *>malloc(<size_t>c.event_cap * sizeof(event_t))
    if (c.orders == NULL or c.levels == NULL or c.books == NULL or c.book_order == NULL
            or c.events == NULL or ids_init(c, id_cap) != 0 or insts_init(c, 16) != 0
            or accounts_init(c) != 0):
        return -1
    return 0


cdef void core_free(core_t *c) noexcept nogil:
    cdef int32_t b
    if c.books != NULL:
        for b in range(c.n_books):
            free(c.books[b].sides[0].keys)
            free(c.books[b].sides[0].levels)
            free(c.books[b].sides[1].keys)
            free(c.books[b].sides[1].levels)
            free(c.books[b].stops[0].keys)
            free(c.books[b].stops[0].idx)
            free(c.books[b].stops[1].keys)
            free(c.books[b].stops[1].idx)
    free(c.timed)
    free(c.tpos)
    free(c.stops)
    free(c.stop_ids)
    risk_free(c)
    free(c.orders)
    free(c.levels)
    free(c.books)
    free(c.book_order)
    free(c.events)
    free(c.ids)
    free(c.insts)
    free(c.ices)
    free(c.accounts)
    free(c.acct_map)
    memset(c, 0, sizeof(core_t))


# --- per-call argument parsing ------------------------------------------------------
# Each returns False when the value is not the plain, in-range kind; the caller
# then hands the whole command to matching.commands, which encodes every odd
# case (bad type, out of range, case-folded names) exactly as the reference.

cdef inline bint as_i64(object x, int64_t *out):
    cdef int overflow = 0
    if type(x) is not int:
        return False
    out[0] = PyLong_AsLongLongAndOverflow(x, &overflow)
    return overflow == 0


cdef inline bint as_u64(object x, uint64_t *out):
    cdef int overflow = 0
    cdef long long v
    if type(x) is not int:
        return False
    v = PyLong_AsLongLongAndOverflow(x, &overflow)
    if overflow == 0:
        out[0] = <uint64_t>v
        return v >= 0
    if overflow < 0:
        return False
    try:
        out[0] = PyLong_AsUnsignedLongLong(x)
    except OverflowError:
        return False
    return True


cdef inline bint as_u32(object x, uint32_t *out):
    cdef uint64_t v = 0
    if not as_u64(x, &v) or v > 0xFFFFFFFF:
        return False
    out[0] = <uint32_t>v
    return True


cdef inline int side_code(object s):
    if s is S_BUY or s == S_BUY:
        return SIDE_BUY
    if s is S_SELL or s == S_SELL:
        return SIDE_SELL
    return -1


cdef inline int type_code(object s):
    if s is S_LIMIT or s == S_LIMIT:
        return TYPE_LIMIT
    if s is S_MARKET or s == S_MARKET:
        return TYPE_MARKET
    if s == "stop":
        return TYPE_STOP
    if s == "stop_limit":
        return TYPE_STOP_LIMIT
    return -1


cdef inline int tif_code(object s):
    if s is S_GTC or s == S_GTC:
        return TIF_GTC
    if s is S_IOC or s == S_IOC:
        return TIF_IOC
    if s is S_FOK or s == S_FOK:
        return TIF_FOK
    if s == "DAY":
        return TIF_DAY
    if s == "GTD":
        return TIF_GTD
    return -1


cdef inline int stp_code(object s):
    if s is S_NONE or s == S_NONE:
        return STP_NONE
    if s is S_CANCEL_TAKER or s == S_CANCEL_TAKER:
        return STP_CANCEL_TAKER
    if s is S_CANCEL_MAKER or s == S_CANCEL_MAKER:
        return STP_CANCEL_MAKER
    if s is S_CANCEL_BOTH or s == S_CANCEL_BOTH:
        return STP_CANCEL_BOTH
    return -1


cdef int record_to_command(object rec, command_t *cmd) except -1:
    # A record: CommandRecord / tuple in COMMAND_DTYPE order, an array row,
    # or the 80 raw bytes of one (a version-1 record of 56 bytes reads with
    # ts, expire_ts and stop_price 0, see codes.upgrade_command).
    cdef const unsigned char[::1] raw
    if isinstance(rec, (bytes, bytearray, memoryview)):
        raw = rec
        if raw.shape[0] == 56:
            memset(cmd, 0, sizeof(command_t))
            memcpy(cmd, &raw[0], 56)
            return 0
        if raw.shape[0] != sizeof(command_t):
            raise ValueError(f"a command record is {sizeof(command_t)} bytes, got {raw.shape[0]}")
        memcpy(cmd, &raw[0], sizeof(command_t))
        return 0
    if isinstance(rec, np.void):
        rec = rec.item()
    if len(rec) == 13:  # a version-1 tuple: no ts, expire_ts, stop_price
        rec = tuple(rec) + (0, 0, 0)
    (cmd.id, cmd.account, cmd.price, cmd.qty, cmd.display_qty, cmd.instrument, cmd.op,
     cmd.side, cmd.type, cmd.tif, cmd.stp, cmd.post_only, cmd.flags,
     cmd.ts, cmd.expire_ts, cmd.stop_price) = rec
    memset(cmd._pad, 0, 4)
    return 0


include "_snapshot.pxi"
include "_state.pxi"
