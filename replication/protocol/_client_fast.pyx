"""The client's reply decoding in C: a ``Replies`` frame into columns, behind ``replication.client``.

For: checking and parsing one ``Replies`` frame (header, checksum, every
bundled reply) with no Python object per reply (``decode_replies``), popping
its answered request ids from the client core's pending table
(``ReplyBlock.pop_answered``), and gathering the answered replies of many
frames into NumPy columns (``gather``). ``wire.decode`` and
``wire.Replies.from_payload`` are the specification: the same frames are
accepted, the same ``wire.DecodeError`` reasons raised for the rest, and
``ReplyBlock.replies()`` equals the decoded bundle's ``replies`` (the tests
check both on valid, truncated and corrupt frames).

Not for: any other message type (``decode_replies`` returns ``None`` and the
caller uses ``wire.decode``) or any protocol decision (``ClientCore`` makes
those; this module only reads bytes and a dict).
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy

import zlib

import numpy as np

from matching.codes import EVENT_DTYPE

from . import wire

cdef Py_ssize_t HEADER_SIZE = wire.HEADER_SIZE
cdef Py_ssize_t MAX_PAYLOAD = wire.MAX_PAYLOAD
cdef Py_ssize_t EVENT_SIZE = wire.EVENT_SIZE
cdef Py_ssize_t BUNDLED = wire._BUNDLED_REPLY.size  # client_id, request_id, status, epoch, seq, 2 lengths
cdef int REPLIES_TYPE = wire.Replies.TYPE
cdef int VERSION = wire.VERSION
cdef int OK = wire.OK
SESSION_RANGE = True  # all_ok takes the session's id range (client.py refuses an older build)

_Reply = wire.Reply
_DecodeError = wire.DecodeError


cdef struct rec_t:
    uint64_t client_id
    uint64_t request_id
    uint64_t seq
    uint32_t epoch
    uint32_t leader  # index into ReplyBlock.leaders
    Py_ssize_t events  # offset of the reply's events in the frame
    Py_ssize_t n_events  # their length in bytes
    uint8_t status
    uint8_t answered  # set by pop_answered: this reply completed a pending request


cdef inline uint64_t _le(const unsigned char *p, int n) noexcept nogil:
    """The little-endian unsigned integer in ``p[:n]`` (any host byte order, any alignment)."""
    cdef uint64_t v = 0
    cdef int k
    for k in range(n - 1, -1, -1):
        v = (v << 8) | p[k]
    return v


cdef inline void _put_le(unsigned char *p, uint64_t v) noexcept nogil:
    """Store ``v`` in ``p[:8]`` little-endian (any host byte order, any alignment)."""
    cdef int k
    for k in range(8):
        p[k] = <unsigned char>(v >> (8 * k))


@cython.final
cdef class ReplyBlock:
    """The replies of one ``Replies`` frame, parsed into a C array; made by :func:`decode_replies`."""

    cdef bytes frame
    cdef rec_t *recs
    cdef Py_ssize_t n
    cdef list leaders
    cdef readonly Py_ssize_t answered  # how many replies pop_answered matched to a pending request

    def __cinit__(self):
        self.recs = NULL
        self.n = 0
        self.answered = 0

    def __dealloc__(self):
        PyMem_Free(self.recs)

    def __len__(self):
        return self.n

    def all_ok(self, uint64_t client_id, uint64_t lo=0, uint64_t hi=0xFFFFFFFFFFFFFFFF):
        """Whether every reply is an ``OK`` to ``client_id`` for a request id in ``lo .. hi - 1``
        (the case ``ClientCore`` batches: its session's ids). O(n)."""
        cdef Py_ssize_t i
        cdef rec_t *r
        for i in range(self.n):
            r = &self.recs[i]
            if r.status != OK or r.client_id != client_id or r.request_id < lo or r.request_id >= hi:
                return False
        return True

    def pop_answered(self, dict pending):
        """Pop each reply's request id from ``pending``, in order; return how many were not there.

        The ones popped are this block's answered replies (a twin of one
        answered already, or an id never sent, is late). Call once. O(n).
        """
        cdef Py_ssize_t i, late = 0
        for i in range(self.n):
            if pending.pop(self.recs[i].request_id, None) is None:
                late += 1
            else:
                self.recs[i].answered = 1
                self.answered += 1
        return late

    cdef object _reply(self, Py_ssize_t i):
        cdef rec_t *r = &self.recs[i]
        return _Reply(
            r.client_id,
            r.request_id,
            r.status,
            r.epoch,
            r.seq,
            self.leaders[r.leader],
            self.frame[r.events : r.events + r.n_events],
        )

    def replies(self):
        """Every reply as a ``wire.Reply``: ``wire.decode(frame).replies``. O(n)."""
        return tuple([self._reply(i) for i in range(self.n)])

    def answered_replies(self):
        """The answered replies as ``wire.Reply`` objects, in order. O(n)."""
        return [self._reply(i) for i in range(self.n) if self.recs[i].answered]

    def last_answered(self):
        """The last answered reply (a ``wire.Reply``), or ``None``. O(n) at worst."""
        cdef Py_ssize_t i
        for i in range(self.n - 1, -1, -1):
            if self.recs[i].answered:
                return self._reply(i)
        return None


cdef Py_ssize_t _parse(ReplyBlock b, const unsigned char *p, Py_ssize_t end) except -1:
    """Count (``b.recs`` NULL) or fill the records of the payload ``p[:end]``; the count."""
    cdef Py_ssize_t pos = 0, n = 0, n_leader, n_events, last_at = -1, last_len = 0
    cdef rec_t *r
    while pos < end:
        if pos + BUNDLED > end:
            raise _DecodeError("bad_payload", "reply record runs past the end of the payload")
        n_leader = <Py_ssize_t>_le(p + pos + 29, 2)
        n_events = <Py_ssize_t>_le(p + pos + 31, 4)
        if pos + BUNDLED + n_leader + n_events > end:
            raise _DecodeError("bad_payload", "reply record runs past the end of the payload")
        if n_events % EVENT_SIZE:
            raise _DecodeError("bad_payload", "events not a whole number of records")
        if b.recs != NULL:
            r = &b.recs[n]
            r.client_id = _le(p + pos, 8)
            r.request_id = _le(p + pos + 8, 8)
            r.status = p[pos + 16]
            r.epoch = <uint32_t>_le(p + pos + 17, 4)
            r.seq = _le(p + pos + 21, 8)
            r.answered = 0
            # A bundle's replies almost all name one leader: decode it once.
            if last_at < 0 or n_leader != last_len or memcmp(p + last_at, p + pos + BUNDLED, n_leader):
                try:
                    b.leaders.append(PyUnicode_DecodeUTF8(<const char *>p + pos + BUNDLED, n_leader, NULL))
                except UnicodeDecodeError as exc:
                    raise _DecodeError("bad_payload", "text is not UTF-8") from exc
                last_at, last_len = pos + BUNDLED, n_leader
            r.leader = <uint32_t>(len(b.leaders) - 1)
            r.events = HEADER_SIZE + pos + BUNDLED + n_leader
            r.n_events = n_events
        pos += BUNDLED + n_leader + n_events
        n += 1
    if not n:
        raise _DecodeError("bad_payload", "no replies")
    return n


def decode_replies(frame):
    """One ``Replies`` frame as a :class:`ReplyBlock`; ``None`` for any other frame.

    Raises ``wire.DecodeError`` with the reason ``wire.decode`` gives for a
    bad ``Replies`` frame. ``None`` (not ``bytes``, too short to have a type,
    or another type) means: use ``wire.decode``. O(len(frame)).
    """
    if type(frame) is not bytes or PyBytes_GET_SIZE(frame) < HEADER_SIZE:
        return None
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(frame)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(frame), length
    if p[3] != REPLIES_TYPE:
        return None
    if p[0] != b"M"[0] or p[1] != b"C"[0]:
        raise _DecodeError("bad_magic")
    if p[2] != VERSION:
        raise _DecodeError("bad_version", str(p[2]))
    length = <Py_ssize_t>_le(p + 16, 4)
    if length > MAX_PAYLOAD:
        raise _DecodeError("bad_length", f"{length} bytes claimed")
    if size - HEADER_SIZE < length:
        raise _DecodeError("truncated", f"{size - HEADER_SIZE} of {length} payload bytes")
    if size - HEADER_SIZE > length:
        raise _DecodeError("bad_length", "trailing bytes after payload")
    view = memoryview(frame)
    if zlib.crc32(view[HEADER_SIZE:], zlib.crc32(view[:20])) != _le(p + 20, 4):
        raise _DecodeError("bad_checksum")
    cdef ReplyBlock b = ReplyBlock.__new__(ReplyBlock)
    b.frame = frame
    b.leaders = []
    cdef Py_ssize_t n = _parse(b, p + HEADER_SIZE, length)
    b.recs = <rec_t *>PyMem_Malloc(n * sizeof(rec_t))
    if b.recs == NULL:
        raise MemoryError()
    b.n = _parse(b, p + HEADER_SIZE, length)
    return b


def gather(list blocks, uint64_t row0=0):
    """The answered replies of ``blocks``, in order, as columns.

    Returns ``(request_id, status, epoch, seq, events)``: NumPy arrays with a
    row per answered reply, and an ``EVENT_DTYPE`` array of all their events
    whose ``cmd`` field is the row (plus ``row0``) of the reply it came in.
    O(answered replies + event bytes).
    """
    cdef ReplyBlock b
    cdef Py_ssize_t i, rows = 0, nbytes = 0, row = 0, at = 0, k
    cdef rec_t *r
    for b in blocks:
        for i in range(b.n):
            if b.recs[i].answered:
                rows += 1
                nbytes += b.recs[i].n_events
    request_id = np.empty(rows, np.uint64)
    status = np.empty(rows, np.uint8)
    epoch = np.empty(rows, np.uint32)
    seq = np.empty(rows, np.uint64)
    events = np.empty(nbytes // EVENT_SIZE, EVENT_DTYPE)
    cdef uint64_t[::1] rid_v = request_id, seq_v = seq
    cdef uint8_t[::1] st_v = status
    cdef uint32_t[::1] ep_v = epoch
    cdef unsigned char[::1] ev_v = events.view(np.uint8)
    cdef uint64_t cmd
    cdef const unsigned char *src
    for b in blocks:
        src = <const unsigned char *>PyBytes_AS_STRING(b.frame)
        for i in range(b.n):
            r = &b.recs[i]
            if not r.answered:
                continue
            rid_v[row] = r.request_id
            st_v[row] = r.status
            ep_v[row] = r.epoch
            seq_v[row] = r.seq
            if r.n_events:
                memcpy(&ev_v[at], src + r.events, r.n_events)
                cmd = row0 + <uint64_t>row
                k = at
                at += r.n_events
                while k < at:
                    _put_le(&ev_v[k], cmd)  # EVENT_DTYPE's cmd: <u8 at offset 0
                    k += EVENT_SIZE
            row += 1
    return request_id, status, epoch, seq, events
