# Included by _engine.pyx.  The commands of time and stops (issue 19), and
# core_apply, which runs every command: time first (expiries due at the
# command's ts come before its own events), then the command, then the stops
# its trade prints reach (semantics.md "Time and expiry", "Stops").


# --- instrument rules -------------------------------------------------------------

cdef uint8_t price_reason(const book_t *bk, price_t price) noexcept nogil:
    # A limit price against the tick and the band (band ticks around the last
    # print, or the reference price before any print; no reference: no band).
    cdef price_t ref, diff
    if bk.tick > 1 and price % bk.tick != 0:
        return R_BAD_TICK
    if bk.band > 0:
        ref = bk.last_price if bk.last_price else bk.ref_price
        diff = price - ref if price > ref else ref - price
        # diff > band * tick, without the product (it could overflow int64)
        if ref and diff > 0 and (diff - 1) // bk.tick >= bk.band:
            return R_PRICE_BAND
    return 0


cdef uint8_t qty_reason(const book_t *bk, qty_t qty) noexcept nogil:
    if bk.lot > 1 and qty % bk.lot != 0:
        return R_BAD_LOT
    if (bk.min_qty and qty < bk.min_qty) or (bk.max_qty and qty > bk.max_qty):
        return R_QTY_LIMIT
    return 0


cdef uint8_t rules_reason(const book_t *bk, bint has_limit, price_t price, bint stop,
                          price_t stop_price, qty_t qty) noexcept nogil:
    # A new order against its instrument's rules: bad_tick, bad_lot, qty_limit, price_band,
    # in that order (the tick of every price first).
    if bk.tick > 1 and ((has_limit and price % bk.tick != 0) or (stop and stop_price % bk.tick != 0)):
        return R_BAD_TICK
    if qty_reason(bk, qty):
        return qty_reason(bk, qty)
    if has_limit:
        return price_reason(bk, price)
    return 0


cdef uint8_t replace_rules_reason(const book_t *bk, const command_t *cmd) noexcept nogil:
    # A replace's new values against the rules (a qty of 0 cancels: never refused by them).
    cdef uint8_t reason = 0
    if bk.tick > 1 and (((cmd.flags & F_HAS_PRICE) and cmd.price % bk.tick != 0)
                        or ((cmd.flags & F_HAS_STOP_PRICE) and cmd.stop_price % bk.tick != 0)):
        return R_BAD_TICK
    if (cmd.flags & F_HAS_QTY) and cmd.qty > 0:
        reason = qty_reason(bk, cmd.qty)
        if reason:
            return reason
    if cmd.flags & F_HAS_PRICE:
        return price_reason(bk, cmd.price)
    return 0


cdef int do_instrument(core_t *c, const command_t *cmd) noexcept nogil:
    # Set (replace) an instrument's rules; fields as codes.COMMAND_DTYPE's comment maps them.
    cdef int32_t b
    cdef book_t *bk
    cdef int64_t lot = <int64_t>cmd.account
    if (cmd.flags & F_OUT_OF_RANGE or cmd.stop_price < 0 or cmd.stop_price > MAX_PRICE
            or lot < 0 or lot > MAX_QTY or cmd.display_qty < 0 or cmd.display_qty > MAX_QTY
            or cmd.qty < 0 or cmd.qty > MAX_QTY or cmd.expire_ts < 0 or cmd.expire_ts > MAX_PRICE
            or cmd.price < 0 or cmd.price > MAX_PRICE):
        return reject(c, cmd, R_OUT_OF_RANGE)
    b = insts_get(c, cmd.instrument)
    if b < 0:
        b = book_create(c, cmd.instrument)
        if b < 0:
            return 0
    bk = &c.books[b]
    bk.tick = cmd.stop_price if cmd.stop_price > 0 else 1
    bk.lot = lot if lot > 0 else 1
    bk.min_qty = cmd.display_qty
    bk.max_qty = cmd.qty
    bk.band = cmd.expire_ts
    bk.ref_price = cmd.price
    bk.has_rules = 1
    return 0


cdef void expire_one(core_t *c, const timed_t *t) noexcept nogil:
    # Cancel (reason expired) the order or stop of heap entry t; this removes the entry.
    cdef int32_t ref = t.ref
    cdef handle_t h
    cdef stop_t *st
    if t.kind == 0:
        h = ref
        emit(c, EV_CANCELLED, R_EXPIRED, c.books[order_book(c, h)].instrument, c.orders[h].id,
             0, 0, 0, c.orders[h].open, 0)
        book_unlink(c, h)
        order_release(c, h)
    else:
        st = &c.stops[ref]
        emit(c, EV_CANCELLED, R_EXPIRED, c.books[st.book].instrument, st.id, 0, 0, 0, st.qty, 0)
        stop_release(c, ref)


cdef void expire_due(core_t *c) noexcept nogil:
    # Every GTD order or stop with expire_ts <= now, by (expire_ts, seq).
    while c.n_timed > 0 and c.timed[0].expire_ts <= c.now:
        expire_one(c, &c.timed[0])


cdef int do_end_of_day(core_t *c, const command_t *cmd) noexcept nogil:
    # Every DAY order and stop of the instrument expires, in acceptance order.
    cdef int32_t b, n = 0, i, j
    cdef timed_t *day
    cdef timed_t t
    if cmd.flags & F_OUT_OF_RANGE:
        return reject(c, cmd, R_OUT_OF_RANGE)
    b = insts_get(c, cmd.instrument)
    if b < 0 or c.n_timed == 0:
        return 0
    day = <timed_t *>malloc(<size_t>c.n_timed * sizeof(timed_t))
    if day == NULL:
        c.oom = 1
        return 0
    for i in range(c.n_timed):
        t = c.timed[i]
        if t.tif != TIF_DAY:
            continue
        if (order_book(c, t.ref) if t.kind == 0 else c.stops[t.ref].book) != b:
            continue
        j = n
        while j > 0 and day[j - 1].seq > t.seq:
            day[j] = day[j - 1]
            j -= 1
        day[j] = t
        n += 1
    for i in range(n):
        # Handles and stop indices stay valid until their own entry goes.
        expire_one(c, &c.timed[c.stops[day[i].ref].heap if day[i].kind else c.tpos[day[i].ref]])
    free(day)
    return 0


cdef int stop_accept(core_t *c, int32_t b, const command_t *cmd) noexcept nogil:
    # File an accepted stop / stop-limit order: it waits outside the book.
    cdef int32_t s = stop_alloc(c, cmd.id)
    cdef stop_t *st
    if s < 0:
        return 0
    st = &c.stops[s]
    st.account = cmd.account
    st.price = cmd.price if cmd.type == TYPE_STOP_LIMIT else 0
    st.qty = cmd.qty
    st.display_qty = cmd.display_qty
    st.stop_price = cmd.stop_price
    st.expire_ts = cmd.expire_ts
    st.seq = c.commands
    st.book = b
    st.side = cmd.side
    st.type = cmd.type
    st.tif = cmd.tif
    st.stp = cmd.stp
    stop_enter(c, s)
    return 0


cdef bint stop_cancel(core_t *c, const command_t *cmd) noexcept nogil:
    # A cancel of a waiting stop: done (True), or not a stop of that instrument.
    cdef int32_t s = stop_find(c, cmd.id)
    if s < 0 or c.books[c.stops[s].book].instrument != cmd.instrument:
        return False
    emit(c, EV_CANCELLED, R_USER, cmd.instrument, cmd.id, 0, 0, 0, c.stops[s].qty, 0)
    stop_release(c, s)
    return True


cdef int stop_replace(core_t *c, const command_t *cmd, int32_t s) noexcept nogil:
    # Replace a waiting stop: new limit price, qty and/or stop price; it cannot trade now.
    cdef bint has_price = (cmd.flags & F_HAS_PRICE) != 0
    cdef bint has_qty = (cmd.flags & F_HAS_QTY) != 0
    cdef bint has_stop = (cmd.flags & F_HAS_STOP_PRICE) != 0
    cdef stop_t *st = &c.stops[s]
    cdef price_t p, sp
    cdef qty_t q
    cdef uint8_t reason
    cdef int32_t r
    if has_qty and cmd.qty < 0:
        return reject(c, cmd, R_INVALID_QTY)
    if has_price and st.type == TYPE_STOP:
        return reject(c, cmd, R_PRICE_ON_MARKET)
    if has_price and cmd.price < 1:
        return reject(c, cmd, R_INVALID_PRICE)
    if has_stop and cmd.stop_price < 1:
        return reject(c, cmd, R_INVALID_STOP)
    if c.books[st.book].has_rules:
        reason = replace_rules_reason(&c.books[st.book], cmd)
        if reason:
            return reject(c, cmd, reason)
    if c.n_risk and has_qty and cmd.qty > st.qty:
        r = risk_by_account(c, st.account)
        if r >= 0 and risk_breach(c, r, st.book, st.side, cmd.qty - st.qty, cmd.qty):
            return reject(c, cmd, R_RISK_LIMIT)
    q = cmd.qty if has_qty else st.qty
    if q == 0:
        emit(c, EV_CANCELLED, R_USER, cmd.instrument, cmd.id, 0, 0, 0, st.qty, 0)
        stop_release(c, s)
        return 0
    p = cmd.price if has_price else st.price
    sp = cmd.stop_price if has_stop else st.stop_price
    emit(c, EV_REPLACED, 0, cmd.instrument, cmd.id, 0, p, q, 0, 0)
    if p != st.price or sp != st.stop_price or q > st.qty:
        # To the back of the trigger order: out of the book's array and heap, in again.
        if c.n_risk:
            risk_open(c, risk_by_account(c, st.account), -st.qty)
        stop_side_remove(c, s)
        if st.heap >= 0:
            timed_remove(c, st.heap)
            st = &c.stops[s]
            st.heap = -1
        st.price = p
        st.stop_price = sp
        st.qty = q
        st.seq = c.commands
        if st.display_qty > q:
            st.display_qty = q
        stop_enter(c, s)
        return 0
    if c.n_risk:
        risk_open(c, risk_by_account(c, st.account), q - st.qty)
    st.qty = q
    if st.display_qty > q:
        st.display_qty = q
    return 0


cdef void mass_cancel_stops(core_t *c, int32_t b, bint by_account, account_t account) noexcept nogil:
    # After book b's resting orders: its waiting stops, in acceptance order.
    cdef int32_t *order = <int32_t *>malloc(<size_t>c.n_stops * sizeof(int32_t))
    cdef int32_t n, i, s
    if order == NULL:
        c.oom = 1
        return
    n = book_stops_by_seq(c, b, order)
    for i in range(n):
        s = order[i]
        if not by_account or c.stops[s].account == account:
            emit(c, EV_CANCELLED, R_MASS_CANCEL, c.books[b].instrument, c.stops[s].id,
                 0, 0, 0, c.stops[s].qty, 0)
            stop_release(c, s)
    free(order)


cdef int32_t next_triggered(const core_t *c, int32_t b) noexcept nogil:
    # The waiting stop of book b reached by the command's prints (lo .. hi)
    # that was accepted first, or -1.  Each side's reached stops are a prefix.
    cdef const stop_side_t *buys = &c.books[b].stops[SIDE_BUY]
    cdef const stop_side_t *sells = &c.books[b].stops[SIDE_SELL]
    cdef int32_t i, s, best = -1
    i = 0
    while i < buys.n and buys.keys[i] <= c.pr_hi:
        s = buys.idx[i]
        if best < 0 or c.stops[s].seq < c.stops[best].seq:
            best = s
        i += 1
    i = 0
    while i < sells.n and sells.keys[i] <= -c.pr_lo:
        s = sells.idx[i]
        if best < 0 or c.stops[s].seq < c.stops[best].seq:
            best = s
        i += 1
    return best


cdef void scan_prints(core_t *c, int64_t start) noexcept nogil:
    # Widen the command's print range (book, lo .. hi) by the trades among
    # events start ..: read back from the events, so matching itself pays
    # nothing for stops.  A command's trades are all in one book.
    cdef int64_t i
    cdef const event_t *e
    for i in range(start, c.n_events):
        e = &c.events[i]
        if e.kind != EV_TRADE:
            continue
        if c.pr_book < 0:
            c.pr_book = insts_get(c, e.instrument)
            c.pr_lo = e.price
            c.pr_hi = e.price
        elif e.price < c.pr_lo:
            c.pr_lo = e.price
        elif e.price > c.pr_hi:
            c.pr_hi = e.price


cdef void trigger_stops(core_t *c) noexcept nogil:
    # Triggered stops enter one by one, each after its `triggered` event, as
    # aggressors; their own prints widen lo .. hi and may reach more.
    cdef int32_t b = c.pr_book
    cdef int64_t mark
    cdef int32_t s
    cdef stop_t st
    cdef bint market, stopped
    cdef uint32_t acct
    cdef qty_t q
    cdef instrument_t inst = c.books[b].instrument
    while not c.oom:
        s = next_triggered(c, b)
        if s < 0:
            return
        st = c.stops[s]
        stop_release(c, s)
        emit(c, EV_TRIGGERED, 0, inst, st.id, 0, st.stop_price, st.qty, 0, 0)
        mark = c.n_events
        market = st.type == TYPE_STOP
        acct = account_find(c, st.account) if st.stp != STP_NONE else 0
        q = match(c, b, st.side, market, st.price, st.id, acct, st.stp, st.qty, &stopped, st.account)
        scan_prints(c, mark)
        if stopped or q == 0:
            continue
        if market or not resting_tif(st.tif):
            emit(c, EV_CANCELLED, R_REMAINDER, inst, st.id, 0, 0, 0, q, 0)
            continue
        rest_new(c, b, st.id, st.account, acct, st.price, q, st.display_qty, st.side, st.stp,
                 False, st.tif, st.expire_ts, st.seq)


cdef void core_apply(core_t *c, const command_t *cmd, uint64_t index) noexcept nogil:
    # One command: its events are appended to c.events and folded into the
    # running digest by emit(); the command's event count closes it.
    cdef int64_t start = c.n_events
    c.cur_cmd = index
    # Time first, whatever the command: expiries its ts makes due come before its events.
    if cmd.ts > c.now:
        c.now = cmd.ts
    if c.n_timed > 0 and c.timed[0].expire_ts <= c.now:
        expire_due(c)
    if cmd.op > OP_RISK:
        reject(c, cmd, R_INVALID_OP)
    elif cmd.flags & F_BAD_FIELD:
        reject(c, cmd, R_BAD_FIELD)
    elif cmd.op == OP_NEW:
        do_new(c, cmd)
    elif cmd.op == OP_CANCEL:
        do_cancel(c, cmd)
    elif cmd.op == OP_REPLACE:
        do_replace(c, cmd)
    elif cmd.op == OP_MASS_CANCEL:
        do_mass_cancel(c, cmd)
    elif cmd.op == OP_TIME:
        if cmd.flags & F_OUT_OF_RANGE:
            reject(c, cmd, R_OUT_OF_RANGE)
    elif cmd.op == OP_END_OF_DAY:
        do_end_of_day(c, cmd)
    elif cmd.op == OP_INSTRUMENT:
        do_instrument(c, cmd)
    else:
        do_risk(c, cmd)
    if c.n_stops > 0 and (cmd.op == OP_NEW or cmd.op == OP_REPLACE):
        c.pr_book = -1
        scan_prints(c, start)
        if c.pr_book >= 0:
            trigger_stops(c)
    c.digest = absorb(c.digest, <uint64_t>(c.n_events - start))
    c.commands += 1
