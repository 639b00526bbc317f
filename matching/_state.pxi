# Included by _engine.pyx.  The Python-facing class: the per-call and batch
# APIs over the C core, queries, the invariant check and snapshots (the
# snapshot codec itself is in _snapshot.pxi).


# One spare batch event buffer for the whole process.  A big batch's output
# buffer is handed to NumPy (see _EventBlock); when NumPy lets go of it, it
# is parked here instead of freed, and the next big apply_batch writes into
# it: its pages are already faulted in, where a fresh buffer costs a page
# fault (and the kernel zeroing a page) per 4 KiB or 2 MiB written.  A buffer
# is only reused after its last NumPy view is gone, so no array returned to
# a caller is ever overwritten.  Touched only with the GIL held.  At most
# SPARE_MAX_EVENTS (256 MiB) are parked; a spare_events() call frees it.
cdef event_t *_spare = NULL
cdef int64_t _spare_cap = 0
cdef int64_t SPARE_MAX_EVENTS = 1 << 22


cdef void spare_put(event_t *data, int64_t cap) noexcept:
    global _spare, _spare_cap
    if data == NULL:
        return
    if cap <= EVENT_KEEP or cap > SPARE_MAX_EVENTS or cap <= _spare_cap:
        free(data)
        return
    free(_spare)
    _spare = data
    _spare_cap = cap


cdef void spare_take(core_t *c, int64_t want) noexcept:
    # Give core c the parked buffer if its own is smaller than `want` events.
    global _spare, _spare_cap
    if _spare == NULL or c.event_cap >= want or c.n_events != 0:
        return
    free(c.events)
    c.events = _spare
    c.event_cap = _spare_cap
    _spare = NULL
    _spare_cap = 0


def spare_events(bint release=False):
    """Bytes of the process-wide spare batch event buffer (freed first if
    ``release``).  Not part of any engine's :meth:`Engine.memory_bytes`."""
    global _spare, _spare_cap
    if release:
        free(_spare)
        _spare = NULL
        _spare_cap = 0
    return _spare_cap * <int64_t>sizeof(event_t)


@cython.final
cdef class _EventBlock:
    """Owns an event buffer taken from the core and lends it to NumPy."""
    cdef event_t *data
    cdef int64_t cap            # events allocated (>= the events lent out)
    cdef Py_ssize_t nbytes
    cdef Py_ssize_t shape[1]

    cdef void take(self, core_t *c) noexcept:
        # Not shrunk to fit: pages past the last event were never touched,
        # so they cost address space, not memory, and the whole capacity
        # goes back to the spare slot for the next batch.
        self.data = c.events
        self.cap = c.event_cap
        self.nbytes = c.n_events * sizeof(event_t)
        c.events = <event_t *>malloc(64 * sizeof(event_t))
        c.event_cap = 64 if c.events != NULL else 0
        c.n_events = 0

    def __getbuffer__(self, Py_buffer *view, int flags):
        self.shape[0] = self.nbytes
        view.buf = self.data
        view.obj = self
        view.len = self.nbytes
        view.readonly = 0
        view.itemsize = 1
        view.format = "B"
        view.ndim = 1
        view.shape = self.shape
        view.strides = NULL
        view.suboffsets = NULL
        view.internal = NULL

    def __releasebuffer__(self, Py_buffer *view):
        pass

    def __dealloc__(self):
        spare_put(self.data, self.cap)
        self.data = NULL


@cython.final
cdef class Engine:
    """Price-time matching engine for many instruments (the Cython core).

    Parameters
    ----------
    capacity : int
        Order slots to preallocate.  The pool doubles when full, so this is
        a hint, not a limit.

    Notes
    -----
    Same commands in the same order give the same events and digests as
    :class:`matching.ReferenceEngine`, in any process.  Rejections are
    events, never exceptions; exceptions mean a programmer error (a wrong
    argument type to a batch call) or memory exhaustion.
    """

    def __cinit__(self, Py_ssize_t capacity=4096):
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        if core_init(&self.core, capacity) != 0:
            core_free(&self.core)
            raise MemoryError("cannot allocate the engine core")
        self._ev_types = (_Accepted, _Rejected, _Trade, _Cancelled, _Replaced, _Triggered)

    def __dealloc__(self):
        core_free(&self.core)

    # --- running commands -----------------------------------------------------------

    cdef int _enter(self) except -1:
        # The GIL is released inside apply_batch and book_digest, so another
        # thread could reach the core mid-batch; refuse rather than race.
        if self.core.busy:
            raise RuntimeError("Engine is in use by another thread (apply_batch/book_digest running)")
        return 0

    def __reduce__(self):
        return (Engine.restore, (self.snapshot(),))

    cdef int _run(self, const command_t *cmd) except -1:
        self._enter()
        if self.core.oom:
            raise MemoryError("engine ran out of memory earlier; its state is unusable")
        if self.core.event_cap > EVENT_KEEP:
            free(self.core.events)
            self.core.events = <event_t *>malloc(64 * sizeof(event_t))
            self.core.event_cap = 64 if self.core.events != NULL else 0
        self.core.n_events = 0
        core_apply(&self.core, cmd, self.core.commands)
        if self.core.oom:
            raise MemoryError("engine ran out of memory")
        return 0

    cdef list _events_to_list(self, int64_t start):
        # Named tuples are built only here, after the core has finished.
        # The events of one call mostly share their instrument and order id
        # (and a sweep's trades their price): each is converted to a Python
        # int once and the object reused, not once per event.
        cdef list out = []
        cdef int64_t i
        cdef const event_t *e
        cdef object t
        cdef object inst_o = None, id_o = None, px_o = None
        cdef uint32_t inst_v = 0
        cdef uint64_t id_v = 0
        cdef int64_t px_v = 0
        for i in range(start, self.core.n_events):
            e = &self.core.events[i]
            if inst_o is None or e.instrument != inst_v:
                inst_v = e.instrument
                inst_o = inst_v
            if id_o is None or e.id != id_v:
                id_v = e.id
                id_o = id_v
            # Fill the named tuples in place (tp_alloc + SET_ITEM): calling
            # the class would build and copy an argument tuple per event.
            if e.kind == EV_TRADE:
                if px_o is None or e.price != px_v:
                    px_v = e.price
                    px_o = px_v
                t = mc_tuple_alloc(_Trade, 7)
                put(t, 0, inst_o)
                put(t, 1, id_o)
                put(t, 2, e.maker)
                put(t, 3, px_o)
                put(t, 4, e.qty)
                put(t, 5, e.open_a)
                put(t, 6, e.open_b)
            elif e.kind == EV_ACCEPTED:
                t = mc_tuple_alloc(_Accepted, 2)
                put(t, 0, inst_o)
                put(t, 1, id_o)
            elif e.kind == EV_CANCELLED:
                t = mc_tuple_alloc(_Cancelled, 4)
                put(t, 0, inst_o)
                put(t, 1, id_o)
                put(t, 2, e.open_a)
                put(t, 3, _REASONS[e.reason])
            elif e.kind == EV_REPLACED or e.kind == EV_TRIGGERED:
                t = mc_tuple_alloc(_Replaced if e.kind == EV_REPLACED else _Triggered, 4)
                put(t, 0, inst_o)
                put(t, 1, id_o)
                put(t, 2, e.price)
                put(t, 3, e.qty)
            else:
                t = mc_tuple_alloc(_Rejected, 3)
                put(t, 0, inst_o)
                put(t, 1, id_o)
                put(t, 2, _REASONS[e.reason])
            if not MC_FAST_TUPLES:
                t = _tuple_new(self._ev_types[e.kind - 1], t)
            out.append(t)
        return out

    def submit(self, instrument, id, side, price=None, qty=0, type="limit", tif="GTC",
               account=0, post_only=False, display_qty=0, stp="none", stop_price=None,
               expire_ts=None, ts=None):
        """Enter a new order; return its events.

        Parameters are those of a ``new`` command in the command log; bad
        values give a ``Rejected`` event, never an exception.  Plain ints and
        the exact lower-case names (``"GTC"`` etc. for tif) take a C fast
        path; anything else is encoded by ``matching.commands`` exactly as
        the reference engine does.

        Returns
        -------
        list
            ``Accepted`` or ``Rejected``, then ``Trade`` / self-trade
            ``Cancelled`` events in match order, then any remainder
            ``Cancelled``.

        Complexity: O(log L + T) for T trades against L price levels (plus
        the FOK walk for FOK orders).
        """
        cdef command_t cmd
        cdef int code
        cdef bint fast = True
        # Parse into aligned locals (the record is packed).
        cdef uint32_t inst = 0
        cdef uint64_t oid = 0, acct = 0
        cdef int64_t px = 0, q = 0, disp = 0
        memset(&cmd, 0, sizeof(command_t))
        cmd.op = OP_NEW
        cmd.flags = F_HAS_QTY
        fast = (as_u32(instrument, &inst) and as_u64(id, &oid) and as_i64(qty, &q)
                and as_u64(account, &acct) and as_i64(display_qty, &disp)
                and stop_price is None and expire_ts is None and ts is None)
        if fast and price is not None:
            fast = as_i64(price, &px)
            cmd.flags |= F_HAS_PRICE
        cmd.instrument = inst
        cmd.id = oid
        cmd.qty = q
        cmd.account = acct
        cmd.display_qty = disp
        cmd.price = px
        if fast:
            code = side_code(side)
            cmd.side = code
            fast = code >= 0
        if fast:
            code = type_code(type)
            cmd.type = code
            fast = code >= 0
        if fast:
            code = tif_code(tif)
            cmd.tif = code
            fast = code >= 0
        if fast:
            code = stp_code(stp)
            cmd.stp = code
            fast = code >= 0
        if fast:
            if post_only is True:
                cmd.post_only = 1
            elif post_only is not False:
                fast = False
        if not fast:
            # Anything unusual: encode it exactly as the reference does.
            record_to_command(_commands.new_order_record(
                instrument, id, side, price, qty, type, tif, account, post_only, display_qty, stp,
                stop_price, expire_ts, ts), &cmd)
        self._run(&cmd)
        return self._events_to_list(0)

    def cancel(self, instrument, id):
        """Cancel a live order of ``instrument``.  O(1) plus O(log L) if its level empties."""
        cdef command_t cmd
        cdef uint32_t inst = 0
        cdef uint64_t oid = 0
        memset(&cmd, 0, sizeof(command_t))
        cmd.op = OP_CANCEL
        if as_u32(instrument, &inst) and as_u64(id, &oid):
            cmd.instrument = inst
            cmd.id = oid
        else:
            record_to_command(_commands.command_record(_commands.cancel_dict(instrument, id)), &cmd)
        self._run(&cmd)
        return self._events_to_list(0)

    def replace(self, instrument, id, price=None, qty=None, stop_price=None, ts=None):
        """Change a live order's price and/or open qty (``None`` = unchanged).

        Complexity: O(1) for a qty decrease at the same price; otherwise as
        :meth:`submit`.
        """
        cdef command_t cmd
        cdef uint32_t inst = 0
        cdef uint64_t oid = 0
        cdef int64_t px = 0, q = 0
        cdef dict d
        cdef bint fast = (as_u32(instrument, &inst) and as_u64(id, &oid)
                          and stop_price is None and ts is None)
        memset(&cmd, 0, sizeof(command_t))
        cmd.op = OP_REPLACE
        if fast and price is not None:
            fast = as_i64(price, &px)
            cmd.flags |= F_HAS_PRICE
        if fast and qty is not None:
            fast = as_i64(qty, &q)
            cmd.flags |= F_HAS_QTY
        if fast:
            cmd.instrument = inst
            cmd.id = oid
            cmd.price = px
            cmd.qty = q
        else:
            d = _commands.replace_dict(instrument, id, price, qty, stop_price, ts)
            record_to_command(_commands.command_record(d), &cmd)
        self._run(&cmd)
        return self._events_to_list(0)

    def mass_cancel(self, account=None, instrument=None):
        """Cancel every live order of ``account`` and/or ``instrument`` (None = all). O(orders)."""
        cdef command_t cmd
        record_to_command(_commands.command_record(_commands.mass_cancel_dict(account, instrument)), &cmd)
        self._run(&cmd)
        return self._events_to_list(0)

    def apply(self, cmd):
        """Apply one command-log dict (``{"op": "new", ...}``); return its events.

        The dict is encoded by :func:`matching.command_record`, so any bad
        content becomes a ``Rejected`` event.  Complexity: as the command's
        own method, plus O(fields) to encode it.
        """
        cdef command_t c
        record_to_command(_commands.command_record(cmd), &c)
        self._run(&c)
        return self._events_to_list(0)

    def apply_record(self, rec):
        """Apply one command record: a tuple in ``COMMAND_DTYPE`` field order,
        a ``CommandRecord``, a row of a command array, or its 80 raw bytes
        (or the 56 of a version-1 record).

        Complexity: as the command's own method.

        Raises
        ------
        ValueError
            Raw bytes of the wrong length.
        OverflowError, TypeError
            A tuple whose values do not fit the record's C fields.
        """
        cdef command_t c
        record_to_command(rec, &c)
        self._run(&c)
        return self._events_to_list(0)

    def apply_batch(self, cmds, digests=None):
        """Apply a 1-d ``COMMAND_DTYPE`` array; return an ``EVENT_DTYPE`` array.

        The loop runs in C with the GIL released.  Each event's ``cmd`` is the
        index of its command in ``cmds``.  The events and digests are those
        of applying the commands one by one.  ``digests``, if given, is a
        writable ``uint64`` array of at least ``len(cmds)`` that receives the
        chained digest after each command (what a replication entry carries).

        Complexity: O(n) commands, each as its per-call form.

        Raises
        ------
        TypeError
            ``cmds`` is not a NumPy array of ``matching.COMMAND_DTYPE``.
        ValueError
            ``cmds`` is not one-dimensional.
        """
        cdef cnp.ndarray arr
        cdef const command_t *p
        cdef Py_ssize_t n, i
        cdef core_t *c = &self.core
        cdef cnp.ndarray out
        cdef _EventBlock block
        cdef uint64_t[::1] dig = None
        cdef uint64_t *dp = NULL
        if not isinstance(cmds, np.ndarray):
            raise TypeError(f"apply_batch needs a numpy array of COMMAND_DTYPE, not {type(cmds).__name__}")
        if cmds.dtype is not _COMMAND_DTYPE and cmds.dtype != _COMMAND_DTYPE:
            raise TypeError(f"apply_batch needs dtype COMMAND_DTYPE, got {cmds.dtype}")
        if cmds.ndim != 1:
            raise ValueError(f"apply_batch needs a 1-d array, got {cmds.ndim} dimensions")
        self._enter()
        if c.oom:
            raise MemoryError("engine ran out of memory earlier; its state is unusable")
        arr = np.ascontiguousarray(cmds)
        n = arr.shape[0]
        p = <const command_t *>cnp.PyArray_DATA(arr)
        if digests is not None:
            dig = digests
            if dig.shape[0] < n:
                raise ValueError(f"digests holds {dig.shape[0]} values, the batch has {n} commands")
            if n:
                dp = &dig[0]
        c.n_events = 0
        # Most commands emit one to three events: reserve for the common
        # case up front (in the parked buffer of an earlier batch if there
        # is one); emit() still grows the buffer for sweeps.
        if n > EVENT_KEEP:
            spare_take(c, n + (n >> 1))
        c.busy = 1
        with nogil:
            events_reserve(c, n + (n >> 1))
            for i in range(n):
                # Warm the id slot a few commands ahead: the id lookup is the
                # one cache miss nearly every command has.
                if i + 8 < n:
                    mc_prefetch(&c.ids[id_home(p[i + 8].id) & c.id_mask])
                core_apply(c, &p[i], <uint64_t>i)
                if c.oom:
                    break
                if dp != NULL:
                    dp[i] = c.digest
        c.busy = 0
        if c.oom:
            raise MemoryError("engine ran out of memory")
        if c.n_events <= EVENT_KEEP:
            out = np.empty(c.n_events, dtype=_EVENT_DTYPE)
            if c.n_events:
                memcpy(cnp.PyArray_DATA(out), c.events, <size_t>c.n_events * sizeof(event_t))
            c.n_events = 0
            return out
        # A big output: hand the buffer itself to NumPy instead of copying it
        # (the copy would fault in as many fresh pages again).
        block = _EventBlock.__new__(_EventBlock)
        block.take(c)
        return np.frombuffer(block, dtype=_EVENT_DTYPE)

    # --- queries ------------------------------------------------------------------------

    @property
    def digest(self):
        """The chained 64-bit event digest after the last command.  O(1)."""
        return self.core.digest

    @property
    def commands_applied(self):
        """Number of commands applied (rejected ones included).  O(1)."""
        return self.core.commands

    @property
    def seq(self):
        """Alias of :attr:`commands_applied`."""
        return self.core.commands

    @property
    def live_orders(self):
        """Number of resting orders in all books.  O(1)."""
        return self.core.n_ids

    def instruments(self):
        """Every instrument named by an accepted order, ascending.  O(instruments)."""
        cdef int32_t k
        self._enter()
        return [self.core.books[self.core.book_order[k]].instrument for k in range(self.core.n_books)]

    def depth(self, instrument, levels=None):
        """Aggregated book of one instrument: ``(bids, asks)``, each
        ``[(price, visible qty, orders), ...]`` best first, at most ``levels``
        rows per side.  Unknown instrument: ``([], [])``.  O(levels).
        """
        cdef uint32_t inst = 0
        cdef int32_t b, i, stop
        cdef int side
        cdef const side_t *s
        cdef const level_t *L
        cdef list out = [[], []]
        cdef Py_ssize_t limit = -1 if levels is None else levels
        self._enter()
        if limit < 0 and levels is not None:
            # Negative: the list-slice meaning, as in the reference.
            bids, asks = self.depth(instrument)
            return bids[:levels], asks[:levels]
        if not as_u32(instrument, &inst):
            return [], []
        b = insts_get(&self.core, inst)
        if b < 0:
            return [], []
        for side in range(2):
            s = &self.core.books[b].sides[side]
            stop = -1 if limit < 0 or limit >= s.n else s.n - 1 - <int32_t>limit
            i = s.n - 1
            while i > stop:
                L = &self.core.levels[s.levels[i]]
                out[side].append((L.price, L.total, L.count))
                i -= 1
        return out[0], out[1]

    @property
    def waiting_stops(self):
        """Stops accepted and not yet triggered, cancelled or expired.  O(1)."""
        return self.core.n_stops

    @property
    def now(self):
        """The latest command ``ts`` seen (time never goes back).  O(1)."""
        return self.core.now

    def bbo(self, instrument):
        """``(bid_price, bid_qty, ask_price, ask_qty)`` of the best levels
        (visible qty); 0s where a side is empty.  O(1)."""
        cdef uint32_t inst = 0
        cdef int32_t b
        cdef int side
        cdef const side_t *s
        cdef const level_t *L
        cdef int64_t out[4]
        self._enter()
        memset(out, 0, sizeof(out))
        if as_u32(instrument, &inst):
            b = insts_get(&self.core, inst)
            if b >= 0:
                for side in range(2):
                    s = &self.core.books[b].sides[side]
                    if s.n:
                        L = &self.core.levels[s.levels[s.n - 1]]
                        out[2 * side] = L.price
                        out[2 * side + 1] = L.total
        return (out[0], out[1], out[2], out[3])

    def order(self, id):
        """State of one live order (resting, or a stop waiting for its
        trigger) as a dict, or None.  O(1)."""
        cdef uint64_t oid = 0
        cdef handle_t h
        cdef int32_t s
        cdef const order_t *o
        cdef const stop_t *st
        self._enter()
        if not as_u64(id, &oid) or oid == 0:
            return None
        h = ids_get(&self.core, oid)
        if h < 0:
            s = stop_find(&self.core, oid)
            if s < 0:
                return None
            st = &self.core.stops[s]
            return {"instrument": self.core.books[st.book].instrument,
                    "side": S_BUY if st.side == SIDE_BUY else S_SELL, "price": st.price,
                    "open": st.qty, "visible": 0, "display_qty": st.display_qty,
                    "account": st.account, "stp": STP_LABELS[st.stp], "post_only": False,
                    "type": "stop" if st.type == TYPE_STOP else "stop_limit",
                    "stop_price": st.stop_price, "triggered": False,
                    "tif": TIF_LABELS[st.tif], "expire_ts": st.expire_ts}
        o = &self.core.orders[h]
        return {"instrument": self.core.books[order_book(&self.core, h)].instrument,
                "side": S_BUY if o.side == SIDE_BUY else S_SELL, "price": o.price,
                "open": o.open, "visible": order_visible(&self.core, o),
                "display_qty": self.core.ices[o.ice].display_qty if o.ice >= 0 else 0,
                "account": self.core.accounts[o.account], "stp": STP_LABELS[o.stp],
                "post_only": bool(o.post_only), "type": "limit", "tif": TIF_LABELS[o.tif],
                "expire_ts": (self.core.timed[self.core.tpos[h]].expire_ts
                              if o.tif == TIF_GTD else 0)}

    def book_digest(self):
        """Canonical digest of the whole state (docs/semantics.md).  O(orders)."""
        cdef core_t *c = &self.core
        cdef uint64_t h = c.digest
        cdef int32_t k, b, i
        cdef int side
        cdef const side_t *s
        cdef handle_t oh
        cdef const order_t *o
        cdef const book_t *bk
        self._enter()
        c.busy = 1
        with nogil:
            for k in range(c.n_books):
                b = c.book_order[k]
                if c.books[b].n_orders == 0:
                    continue
                h = absorb(h, c.books[b].instrument)
                for side in range(2):
                    s = &c.books[b].sides[side]
                    i = s.n - 1
                    while i >= 0:
                        oh = c.levels[s.levels[i]].head
                        while oh >= 0:
                            o = &c.orders[oh]
                            h = absorb(h, o.id)
                            h = absorb(h, <uint64_t>o.price)
                            h = absorb(h, <uint64_t>o.open)
                            h = absorb(h, <uint64_t>order_visible(c, o))
                            h = absorb(h, <uint64_t>(c.ices[o.ice].display_qty if o.ice >= 0 else 0))
                            h = absorb(h, c.accounts[o.account])
                            h = absorb(h, o.stp)
                            h = absorb(h, o.side)
                            h = absorb(h, o.post_only)
                            if o.tif != TIF_GTC:  # DAY / GTD: what decides when it expires
                                h = absorb(h, o.tif)
                                h = absorb(h, <uint64_t>(c.timed[c.tpos[oh]].expire_ts
                                                         if o.tif == TIF_GTD else 0))
                                h = absorb(h, c.timed[c.tpos[oh]].seq)
                            oh = o.next
                        i -= 1
            h = absorb(h, <uint64_t>c.n_ids)
            h = stops_digest(c, h)
            if c.now:
                h = absorb(h, <uint64_t>c.now)
            for k in range(c.n_books):
                bk = &c.books[c.book_order[k]]
                if bk.has_rules:  # instrument rules, and the print their band is around
                    h = absorb(h, bk.instrument)
                    h = absorb(h, <uint64_t>bk.tick)
                    h = absorb(h, <uint64_t>bk.lot)
                    h = absorb(h, <uint64_t>bk.min_qty)
                    h = absorb(h, <uint64_t>bk.max_qty)
                    h = absorb(h, <uint64_t>bk.band)
                    h = absorb(h, <uint64_t>bk.ref_price)
                    h = absorb(h, <uint64_t>bk.last_price)
            if c.n_risk:
                h = risk_digest(c, h)
        c.busy = 0
        return h

    def memory_bytes(self):
        """Bytes the C core has allocated (pools, maps, iceberg and account
        tables, level arrays, events).  O(instruments)."""
        cdef core_t *c = &self.core
        cdef Py_ssize_t total
        cdef int32_t b
        self._enter()
        total = (<Py_ssize_t>c.order_cap * sizeof(order_t) + <Py_ssize_t>c.level_cap * sizeof(level_t)
                 + <Py_ssize_t>(c.id_mask + 1) * sizeof(handle_t)
                 + <Py_ssize_t>c.ice_cap * sizeof(ice_t)
                 + <Py_ssize_t>c.account_cap * sizeof(account_t)
                 + <Py_ssize_t>(c.acct_mask + 1) * sizeof(acct_slot_t)
                 + <Py_ssize_t>(c.inst_mask + 1) * sizeof(inst_slot_t)
                 + <Py_ssize_t>c.book_cap * (sizeof(book_t) + sizeof(int32_t))
                 + <Py_ssize_t>c.event_cap * sizeof(event_t)
                 + <Py_ssize_t>c.timed_cap * sizeof(timed_t) + <Py_ssize_t>c.tpos_cap * sizeof(int32_t)
                 + <Py_ssize_t>c.stop_cap * sizeof(stop_t)
                 + <Py_ssize_t>(c.stop_id_mask + 1 if c.stop_ids != NULL else 0) * sizeof(int32_t))
        for b in range(c.n_books):
            total += ((c.books[b].sides[0].cap + c.books[b].sides[1].cap)
                      * (sizeof(price_t) + sizeof(handle_t)))
            total += ((c.books[b].stops[0].cap + c.books[b].stops[1].cap)
                      * (sizeof(price_t) + sizeof(int32_t)))
        return total

    def _check(self):
        """Verify every invariant of the core; raise AssertionError naming the
        first broken one.  O(orders + levels + id table)."""
        self._enter()
        check_core(&self.core)

    # --- snapshots ----------------------------------------------------------------------

    def snapshot(self):
        """The full state as bytes (see :meth:`restore`).  O(orders)."""
        self._enter()
        return snapshot_core(&self.core)

    @staticmethod
    def restore(blob):
        """An engine rebuilt from :meth:`snapshot` bytes.  O(orders).

        It continues with exactly the events and digests the original would
        have produced.

        Raises
        ------
        ValueError
            The blob is truncated, corrupted, of another version, or not a
            snapshot of this engine.
        """
        cdef Engine e = Engine(16)
        restore_core(&e.core, blob)
        try:
            e._check()
        except AssertionError as exc:
            raise ValueError(f"snapshot describes an inconsistent book: {exc}") from None
        return e


def _layout():
    """C sizes and field offsets of the shared records and the order slot
    (tests/unit/test_layout.py compares them with codes.py's dtypes)."""
    cdef command_t c
    cdef event_t e
    cdef char *cb = <char *>&c
    cdef char *eb = <char *>&e
    return {
        "command": (sizeof(command_t), {
            "id": <char *>&c.id - cb, "account": <char *>&c.account - cb,
            "price": <char *>&c.price - cb, "qty": <char *>&c.qty - cb,
            "display_qty": <char *>&c.display_qty - cb, "instrument": <char *>&c.instrument - cb,
            "op": <char *>&c.op - cb, "side": <char *>&c.side - cb, "type": <char *>&c.type - cb,
            "tif": <char *>&c.tif - cb, "stp": <char *>&c.stp - cb,
            "post_only": <char *>&c.post_only - cb, "flags": <char *>&c.flags - cb,
            "ts": <char *>&c.ts - cb, "expire_ts": <char *>&c.expire_ts - cb,
            "stop_price": <char *>&c.stop_price - cb}),
        "event": (sizeof(event_t), {
            "cmd": <char *>&e.cmd - eb, "id": <char *>&e.id - eb, "maker": <char *>&e.maker - eb,
            "price": <char *>&e.price - eb, "qty": <char *>&e.qty - eb,
            "open_a": <char *>&e.open_a - eb, "open_b": <char *>&e.open_b - eb,
            "instrument": <char *>&e.instrument - eb, "kind": <char *>&e.kind - eb,
            "reason": <char *>&e.reason - eb}),
        "order_t": sizeof(order_t),
        "level_t": sizeof(level_t),
    }


def _constants():
    """The C side's codes and limits, for comparison with codes.py."""
    return {
        "OP_NEW": OP_NEW, "OP_CANCEL": OP_CANCEL, "OP_REPLACE": OP_REPLACE,
        "OP_MASS_CANCEL": OP_MASS_CANCEL, "SIDE_BUY": SIDE_BUY, "SIDE_SELL": SIDE_SELL,
        "TYPE_LIMIT": TYPE_LIMIT, "TYPE_MARKET": TYPE_MARKET, "TIF_GTC": TIF_GTC,
        "TIF_IOC": TIF_IOC, "TIF_FOK": TIF_FOK, "STP_NONE": STP_NONE,
        "STP_CANCEL_TAKER": STP_CANCEL_TAKER, "STP_CANCEL_MAKER": STP_CANCEL_MAKER,
        "STP_CANCEL_BOTH": STP_CANCEL_BOTH, "INVALID_CODE": INVALID_CODE,
        "HAS_PRICE": F_HAS_PRICE, "HAS_QTY": F_HAS_QTY, "HAS_ACCOUNT": F_HAS_ACCOUNT,
        "HAS_INSTRUMENT": F_HAS_INSTRUMENT, "OUT_OF_RANGE": F_OUT_OF_RANGE,
        "BAD_FIELD": F_BAD_FIELD, "EV_ACCEPTED": EV_ACCEPTED, "EV_REJECTED": EV_REJECTED,
        "EV_TRADE": EV_TRADE, "EV_CANCELLED": EV_CANCELLED, "EV_REPLACED": EV_REPLACED,
        "R_INVALID_OP": R_INVALID_OP, "R_INVALID_SIDE": R_INVALID_SIDE,
        "R_INVALID_TYPE": R_INVALID_TYPE, "R_INVALID_TIF": R_INVALID_TIF,
        "R_INVALID_STP": R_INVALID_STP, "R_BAD_FIELD": R_BAD_FIELD,
        "R_OUT_OF_RANGE": R_OUT_OF_RANGE, "R_INVALID_ID": R_INVALID_ID,
        "R_INVALID_QTY": R_INVALID_QTY, "R_INVALID_PRICE": R_INVALID_PRICE,
        "R_PRICE_ON_MARKET": R_PRICE_ON_MARKET, "R_INVALID_DISPLAY": R_INVALID_DISPLAY,
        "R_INVALID_COMBINATION": R_INVALID_COMBINATION, "R_DUPLICATE_ID": R_DUPLICATE_ID,
        "R_UNKNOWN_ORDER": R_UNKNOWN_ORDER, "R_WOULD_CROSS": R_WOULD_CROSS,
        "R_FOK_UNFILLED": R_FOK_UNFILLED, "R_USER": R_USER, "R_REMAINDER": R_REMAINDER,
        "R_SELF_TRADE": R_SELF_TRADE, "R_MASS_CANCEL": R_MASS_CANCEL,
        "OP_TIME": OP_TIME, "OP_END_OF_DAY": OP_END_OF_DAY, "OP_INSTRUMENT": OP_INSTRUMENT,
        "OP_RISK": OP_RISK, "TYPE_STOP": TYPE_STOP, "TYPE_STOP_LIMIT": TYPE_STOP_LIMIT,
        "TIF_DAY": TIF_DAY, "TIF_GTD": TIF_GTD, "HAS_STOP_PRICE": F_HAS_STOP_PRICE,
        "EV_TRIGGERED": EV_TRIGGERED, "R_INVALID_EXPIRY": R_INVALID_EXPIRY,
        "R_INVALID_STOP": R_INVALID_STOP, "R_BAD_TICK": R_BAD_TICK, "R_BAD_LOT": R_BAD_LOT,
        "R_QTY_LIMIT": R_QTY_LIMIT, "R_PRICE_BAND": R_PRICE_BAND, "R_RISK_LIMIT": R_RISK_LIMIT,
        "R_EXPIRED": R_EXPIRED,
        "MAX_PRICE": MAX_PRICE, "MAX_QTY": MAX_QTY,
    }
