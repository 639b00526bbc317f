# cython: language_level=3
"""C declarations of the matching core: value types, record layouts, pools.

This file is the map of the engine's memory.  Everything the hot path touches
is a plain C struct declared here; ``_engine.pyx`` (and the ``.pxi`` files it
includes) hold the code.  It is not a public API: Python users go through
``matching.Engine``.

Layout in one paragraph: orders live in one pool (``order_t`` array indexed by
an ``int32`` handle, free list threaded through ``next``); an order keeps its
account as an index into a small interned-account table, and only icebergs
carry a slot in a side table for their visible part and display size (for
every other order visible == open).  Each price level
is a ``level_t`` in a second pool, holding an intrusive doubly linked FIFO of
order handles and the sum of their visible quantities.  Each side of a book
keeps its levels in a sorted array with the *best level at the end*, so the
hot cases (touch the best, add near the best) are O(1) and a binary search
finds any price.  Live order ids map to handles through an open-addressing
hash of bare handles (linear probing, backward-shift deletion; a slot's key
is read from the order it points to); instruments map to books
through a second, small one.
"""

cimport cython
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

# --- what a number is ---------------------------------------------------------
ctypedef int64_t price_t        # ticks
ctypedef int64_t qty_t          # lots
ctypedef uint64_t order_id_t    # client-chosen order id, 0 reserved
ctypedef uint64_t account_t     # 0 = no account
ctypedef uint32_t instrument_t
ctypedef int32_t handle_t       # index into a pool, -1 = none

# --- codes (mirror matching/codes.py; tests/unit/test_layout.py pins them) ----
cdef enum:
    OP_NEW = 0
    OP_CANCEL = 1
    OP_REPLACE = 2
    OP_MASS_CANCEL = 3
    OP_TIME = 4
    OP_END_OF_DAY = 5
    OP_INSTRUMENT = 6
    OP_RISK = 7
    SIDE_BUY = 0
    SIDE_SELL = 1
    TYPE_LIMIT = 0
    TYPE_MARKET = 1
    TYPE_STOP = 2
    TYPE_STOP_LIMIT = 3
    TIF_GTC = 0
    TIF_IOC = 1
    TIF_FOK = 2
    TIF_DAY = 3
    TIF_GTD = 4
    STP_NONE = 0
    STP_CANCEL_TAKER = 1
    STP_CANCEL_MAKER = 2
    STP_CANCEL_BOTH = 3
    INVALID_CODE = 255
    NO_ACCOUNT = 0x7FFFFFFF     # account_find: never interned

    F_HAS_PRICE = 1
    F_HAS_QTY = 2
    F_HAS_ACCOUNT = 4
    F_HAS_INSTRUMENT = 8
    F_OUT_OF_RANGE = 16
    F_BAD_FIELD = 32
    F_HAS_STOP_PRICE = 64

    EV_ACCEPTED = 1
    EV_REJECTED = 2
    EV_TRADE = 3
    EV_CANCELLED = 4
    EV_REPLACED = 5
    EV_TRIGGERED = 6

    R_INVALID_OP = 1
    R_INVALID_SIDE = 2
    R_INVALID_TYPE = 3
    R_INVALID_TIF = 4
    R_INVALID_STP = 5
    R_BAD_FIELD = 6
    R_OUT_OF_RANGE = 7
    R_INVALID_ID = 8
    R_INVALID_QTY = 9
    R_INVALID_PRICE = 10
    R_PRICE_ON_MARKET = 11
    R_INVALID_DISPLAY = 12
    R_INVALID_COMBINATION = 13
    R_DUPLICATE_ID = 14
    R_UNKNOWN_ORDER = 15
    R_WOULD_CROSS = 16
    R_FOK_UNFILLED = 17
    R_INVALID_EXPIRY = 19
    R_INVALID_STOP = 20
    R_BAD_TICK = 21
    R_BAD_LOT = 22
    R_QTY_LIMIT = 23
    R_PRICE_BAND = 24
    R_RISK_LIMIT = 25
    R_USER = 32
    R_REMAINDER = 33
    R_SELF_TRADE = 34
    R_MASS_CANCEL = 35
    R_EXPIRED = 36

# --- records shared with NumPy (COMMAND_DTYPE / EVENT_DTYPE in codes.py) ------
cdef packed struct command_t:
    order_id_t id           # 0
    account_t account       # 8
    price_t price           # 16
    qty_t qty               # 24
    qty_t display_qty       # 32
    instrument_t instrument  # 40
    uint8_t op              # 44
    uint8_t side            # 45
    uint8_t type            # 46
    uint8_t tif             # 47
    uint8_t stp             # 48
    uint8_t post_only       # 49
    uint16_t flags          # 50
    uint8_t _pad[4]         # 52 .. 56
    int64_t ts              # 56: the command's time (ns), 0 = none
    int64_t expire_ts       # 64: GTD expiry
    price_t stop_price      # 72: stop / stop_limit trigger price

cdef packed struct event_t:
    uint64_t cmd            # 0: index of the command in its batch
    order_id_t id           # 8: the order (taker for a trade)
    order_id_t maker        # 16
    price_t price           # 24
    qty_t qty               # 32
    qty_t open_a            # 40: taker_open / cancelled open
    qty_t open_b            # 48: maker_open
    instrument_t instrument  # 56
    uint8_t kind            # 60
    uint8_t reason          # 61
    uint8_t _pad[2]         # 62 .. 64

# --- pools ----------------------------------------------------------------------
ctypedef struct order_t:       # 48 bytes
    order_id_t id
    price_t price
    qty_t open              # total open quantity, hidden included
    handle_t prev           # FIFO neighbours within the level
    handle_t next           # (also the free-list link when the slot is free)
    handle_t level          # owning level; -1 while out of the book
    uint32_t account        # index into core.accounts (0 = account 0)
    int32_t ice             # iceberg slot in core.ices, -1 = not an iceberg
    uint8_t side
    uint8_t stp
    uint8_t post_only
    uint8_t tif             # GTC, DAY or GTD (a DAY/GTD order also has a timed_t entry)

ctypedef struct ice_t:         # 16 bytes; only for orders with display_qty > 0
    qty_t visible           # displayed part (visible == open for other orders)
    qty_t display_qty       # also the free-list link when the slot is free

ctypedef struct acct_slot_t:   # account -> index map slot; index 0 = empty
    account_t key
    uint32_t value
    uint32_t _pad

ctypedef struct level_t:       # 32 bytes
    price_t price
    qty_t total             # sum of visible quantities of its orders
    handle_t head           # oldest order (next to trade)
    handle_t tail
    int32_t count           # number of orders; also the free-list link when free
    int32_t book            # owning book index (the side is on each order)

ctypedef struct side_t:
    # Sorted by key ascending, best at the end; key = price for bids and
    # -price for asks, so one binary search serves both sides.
    price_t *keys
    handle_t *levels
    int32_t n
    int32_t cap

ctypedef struct stop_side_t:
    # A book's waiting stops of one side, as stop pool indices sorted by key
    # ascending: key = stop_price for buys, -stop_price for sells, so the
    # stops a print reaches are always a prefix.
    price_t *keys
    int32_t *idx
    int32_t n
    int32_t cap

ctypedef struct book_t:
    instrument_t instrument
    int32_t n_orders
    side_t sides[2]
    stop_side_t stops[2]    # waiting stops (empty arrays until the first stop)
    # instrument rules (the `instrument` command; has_rules = 0: none set)
    price_t last_price      # the latest trade print, 0 before the first (band reference)
    price_t tick            # >= 1
    qty_t lot               # >= 1
    qty_t min_qty           # 0 = no minimum
    qty_t max_qty           # 0 = no maximum
    int64_t band            # in ticks around last_price (or ref_price before a trade); 0 = none
    price_t ref_price
    int32_t has_rules
    int32_t _pad2

# --- time and stops (issue 19): only allocated once used ---------------------------
ctypedef struct timed_t:       # a DAY or GTD order or stop, in the expiry heap
    int64_t expire_ts       # INT64_MAX for DAY (only end_of_day ends it)
    uint64_t seq            # acceptance order: the index of the accepting command
    int32_t ref             # order handle (kind 0) or stop index (kind 1)
    uint8_t kind
    uint8_t tif
    uint8_t _pad[2]

ctypedef struct risk_t:        # an account's risk limits (the `risk` command) and what they watch
    account_t account
    uint32_t acct           # its interned index (orders keep that)
    int32_t n_pos
    qty_t max_open          # 0 = no limit
    qty_t max_position      # 0 = no limit
    qty_t open              # open qty of its resting orders and waiting stops
    int32_t *pos_book       # per book it has filled in: the book, and its position
    qty_t *pos
    int32_t pos_cap
    int32_t _pad

ctypedef struct stop_t:        # a stop or stop-limit order waiting for its trigger
    order_id_t id           # 0 while the slot is free
    account_t account
    price_t price           # limit price (stop_limit), 0 for a stop
    qty_t qty
    qty_t display_qty
    price_t stop_price
    int64_t expire_ts
    uint64_t seq
    int32_t book
    int32_t heap            # position in the timed heap, -1 if GTC; free-list link when free
    uint8_t side
    uint8_t type
    uint8_t tif
    uint8_t stp
    uint8_t _pad[4]

ctypedef struct inst_slot_t:
    int64_t key             # instrument, or -1 = empty
    int32_t value
    int32_t _pad

ctypedef struct core_t:
    # order pool
    order_t *orders
    int32_t order_cap
    int32_t order_hwm       # slots ever handed out (below: in use or free)
    handle_t order_free
    # level pool
    level_t *levels
    int32_t level_cap
    int32_t level_hwm
    handle_t level_free
    int32_t live_levels
    # books, by index; book_order is the indices sorted by instrument
    book_t *books
    int32_t n_books
    int32_t book_cap
    int32_t *book_order
    # id -> order handle (a slot holds only the handle, -1 = empty; its key
    # is orders[handle].id)
    handle_t *ids
    uint64_t id_mask
    int64_t n_ids           # == live orders
    # iceberg side table (visible, display_qty), free list through display_qty
    ice_t *ices
    int32_t ice_cap
    int32_t ice_hwm
    int32_t ice_free
    int32_t live_ices
    # interned accounts: index -> account (index 0 is account 0), and the map
    # back; entries are never removed (accounts are few)
    account_t *accounts
    uint32_t n_accounts
    uint32_t account_cap
    acct_slot_t *acct_map
    uint64_t acct_mask
    # instrument -> book index
    inst_slot_t *insts
    uint64_t inst_mask
    # event output buffer
    event_t *events
    int64_t n_events
    int64_t event_cap
    uint64_t cur_cmd        # stamped into each event's cmd field
    # time: the latest ts seen; the expiry heap of DAY/GTD orders and stops,
    # ordered by (expire_ts, seq); tpos[h] = heap position of resting order h
    # (allocated with the first DAY/GTD order, as big as the order pool)
    int64_t now
    timed_t *timed
    int32_t n_timed
    int32_t timed_cap
    int32_t *tpos
    int32_t tpos_cap
    # stops: a pool (free list through heap), and id -> stop index (-1 = empty)
    stop_t *stops
    int32_t stop_cap
    int32_t stop_hwm
    int32_t stop_free
    int32_t n_stops
    int32_t *stop_ids
    uint64_t stop_id_mask
    # accounts with risk limits (few: looked up by a linear scan, only when n_risk > 0)
    risk_t *risks
    int32_t n_risk
    int32_t risk_cap
    # this command's trade prints: the book they were in, lowest and highest price
    int32_t pr_book
    price_t pr_lo
    price_t pr_hi
    # running state
    uint64_t digest
    uint64_t commands
    int oom                 # set when an allocation failed; the engine is poisoned
    int busy                # apply_batch/book_digest running without the GIL


@cython.final
cdef class Engine:
    """The matching engine (see _engine.pyx for the public API)."""
    cdef core_t core
    cdef object _ev_types       # event classes by kind - 1 (Accepted, Rejected, Trade, ...)

    cdef int _enter(self) except -1
    cdef int _run(self, const command_t *cmd) except -1
    cdef list _events_to_list(self, int64_t start)
