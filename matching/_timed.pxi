# Included by _engine.pyx.  The structures of time and stops (issue 19): the
# expiry heap of DAY/GTD orders and stops, the stop pool, the stop id index
# and each book's sorted arrays of waiting stops.  Like _book.pxi, these trust
# their arguments and never raise; a failed allocation sets core.oom.
#
# None of it is allocated until the first DAY/GTD order or stop, so an engine
# that never sees one pays nothing but a few compares per command.  Stops
# live in their own pool, outside the order pool: a resting limit order's
# memory is unchanged by them.

cdef int64_t NO_EXPIRY = 0x7FFFFFFFFFFFFFFF   # a DAY order's heap key


# --- the expiry heap, ordered by (expire_ts, seq) ---------------------------------

cdef inline bint timed_before(const timed_t *a, const timed_t *b) noexcept nogil:
    return a.expire_ts < b.expire_ts or (a.expire_ts == b.expire_ts and a.seq < b.seq)


cdef inline void timed_place(core_t *c, int32_t pos) noexcept nogil:
    # Tell the entry at `pos` where it now is.
    cdef const timed_t *t = &c.timed[pos]
    if t.kind == 0:
        c.tpos[t.ref] = pos
    else:
        c.stops[t.ref].heap = pos


cdef void timed_sift(core_t *c, int32_t pos) noexcept nogil:
    # Restore the heap order around `pos` (up, then down).
    cdef timed_t t = c.timed[pos]
    cdef int32_t parent, child
    while pos > 0:
        parent = (pos - 1) >> 1
        if not timed_before(&t, &c.timed[parent]):
            break
        c.timed[pos] = c.timed[parent]
        timed_place(c, pos)
        pos = parent
    while True:
        child = 2 * pos + 1
        if child >= c.n_timed:
            break
        if child + 1 < c.n_timed and timed_before(&c.timed[child + 1], &c.timed[child]):
            child += 1
        if not timed_before(&c.timed[child], &t):
            break
        c.timed[pos] = c.timed[child]
        timed_place(c, pos)
        pos = child
    c.timed[pos] = t
    timed_place(c, pos)


cdef int tpos_fit(core_t *c) noexcept nogil:
    # tpos covers every order slot (the pool may have grown since).
    cdef int32_t *grown
    if c.tpos_cap >= c.order_cap:
        return 0
    grown = <int32_t *>realloc(c.tpos, <size_t>c.order_cap * sizeof(int32_t))
    if grown == NULL:
        c.oom = 1
        return -1
    c.tpos = grown
    c.tpos_cap = c.order_cap
    return 0


cdef int timed_push(core_t *c, int64_t expire_ts, uint64_t seq, int32_t ref, uint8_t kind,
                    uint8_t tif) noexcept nogil:
    cdef int32_t cap
    cdef timed_t *grown
    if kind == 0 and tpos_fit(c) != 0:
        return -1
    if c.n_timed == c.timed_cap:
        cap = c.timed_cap * 2 if c.timed_cap else 64
        grown = <timed_t *>realloc(c.timed, <size_t>cap * sizeof(timed_t))
        if grown == NULL:
            c.oom = 1
            return -1
        c.timed = grown
        c.timed_cap = cap
    c.timed[c.n_timed].expire_ts = expire_ts
    c.timed[c.n_timed].seq = seq
    c.timed[c.n_timed].ref = ref
    c.timed[c.n_timed].kind = kind
    c.timed[c.n_timed].tif = tif
    c.timed[c.n_timed]._pad[0] = 0
    c.timed[c.n_timed]._pad[1] = 0
    c.n_timed += 1
    timed_sift(c, c.n_timed - 1)
    return 0


cdef void timed_remove(core_t *c, int32_t pos) noexcept nogil:
    c.n_timed -= 1
    if pos == c.n_timed:
        return
    c.timed[pos] = c.timed[c.n_timed]
    timed_sift(c, pos)


# --- the stop pool and its id index -------------------------------------------------

cdef int stop_ids_grow(core_t *c) noexcept nogil:
    cdef uint64_t old_cap = c.stop_id_mask + 1 if c.stop_ids != NULL else 0
    cdef uint64_t cap = old_cap * 2 if old_cap else 64
    cdef int32_t *fresh = <int32_t *>malloc(cap * sizeof(int32_t))
    cdef uint64_t k, i
    if fresh == NULL:
        c.oom = 1
        return -1
    memset(fresh, 0xFF, cap * sizeof(int32_t))
    for k in range(old_cap):
        if c.stop_ids[k] >= 0:
            i = id_home(c.stops[c.stop_ids[k]].id) & (cap - 1)
            while fresh[i] >= 0:
                i = (i + 1) & (cap - 1)
            fresh[i] = c.stop_ids[k]
    free(c.stop_ids)
    c.stop_ids = fresh
    c.stop_id_mask = cap - 1
    return 0


cdef inline int32_t stop_find(const core_t *c, order_id_t key) noexcept nogil:
    # Index of the waiting stop `key`, or -1.
    cdef uint64_t i
    cdef int32_t s
    if c.n_stops == 0:
        return -1
    i = id_home(key) & c.stop_id_mask
    while True:
        s = c.stop_ids[i]
        if s < 0:
            return -1
        if c.stops[s].id == key:
            return s
        i = (i + 1) & c.stop_id_mask


cdef int32_t stop_alloc(core_t *c, order_id_t oid) noexcept nogil:
    # A stop slot indexed under `oid` (known absent); -1 and core.oom on failure.
    cdef int32_t s = c.stop_free
    cdef int32_t cap
    cdef stop_t *grown
    cdef uint64_t i
    if c.stop_ids == NULL or <uint64_t>(c.n_stops + 1) * 2 > c.stop_id_mask + 1:
        if stop_ids_grow(c) != 0:
            return -1
    if s >= 0:
        c.stop_free = c.stops[s].heap
    else:
        if c.stop_hwm == c.stop_cap:
            cap = c.stop_cap * 2 if c.stop_cap else 64
            grown = <stop_t *>realloc(c.stops, <size_t>cap * sizeof(stop_t))
            if grown == NULL:
                c.oom = 1
                return -1
            c.stops = grown
            c.stop_cap = cap
        s = c.stop_hwm
        c.stop_hwm += 1
    memset(&c.stops[s], 0, sizeof(stop_t))
    c.stops[s].id = oid
    c.stops[s].heap = -1
    i = id_home(oid) & c.stop_id_mask
    while c.stop_ids[i] >= 0:
        i = (i + 1) & c.stop_id_mask
    c.stop_ids[i] = s
    c.n_stops += 1
    return s


cdef void stop_ids_del(core_t *c, int32_t s) noexcept nogil:
    # Backward-shift deletion, as ids_del.
    cdef uint64_t mask = c.stop_id_mask
    cdef uint64_t i = id_home(c.stops[s].id) & mask
    cdef uint64_t j, home
    while c.stop_ids[i] != s:
        if c.stop_ids[i] < 0:
            return
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        if c.stop_ids[j] < 0:
            break
        home = id_home(c.stops[c.stop_ids[j]].id) & mask
        if ((j - home) & mask) >= ((j - i) & mask):
            c.stop_ids[i] = c.stop_ids[j]
            i = j
    c.stop_ids[i] = -1


# --- a book's waiting stops -----------------------------------------------------------

cdef inline price_t stop_key(const stop_t *st) noexcept nogil:
    return st.stop_price if st.side == SIDE_BUY else -st.stop_price


cdef int stop_side_insert(core_t *c, int32_t s) noexcept nogil:
    cdef stop_t *st = &c.stops[s]
    cdef stop_side_t *ss = &c.books[st.book].stops[st.side]
    cdef price_t key = stop_key(st)
    cdef int32_t lo = 0, hi = ss.n, mid, cap
    cdef price_t *k
    cdef int32_t *v
    if ss.n == ss.cap:
        cap = ss.cap * 2 if ss.cap else 16
        k = <price_t *>realloc(ss.keys, <size_t>cap * sizeof(price_t))
        if k == NULL:
            c.oom = 1
            return -1
        ss.keys = k
        v = <int32_t *>realloc(ss.idx, <size_t>cap * sizeof(int32_t))
        if v == NULL:
            c.oom = 1
            return -1
        ss.idx = v
        ss.cap = cap
    while lo < hi:
        mid = (lo + hi) >> 1
        if ss.keys[mid] <= key:
            lo = mid + 1
        else:
            hi = mid
    memmove(&ss.keys[lo + 1], &ss.keys[lo], <size_t>(ss.n - lo) * sizeof(price_t))
    memmove(&ss.idx[lo + 1], &ss.idx[lo], <size_t>(ss.n - lo) * sizeof(int32_t))
    ss.keys[lo] = key
    ss.idx[lo] = s
    ss.n += 1
    return 0


cdef void stop_side_remove(core_t *c, int32_t s) noexcept nogil:
    cdef stop_t *st = &c.stops[s]
    cdef stop_side_t *ss = &c.books[st.book].stops[st.side]
    cdef price_t key = stop_key(st)
    cdef int32_t lo = 0, hi = ss.n, mid
    while lo < hi:  # the first entry with this key; the stop is at or after it
        mid = (lo + hi) >> 1
        if ss.keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    while lo < ss.n and ss.idx[lo] != s:
        lo += 1
    if lo == ss.n:
        return
    memmove(&ss.keys[lo], &ss.keys[lo + 1], <size_t>(ss.n - lo - 1) * sizeof(price_t))
    memmove(&ss.idx[lo], &ss.idx[lo + 1], <size_t>(ss.n - lo - 1) * sizeof(int32_t))
    ss.n -= 1


cdef int stop_enter(core_t *c, int32_t s) noexcept nogil:
    # File a filled-in stop slot: its book's side array, and the expiry heap if DAY/GTD.
    cdef stop_t *st = &c.stops[s]
    if stop_side_insert(c, s) != 0:
        return -1
    st = &c.stops[s]
    if c.n_risk:
        risk_open(c, risk_by_account(c, st.account), st.qty)
    if st.tif == TIF_DAY or st.tif == TIF_GTD:
        return timed_push(c, st.expire_ts if st.tif == TIF_GTD else NO_EXPIRY, st.seq, s, 1, st.tif)
    return 0


cdef void stop_release(core_t *c, int32_t s) noexcept nogil:
    # Drop a waiting stop entirely: its book array, heap entry, id index and slot.
    if c.n_risk:
        risk_open(c, risk_by_account(c, c.stops[s].account), -c.stops[s].qty)
    stop_side_remove(c, s)
    if c.stops[s].heap >= 0:
        timed_remove(c, c.stops[s].heap)
    stop_ids_del(c, s)
    c.stops[s].id = 0
    c.stops[s].heap = c.stop_free
    c.stop_free = s
    c.n_stops -= 1


cdef int32_t book_stops_by_seq(const core_t *c, int32_t b, int32_t *out) noexcept nogil:
    # The waiting stops of book b into `out` (room for c.n_stops), in acceptance
    # order; returns how many.  An insertion sort: used by mass cancel only.
    cdef int32_t n = 0, side, i, j, s
    for side in range(2):
        for i in range(c.books[b].stops[side].n):
            s = c.books[b].stops[side].idx[i]
            j = n
            while j > 0 and c.stops[out[j - 1]].seq > c.stops[s].seq:
                out[j] = out[j - 1]
                j -= 1
            out[j] = s
            n += 1
    return n


cdef uint64_t stops_digest(core_t *c, uint64_t h) noexcept nogil:
    # The waiting stops' part of book_digest: per instrument ascending that has
    # any, the instrument, each stop's words in acceptance order, their count.
    cdef int32_t *order
    cdef int32_t k, b, n, i
    cdef const stop_t *st
    if c.n_stops == 0:
        return h
    order = <int32_t *>malloc(<size_t>c.n_stops * sizeof(int32_t))
    if order == NULL:
        c.oom = 1
        return h
    for k in range(c.n_books):
        b = c.book_order[k]
        n = book_stops_by_seq(c, b, order)
        if n == 0:
            continue
        h = absorb(h, c.books[b].instrument)
        for i in range(n):
            st = &c.stops[order[i]]
            h = absorb(h, st.id)
            h = absorb(h, st.side)
            h = absorb(h, st.type)
            h = absorb(h, <uint64_t>st.price)
            h = absorb(h, <uint64_t>st.qty)
            h = absorb(h, <uint64_t>st.display_qty)
            h = absorb(h, st.account)
            h = absorb(h, st.stp)
            h = absorb(h, st.tif)
            h = absorb(h, <uint64_t>st.expire_ts)
            h = absorb(h, <uint64_t>st.stop_price)
            h = absorb(h, st.seq)
        h = absorb(h, <uint64_t>n)
    free(order)
    return h
