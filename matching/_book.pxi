# Included by _engine.pyx.  Pools and book structure: order and level slots,
# the per-side sorted level arrays, and the FIFO links.  These functions
# trust their arguments (the command layer validated them) and never raise;
# an allocation failure sets core.oom, which the Python boundary turns into
# MemoryError.
#
# Pools grow by doubling with realloc, which may move them: callers must not
# keep an order_t* or level_t* across a call that can allocate.


# --- order pool ---------------------------------------------------------------

cdef handle_t order_alloc(core_t *c) noexcept nogil:
    cdef handle_t h = c.order_free
    cdef order_t *grown
    cdef int32_t cap
    if h >= 0:
        c.order_free = c.orders[h].next
        return h
    if c.order_hwm == c.order_cap:
        if c.order_cap >= 0x40000000:
            c.oom = 1
            return -1
        cap = c.order_cap * 2
        grown = <order_t *>realloc(c.orders, <size_t>cap * sizeof(order_t))
        if grown == NULL:
            c.oom = 1
            return -1
        c.orders = grown
        c.order_cap = cap
    h = c.order_hwm
    c.order_hwm += 1
    return h


cdef inline void order_release(core_t *c, handle_t h) noexcept nogil:
    # Drop a live order entirely: id index, iceberg slot and order slot.  It
    # must be unlinked.
    ids_del(c, h)
    if c.orders[h].tif != TIF_GTC:
        timed_remove(c, c.tpos[h])
        c.orders[h].tif = TIF_GTC
    if c.orders[h].ice >= 0:
        ice_release(c, c.orders[h].ice)
        c.orders[h].ice = -1
    c.orders[h].id = 0
    c.orders[h].level = -1
    c.orders[h].next = c.order_free
    c.order_free = h


cdef inline qty_t order_visible(const core_t *c, const order_t *o) noexcept nogil:
    return o.open if o.ice < 0 else c.ices[o.ice].visible


# --- iceberg side table ----------------------------------------------------------

cdef int32_t ice_alloc(core_t *c, qty_t display_qty) noexcept nogil:
    # A slot for an iceberg's (visible, display_qty); -1 and core.oom on failure.
    cdef int32_t i = c.ice_free
    cdef ice_t *grown
    cdef int32_t cap
    if i >= 0:
        c.ice_free = <int32_t>c.ices[i].display_qty
    else:
        if c.ice_hwm == c.ice_cap:
            if c.ice_cap >= 0x40000000:
                c.oom = 1
                return -1
            cap = c.ice_cap * 2 if c.ice_cap else 16
            grown = <ice_t *>realloc(c.ices, <size_t>cap * sizeof(ice_t))
            if grown == NULL:
                c.oom = 1
                return -1
            c.ices = grown
            c.ice_cap = cap
        i = c.ice_hwm
        c.ice_hwm += 1
    c.ices[i].visible = 0
    c.ices[i].display_qty = display_qty
    c.live_ices += 1
    return i


cdef inline void ice_release(core_t *c, int32_t i) noexcept nogil:
    c.ices[i].visible = -1          # marks a free slot (_check)
    c.ices[i].display_qty = c.ice_free
    c.ice_free = i
    c.live_ices -= 1


# --- level pool ---------------------------------------------------------------

cdef handle_t level_alloc(core_t *c) noexcept nogil:
    cdef handle_t h = c.level_free
    cdef level_t *grown
    cdef int32_t cap
    if h >= 0:
        c.level_free = c.levels[h].count
    else:
        if c.level_hwm == c.level_cap:
            if c.level_cap >= 0x40000000:
                c.oom = 1
                return -1
            cap = c.level_cap * 2
            grown = <level_t *>realloc(c.levels, <size_t>cap * sizeof(level_t))
            if grown == NULL:
                c.oom = 1
                return -1
            c.levels = grown
            c.level_cap = cap
        h = c.level_hwm
        c.level_hwm += 1
    c.live_levels += 1
    return h


cdef inline void level_release(core_t *c, handle_t h) noexcept nogil:
    c.levels[h].book = -1
    c.levels[h].head = -1
    c.levels[h].tail = -1
    c.levels[h].count = c.level_free
    c.level_free = h
    c.live_levels -= 1


# --- sorted level arrays --------------------------------------------------------

cdef inline price_t side_key(uint8_t side, price_t price) noexcept nogil:
    # Bids ascend by price and asks by -price, so "best" is always the end.
    return price if side == SIDE_BUY else -price


cdef inline int32_t side_lower_bound(const side_t *s, price_t key) noexcept nogil:
    # First index whose key >= key (n if none).
    cdef int32_t n = s.n
    cdef int32_t base = 0
    cdef int32_t half
    # Most activity is at the touch: try the end before bisecting.
    if n == 0 or s.keys[n - 1] < key:
        return n
    if s.keys[n - 1] == key:
        return n - 1
    # Branch-free bisection (the answer stays in [base, base + n]): a
    # mispredicted branch per step cost more than the comparisons.
    while n > 1:
        half = n >> 1
        base += half * (s.keys[base + half - 1] < key)
        n -= half
    return base + (s.keys[base] < key)


cdef int side_insert(side_t *s, int32_t pos, price_t key, handle_t lv) noexcept nogil:
    cdef int32_t cap
    cdef price_t *k
    cdef handle_t *v
    if s.n == s.cap:
        cap = s.cap * 2 if s.cap else 8
        k = <price_t *>realloc(s.keys, <size_t>cap * sizeof(price_t))
        if k == NULL:
            return -1
        s.keys = k
        v = <handle_t *>realloc(s.levels, <size_t>cap * sizeof(handle_t))
        if v == NULL:
            return -1
        s.levels = v
        s.cap = cap
    if pos < s.n:
        memmove(&s.keys[pos + 1], &s.keys[pos], <size_t>(s.n - pos) * sizeof(price_t))
        memmove(&s.levels[pos + 1], &s.levels[pos], <size_t>(s.n - pos) * sizeof(handle_t))
    s.keys[pos] = key
    s.levels[pos] = lv
    s.n += 1
    return 0


cdef inline void side_remove(side_t *s, int32_t pos) noexcept nogil:
    if pos < s.n - 1:
        memmove(&s.keys[pos], &s.keys[pos + 1], <size_t>(s.n - pos - 1) * sizeof(price_t))
        memmove(&s.levels[pos], &s.levels[pos + 1], <size_t>(s.n - pos - 1) * sizeof(handle_t))
    s.n -= 1


cdef inline handle_t side_best(const side_t *s) noexcept nogil:
    return s.levels[s.n - 1] if s.n else -1


# --- books ----------------------------------------------------------------------

cdef int32_t book_create(core_t *c, instrument_t inst) noexcept nogil:
    # A new instrument: a book slot, the map entry, and its place in the
    # instrument-sorted index (rare, so the memmove there is fine).
    cdef int32_t b, cap, lo, hi, mid
    cdef book_t *nb
    cdef int32_t *no
    if c.n_books == c.book_cap:
        cap = c.book_cap * 2
        nb = <book_t *>realloc(c.books, <size_t>cap * sizeof(book_t))
        if nb == NULL:
            c.oom = 1
            return -1
        c.books = nb
        no = <int32_t *>realloc(c.book_order, <size_t>cap * sizeof(int32_t))
        if no == NULL:
            c.oom = 1
            return -1
        c.book_order = no
        c.book_cap = cap
    if insts_put(c, inst, c.n_books) != 0:
        c.oom = 1
        return -1
    b = c.n_books
    memset(&c.books[b], 0, sizeof(book_t))
    c.books[b].instrument = inst
    c.books[b].tick = 1
    c.books[b].lot = 1
    lo = 0
    hi = b
    while lo < hi:
        mid = (lo + hi) >> 1
        if c.books[c.book_order[mid]].instrument < inst:
            lo = mid + 1
        else:
            hi = mid
    if lo < b:
        memmove(&c.book_order[lo + 1], &c.book_order[lo], <size_t>(b - lo) * sizeof(int32_t))
    c.book_order[lo] = b
    c.n_books += 1
    return b


# --- FIFO links -------------------------------------------------------------------

cdef int book_append(core_t *c, int32_t b, handle_t h) noexcept nogil:
    # Put order h (fields set, unlinked) at the back of its price level,
    # creating the level if needed.
    cdef order_t *o = &c.orders[h]
    cdef side_t *s = &c.books[b].sides[o.side]
    cdef price_t key = side_key(o.side, o.price)
    cdef int32_t pos = side_lower_bound(s, key)
    cdef handle_t lv
    cdef level_t *L
    if pos < s.n and s.keys[pos] == key:
        lv = s.levels[pos]
    else:
        lv = level_alloc(c)
        if lv < 0:
            return -1
        if side_insert(s, pos, key, lv) != 0:
            c.oom = 1
            return -1
        L = &c.levels[lv]
        L.price = c.orders[h].price
        L.total = 0
        L.head = -1
        L.tail = -1
        L.count = 0
        L.book = b
    o = &c.orders[h]
    L = &c.levels[lv]
    o.level = lv
    o.next = -1
    o.prev = L.tail
    if L.tail >= 0:
        c.orders[L.tail].next = h
    else:
        L.head = h
    L.tail = h
    L.count += 1
    L.total += order_visible(c, o)
    c.books[b].n_orders += 1
    if c.n_risk:
        risk_open(c, risk_by_index(c, o.account), o.open)
    return 0


cdef void book_unlink(core_t *c, handle_t h) noexcept nogil:
    # Take order h out of its level (dropping the level if it empties).  The
    # order keeps its id entry; the caller releases or re-appends it.
    cdef order_t *o = &c.orders[h]
    cdef handle_t lv = o.level
    cdef level_t *L = &c.levels[lv]
    cdef side_t *s
    cdef int32_t pos
    if o.prev >= 0:
        c.orders[o.prev].next = o.next
    else:
        L.head = o.next
    if o.next >= 0:
        c.orders[o.next].prev = o.prev
    else:
        L.tail = o.prev
    L.count -= 1
    L.total -= order_visible(c, o)
    c.books[L.book].n_orders -= 1
    if c.n_risk:
        risk_open(c, risk_by_index(c, o.account), -o.open)
    o.level = -1
    o.prev = -1
    o.next = -1
    if L.count == 0:
        s = &c.books[L.book].sides[o.side]
        pos = side_lower_bound(s, side_key(o.side, L.price))
        side_remove(s, pos)
        level_release(c, lv)


cdef inline void level_to_back(core_t *c, handle_t h) noexcept nogil:
    # An iceberg refill loses time priority: move h behind the others.
    cdef order_t *o = &c.orders[h]
    cdef level_t *L = &c.levels[o.level]
    if L.tail == h:
        return
    if o.prev >= 0:
        c.orders[o.prev].next = o.next
    else:
        L.head = o.next
    c.orders[o.next].prev = o.prev
    o.prev = L.tail
    o.next = -1
    c.orders[L.tail].next = h
    L.tail = h
