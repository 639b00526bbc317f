"""The catch-up path's two per-entry loops in C, behind ``replication.fastpath``.

For: the CRC-32 of many fixed-size records in one call (the journal frames
and checks every record with one), recording a run of applied entries in the
replica's dedupe table with no Python bytecode per entry, and starting the
write-back of a file range (sync_file_range) so that a later fdatasync waits
less, and packing a batch's OK replies to one client as ``Replies`` records
(the primary's release path), the primary's dedupe look-up of a client's
bundle of requests, and, for a bundle kept packed, finding a stretch of one
client's consecutive request ids and looking such a stretch up. Each function
does exactly what its plain-Python twin in ``replication.fastpath`` does (the
tests run both on the same cases); that twin is the specification.

Not for: deciding anything. Callers validate; these loops trust their
arguments beyond the bounds checks that keep memory safe.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.long cimport PyLong_AsUnsignedLongLong
from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

from collections import OrderedDict

import numpy as np

cdef extern from *:
    """
    #include <fcntl.h>
    /* Start writing a file range back to disk and return at once (Linux); elsewhere nothing. */
    static int mc_start_writeback(int fd, long long off, long long n) {
    #if defined(__linux__) && defined(SYNC_FILE_RANGE_WRITE)
        return sync_file_range(fd, off, n, SYNC_FILE_RANGE_WRITE);
    #else
        (void)fd; (void)off; (void)n;
        return -1;
    #endif
    }
    """
    int mc_start_writeback(int fd, long long off, long long n) nogil

# Slicing-by-8 tables for the reflected CRC-32 polynomial (zlib's): _T[0] is the
# byte-at-a-time table, _T[k][b] the CRC of byte b followed by k zero bytes, so
# eight bytes fold in with eight independent lookups.
cdef uint32_t _T[8][256]


cdef void _make_tables() noexcept:
    cdef uint32_t c
    cdef int b, k, _
    for b in range(256):
        c = b
        for _ in range(8):
            c = (c >> 1) ^ (0xEDB88320U if c & 1 else 0U)
        _T[0][b] = c
    for b in range(256):
        for k in range(1, 8):
            _T[k][b] = (_T[k - 1][b] >> 8) ^ _T[0][_T[k - 1][b] & 0xFF]


cdef inline uint32_t _crc32(const unsigned char *p, Py_ssize_t n) noexcept nogil:
    """zlib.crc32(p[:n]) (the words are read little-endian: checked at import)."""
    cdef uint32_t crc = 0xFFFFFFFFU, one, two
    while n >= 8:
        memcpy(&one, p, 4)
        memcpy(&two, p + 4, 4)
        one ^= crc
        crc = (_T[7][one & 0xFF] ^ _T[6][(one >> 8) & 0xFF] ^ _T[5][(one >> 16) & 0xFF] ^ _T[4][one >> 24]
               ^ _T[3][two & 0xFF] ^ _T[2][(two >> 8) & 0xFF] ^ _T[1][(two >> 16) & 0xFF] ^ _T[0][two >> 24])
        p += 8
        n -= 8
    while n > 0:
        crc = (crc >> 8) ^ _T[0][(crc ^ p[0]) & 0xFF]
        p += 1
        n -= 1
    return ~crc


_make_tables()
# A big-endian host would read the words the other way round (and frame_records would write
# its heads so): refuse to load, so fastpath falls back to zlib and struct.
if _crc32(b"123456789", 9) != 0xCBF43926U:
    raise ImportError("replication._fast: CRC-32 self-check failed (big-endian host?)")


def crc32_each(const unsigned char[::1] buf, Py_ssize_t offset, Py_ssize_t stride, Py_ssize_t size,
               Py_ssize_t count):
    """CRC-32 (zlib's) of ``buf[offset + i * stride :][:size]`` for ``i < count``, as a uint32 array.

    O(count * size), without the GIL.
    """
    if offset < 0 or stride < 0 or size < 0 or count < 0:
        raise ValueError("negative offset, stride, size or count")
    if count and offset + (count - 1) * stride + size > buf.shape[0]:
        raise ValueError("records run past the end of the buffer")
    out = np.empty(count, dtype=np.uint32)
    cdef uint32_t[::1] res = out
    cdef const unsigned char *base = &buf[0] if buf.shape[0] else NULL
    cdef Py_ssize_t i
    with nogil:
        for i in range(count):
            res[i] = _crc32(base + offset + i * stride, size)
    return out


def start_writeback(int fd, long long offset, long long nbytes):
    """Have the kernel start writing ``nbytes`` at ``offset`` of ``fd`` to disk, without waiting.

    Only a head start for a later fdatasync (which still decides durability):
    True if started, False where unsupported or refused. O(1) here; the I/O
    runs in the background.
    """
    cdef int rc
    with nogil:
        rc = mc_start_writeback(fd, offset, nbytes)
    return rc == 0


def frame_records(const unsigned char[::1] raw, Py_ssize_t size):
    """Journal records for the ``size``-byte payloads packed in ``raw``: per payload
    ``u32 size, u32 crc32(payload), payload`` (little-endian, as ``journal.REC``).

    One pass, without the GIL; a partial payload at the end is ignored. O(len(raw)).
    """
    if size <= 0:
        raise ValueError("size must be positive")
    cdef Py_ssize_t n = raw.shape[0] // size, _
    out = PyBytes_FromStringAndSize(NULL, n * (size + 8))
    cdef unsigned char *dst = <unsigned char *>PyBytes_AS_STRING(out)
    cdef const unsigned char *src = &raw[0] if n else NULL
    cdef uint32_t head[2]
    head[0] = <uint32_t>size
    with nogil:
        for _ in range(n):
            head[1] = _crc32(src, size)
            memcpy(dst, head, 8)
            memcpy(dst + 8, src, size)
            src += size
            dst += size + 8
    return out


def remember_run(dict results, Py_ssize_t window, const uint64_t[::1] cids, const uint64_t[::1] rids,
                 const uint64_t[::1] seqs, bytes events, const int64_t[::1] starts, const int64_t[::1] stops):
    """Record applied entries in the dedupe table, entry by entry, in the order given.

    Entry ``i`` is request ``rids[i]`` of client ``cids[i]`` (0: not
    remembered), applied as ``seqs[i]``; it produced
    ``events[starts[i]:stops[i]]``. Exactly ``Replica._remember`` per entry:
    insert, then past ``window`` evict the client's oldest result and raise
    its floor above it. O(len(cids)).
    """
    cdef Py_ssize_t k = cids.shape[0], i
    if rids.shape[0] != k or seqs.shape[0] != k or starts.shape[0] != k or stops.shape[0] != k:
        raise ValueError("cids, rids, seqs, starts and stops must have one element per entry")
    cdef Py_ssize_t size = PyBytes_GET_SIZE(events)
    for i in range(k):
        if starts[i] < 0 or starts[i] > stops[i] or stops[i] > size:
            raise ValueError("event offsets out of order or out of range")
    cdef const char *ev = PyBytes_AS_STRING(events)
    cdef uint64_t c, cur = 0
    cdef list slot = None
    cdef object table = None, old
    for i in range(k):
        c = cids[i]
        if c == 0:
            continue
        if c != cur or slot is None:
            # Runs are mostly long stretches of few clients: look the slot up once per stretch.
            slot = results.get(c)
            if slot is None:
                slot = results[c] = [0, OrderedDict()]
            cur, table = c, slot[1]
        table[rids[i]] = (seqs[i], PyBytes_FromStringAndSize(ev + starts[i], stops[i] - starts[i]))
        if len(table) > window:
            old = table.popitem(False)[0]
            if old >= slot[0]:
                slot[0] = old + 1


cdef inline unsigned char *_head(unsigned char *dst, object a, object b, Py_ssize_t n) except NULL:
    """Write ``u64 a, u64 b, u32 n`` (little-endian: checked at import) at ``dst``; the byte after."""
    cdef uint64_t w[2]
    cdef uint32_t k = <uint32_t>n
    if n < 0 or n > 0xFFFFFFFF:
        raise OverflowError("count does not fit in u32")
    w[0] = PyLong_AsUnsignedLongLong(a)
    w[1] = PyLong_AsUnsignedLongLong(b)
    memcpy(dst, w, 16)
    memcpy(dst + 16, &k, 4)
    return dst + 20


def pack_results(dict results):
    """The dedupe table as the replica snapshot stores it: per client ``u64 id, u64 floor,
    u32 results``, then per result ``u64 request id, u64 seq, u32 length, events``.

    ``results`` is ``Replica.results`` (events must be ``bytes``). Two passes: the
    size, then one buffer filled in place. O(table bytes).
    """
    cdef Py_ssize_t size = 0
    cdef bytes events
    for slot in results.values():
        size += 20
        for res in (<object>slot[1]).values():
            events = res[1]
            size += 20 + PyBytes_GET_SIZE(events)
    out = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char *dst = <unsigned char *>PyBytes_AS_STRING(out)
    cdef unsigned char *end = dst + size
    for cid, slot in results.items():
        floor, table = slot
        if end - dst < 20:
            raise RuntimeError("dedupe table changed while it was packed")
        dst = _head(dst, cid, floor, len(table))
        for rid, res in table.items():
            seq, events = res
            if end - dst < 20 + PyBytes_GET_SIZE(events):
                raise RuntimeError("dedupe table changed while it was packed")
            dst = _head(dst, rid, seq, PyBytes_GET_SIZE(events))
            memcpy(dst, PyBytes_AS_STRING(events), PyBytes_GET_SIZE(events))
            dst += PyBytes_GET_SIZE(events)
    if dst != end:
        raise RuntimeError("dedupe table changed while it was packed")
    return out


def pack_reply_run(client_ids, request_ids, Py_ssize_t lo, Py_ssize_t hi, uint32_t epoch,
                   uint64_t first_seq, bytes leader, bytes events, list offsets):
    """``wire.Replies`` payload records of OK replies ``lo .. hi - 1`` of a batch: per reply
    ``u64 client id, u64 request id, u8 status (OK), u32 epoch, u64 seq, u16 leader length,
    u32 events length`` (little-endian: checked at import), the leader, the events.

    Reply ``i`` is sequenced as ``first_seq + i``; its events are
    ``events[offsets[i]:offsets[i + 1]]``. The id columns are both lists of ints
    or both uint64 arrays (a batch of packed requests: ``queues.PendingQueue``).
    Two passes: the size, then one buffer filled in place. O(hi - lo + their events).
    """
    # Lists (a batch of requests that came one by one) become uint64 columns first: one packer.
    cdef const uint64_t[::1] cids = np.asarray(client_ids, dtype=np.uint64)
    cdef const uint64_t[::1] rids = np.asarray(request_ids, dtype=np.uint64)
    if lo < 0 or lo > hi or hi > cids.shape[0] or hi > rids.shape[0] or hi >= len(offsets):
        raise ValueError("lo and hi must select replies that have ids and offsets")
    return _pack_reply_cols(cids, rids, lo, hi, epoch, first_seq, leader, events, offsets)


cdef bytes _pack_reply_cols(const uint64_t[::1] cids, const uint64_t[::1] rids, Py_ssize_t lo, Py_ssize_t hi,
                            uint32_t epoch, uint64_t first_seq, bytes leader, bytes events, list offsets):
    """``pack_reply_run`` for uint64 id columns (bounds checked by the caller)."""
    cdef Py_ssize_t nl = PyBytes_GET_SIZE(leader), ne = PyBytes_GET_SIZE(events), i, a, b
    if nl > 0xFFFF:
        raise ValueError("leader name longer than 65535 bytes")
    cdef Py_ssize_t size = (hi - lo) * (35 + nl)
    for i in range(lo, hi):
        a = offsets[i]
        b = offsets[i + 1]
        if a < 0 or a > b or b > ne:
            raise ValueError("event offsets out of order or out of range")
        size += b - a
    out = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char *dst = <unsigned char *>PyBytes_AS_STRING(out)
    cdef const char *ev = PyBytes_AS_STRING(events)
    cdef const char *name = PyBytes_AS_STRING(leader)
    cdef uint64_t seq
    cdef uint32_t n
    cdef uint16_t nlead = <uint16_t>nl
    for i in range(lo, hi):
        a = offsets[i]
        b = offsets[i + 1]
        seq = first_seq + <uint64_t>i
        n = <uint32_t>(b - a)
        memcpy(dst, &cids[i], 8)
        memcpy(dst + 8, &rids[i], 8)
        dst[16] = 0  # status OK
        memcpy(dst + 17, &epoch, 4)
        memcpy(dst + 21, &seq, 8)
        memcpy(dst + 29, &nlead, 2)
        memcpy(dst + 31, &n, 4)
        memcpy(dst + 35, name, nl)
        memcpy(dst + 35 + nl, ev + a, b - a)
        dst += 35 + nl + (b - a)
    return out


cdef enum:
    REQUEST_SIZE = 96  # wire._REQUEST: u64 client id, u64 request id, 80-byte command


def request_stretch(const unsigned char[::1] raw, Py_ssize_t start):
    """``(k, client id, request id)``: records ``start .. start + k - 1`` of packed ``Requests``
    records ``raw`` are all the client's of record ``start``, with request ids rising by one
    from that record's (never wrapping past 2**64 - 1), and ``k`` is the most such (0 at
    or past the end, with ids 0). O(k), without the GIL.
    """
    cdef Py_ssize_t n = raw.shape[0] // REQUEST_SIZE, i
    if start < 0:
        raise ValueError("negative start")
    if start >= n:
        return 0, 0, 0
    cdef uint64_t cid, rid, c, r, prev
    cdef const unsigned char *p = &raw[0]
    memcpy(&cid, p + start * REQUEST_SIZE, 8)
    memcpy(&rid, p + start * REQUEST_SIZE + 8, 8)
    prev = rid
    with nogil:
        for i in range(start + 1, n):
            memcpy(&c, p + i * REQUEST_SIZE, 8)
            memcpy(&r, p + i * REQUEST_SIZE + 8, 8)
            if c != cid or prev == 0xFFFFFFFFFFFFFFFFULL or r != prev + 1:
                break
            prev = r
        else:
            i = n
    return i - start, cid, rid


def fresh_span(dict results, uint64_t client_id, uint64_t first, Py_ssize_t count):
    """How many of request ids ``first .. first + count - 1`` of ``client_id``, from the first,
    are neither remembered nor below the client's floor in ``results`` (the replica's dedupe
    table, flushed): ``Replica.lookup`` gives None for each. The ids must not pass 2**64 - 1.

    O(that many): one dict probe per id, and none for a client the table does not hold.
    """
    if count < 0:
        raise ValueError("negative count")
    if count and first + <uint64_t>(count - 1) < first:
        raise OverflowError("request ids pass 2**64 - 1")
    slot = results.get(client_id)
    if slot is None:
        return count
    if first < slot[0]:  # (a floor may be 2**64: compared as Python ints)
        return 0  # ids rise: only the first can be below the floor and it is
    table = slot[1]
    if not table:
        return count
    cdef Py_ssize_t j
    for j in range(count):
        if (first + <uint64_t>j) in table:
            return j
    return count


def fresh_requests(requests, Py_ssize_t start, set keys, dict results, Py_ssize_t size):
    """How many of ``requests[start:]``, from the first, are new: a ``size``-byte command, a
    ``(client_id, request_id)`` not in ``keys`` (queued) and neither remembered nor below its
    client's floor in ``results`` (the replica's dedupe table, flushed).

    Their keys are added to ``keys``; the scan stops at the first request that
    is not new. O(that many), with no bytecode per request.
    """
    cdef Py_ssize_t n = len(requests), i
    cdef tuple key
    cdef object cid, rid, slot
    if start < 0:
        raise ValueError("negative start")
    for i in range(start, n):
        m = requests[i]
        cid = m.client_id
        rid = m.request_id
        if len(m.command) != size:
            return i - start
        key = (cid, rid)
        if key in keys:
            return i - start
        slot = results.get(cid)
        if slot is not None and (rid in slot[1] or rid < slot[0]):
            return i - start
        keys.add(key)
    return max(n - start, 0)
