# Included by _engine.pyx.  The command layer: validation in the order of
# docs/semantics.md, matching, replace, cancel, mass cancel, and the event
# digest.  Everything runs without the GIL; bad input becomes a `rejected`
# event, never an exception.

cdef price_t MAX_PRICE = <price_t>1 << 62
cdef qty_t MAX_QTY = <qty_t>1000000000000


# --- events -----------------------------------------------------------------------

cdef int events_reserve(core_t *c, int64_t extra) noexcept nogil:
    cdef int64_t cap
    cdef event_t *grown
    if c.n_events + extra <= c.event_cap:
        return 0
    cap = c.event_cap * 2 if c.event_cap else 64
    while cap < c.n_events + extra:
        cap *= 2
    grown = <event_t *>realloc(c.events, <size_t>cap * sizeof(event_t))
    if grown == NULL:
        c.oom = 1
        return -1
    c.events = grown
    c.event_cap = cap
    mc_hint_huge(grown, <size_t>cap * sizeof(event_t))
    return 0


cdef inline void emit(core_t *c, uint8_t kind, uint8_t reason, instrument_t inst,
                      order_id_t oid, order_id_t maker, price_t price, qty_t qty,
                      qty_t open_a, qty_t open_b) noexcept nogil:
    # Writes the event and folds its nine words into the running digest
    # (semantics.md, "Digests") straight from the arguments: once inlined,
    # the constant words of most events cost nothing to prepare.
    cdef event_t *e
    cdef uint64_t h
    if c.n_events == c.event_cap and events_reserve(c, 1) != 0:
        return
    e = &c.events[c.n_events]
    c.n_events += 1
    e.cmd = c.cur_cmd
    e.id = oid
    e.maker = maker
    e.price = price
    e.qty = qty
    e.open_a = open_a
    e.open_b = open_b
    e.instrument = inst
    e.kind = kind
    e.reason = reason
    e._pad[0] = 0
    e._pad[1] = 0
    h = absorb(c.digest, kind)
    h = absorb(h, reason)
    h = absorb(h, inst)
    h = absorb(h, oid)
    h = absorb(h, maker)
    h = absorb(h, <uint64_t>price)
    h = absorb(h, <uint64_t>qty)
    h = absorb(h, <uint64_t>open_a)
    c.digest = absorb(h, <uint64_t>open_b)


cdef inline int reject(core_t *c, const command_t *cmd, uint8_t reason) noexcept nogil:
    emit(c, EV_REJECTED, reason, cmd.instrument, cmd.id, 0, 0, 0, 0, 0)
    return 0


# --- lookups ------------------------------------------------------------------------

cdef inline int32_t order_book(const core_t *c, handle_t h) noexcept nogil:
    return c.levels[c.orders[h].level].book


cdef inline handle_t find_live(const core_t *c, instrument_t inst, order_id_t oid) noexcept nogil:
    # Handle of live order `oid` if it rests in `inst`, else -1.
    cdef handle_t h = ids_get(c, oid)
    if h >= 0 and c.books[order_book(c, h)].instrument != inst:
        return -1
    return h


cdef inline bint would_cross(const core_t *c, int32_t b, uint8_t side, price_t price) noexcept nogil:
    cdef const side_t *opp
    cdef price_t best
    if b < 0:
        return False
    opp = &c.books[b].sides[1 - side]
    if opp.n == 0:
        return False
    best = c.levels[opp.levels[opp.n - 1]].price
    return best <= price if side == SIDE_BUY else best >= price


cdef bint fok_fillable(const core_t *c, int32_t b, uint8_t side, bint market, price_t limit,
                       uint32_t acct, uint8_t stp, qty_t qty) noexcept nogil:
    # The walk of semantics.md, before anything changes: per level, either
    # the visible qty ahead of a self-trade maker that would stop matching,
    # or every (non-self) maker's whole open qty, hidden included.  acct is
    # the taker's interned account index (NO_ACCOUNT matches no maker).
    cdef const side_t *opp
    cdef const level_t *L
    cdef const order_t *o
    cdef int32_t i
    cdef handle_t h
    cdef qty_t ahead
    cdef bint stp_on = acct != 0 and stp != STP_NONE
    cdef bint stops = stp_on and stp != STP_CANCEL_MAKER
    if b < 0:
        return False
    opp = &c.books[b].sides[1 - side]
    i = opp.n - 1
    while i >= 0:
        L = &c.levels[opp.levels[i]]
        if not market and (L.price > limit if side == SIDE_BUY else L.price < limit):
            return False
        if stops:
            ahead = 0
            h = L.head
            while h >= 0:
                o = &c.orders[h]
                if o.account == acct:
                    # Icebergs ahead refill behind this maker: visible only.
                    return ahead >= qty
                ahead += order_visible(c, o)
                h = o.next
        h = L.head
        while h >= 0:
            o = &c.orders[h]
            if not (stp_on and o.account == acct):
                qty -= o.open
            h = o.next
        if qty <= 0:
            return True
        i -= 1
    return False


# --- matching -------------------------------------------------------------------------

cdef qty_t match(core_t *c, int32_t b, uint8_t side, bint market, price_t limit,
                 order_id_t tid, uint32_t acct, uint8_t stp, qty_t q,
                 bint *stopped, account_t taker_account) noexcept nogil:
    # Trade taker `tid` (q open, account index acct) against book b's
    # opposite side; returns what is left.  *stopped is set when self-trade prevention cancelled
    # the taker (its cancel event is already out).  Nothing allocates here,
    # so level_t/order_t pointers stay valid while their slot lives.
    cdef side_t *opp = &c.books[b].sides[1 - side]
    cdef instrument_t inst = c.books[b].instrument
    cdef bint stp_on = acct != 0 and stp != STP_NONE
    cdef level_t *L
    cdef order_t *o
    cdef handle_t h
    cdef price_t px
    cdef qty_t t, vis
    cdef ice_t *ic
    cdef bint last
    stopped[0] = False
    while q > 0 and opp.n > 0:
        L = &c.levels[opp.levels[opp.n - 1]]
        px = L.price
        if not market and (px > limit if side == SIDE_BUY else px < limit):
            break
        while True:
            # Every maker we touch is at the head: it is either consumed,
            # cancelled, moved to the back (iceberg), or the taker is done.
            h = L.head
            o = &c.orders[h]
            if stp_on and o.account == acct:
                if stp == STP_CANCEL_TAKER:
                    emit(c, EV_CANCELLED, R_SELF_TRADE, inst, tid, 0, 0, 0, q, 0)
                    stopped[0] = True
                    return 0
                last = L.count == 1
                emit(c, EV_CANCELLED, R_SELF_TRADE, inst, o.id, 0, 0, 0, o.open, 0)
                book_unlink(c, h)
                order_release(c, h)
                if stp == STP_CANCEL_BOTH:
                    emit(c, EV_CANCELLED, R_SELF_TRADE, inst, tid, 0, 0, 0, q, 0)
                    stopped[0] = True
                    return 0
                if last:
                    break
                continue
            vis = o.open if o.ice < 0 else c.ices[o.ice].visible
            t = q if q < vis else vis
            q -= t
            o.open -= t
            vis -= t
            L.total -= t
            if o.ice >= 0:
                c.ices[o.ice].visible = vis
            emit(c, EV_TRADE, 0, inst, tid, o.id, px, t, q, o.open)
            c.books[b].last_price = px
            if c.n_risk:
                risk_fill(c, b, side, taker_account, o.account, t)
            if vis == 0:
                if o.open > 0:
                    # Iceberg refill: a new visible slice, at the back.
                    ic = &c.ices[o.ice]
                    ic.visible = ic.display_qty if ic.display_qty < o.open else o.open
                    L.total += ic.visible
                    level_to_back(c, h)
                else:
                    last = L.count == 1
                    book_unlink(c, h)
                    order_release(c, h)
                    if last:
                        break
            if q == 0:
                break
    return q


cdef int rest(core_t *c, int32_t b, handle_t h, qty_t q) noexcept nogil:
    # Put order h (all fields but open/visible set) into the book with q open.
    cdef order_t *o = &c.orders[h]
    cdef ice_t *ic
    o.open = q
    if o.ice >= 0:
        ic = &c.ices[o.ice]
        ic.visible = ic.display_qty if ic.display_qty < q else q
    return book_append(c, b, h)


# --- commands ------------------------------------------------------------------------

cdef inline bint resting_tif(uint8_t tif) noexcept nogil:
    return tif == TIF_GTC or tif == TIF_DAY or tif == TIF_GTD


cdef int do_new(core_t *c, const command_t *cmd) noexcept nogil:
    cdef bint market = cmd.type == TYPE_MARKET or cmd.type == TYPE_STOP
    cdef bint stop = cmd.type >= TYPE_STOP
    cdef bint post_only = cmd.post_only != 0
    cdef int32_t b
    cdef qty_t q
    cdef bint stopped
    cdef uint32_t acct = 0
    cdef uint8_t reason
    cdef int32_t r
    if cmd.side > SIDE_SELL:
        return reject(c, cmd, R_INVALID_SIDE)
    if cmd.type > TYPE_STOP_LIMIT:
        return reject(c, cmd, R_INVALID_TYPE)
    if cmd.tif > TIF_GTD:
        return reject(c, cmd, R_INVALID_TIF)
    if cmd.stp > STP_CANCEL_BOTH:
        return reject(c, cmd, R_INVALID_STP)
    if (cmd.flags & F_OUT_OF_RANGE or cmd.price > MAX_PRICE or cmd.qty > MAX_QTY
            or cmd.display_qty > MAX_QTY or cmd.stop_price > MAX_PRICE):
        return reject(c, cmd, R_OUT_OF_RANGE)
    if cmd.id == 0:
        return reject(c, cmd, R_INVALID_ID)
    if cmd.qty < 1:
        return reject(c, cmd, R_INVALID_QTY)
    if not market:
        if not (cmd.flags & F_HAS_PRICE) or cmd.price < 1:
            return reject(c, cmd, R_INVALID_PRICE)
    elif cmd.flags & F_HAS_PRICE:
        return reject(c, cmd, R_PRICE_ON_MARKET)
    if cmd.display_qty < 0 or cmd.display_qty > cmd.qty:
        return reject(c, cmd, R_INVALID_DISPLAY)
    if post_only and (cmd.type != TYPE_LIMIT or not resting_tif(cmd.tif)):
        return reject(c, cmd, R_INVALID_COMBINATION)
    if stop or (cmd.stop_price | cmd.expire_ts) != 0 or cmd.tif == TIF_GTD:
        # Stops and expiry (one branch, not taken by a plain order).
        if stop and cmd.tif == TIF_FOK:
            return reject(c, cmd, R_INVALID_COMBINATION)
        if (cmd.stop_price < 1) if stop else (cmd.stop_price != 0):
            return reject(c, cmd, R_INVALID_STOP)
        if (cmd.expire_ts <= c.now) if cmd.tif == TIF_GTD else (cmd.expire_ts != 0):
            return reject(c, cmd, R_INVALID_EXPIRY)
    b = insts_get(c, cmd.instrument)
    if b >= 0 and c.books[b].has_rules:
        reason = rules_reason(&c.books[b], not market, cmd.price, stop, cmd.stop_price, cmd.qty)
        if reason:
            return reject(c, cmd, reason)
    if c.n_risk:
        r = risk_by_account(c, cmd.account)
        if r >= 0 and risk_breach(c, r, b, cmd.side, cmd.qty, cmd.qty):
            return reject(c, cmd, R_RISK_LIMIT)
    if ids_get(c, cmd.id) >= 0 or stop_find(c, cmd.id) >= 0:
        return reject(c, cmd, R_DUPLICATE_ID)
    if post_only and would_cross(c, b, cmd.side, cmd.price):
        return reject(c, cmd, R_WOULD_CROSS)
    if cmd.stp != STP_NONE:
        # Only self-trade prevention compares accounts while matching.
        acct = account_find(c, cmd.account)
    if cmd.tif == TIF_FOK and not fok_fillable(c, b, cmd.side, market, cmd.price,
                                               acct, cmd.stp, cmd.qty):
        return reject(c, cmd, R_FOK_UNFILLED)

    emit(c, EV_ACCEPTED, 0, cmd.instrument, cmd.id, 0, 0, 0, 0, 0)
    if b < 0:
        b = book_create(c, cmd.instrument)
        if b < 0:
            return 0
    if stop:
        return stop_accept(c, b, cmd)
    q = match(c, b, cmd.side, market, cmd.price, cmd.id, acct, cmd.stp, cmd.qty, &stopped, cmd.account)
    if stopped or q == 0:
        return 0
    if market or not resting_tif(cmd.tif):
        emit(c, EV_CANCELLED, R_REMAINDER, cmd.instrument, cmd.id, 0, 0, 0, q, 0)
        return 0
    return rest_new(c, b, cmd.id, cmd.account, acct, cmd.price, q, cmd.display_qty, cmd.side,
                    cmd.stp, post_only, cmd.tif, cmd.expire_ts, c.commands)


cdef inline int rest_new(core_t *c, int32_t b, order_id_t oid, account_t account, uint32_t acct,
                         price_t price, qty_t q, qty_t display_qty, uint8_t side, uint8_t stp,
                         bint post_only, uint8_t tif, int64_t expire_ts, uint64_t seq) noexcept nogil:
    # Rest a new order's remainder q (acct: its interned account if matching
    # looked it up, else anything); a DAY/GTD one also enters the expiry heap.
    cdef handle_t h
    cdef order_t *o
    if stp == STP_NONE or acct == NO_ACCOUNT:
        acct = account_intern(c, account)
        if acct == NO_ACCOUNT:
            return 0
    h = order_alloc(c)
    if h < 0:
        return 0
    o = &c.orders[h]
    o.id = oid
    o.account = acct
    o.price = price
    o.ice = -1
    o.side = side
    o.stp = stp
    o.post_only = post_only
    o.tif = TIF_GTC
    o.level = -1
    if display_qty > 0:
        o.ice = ice_alloc(c, display_qty)
        if o.ice < 0:
            return 0
    if ids_put(c, h) != 0:
        return 0
    rest(c, b, h, q)
    if tif == TIF_DAY or tif == TIF_GTD:
        if timed_push(c, expire_ts if tif == TIF_GTD else NO_EXPIRY, seq, h, 0, tif) != 0:
            return 0
        c.orders[h].tif = tif
    return 0


cdef int do_cancel(core_t *c, const command_t *cmd) noexcept nogil:
    cdef handle_t h
    if cmd.flags & F_OUT_OF_RANGE:
        return reject(c, cmd, R_OUT_OF_RANGE)
    if cmd.id == 0:
        return reject(c, cmd, R_INVALID_ID)
    if c.n_stops and stop_cancel(c, cmd):
        return 0
    h = find_live(c, cmd.instrument, cmd.id)
    if h < 0:
        return reject(c, cmd, R_UNKNOWN_ORDER)
    emit(c, EV_CANCELLED, R_USER, cmd.instrument, cmd.id, 0, 0, 0, c.orders[h].open, 0)
    book_unlink(c, h)
    order_release(c, h)


cdef int do_replace(core_t *c, const command_t *cmd) noexcept nogil:
    cdef bint has_price = (cmd.flags & F_HAS_PRICE) != 0
    cdef bint has_qty = (cmd.flags & F_HAS_QTY) != 0
    cdef bint has_stop = (cmd.flags & F_HAS_STOP_PRICE) != 0
    cdef handle_t h
    cdef order_t *o
    cdef level_t *L
    cdef int32_t b, s
    cdef price_t p
    cdef qty_t q, v, vis
    cdef bint stopped
    cdef uint8_t reason
    if (cmd.flags & F_OUT_OF_RANGE or (has_price and cmd.price > MAX_PRICE)
            or (has_qty and cmd.qty > MAX_QTY) or (has_stop and cmd.stop_price > MAX_PRICE)):
        return reject(c, cmd, R_OUT_OF_RANGE)
    if cmd.id == 0:
        return reject(c, cmd, R_INVALID_ID)
    if c.n_stops:
        s = stop_find(c, cmd.id)
        if s >= 0 and c.books[c.stops[s].book].instrument == cmd.instrument:
            return stop_replace(c, cmd, s)
    h = find_live(c, cmd.instrument, cmd.id)
    if h < 0:
        return reject(c, cmd, R_UNKNOWN_ORDER)
    if has_qty and cmd.qty < 0:
        return reject(c, cmd, R_INVALID_QTY)
    if has_price and cmd.price < 1:
        return reject(c, cmd, R_INVALID_PRICE)
    if has_stop:
        return reject(c, cmd, R_INVALID_STOP)
    o = &c.orders[h]
    b = order_book(c, h)
    if c.books[b].has_rules:
        reason = replace_rules_reason(&c.books[b], cmd)
        if reason:
            return reject(c, cmd, reason)
    if c.n_risk and has_qty and cmd.qty > o.open:
        s = risk_by_index(c, o.account)
        if s >= 0 and risk_breach(c, s, b, o.side, cmd.qty - o.open, cmd.qty):
            return reject(c, cmd, R_RISK_LIMIT)
    p = cmd.price if has_price else o.price
    q = cmd.qty if has_qty else o.open
    if q == 0:
        # A zero quantity cancels, before the post-only price is looked at.
        emit(c, EV_CANCELLED, R_USER, cmd.instrument, cmd.id, 0, 0, 0, o.open, 0)
        book_unlink(c, h)
        order_release(c, h)
        return 0
    if o.post_only and p != o.price and would_cross(c, b, o.side, p):
        return reject(c, cmd, R_WOULD_CROSS)
    emit(c, EV_REPLACED, 0, cmd.instrument, cmd.id, 0, p, q, 0, 0)
    if p == o.price and q <= o.open:
        # Same price, not larger: keeps its place in the queue.
        vis = order_visible(c, o)
        v = vis if vis < q else q
        L = &c.levels[o.level]
        L.total += v - vis
        if o.ice >= 0:
            c.ices[o.ice].visible = v
        if c.n_risk:
            risk_open(c, risk_by_index(c, o.account), q - o.open)
        o.open = q
        return 0
    # New price or more quantity: out of the queue, then in as an aggressor.
    book_unlink(c, h)
    o = &c.orders[h]
    o.price = p
    o.open = q
    q = match(c, b, o.side, False, p, o.id, o.account, o.stp, q, &stopped, c.accounts[o.account])
    if stopped or q == 0:
        order_release(c, h)
        return 0
    rest(c, b, h, q)


cdef int do_mass_cancel(core_t *c, const command_t *cmd) noexcept nogil:
    cdef bint by_account = (cmd.flags & F_HAS_ACCOUNT) != 0
    cdef int32_t k, k_end, i
    cdef int32_t b = -1
    cdef uint8_t side
    cdef side_t *s
    cdef handle_t h, nxt
    cdef order_t *o
    cdef uint32_t acct = 0
    if cmd.flags & F_OUT_OF_RANGE:
        return reject(c, cmd, R_OUT_OF_RANGE)
    if by_account:
        acct = account_find(c, cmd.account)   # NO_ACCOUNT: matches no order
    k = 0
    k_end = c.n_books
    if cmd.flags & F_HAS_INSTRUMENT:
        b = insts_get(c, cmd.instrument)
        if b < 0:
            return 0
    while k < k_end:
        if not (cmd.flags & F_HAS_INSTRUMENT):
            b = c.book_order[k]
        else:
            k_end = 0
        for side in range(2):
            s = &c.books[b].sides[side]
            # Best level first; removing level i only shifts levels above i.
            i = s.n - 1
            while i >= 0:
                h = c.levels[s.levels[i]].head
                while h >= 0:
                    o = &c.orders[h]
                    nxt = o.next
                    if not by_account or o.account == acct:
                        emit(c, EV_CANCELLED, R_MASS_CANCEL, c.books[b].instrument, o.id,
                             0, 0, 0, o.open, 0)
                        book_unlink(c, h)
                        order_release(c, h)
                    h = nxt
                i -= 1
        if c.n_stops:
            mass_cancel_stops(c, b, by_account, cmd.account)
        k += 1
