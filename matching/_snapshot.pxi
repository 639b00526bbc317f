# Included by _engine.pyx.  The invariant check and the snapshot codec.
#
# Snapshot format, version 1 (all integers little-endian, as on the hosts we
# run on; the magic would not match on a big-endian reader):
#
#   header   magic "MCENGINE" | u32 version | u32 crc32(payload) | u64 len(payload)
#   payload  u64 digest | u64 commands | u32 n_books | u32 0 | u64 n_orders
#            n_books x (u32 instrument | u32 orders in that book), ascending
#            n_orders x snap_order_t, per book: bids best level first, then
#            asks best first, FIFO within a level
#
# Orders are stored in book order so that appending them one by one on
# restore rebuilds every queue exactly; handles and hash-table layout are
# not stored because nothing observable depends on them.
#
# Version 2 (issue 19) appends time and stops after the orders; a version-1
# snapshot (which has none) still restores:
#
#            i64 now | u32 n_timed | u32 n_stops | u32 n_rules | u32 n_risk
#            n_timed x snap_timed_t: each resting DAY/GTD order, in book order
#            n_stops x snap_stop_t: each waiting stop, in pool order (the
#            trigger and expiry orders come from seq, not from this order)
#            n_rules x snap_rules_t: each book with rules or a last print
#            n_risk x (snap_risk_t, then its n_pos x snap_pos_t): each account
#            with risk limits (its open qty is counted again on restore)

import zlib

cdef bytes SNAP_MAGIC = b"MCENGINE"
cdef uint32_t SNAP_VERSION = 2
cdef Py_ssize_t SNAP_HEADER = 24
cdef Py_ssize_t SNAP_FIXED = 32


cdef packed struct snap_head_t:
    uint64_t digest
    uint64_t commands
    uint32_t n_books
    uint32_t zero
    uint64_t n_orders

cdef packed struct snap_book_t:
    uint32_t instrument
    uint32_t n_orders

cdef packed struct snap_order_t:
    order_id_t id
    account_t account
    price_t price
    qty_t open
    qty_t visible
    qty_t display_qty
    uint8_t side
    uint8_t stp
    uint8_t post_only
    uint8_t _pad[5]


cdef packed struct snap_time_t:
    int64_t now
    uint32_t n_timed
    uint32_t n_stops
    uint32_t n_rules
    uint32_t n_risk

cdef packed struct snap_risk_t:
    account_t account
    qty_t max_open
    qty_t max_position
    uint32_t n_pos
    uint32_t zero

cdef packed struct snap_pos_t:
    instrument_t instrument
    uint32_t zero
    qty_t pos

cdef packed struct snap_rules_t:
    instrument_t instrument
    uint32_t has_rules
    price_t last_price
    price_t tick
    qty_t lot
    qty_t min_qty
    qty_t max_qty
    int64_t band
    price_t ref_price


cdef inline bint has_rules_state(const book_t *bk) noexcept nogil:
    return bk.has_rules != 0 or bk.last_price != 0


cdef Py_ssize_t risk_bytes(const core_t *c) noexcept nogil:
    cdef Py_ssize_t n = c.n_risk * sizeof(snap_risk_t)
    cdef int32_t r
    for r in range(c.n_risk):
        n += c.risks[r].n_pos * sizeof(snap_pos_t)
    return n


cdef int32_t rules_books(const core_t *c) noexcept nogil:
    cdef int32_t b, n = 0
    for b in range(c.n_books):
        n += has_rules_state(&c.books[b])
    return n

cdef packed struct snap_timed_t:
    order_id_t id
    int64_t expire_ts
    uint64_t seq
    uint8_t tif
    uint8_t _pad[7]

cdef packed struct snap_stop_t:
    order_id_t id
    account_t account
    price_t price
    qty_t qty
    qty_t display_qty
    price_t stop_price
    int64_t expire_ts
    uint64_t seq
    instrument_t instrument
    uint8_t side
    uint8_t type
    uint8_t tif
    uint8_t stp


cdef int32_t timed_orders(const core_t *c) noexcept nogil:
    cdef int32_t i, n = 0
    for i in range(c.n_timed):
        n += c.timed[i].kind == 0
    return n


cdef Py_ssize_t snapshot_time(const core_t *c, unsigned char *p, Py_ssize_t pos):
    # The version-2 section: now, the DAY/GTD orders' heap entries, the stops.
    cdef snap_time_t head
    cdef snap_timed_t tt
    cdef snap_stop_t ss
    cdef snap_rules_t sr
    cdef snap_risk_t rk
    cdef snap_pos_t sp
    cdef const timed_t *t
    cdef const stop_t *st
    cdef const book_t *bk
    cdef int32_t i, j
    head.now = c.now
    head.n_timed = timed_orders(c)
    head.n_stops = c.n_stops
    head.n_rules = rules_books(c)
    head.n_risk = c.n_risk
    memcpy(p + pos, &head, sizeof(head))
    pos += sizeof(head)
    memset(&tt, 0, sizeof(tt))
    for i in range(c.n_timed):
        t = &c.timed[i]
        if t.kind == 0:
            tt.id = c.orders[t.ref].id
            tt.expire_ts = t.expire_ts
            tt.seq = t.seq
            tt.tif = t.tif
            memcpy(p + pos, &tt, sizeof(tt))
            pos += sizeof(tt)
    for i in range(c.stop_hwm):
        st = &c.stops[i]
        if st.id == 0:
            continue
        ss.id = st.id
        ss.account = st.account
        ss.price = st.price
        ss.qty = st.qty
        ss.display_qty = st.display_qty
        ss.stop_price = st.stop_price
        ss.expire_ts = st.expire_ts
        ss.seq = st.seq
        ss.instrument = c.books[st.book].instrument
        ss.side = st.side
        ss.type = st.type
        ss.tif = st.tif
        ss.stp = st.stp
        memcpy(p + pos, &ss, sizeof(ss))
        pos += sizeof(ss)
    for i in range(c.n_books):
        bk = &c.books[c.book_order[i]]
        if not has_rules_state(bk):
            continue
        sr.instrument = bk.instrument
        sr.has_rules = bk.has_rules
        sr.last_price = bk.last_price
        sr.tick = bk.tick
        sr.lot = bk.lot
        sr.min_qty = bk.min_qty
        sr.max_qty = bk.max_qty
        sr.band = bk.band
        sr.ref_price = bk.ref_price
        memcpy(p + pos, &sr, sizeof(sr))
        pos += sizeof(sr)
    for i in range(c.n_risk):
        rk.account = c.risks[i].account
        rk.max_open = c.risks[i].max_open
        rk.max_position = c.risks[i].max_position
        rk.n_pos = c.risks[i].n_pos
        rk.zero = 0
        memcpy(p + pos, &rk, sizeof(rk))
        pos += sizeof(rk)
        for j in range(c.risks[i].n_pos):
            sp.instrument = c.books[c.risks[i].pos_book[j]].instrument
            sp.zero = 0
            sp.pos = c.risks[i].pos[j]
            memcpy(p + pos, &sp, sizeof(sp))
            pos += sizeof(sp)
    return pos


cdef int restore_time(core_t *c, const unsigned char *p, Py_ssize_t pos, Py_ssize_t n) except -1:
    cdef snap_time_t head
    cdef snap_timed_t tt
    cdef snap_stop_t ss
    cdef snap_rules_t sr
    cdef snap_risk_t rk
    cdef snap_pos_t sp
    cdef book_t *bk
    cdef uint32_t k, j
    cdef int32_t r
    cdef handle_t h
    cdef int32_t s, b
    if n - pos < <Py_ssize_t>sizeof(head):
        raise ValueError("corrupt snapshot: no time section")
    memcpy(&head, p + pos, sizeof(head))
    pos += sizeof(head)
    if <object>(n - pos) < (<object>head.n_timed * sizeof(snap_timed_t)
                            + <object>head.n_stops * sizeof(snap_stop_t)
                            + <object>head.n_rules * sizeof(snap_rules_t)
                            + <object>head.n_risk * sizeof(snap_risk_t)):
        raise ValueError("corrupt snapshot: time section counts do not match its length")
    c.now = head.now
    for k in range(head.n_timed):
        memcpy(&tt, p + pos, sizeof(tt))
        pos += sizeof(tt)
        h = ids_get(c, tt.id)
        if h < 0 or c.orders[h].tif != TIF_GTC or not (tt.tif == TIF_DAY or tt.tif == TIF_GTD):
            raise ValueError(f"corrupt snapshot: timed entry for order {tt.id}")
        if timed_push(c, tt.expire_ts, tt.seq, h, 0, tt.tif) != 0:
            raise MemoryError("cannot allocate while restoring")
        c.orders[h].tif = tt.tif
    for k in range(head.n_stops):
        memcpy(&ss, p + pos, sizeof(ss))
        pos += sizeof(ss)
        b = insts_get(c, ss.instrument)
        if (b < 0 or ss.id == 0 or ss.side > SIDE_SELL or ss.type < TYPE_STOP or ss.type > TYPE_STOP_LIMIT
                or ss.tif > TIF_GTD or ss.stp > STP_CANCEL_BOTH or ss.qty < 1 or ss.qty > MAX_QTY
                or ss.stop_price < 1 or ss.stop_price > MAX_PRICE):
            raise ValueError(f"corrupt snapshot: stop {ss.id} has out-of-range fields")
        if ids_get(c, ss.id) >= 0 or stop_find(c, ss.id) >= 0:
            raise ValueError(f"corrupt snapshot: order id {ss.id} appears twice")
        s = stop_alloc(c, ss.id)
        if s < 0:
            raise MemoryError("cannot allocate while restoring")
        c.stops[s].account = ss.account
        c.stops[s].price = ss.price
        c.stops[s].qty = ss.qty
        c.stops[s].display_qty = ss.display_qty
        c.stops[s].stop_price = ss.stop_price
        c.stops[s].expire_ts = ss.expire_ts
        c.stops[s].seq = ss.seq
        c.stops[s].book = b
        c.stops[s].side = ss.side
        c.stops[s].type = ss.type
        c.stops[s].tif = ss.tif
        c.stops[s].stp = ss.stp
        if stop_enter(c, s) != 0:
            raise MemoryError("cannot allocate while restoring")
    for k in range(head.n_rules):
        memcpy(&sr, p + pos, sizeof(sr))
        pos += sizeof(sr)
        b = insts_get(c, sr.instrument)
        if (b < 0 or sr.has_rules > 1 or sr.tick < 1 or sr.lot < 1 or sr.min_qty < 0 or sr.max_qty < 0
                or sr.band < 0 or sr.ref_price < 0 or sr.last_price < 0):
            raise ValueError(f"corrupt snapshot: rules of instrument {sr.instrument}")
        bk = &c.books[b]
        bk.has_rules = sr.has_rules
        bk.last_price = sr.last_price
        bk.tick = sr.tick
        bk.lot = sr.lot
        bk.min_qty = sr.min_qty
        bk.max_qty = sr.max_qty
        bk.band = sr.band
        bk.ref_price = sr.ref_price
    for k in range(head.n_risk):
        if n - pos < <Py_ssize_t>sizeof(rk):
            raise ValueError("corrupt snapshot: risk section cut short")
        memcpy(&rk, p + pos, sizeof(rk))
        pos += sizeof(rk)
        if (rk.max_open < 0 or rk.max_open > MAX_QTY or rk.max_position < 0 or rk.max_position > MAX_QTY
                or risk_by_account(c, rk.account) >= 0 or <object>(n - pos) < <object>rk.n_pos * sizeof(sp)):
            raise ValueError(f"corrupt snapshot: risk limits of account {rk.account}")
        r = risk_add(c, rk.account)
        if r < 0:
            raise MemoryError("cannot allocate while restoring")
        c.risks[r].max_open = rk.max_open
        c.risks[r].max_position = rk.max_position
        for j in range(rk.n_pos):
            memcpy(&sp, p + pos, sizeof(sp))
            pos += sizeof(sp)
            b = insts_get(c, sp.instrument)
            if b < 0 or risk_position(c, r, b) != 0:
                raise ValueError(f"corrupt snapshot: position of account {rk.account}")
            risk_move(c, r, b, sp.pos)
    if pos != n:
        raise ValueError("corrupt snapshot: bytes after its last section")
    return 0


cdef object snapshot_core(const core_t *c):
    cdef Py_ssize_t size = (SNAP_HEADER + SNAP_FIXED + c.n_books * sizeof(snap_book_t)
                            + c.n_ids * sizeof(snap_order_t) + sizeof(snap_time_t)
                            + timed_orders(c) * sizeof(snap_timed_t) + c.n_stops * sizeof(snap_stop_t)
                            + rules_books(c) * sizeof(snap_rules_t) + risk_bytes(c))
    cdef bytearray blob = bytearray(size)
    cdef unsigned char *p = blob
    cdef snap_head_t head
    cdef snap_book_t sb
    cdef snap_order_t so
    cdef Py_ssize_t pos
    cdef int32_t k, b, i
    cdef int side
    cdef handle_t h
    cdef const side_t *s
    cdef const order_t *o
    cdef uint32_t u32
    cdef uint64_t u64
    head.digest = c.digest
    head.commands = c.commands
    head.n_books = c.n_books
    head.zero = 0
    head.n_orders = c.n_ids
    memcpy(p + SNAP_HEADER, &head, sizeof(head))
    pos = SNAP_HEADER + SNAP_FIXED
    for k in range(c.n_books):
        b = c.book_order[k]
        sb.instrument = c.books[b].instrument
        sb.n_orders = c.books[b].n_orders
        memcpy(p + pos, &sb, sizeof(sb))
        pos += sizeof(sb)
    memset(&so, 0, sizeof(so))
    for k in range(c.n_books):
        b = c.book_order[k]
        for side in range(2):
            s = &c.books[b].sides[side]
            i = s.n - 1
            while i >= 0:
                h = c.levels[s.levels[i]].head
                while h >= 0:
                    o = &c.orders[h]
                    so.id = o.id
                    so.account = c.accounts[o.account]
                    so.price = o.price
                    so.open = o.open
                    so.visible = order_visible(c, o)
                    so.display_qty = c.ices[o.ice].display_qty if o.ice >= 0 else 0
                    so.side = o.side
                    so.stp = o.stp
                    so.post_only = o.post_only
                    memcpy(p + pos, &so, sizeof(so))
                    pos += sizeof(so)
                    h = o.next
                i -= 1
    pos = snapshot_time(c, p, pos)
    assert pos == size
    memcpy(p, <const char *>SNAP_MAGIC, 8)
    u32 = SNAP_VERSION
    memcpy(p + 8, &u32, 4)
    u32 = zlib.crc32(memoryview(blob)[SNAP_HEADER:])
    memcpy(p + 12, &u32, 4)
    u64 = size - SNAP_HEADER
    memcpy(p + 16, &u64, 8)
    return bytes(blob)


cdef int restore_core(core_t *c, object blob) except -1:
    cdef const unsigned char[::1] buf
    cdef const unsigned char *p
    cdef Py_ssize_t n, pos, expected
    cdef uint32_t version, crc
    cdef uint64_t length, done, k
    cdef snap_head_t head
    cdef snap_book_t sb
    cdef snap_order_t so
    cdef int64_t prev_inst = -1
    cdef int32_t b
    cdef handle_t h
    cdef order_t *o
    cdef price_t prev_price
    cdef int prev_side
    cdef uint32_t j
    try:
        buf = blob
    except (TypeError, ValueError):
        raise ValueError("a snapshot must be a contiguous bytes-like object") from None
    n = buf.shape[0]
    if n < SNAP_HEADER or bytes(buf[:8]) != SNAP_MAGIC:
        raise ValueError("not an engine snapshot (bad magic or shorter than its header)")
    p = &buf[0]
    memcpy(&version, p + 8, 4)
    memcpy(&crc, p + 12, 4)
    memcpy(&length, p + 16, 8)
    if version != 1 and version != SNAP_VERSION:
        raise ValueError(f"unsupported snapshot version {version} (this engine reads 1 and {SNAP_VERSION})")
    if length != <uint64_t>(n - SNAP_HEADER):
        raise ValueError(f"truncated or padded snapshot: header says {length} payload bytes, "
                         f"found {n - SNAP_HEADER}")
    if zlib.crc32(buf[SNAP_HEADER:]) != crc:
        raise ValueError("corrupt snapshot: payload checksum mismatch")
    if length < <uint64_t>SNAP_FIXED:
        raise ValueError("corrupt snapshot: payload shorter than its fixed part")
    memcpy(&head, p + SNAP_HEADER, sizeof(head))
    expected = SNAP_HEADER + SNAP_FIXED
    orders_end = (expected + <object>head.n_books * sizeof(snap_book_t)
                  + <object>head.n_orders * sizeof(snap_order_t))
    if (head.zero != 0 or head.n_books > 0x7FFFFFFF or head.n_orders > 0x40000000
            or (<object>n != orders_end if version == 1 else <object>n < orders_end)):
        raise ValueError("corrupt snapshot: counts do not match its length")

    core_free(c)
    if core_init(c, <int64_t>head.n_orders) != 0:
        raise MemoryError("cannot allocate the engine core")
    c.digest = head.digest
    c.commands = head.commands
    pos = expected + head.n_books * sizeof(snap_book_t)
    done = 0
    for k in range(head.n_books):
        memcpy(&sb, p + expected + k * sizeof(snap_book_t), sizeof(sb))
        if <int64_t>sb.instrument <= prev_inst:
            raise ValueError("corrupt snapshot: instruments out of order")
        prev_inst = sb.instrument
        b = book_create(c, sb.instrument)
        if b < 0:
            raise MemoryError("cannot allocate a book")
        prev_side = 0
        prev_price = 0
        for j in range(sb.n_orders):
            if done == head.n_orders:
                raise ValueError("corrupt snapshot: books hold more orders than declared")
            memcpy(&so, p + pos, sizeof(so))
            pos += sizeof(so)
            done += 1
            if (so.id == 0 or so.side > SIDE_SELL or so.stp > STP_CANCEL_BOTH or so.post_only > 1
                    or so.price < 1 or so.price > MAX_PRICE or so.open < 1 or so.open > MAX_QTY
                    or so.display_qty < 0 or so.display_qty > MAX_QTY
                    or so.visible < 1 or so.visible > so.open):
                raise ValueError(f"corrupt snapshot: order {so.id} has out-of-range fields")
            if so.display_qty == 0 and so.visible != so.open:
                raise ValueError(f"corrupt snapshot: order {so.id}: visible != open")
            if ids_get(c, so.id) >= 0:
                raise ValueError(f"corrupt snapshot: order id {so.id} appears twice")
            # Book order: all bids then all asks, each side best level first.
            if so.side < prev_side or (so.side == prev_side and j > 0 and (
                    so.price > prev_price if so.side == SIDE_BUY else so.price < prev_price)):
                raise ValueError("corrupt snapshot: orders out of book order")
            if so.side != prev_side or j == 0:
                prev_side = so.side
            prev_price = so.price
            h = order_alloc(c)
            if h < 0:
                raise MemoryError("cannot allocate an order slot")
            o = &c.orders[h]
            o.id = so.id
            o.price = so.price
            o.open = so.open
            o.ice = -1
            o.side = so.side
            o.stp = so.stp
            o.post_only = so.post_only
            o.tif = TIF_GTC
            o.level = -1
            o.account = account_intern(c, so.account)
            if o.account == NO_ACCOUNT:
                raise MemoryError("cannot allocate while restoring")
            if so.display_qty > 0:
                o.ice = ice_alloc(c, so.display_qty)
                if o.ice < 0:
                    raise MemoryError("cannot allocate while restoring")
                c.ices[o.ice].visible = so.visible
            if ids_put(c, h) != 0 or book_append(c, b, h) != 0:
                raise MemoryError("cannot allocate while restoring")
    if done != head.n_orders:
        raise ValueError("corrupt snapshot: fewer orders in books than declared")
    if version >= 2:
        restore_time(c, p, pos, n)
    return 0


cdef int check_time(const core_t *c) except -1:
    # The expiry heap (order, positions, kinds) and the waiting stops (index, book arrays).
    cdef int32_t i, side, s, timed_orders_seen = 0, stops_seen = 0
    cdef const timed_t *t
    cdef const stop_t *st
    cdef const stop_side_t *ss
    for i in range(c.n_timed):
        t = &c.timed[i]
        if i:
            assert not timed_before(t, &c.timed[(i - 1) >> 1]), "expiry heap out of order"
        assert t.tif == TIF_DAY or t.tif == TIF_GTD, "expiry heap entry of a GTC order"
        assert (t.expire_ts == NO_EXPIRY) == (t.tif == TIF_DAY), "DAY entry with an expiry"
        if t.kind == 0:
            assert 0 <= t.ref < c.order_hwm and c.orders[t.ref].id != 0, "heap entry of a dead order"
            assert c.tpos[t.ref] == i and c.orders[t.ref].tif == t.tif, "heap position of an order"
            timed_orders_seen += 1
        else:
            assert 0 <= t.ref < c.stop_hwm and c.stops[t.ref].id != 0, "heap entry of a dead stop"
            assert c.stops[t.ref].heap == i and c.stops[t.ref].tif == t.tif, "heap position of a stop"
            assert c.stops[t.ref].seq == t.seq, "heap entry seq of a stop"
    for i in range(c.stop_hwm):
        st = &c.stops[i]
        if st.id == 0:
            continue
        stops_seen += 1
        assert stop_find(c, st.id) == i, f"stop {st.id}: id index disagrees"
        assert ids_get(c, st.id) < 0, f"stop {st.id} also rests"
        assert (st.heap >= 0) == (st.tif == TIF_DAY or st.tif == TIF_GTD), f"stop {st.id}: heap entry"
    assert stops_seen == c.n_stops, "waiting stop count"
    stops_seen = 0
    for i in range(c.n_books):
        for side in range(2):
            ss = &c.books[i].stops[side]
            for s in range(ss.n):
                st = &c.stops[ss.idx[s]]
                assert st.id != 0 and st.book == i and st.side == side, "book stop array holds a stranger"
                assert ss.keys[s] == stop_key(st) and (s == 0 or ss.keys[s - 1] <= ss.keys[s]), \
                    "book stop array out of order"
                stops_seen += 1
    assert stops_seen == c.n_stops, "stops missing from their book arrays"
    for i in range(c.n_risk):
        assert c.risks[i].open == account_open(c, c.risks[i].acct, c.risks[i].account), \
            f"risk account {c.risks[i].account}: open qty drifted"
    return 0


cdef int check_core(const core_t *c) except -1:
    cdef int32_t k, b, i, count, seen_levels = 0
    cdef int side
    cdef int64_t seen_orders = 0, free_orders = 0, free_levels = 0, book_orders
    cdef handle_t h, prev, lv
    cdef const side_t *s
    cdef const level_t *L
    cdef const order_t *o
    cdef qty_t total, vis
    cdef int64_t icebergs = 0, free_ices = 0
    cdef uint32_t a
    cdef uint64_t slot, filled = 0
    cdef price_t best[2]
    for k in range(c.n_books):
        b = c.book_order[k]
        assert 0 <= b < c.n_books, f"book index {b} out of range"
        if k:
            assert c.books[c.book_order[k - 1]].instrument < c.books[b].instrument, \
                "instrument index not strictly ascending"
        assert insts_get(c, c.books[b].instrument) == b, \
            f"instrument map disagrees for {c.books[b].instrument}"
        book_orders = 0
        for side in range(2):
            s = &c.books[b].sides[side]
            best[side] = 0
            for i in range(s.n):
                lv = s.levels[i]
                assert 0 <= lv < c.level_hwm, f"level handle {lv} out of range"
                L = &c.levels[lv]
                assert L.book == b, f"level {L.price} filed in the wrong book"
                assert s.keys[i] == side_key(side, L.price), f"level {L.price} has a stale key"
                if i:
                    assert s.keys[i - 1] < s.keys[i], f"levels not sorted at {L.price}"
                assert L.count > 0 and L.head >= 0, f"empty level {L.price} kept"
                prev = -1
                count = 0
                total = 0
                h = L.head
                while h >= 0:
                    assert 0 <= h < c.order_hwm, f"order handle {h} out of range"
                    o = &c.orders[h]
                    assert o.prev == prev, f"order {o.id}: broken prev link"
                    assert o.level == lv, f"order {o.id}: wrong level"
                    assert o.side == side and o.price == L.price, f"order {o.id}: wrong side/price"
                    assert o.account < c.n_accounts, f"order {o.id}: account index out of range"
                    if o.ice >= 0:
                        assert o.ice < c.ice_hwm, f"order {o.id}: iceberg slot out of range"
                        assert c.ices[o.ice].display_qty > 0, f"iceberg {o.id}: display_qty not > 0"
                        vis = c.ices[o.ice].visible
                        assert vis <= c.ices[o.ice].display_qty, f"iceberg {o.id} shows more than its display"
                        icebergs += 1
                    else:
                        vis = o.open    # visible == open: not an iceberg
                    assert 0 < vis <= o.open, f"order {o.id}: visible {vis} open {o.open}"
                    assert ids_get(c, o.id) == h, f"order {o.id}: id index disagrees"
                    count += 1
                    total += vis
                    assert count <= c.n_ids, "cycle in a level's FIFO"
                    prev = h
                    h = o.next
                assert L.tail == prev, f"level {L.price}: tail is not the last order"
                assert count == L.count, f"level {L.price}: count {L.count}, walked {count}"
                assert total == L.total, f"level {L.price}: total {L.total}, visible sum {total}"
                book_orders += count
                seen_levels += 1
            if s.n:
                best[side] = c.levels[s.levels[s.n - 1]].price
        assert book_orders == c.books[b].n_orders, f"book {c.books[b].instrument}: order count"
        seen_orders += book_orders
        if c.books[b].sides[0].n and c.books[b].sides[1].n:
            assert best[0] < best[1], f"book {c.books[b].instrument} crossed at rest"
    assert seen_orders == c.n_ids, f"{c.n_ids} ids indexed, {seen_orders} orders in books"
    assert seen_levels == c.live_levels, "live level count"
    for slot in range(c.id_mask + 1):
        h = c.ids[slot]
        if h >= 0:
            filled += 1
            assert h < c.order_hwm and c.orders[h].id != 0, "id slot points astray"
            assert c.orders[h].level >= 0, f"order {c.orders[h].id} indexed but not in a book"
            assert ids_get(c, c.orders[h].id) == h, f"order {c.orders[h].id}: id slot off its probe run"
        else:
            assert h == -1, "id slot holds a negative handle other than -1"
    assert filled == <uint64_t>c.n_ids, "id table occupancy"
    assert icebergs == c.live_ices, f"{c.live_ices} iceberg slots live, {icebergs} icebergs in books"
    i = c.ice_free
    while i >= 0:
        assert i < c.ice_hwm and c.ices[i].visible == -1, "iceberg free list holds a live slot"
        free_ices += 1
        assert free_ices <= c.ice_hwm, "cycle in the iceberg free list"
        i = <int32_t>c.ices[i].display_qty
    assert free_ices + c.live_ices == c.ice_hwm, "iceberg slots leaked"
    check_time(c)
    assert c.n_accounts >= 1 and c.accounts[0] == 0, "account index 0 is not account 0"
    for a in range(1, c.n_accounts):
        assert c.accounts[a] != 0 and account_find(c, c.accounts[a]) == a, \
            f"account map disagrees for {c.accounts[a]}"
    h = c.order_free
    while h >= 0:
        assert 0 <= h < c.order_hwm and c.orders[h].level == -1, "free list holds a live slot"
        assert c.orders[h].ice == -1, "free order slot keeps an iceberg slot"
        free_orders += 1
        assert free_orders <= c.order_hwm, "cycle in the order free list"
        h = c.orders[h].next
    assert free_orders + c.n_ids == c.order_hwm, "order slots leaked"
    h = c.level_free
    while h >= 0:
        assert 0 <= h < c.level_hwm and c.levels[h].book == -1, "free list holds a live level"
        free_levels += 1
        assert free_levels <= c.level_hwm, "cycle in the level free list"
        h = c.levels[h].count
    assert free_levels + c.live_levels == c.level_hwm, "level slots leaked"
    return 0
