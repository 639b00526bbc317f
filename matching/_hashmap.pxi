# Included by _engine.pyx.  The C hash maps of the core:
#   id -> order handle   (every live order; the duplicate/unknown-id checks)
#   account -> index     (accounts interned for the 48-byte order slot)
#   instrument -> book   (a handful of keys; looked up once per command)
# All are open addressing with linear probing.  Ids are deleted with
# backward shift, so there are no tombstones and probe lengths never degrade
# under the constant insert/delete churn of a book.  Nothing here iterates the
# maps in a way that can reach the output, so their layout is free to differ
# between processes (e.g. after a restore).

cdef inline uint64_t mix64(uint64_t x) noexcept nogil:
    # splitmix64 finaliser; also the digest's mixing function (semantics.md).
    x ^= x >> 30
    x *= <uint64_t>0xbf58476d1ce4e5b9
    x ^= x >> 27
    x *= <uint64_t>0x94d049bb133111eb
    x ^= x >> 31
    return x


cdef inline uint64_t absorb(uint64_t h, uint64_t v) noexcept nogil:
    # mix64(h ^ v) + 0x9e37...: the digest step.  mix64's first step,
    # x ^= x >> 30, is spread over the xor ((h ^ v) >> 30 == (h >> 30) ^
    # (v >> 30)), so v's half is computed off the serial chain through h
    # (one cycle less per absorb, and none for a constant v).
    cdef uint64_t x = (h ^ (h >> 30)) ^ (v ^ (v >> 30))
    x *= <uint64_t>0xbf58476d1ce4e5b9
    x ^= x >> 27
    x *= <uint64_t>0x94d049bb133111eb
    x ^= x >> 31
    return x + <uint64_t>0x9e3779b97f4a7c15


# --- id -> order handle ---------------------------------------------------------

cdef inline uint64_t id_home(uint64_t key) noexcept nogil:
    # A full mix: clients pick ids (sequential, strided, random), so only a
    # scrambled home slot keeps linear probing short for all of them.
    # (Keeping low bits for locality was tried: blocks of ids then collide
    # as blocks and probe runs explode.)
    return mix64(key)


cdef int ids_init(core_t *c, uint64_t cap) noexcept nogil:
    # cap must be a power of two; every slot starts empty (-1)
    c.ids = <handle_t *>malloc(cap * sizeof(handle_t))
    if c.ids == NULL:
        return -1
    memset(c.ids, 0xFF, cap * sizeof(handle_t))
    c.id_mask = cap - 1
    c.n_ids = 0
    return 0


cdef inline handle_t ids_get(const core_t *c, order_id_t key) noexcept nogil:
    cdef uint64_t i = id_home(key) & c.id_mask
    cdef handle_t h
    while True:
        h = c.ids[i]
        if h < 0:
            return -1
        if c.orders[h].id == key:
            return h
        i = (i + 1) & c.id_mask


cdef int ids_grow(core_t *c) noexcept nogil:
    # Double and rehash.  Amortised O(1) per insert; never on a steady book.
    cdef handle_t *old = c.ids
    cdef uint64_t old_cap = c.id_mask + 1
    cdef uint64_t cap = old_cap * 2
    cdef handle_t *fresh = <handle_t *>malloc(cap * sizeof(handle_t))
    cdef uint64_t k, i
    if fresh == NULL:
        return -1
    memset(fresh, 0xFF, cap * sizeof(handle_t))
    for k in range(old_cap):
        if old[k] >= 0:
            i = id_home(c.orders[old[k]].id) & (cap - 1)
            while fresh[i] >= 0:
                i = (i + 1) & (cap - 1)
            fresh[i] = old[k]
    free(old)
    c.ids = fresh
    c.id_mask = cap - 1
    return 0


cdef int ids_put(core_t *c, handle_t value) noexcept nogil:
    # Index order `value` under its id (set, and known to be absent: the
    # duplicate check ran first).
    cdef uint64_t i
    # Keep the load at or below 1/2: linear probing stays short there.
    if <uint64_t>(c.n_ids + 1) * 2 > c.id_mask + 1:
        if ids_grow(c) != 0:
            c.oom = 1
            return -1
    i = id_home(c.orders[value].id) & c.id_mask
    while c.ids[i] >= 0:
        i = (i + 1) & c.id_mask
    c.ids[i] = value
    c.n_ids += 1
    return 0


cdef void ids_del(core_t *c, handle_t value) noexcept nogil:
    # Drop the slot of order `value` (its id still set).
    cdef uint64_t mask = c.id_mask
    cdef uint64_t i = id_home(c.orders[value].id) & mask
    cdef uint64_t j, home
    while c.ids[i] != value:
        if c.ids[i] < 0:
            return
        i = (i + 1) & mask
    # Backward shift: pull later members of the probe run into the hole
    # unless their home slot lies cyclically in (hole, j].
    j = i
    while True:
        j = (j + 1) & mask
        if c.ids[j] < 0:
            break
        home = id_home(c.orders[c.ids[j]].id) & mask
        if ((j - home) & mask) >= ((j - i) & mask):
            c.ids[i] = c.ids[j]
            i = j
    c.ids[i] = -1
    c.n_ids -= 1


# --- account -> interned index -----------------------------------------------
# Orders store a uint32 index; account 0 is index 0 and is never in the map.
# Entries live as long as the engine: a book has few accounts.

cdef int accounts_init(core_t *c) noexcept nogil:
    c.account_cap = 16
    c.accounts = <account_t *>malloc(c.account_cap * sizeof(account_t))
    c.acct_map = <acct_slot_t *>calloc(32, sizeof(acct_slot_t))
    if c.accounts == NULL or c.acct_map == NULL:
        return -1
    c.accounts[0] = 0
    c.n_accounts = 1
    c.acct_mask = 31
    return 0


cdef inline uint32_t account_find(const core_t *c, account_t acct) noexcept nogil:
    # Index of `acct`, 0 for account 0, NO_ACCOUNT if it was never interned.
    cdef uint64_t i
    if acct == 0:
        return 0
    i = mix64(acct) & c.acct_mask
    while True:
        if c.acct_map[i].value == 0:
            return NO_ACCOUNT
        if c.acct_map[i].key == acct:
            return c.acct_map[i].value
        i = (i + 1) & c.acct_mask


cdef uint32_t account_intern(core_t *c, account_t acct) noexcept nogil:
    # Index of `acct`, adding it if new; NO_ACCOUNT (and core.oom) on failure.
    cdef uint32_t idx = account_find(c, acct)
    cdef uint64_t i, k, cap
    cdef acct_slot_t *fresh
    cdef account_t *grown
    if idx != NO_ACCOUNT:
        return idx
    if c.n_accounts >= 0x7FFFFFFF:
        c.oom = 1
        return NO_ACCOUNT
    if c.n_accounts == c.account_cap:
        grown = <account_t *>realloc(c.accounts, <size_t>c.account_cap * 2 * sizeof(account_t))
        if grown == NULL:
            c.oom = 1
            return NO_ACCOUNT
        c.accounts = grown
        c.account_cap *= 2
    if <uint64_t>c.n_accounts * 2 > c.acct_mask:
        cap = (c.acct_mask + 1) * 2
        fresh = <acct_slot_t *>calloc(cap, sizeof(acct_slot_t))
        if fresh == NULL:
            c.oom = 1
            return NO_ACCOUNT
        for k in range(c.acct_mask + 1):
            if c.acct_map[k].value != 0:
                i = mix64(c.acct_map[k].key) & (cap - 1)
                while fresh[i].value != 0:
                    i = (i + 1) & (cap - 1)
                fresh[i] = c.acct_map[k]
        free(c.acct_map)
        c.acct_map = fresh
        c.acct_mask = cap - 1
    idx = c.n_accounts
    c.accounts[idx] = acct
    c.n_accounts += 1
    i = mix64(acct) & c.acct_mask
    while c.acct_map[i].value != 0:
        i = (i + 1) & c.acct_mask
    c.acct_map[i].key = acct
    c.acct_map[i].value = idx
    return idx


# --- instrument -> book index -------------------------------------------------

cdef int insts_init(core_t *c, uint64_t cap) noexcept nogil:
    cdef uint64_t k
    c.insts = <inst_slot_t *>malloc(cap * sizeof(inst_slot_t))
    if c.insts == NULL:
        return -1
    for k in range(cap):
        c.insts[k].key = -1
        c.insts[k].value = -1
    c.inst_mask = cap - 1
    return 0


cdef inline int32_t insts_get(const core_t *c, instrument_t inst) noexcept nogil:
    cdef uint64_t i = mix64(inst) & c.inst_mask
    while True:
        if c.insts[i].key == <int64_t>inst:
            return c.insts[i].value
        if c.insts[i].key < 0:
            return -1
        i = (i + 1) & c.inst_mask


cdef int insts_put(core_t *c, instrument_t inst, int32_t value) noexcept nogil:
    # Instruments are never removed, so growth is the only maintenance.
    cdef uint64_t i, k, cap
    cdef inst_slot_t *old
    if <uint64_t>(c.n_books + 1) * 2 > c.inst_mask + 1:
        old = c.insts
        cap = (c.inst_mask + 1) * 2
        if insts_init(c, cap) != 0:
            c.insts = old
            return -1
        for k in range(cap // 2):
            if old[k].key >= 0:
                i = mix64(<uint64_t>old[k].key) & c.inst_mask
                while c.insts[i].key >= 0:
                    i = (i + 1) & c.inst_mask
                c.insts[i] = old[k]
        free(old)
    i = mix64(inst) & c.inst_mask
    while c.insts[i].key >= 0:
        i = (i + 1) & c.inst_mask
    c.insts[i].key = inst
    c.insts[i].value = value
    return 0
