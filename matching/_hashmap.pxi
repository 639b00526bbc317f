# Included by _engine.pyx.  The two C hash maps of the core:
#   id -> order handle   (every live order; the duplicate/unknown-id checks)
#   instrument -> book   (a handful of keys; looked up once per command)
# Both are open addressing with linear probing.  Ids are deleted with
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
    return mix64(h ^ v) + <uint64_t>0x9e3779b97f4a7c15


# --- id -> order handle ---------------------------------------------------------

cdef inline uint64_t id_home(uint64_t key) noexcept nogil:
    # A full mix: clients pick ids (sequential, strided, random), so only a
    # scrambled home slot keeps linear probing short for all of them.
    # (Keeping low bits for locality was tried: blocks of ids then collide
    # as blocks and probe runs explode.)
    return mix64(key)


cdef int ids_init(core_t *c, uint64_t cap) noexcept nogil:
    # cap must be a power of two
    c.ids = <id_slot_t *>calloc(cap, sizeof(id_slot_t))
    if c.ids == NULL:
        return -1
    c.id_mask = cap - 1
    c.n_ids = 0
    return 0


cdef inline handle_t ids_get(const core_t *c, order_id_t key) noexcept nogil:
    cdef uint64_t i = id_home(key) & c.id_mask
    cdef const id_slot_t *s
    while True:
        s = &c.ids[i]
        if s.key == key:
            return s.value
        if s.key == 0:
            return -1
        i = (i + 1) & c.id_mask


cdef int ids_grow(core_t *c) noexcept nogil:
    # Double and rehash.  Amortised O(1) per insert; never on a steady book.
    cdef id_slot_t *old = c.ids
    cdef uint64_t old_cap = c.id_mask + 1
    cdef uint64_t cap = old_cap * 2
    cdef id_slot_t *fresh = <id_slot_t *>calloc(cap, sizeof(id_slot_t))
    cdef uint64_t k, i
    if fresh == NULL:
        return -1
    for k in range(old_cap):
        if old[k].key != 0:
            i = id_home(old[k].key) & (cap - 1)
            while fresh[i].key != 0:
                i = (i + 1) & (cap - 1)
            fresh[i] = old[k]
    free(old)
    c.ids = fresh
    c.id_mask = cap - 1
    return 0


cdef int ids_put(core_t *c, order_id_t key, handle_t value) noexcept nogil:
    # key is known to be absent (the duplicate check ran first).
    cdef uint64_t i
    # Keep the load at or below 1/2: linear probing stays short there.
    if <uint64_t>(c.n_ids + 1) * 2 > c.id_mask + 1:
        if ids_grow(c) != 0:
            c.oom = 1
            return -1
    i = id_home(key) & c.id_mask
    while c.ids[i].key != 0:
        i = (i + 1) & c.id_mask
    c.ids[i].key = key
    c.ids[i].value = value
    c.n_ids += 1
    return 0


cdef void ids_del(core_t *c, order_id_t key) noexcept nogil:
    cdef uint64_t mask = c.id_mask
    cdef uint64_t i = id_home(key) & mask
    cdef uint64_t j, home
    while c.ids[i].key != key:
        if c.ids[i].key == 0:
            return
        i = (i + 1) & mask
    # Backward shift: pull later members of the probe run into the hole
    # unless their home slot lies cyclically in (hole, j].
    j = i
    while True:
        j = (j + 1) & mask
        if c.ids[j].key == 0:
            break
        home = id_home(c.ids[j].key) & mask
        if ((j - home) & mask) >= ((j - i) & mask):
            c.ids[i] = c.ids[j]
            i = j
    c.ids[i].key = 0
    c.ids[i].value = -1
    c.n_ids -= 1


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
