# Included by _engine.pyx.  Per-account risk limits (the `risk` command, issue 19):
# max open qty (resting orders and waiting stops) and max absolute position per
# instrument from fills since the account's first `risk` command.  Nothing here
# runs unless some account has limits (core.n_risk > 0): the hooks in the book,
# matching and stop code test that first.


cdef inline int32_t risk_by_index(const core_t *c, uint32_t acct) noexcept nogil:
    cdef int32_t r
    for r in range(c.n_risk):
        if c.risks[r].acct == acct:
            return r
    return -1


cdef inline int32_t risk_by_account(const core_t *c, account_t account) noexcept nogil:
    cdef int32_t r
    for r in range(c.n_risk):
        if c.risks[r].account == account:
            return r
    return -1


cdef inline void risk_open(core_t *c, int32_t r, qty_t delta) noexcept nogil:
    if r >= 0:
        c.risks[r].open += delta


cdef qty_t risk_position(const core_t *c, int32_t r, int32_t b) noexcept nogil:
    cdef int32_t i
    for i in range(c.risks[r].n_pos):
        if c.risks[r].pos_book[i] == b:
            return c.risks[r].pos[i]
    return 0


cdef void risk_move(core_t *c, int32_t r, int32_t b, qty_t delta) noexcept nogil:
    # Position of risk account r in book b += delta.
    cdef risk_t *k
    cdef int32_t i, cap
    cdef int32_t *nb
    cdef qty_t *npos
    if r < 0:
        return
    k = &c.risks[r]
    for i in range(k.n_pos):
        if k.pos_book[i] == b:
            k.pos[i] += delta
            return
    if k.n_pos == k.pos_cap:
        cap = k.pos_cap * 2 if k.pos_cap else 8
        nb = <int32_t *>realloc(k.pos_book, <size_t>cap * sizeof(int32_t))
        if nb == NULL:
            c.oom = 1
            return
        k.pos_book = nb
        npos = <qty_t *>realloc(k.pos, <size_t>cap * sizeof(qty_t))
        if npos == NULL:
            c.oom = 1
            return
        k.pos = npos
        k.pos_cap = cap
    k.pos_book[k.n_pos] = b
    k.pos[k.n_pos] = delta
    k.n_pos += 1


cdef void risk_fill(core_t *c, int32_t b, uint8_t taker_side, account_t taker, uint32_t maker,
                    qty_t t) noexcept nogil:
    # One trade of t: the maker's open qty drops; both positions move.
    cdef int32_t r = risk_by_index(c, maker)
    risk_open(c, r, -t)
    risk_move(c, r, b, t if taker_side == SIDE_SELL else -t)
    risk_move(c, risk_by_account(c, taker), b, t if taker_side == SIDE_BUY else -t)


cdef bint risk_breach(const core_t *c, int32_t r, int32_t b, uint8_t side, qty_t more_open,
                      qty_t qty) noexcept nogil:
    # Could an order of qty (adding more_open to the open qty) breach account r's limits?
    cdef const risk_t *k = &c.risks[r]
    cdef qty_t pos
    if k.max_open and k.open + more_open > k.max_open:
        return True
    if k.max_position:
        pos = risk_position(c, r, b) if b >= 0 else 0
        pos = pos + qty if side == SIDE_BUY else pos - qty
        if pos > k.max_position or -pos > k.max_position:
            return True
    return False


cdef qty_t account_open(const core_t *c, uint32_t acct, account_t account) noexcept nogil:
    # The open qty of an account's resting orders and waiting stops, counted afresh. O(orders).
    cdef qty_t total = 0
    cdef handle_t h
    cdef int32_t s
    for h in range(c.order_hwm):
        if c.orders[h].id != 0 and c.orders[h].level >= 0 and c.orders[h].account == acct:
            total += c.orders[h].open
    for s in range(c.stop_hwm):
        if c.stops[s].id != 0 and c.stops[s].account == account:
            total += c.stops[s].qty
    return total


cdef int32_t risk_add(core_t *c, account_t account) noexcept nogil:
    # A risk entry for an account (interned), its open qty counted now, no position yet.
    cdef uint32_t acct = account_intern(c, account)
    cdef int32_t cap
    cdef risk_t *grown
    cdef risk_t *k
    if acct == NO_ACCOUNT:
        return -1
    if c.n_risk == c.risk_cap:
        cap = c.risk_cap * 2 if c.risk_cap else 8
        grown = <risk_t *>realloc(c.risks, <size_t>cap * sizeof(risk_t))
        if grown == NULL:
            c.oom = 1
            return -1
        c.risks = grown
        c.risk_cap = cap
    k = &c.risks[c.n_risk]
    memset(k, 0, sizeof(risk_t))
    k.account = account
    k.acct = acct
    k.open = account_open(c, acct, account)
    c.n_risk += 1
    return c.n_risk - 1


cdef int do_risk(core_t *c, const command_t *cmd) noexcept nogil:
    # Set (replace) an account's limits; the fields as codes.COMMAND_DTYPE's comment maps them.
    cdef int32_t r
    if (cmd.flags & F_OUT_OF_RANGE or cmd.qty < 0 or cmd.qty > MAX_QTY
            or cmd.display_qty < 0 or cmd.display_qty > MAX_QTY):
        return reject(c, cmd, R_OUT_OF_RANGE)
    r = risk_by_account(c, cmd.account)
    if r < 0:
        r = risk_add(c, cmd.account)
        if r < 0:
            return 0
    c.risks[r].max_open = cmd.qty
    c.risks[r].max_position = cmd.display_qty
    return 0


cdef void risk_free(core_t *c) noexcept nogil:
    cdef int32_t r
    for r in range(c.n_risk):
        free(c.risks[r].pos_book)
        free(c.risks[r].pos)
    free(c.risks)


cdef uint64_t risk_digest(core_t *c, uint64_t h) noexcept nogil:
    # Book digest part: each risk account by account ascending: account, limits, then its
    # non-zero positions by instrument ascending (instrument, position) and their count.
    cdef int32_t i, j, r, n, done = 0
    cdef account_t last = 0
    cdef bint first = True
    cdef int32_t best
    cdef instrument_t inst, prev_inst
    cdef qty_t p
    while done < c.n_risk:
        best = -1
        for r in range(c.n_risk):
            if (first or c.risks[r].account > last) and (
                best < 0 or c.risks[r].account < c.risks[best].account
            ):
                best = r
        first = False
        last = c.risks[best].account
        done += 1
        h = absorb(h, c.risks[best].account)
        h = absorb(h, <uint64_t>c.risks[best].max_open)
        h = absorb(h, <uint64_t>c.risks[best].max_position)
        n = 0
        prev_inst = 0
        j = 0
        while True:  # positions by instrument ascending (a selection: accounts trade few instruments)
            r = -1
            for i in range(c.risks[best].n_pos):
                if c.risks[best].pos[i] == 0:
                    continue
                inst = c.books[c.risks[best].pos_book[i]].instrument
                if (j == 0 or inst > prev_inst) and (
                    r < 0 or inst < c.books[c.risks[best].pos_book[r]].instrument
                ):
                    r = i
            if r < 0:
                break
            prev_inst = c.books[c.risks[best].pos_book[r]].instrument
            p = c.risks[best].pos[r]
            h = absorb(h, prev_inst)
            h = absorb(h, <uint64_t>p)
            n += 1
            j += 1
        h = absorb(h, <uint64_t>n)
    return h
