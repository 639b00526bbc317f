"""The one codec for everything replication puts on a socket or in a journal.

For: versioned, checksummed frames and the message dataclasses they carry
(client requests and replies, journal entries, acks, heartbeats, refills,
snapshots, status, switchover/fencing, witness votes), plus the output
kinds of the sans-IO machines (``Send``, ``Publish``, and ``ReplyRun``: a
batch's replies to one client, kept as columns). Not for: sockets,
timing or any protocol decision — callers decide what to send; this module
only turns messages into bytes and back.

Frame layout (little-endian, 24-byte header then payload)::

    magic  2s  b"MC"
    ver    u8  VERSION
    type   u8  message type code
    epoch  u32
    seq    u64
    length u32 payload length
    crc    u32 zlib.crc32 of header[:20] + payload

``decode`` raises ``DecodeError`` (with a short machine-readable ``reason``)
for anything wrong; it never raises anything else on arbitrary bytes.
"""

from __future__ import annotations

import struct
import zlib
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat, starmap
from typing import ClassVar, NamedTuple

import numpy as np

MAGIC = b"MC"
VERSION = 1
HEADER = struct.Struct("<2sBBIQII")
HEADER_SIZE = HEADER.size  # 24
# Absurd-length guard of the decoder: no frame is bigger. It is this large for what a node *sends*:
# one reply carries all its command's events (a mass cancel of a large account), and a published
# batch all its batch's. What a node *accepts* is far smaller: see MAX_INBOUND_FRAME.
MAX_PAYLOAD = 64 * 1024 * 1024
# The largest frame a node's or the witness's sockets accept (ZeroMQ's MAXMSGSIZE on every socket a
# driver opens, so a bigger one is never even buffered: ZeroMQ drops it and disconnects its sender).
# The biggest legitimate inbound frames: a snapshot chunk (sequencer.SNAPSHOT_CHUNK, 512 KiB), an
# Entries message of a batch or a refill chunk (``config`` keeps max_batch and refill_chunk entries
# within MAX_INBOUND_ENTRIES), a client's Requests bundle (client.MAX_BUNDLE = 1,024 requests of
# 72 bytes). 2 MiB leaves room above all of them.
MAX_INBOUND_FRAME = 2 * 1024 * 1024
COMMAND_SIZE = 56  # one matching.codes.COMMAND_DTYPE record
EVENT_SIZE = 64  # one matching.codes.EVENT_DTYPE record

# Reply statuses. FENCED: the request's session is older than its client id's current one;
# it was never executed. BUSY: the client already has ``max_in_flight`` requests queued at the
# primary; this one was not sequenced (re-send it later: the dedupe table keeps that exactly-once).
OK, NOT_PRIMARY, EXPIRED, UNAVAILABLE, FENCED, BUSY = 0, 1, 2, 3, 4, 5
STATUS_NAMES = {
    OK: "ok",
    NOT_PRIMARY: "not_primary",
    EXPIRED: "expired",
    UNAVAILABLE: "unavailable",
    FENCED: "fenced",
    BUSY: "busy",
}

# Node roles as carried in heartbeats.
ROLE_STANDBY, ROLE_PRIMARY, ROLE_DIVERGED, ROLE_WITNESS, ROLE_DRAINING = 0, 1, 2, 3, 4
ROLE_NAMES = {
    ROLE_STANDBY: "standby",
    ROLE_PRIMARY: "primary",
    ROLE_DIVERGED: "diverged",
    ROLE_WITNESS: "witness",
    ROLE_DRAINING: "draining",
}


class DecodeError(ValueError):
    """A frame that cannot be decoded; ``reason`` is a short counter key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# --- payload helpers --------------------------------------------------------------


class _Reader:
    """Bounds-checked reads from a payload; every overrun is a DecodeError."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise DecodeError("bad_payload", "field runs past the end of the payload")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, st: struct.Struct) -> tuple:
        return st.unpack(self.take(st.size))

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return _U32.unpack(self.take(4))[0]

    def u64(self) -> int:
        return _U64.unpack(self.take(8))[0]

    def text(self) -> str:
        n = _U16.unpack(self.take(2))[0]
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("bad_payload", "text is not UTF-8") from exc

    def blob(self) -> bytes:
        return self.take(self.u32())

    def done(self) -> None:
        if self.pos != len(self.buf):
            raise DecodeError("bad_payload", f"{len(self.buf) - self.pos} trailing bytes")


_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def _text(s: str) -> bytes:
    b = s.encode("utf-8")
    return _U16.pack(len(b)) + b


def _blob(b: bytes) -> bytes:
    return _U32.pack(len(b)) + bytes(b)


def _names(names: tuple[str, ...]) -> bytes:
    return _text(",".join(names))


def _read_names(r: _Reader) -> tuple[str, ...]:
    return tuple(m for m in r.text().split(",") if m)


# Field codecs of ``Message.LAYOUT``: name -> (encode value, decode from a _Reader).
# A codec name ending in "?" marks an optional trailing field (see Message.payload).
_CODECS = {
    "text": (_text, _Reader.text),
    "u8": (lambda v: bytes([v]), _Reader.u8),
    "bool": (lambda v: bytes([int(v)]), lambda r: bool(r.u8())),
    "u32": (_U32.pack, _Reader.u32),
    "u64": (_U64.pack, _Reader.u64),
    "blob": (_blob, _Reader.blob),
    "names": (_names, _read_names),
}


# The packed command record, field for field ``matching.codes.COMMAND_DTYPE``
# (tests/protocol/test_wire.py pins the two together).
COMMAND = struct.Struct("<QQqqqIBBBBBBH4x")


def pack_command(record: tuple) -> bytes:
    """The 56 bytes of a command record (a tuple in ``COMMAND_DTYPE`` field order)."""
    return COMMAND.pack(*record)


def unpack_command(b: bytes) -> tuple:
    """The record tuple of 56 command bytes."""
    return COMMAND.unpack(b)


# --- journal entries ------------------------------------------------------------

ENTRY = struct.Struct("<IQQQQ56s")  # epoch, seq, client_id, request_id, digest, command
# Entries per Entries message a node may send a peer (a batch, a refill chunk): they must fit
# MAX_INBOUND_FRAME with room for the header (``config`` refuses a larger max_batch or refill_chunk).
MAX_INBOUND_ENTRIES = (MAX_INBOUND_FRAME - 4096) // ENTRY.size
_REQUEST = struct.Struct("<QQ56s")  # client_id, request_id, command
_ENTRIES_HEAD = struct.Struct("<QIB")  # commit, count, flags
_REPLY_HEAD = struct.Struct("<QQBH")  # client_id, request_id, status, leader length


class Entry(NamedTuple):
    """One sequenced command: what the journal stores and the stream carries.

    ``digest`` is the primary's chained engine digest after applying it.
    """

    epoch: int
    seq: int
    client_id: int
    request_id: int
    digest: int
    command: bytes

    def pack(self) -> bytes:
        return ENTRY.pack(*self)

    @classmethod
    def unpack(cls, b: bytes) -> Entry:
        if len(b) != ENTRY.size:
            raise DecodeError("bad_payload", f"entry of {len(b)} bytes")
        return cls(*ENTRY.unpack(b))


# ``ENTRY`` as a NumPy record: a run of packed entries seen as columns without a
# Python object per entry (the catch-up path moves them by the thousand).
ENTRY_DTYPE = np.dtype(
    {
        "names": ["epoch", "seq", "client_id", "request_id", "digest", "command"],
        "formats": ["<u4", "<u8", "<u8", "<u8", "<u8", f"V{COMMAND_SIZE}"],
        "offsets": [0, 4, 12, 20, 28, 36],
        "itemsize": ENTRY.size,
    }
)
RUN_MIN = 64  # Entries of at least this many entries decode to an EntryRun (fewer: a tuple)


class PackedRun(Sequence):
    """Fixed-size records kept as their packed bytes: a read-only sequence of the messages they hold.

    The common part of ``EntryRun`` and ``RequestRun``: a subclass names its
    ``RECORD`` struct, its ``DTYPE`` (the same layout as a NumPy dtype) and
    ``_make`` (one record's fields -> its message). Indexing and iterating make
    messages on demand (O(1) each); a slice is another run of the same class
    (O(bytes)). Equal to any tuple or list of the same messages, and hashed as
    their tuple.
    """

    __slots__ = ("raw", "_arr")
    RECORD: ClassVar[struct.Struct]
    DTYPE: ClassVar[np.dtype]

    def __init__(self, raw: bytes) -> None:
        self.raw = raw  # len(raw) // RECORD.size records
        self._arr: np.ndarray | None = None

    @staticmethod
    @abstractmethod
    def _make(fields: tuple) -> object:
        """One record's unpacked fields -> its message (each subclass's own)."""

    @property
    def array(self) -> np.ndarray:
        """The records as a ``DTYPE`` array viewing ``raw`` (read-only)."""
        if self._arr is None:
            self._arr = np.frombuffer(self.raw, dtype=self.DTYPE)
        return self._arr

    def __len__(self) -> int:
        return len(self.raw) // self.RECORD.size

    def __getitem__(self, i):
        n, size = len(self), self.RECORD.size
        if isinstance(i, slice):
            start, stop, step = i.indices(n)
            if step != 1:
                return tuple(self)[i]
            stop = max(start, stop)
            return type(self)(self.raw[start * size : stop * size])
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"{type(self).__name__} index out of range")
        return self._make(self.RECORD.unpack_from(self.raw, i * size))

    def __iter__(self):
        return map(self._make, self.RECORD.iter_unpack(self.raw))

    def __eq__(self, other: object) -> bool:
        if type(other) is type(self):
            return self.raw == other.raw
        if isinstance(other, (tuple, list)):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))  # equal to the tuple of its messages, so hashed like it


class EntryRun(PackedRun):
    """Consecutive entries kept as their packed bytes: a read-only sequence of ``Entry``.

    What the catch-up path passes from the primary's journal to the wire and
    from the wire to the standby's engine and journal, so that a refill chunk
    costs a few vectorised operations, not a Python object per entry. Indexing
    and iterating make ``Entry`` tuples on demand (O(1) each); a slice is
    another ``EntryRun`` (O(bytes)). Equal to any sequence of the same entries.
    Built only from checked bytes: :meth:`from_bytes` verifies the seqs.
    """

    __slots__ = ()
    RECORD = ENTRY
    DTYPE = ENTRY_DTYPE
    _make = staticmethod(Entry._make)  # consecutive seqs

    @classmethod
    def from_bytes(cls, raw: bytes, first_seq: int | None = None) -> EntryRun:
        """Wrap packed entries; ``DecodeError`` unless they are whole and their seqs consecutive
        (from ``first_seq`` if given). O(n), vectorised."""
        if len(raw) % ENTRY.size:
            raise DecodeError("bad_payload", f"{len(raw)} bytes is not a whole number of entries")
        run = cls(bytes(raw))
        seqs = run.array["seq"]
        if len(seqs):
            start = int(seqs[0]) if first_seq is None else first_seq
            if start + len(seqs) > 1 << 64 or not np.array_equal(
                seqs, np.arange(start, start + len(seqs), dtype=np.uint64)
            ):
                raise DecodeError("bad_payload", "entries are not consecutive")
        return run

    @classmethod
    def build(
        cls,
        epoch: int,
        first_seq: int,
        client_ids: Sequence[int] | np.ndarray,
        request_ids: Sequence[int] | np.ndarray,
        digests: Sequence[int] | np.ndarray,
        commands: bytes,
    ) -> EntryRun:
        """Pack entries ``first_seq ..`` of ``epoch`` from their columns (``commands``: the
        ``COMMAND_SIZE``-byte records back to back): the bytes ``pack_entries`` gives for the
        same ``Entry`` tuples. What the primary makes once per batch for its journal and
        every ``Entries`` message alike. O(n), vectorised past ``RUN_MIN`` entries."""
        n = len(client_ids)
        if len(request_ids) != n or len(digests) != n or len(commands) != n * COMMAND_SIZE:
            raise ValueError("client_ids, request_ids, digests and commands must have one element per entry")
        if n < RUN_MIN:  # the live stream's small batches: NumPy's per-call overhead would dominate
            pack = ENTRY.pack
            return cls(
                b"".join(
                    [
                        pack(
                            epoch,
                            first_seq + i,
                            client_ids[i],
                            request_ids[i],
                            int(digests[i]),
                            commands[o : o + COMMAND_SIZE],
                        )
                        for i, o in enumerate(range(0, n * COMMAND_SIZE, COMMAND_SIZE))
                    ]
                )
            )
        # ENTRY_DTYPE's fields cover all of its bytes: no uninitialised padding reaches the wire.
        arr = np.empty(n, dtype=ENTRY_DTYPE)
        arr["epoch"] = epoch
        arr["seq"] = np.arange(first_seq, first_seq + n, dtype=np.uint64)
        arr["client_id"] = client_ids
        arr["request_id"] = request_ids
        arr["digest"] = digests
        arr["command"] = np.frombuffer(commands, dtype=f"V{COMMAND_SIZE}")
        return cls(arr.tobytes())

    @property
    def commands(self) -> bytes:
        """The commands back to back (``COMMAND_SIZE`` bytes each). O(n)."""
        return self.array["command"].tobytes()

    def __repr__(self) -> str:
        if not self.raw:
            return "EntryRun([])"
        return f"EntryRun(seq {self[0].seq}..{self[-1].seq}, {len(self)} entries)"


def pack_entries(entries: Sequence[Entry]) -> bytes:
    """Entries packed back to back (an ``EntryRun`` gives its bytes as they are). O(n)."""
    if isinstance(entries, EntryRun):
        return entries.raw
    pack = ENTRY.pack
    return b"".join([pack(*e) for e in entries])


# --- messages --------------------------------------------------------------------


# Messages are plain slotted dataclasses, not frozen ones: a frozen dataclass
# pays object.__setattr__ per field (about 1.5 us for a Reply against 0.2 us),
# several times per order on the hot path. Treat them as immutable all the same.
@dataclass(slots=True, unsafe_hash=True)
class Message:
    """Base of every message. ``TYPE`` is the frame type code.

    A message's ``epoch`` and ``seq`` fields (if it has them) travel in the
    frame header; the rest of its payload is described by ``LAYOUT``, a
    tuple of ``(field, codec)`` pairs (codecs: see ``_CODECS``), which the
    generic ``payload``/``from_payload`` below encode in order. Messages on
    the hot path, or with a payload no layout describes, override both.
    """

    TYPE: ClassVar[int] = 0
    LAYOUT: ClassVar[tuple[tuple[str, str], ...]] = ()

    def header_epoch_seq(self) -> tuple[int, int]:
        return getattr(self, "epoch", 0), getattr(self, "seq", 0)

    def payload(self) -> bytes:
        parts = []
        for name, codec in self.LAYOUT:
            value = getattr(self, name)
            if codec.endswith("?") and value in (None, 0):
                break  # an optional trailing field at its default: left off the wire
            parts.append(_CODECS[codec.rstrip("?")][0](value))
        return b"".join(parts)

    @classmethod
    def from_payload(cls, r: _Reader, epoch: int, seq: int) -> Message:
        fields = cls.__dataclass_fields__  # type: ignore[attr-defined]
        values: dict = {}
        if "epoch" in fields:
            values["epoch"] = epoch
        if "seq" in fields:
            values["seq"] = seq
        for name, codec in cls.LAYOUT:
            if codec.endswith("?") and r.pos == len(r.buf):
                break  # an optional trailing field left off: the dataclass default
            values[name] = _CODECS[codec.rstrip("?")][1](r)
        return cls(**values)


@dataclass(slots=True, unsafe_hash=True)
class Request(Message):
    """Client -> node: execute ``command`` (a 56-byte record) once."""

    TYPE: ClassVar[int] = 1
    client_id: int
    request_id: int
    command: bytes

    def payload(self) -> bytes:
        return _REQUEST.pack(self.client_id, self.request_id, self.command)

    @classmethod
    def from_payload(cls, r, epoch, seq):
        cid, rid, cmd = r.unpack(_REQUEST)
        return cls(cid, rid, cmd)


@dataclass(slots=True, unsafe_hash=True)
class Reply(Message):
    """Node -> client: the events of a request (``EVENT_DTYPE`` records) or a refusal."""

    TYPE: ClassVar[int] = 2
    client_id: int
    request_id: int
    status: int = OK
    epoch: int = 0
    seq: int = 0
    leader: str = ""
    events: bytes = b""

    def payload(self) -> bytes:
        leader = self.leader.encode("utf-8")
        return b"".join(
            (
                _REPLY_HEAD.pack(self.client_id, self.request_id, self.status, len(leader)),
                leader,
                _U32.pack(len(self.events)),
                self.events,
            )
        )

    @classmethod
    def from_payload(cls, r, epoch, seq):
        buf = r.buf
        if len(buf) < _REPLY_HEAD.size:
            raise DecodeError("bad_payload", "field runs past the end of the payload")
        cid, rid, status, n = _REPLY_HEAD.unpack_from(buf)
        r.pos = _REPLY_HEAD.size
        try:
            leader = r.take(n).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("bad_payload", "text is not UTF-8") from exc
        events = r.blob()
        if len(events) % EVENT_SIZE:
            raise DecodeError("bad_payload", "events not a whole number of records")
        return cls(cid, rid, status, epoch, seq, leader, events)


@dataclass(slots=True, unsafe_hash=True)
class Requests(Message):
    """Client -> node: several requests in one frame, handled as if sent one by one, in order.

    Records are ``Request`` payloads back to back, so a client under load pays
    one socket send and one checksum per window instead of per order. ``decode``
    gives a tuple of ``Request``; :func:`decode_packed` (the driver's) keeps the
    records packed, as a ``RequestRun``.
    """

    TYPE: ClassVar[int] = 20
    requests: tuple[Request, ...] | RequestRun

    def payload(self) -> bytes:
        if type(self.requests) is RequestRun:
            return self.requests.raw
        pack = _REQUEST.pack
        return b"".join([pack(q.client_id, q.request_id, q.command) for q in self.requests])

    @classmethod
    def from_payload(cls, r, epoch, seq):
        body = r.take(len(r.buf) - r.pos)
        if not body or len(body) % _REQUEST.size:
            raise DecodeError("bad_payload", "not a whole number of request records")
        return cls(tuple(starmap(Request, _REQUEST.iter_unpack(body))))


_BUNDLED_REPLY = struct.Struct(
    "<QQBIQHI"
)  # client_id, request_id, status, epoch, seq, leader len, events len


@dataclass(slots=True, unsafe_hash=True)
class Replies(Message):
    """Node -> client: several replies to one client in one frame (the driver bundles them).

    Each reply carries its own epoch and seq, which a lone ``Reply`` takes
    from the frame header.
    """

    TYPE: ClassVar[int] = 21
    replies: tuple[Reply, ...]

    def payload(self) -> bytes:
        parts = []
        pack = _BUNDLED_REPLY.pack
        name, leader = None, b""  # a bundle's replies almost all name one leader: encoded once
        for p in self.replies:
            if p.leader != name:
                name = p.leader
                leader = name.encode("utf-8")
            events = p.events
            parts += (
                pack(p.client_id, p.request_id, p.status, p.epoch, p.seq, len(leader), len(events)),
                leader,
                events,
            )
        return b"".join(parts)

    @classmethod
    def from_payload(cls, r, epoch, seq):
        buf, pos, end = r.buf, 0, len(r.buf)
        head, unpack = _BUNDLED_REPLY.size, _BUNDLED_REPLY.unpack_from
        out = []
        while pos < end:
            if pos + head > end:
                raise DecodeError("bad_payload", "reply record runs past the end of the payload")
            cid, rid, status, ep, sq, n_leader, n_events = unpack(buf, pos)
            pos += head
            if pos + n_leader + n_events > end:
                raise DecodeError("bad_payload", "reply record runs past the end of the payload")
            if n_events % EVENT_SIZE:
                raise DecodeError("bad_payload", "events not a whole number of records")
            try:
                leader = buf[pos : pos + n_leader].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DecodeError("bad_payload", "text is not UTF-8") from exc
            pos += n_leader
            out.append(Reply(cid, rid, status, ep, sq, leader, buf[pos : pos + n_events]))
            pos += n_events
        if not out:
            raise DecodeError("bad_payload", "no replies")
        r.pos = end
        return cls(tuple(out))


@dataclass(slots=True, unsafe_hash=True)
class Entries(Message):
    """Primary -> standby/subscriber: consecutive journal entries from ``seq``.

    ``commit`` is the highest seq the primary knows is replicated. ``events``,
    when not empty, holds one ``EVENT_DTYPE`` blob per entry (published stream).
    ``entries`` is a tuple of ``Entry``, or an ``EntryRun`` (packed bytes: what
    a catch-up chunk read from the journal is sent as, and what a message of
    at least ``RUN_MIN`` entries without events decodes to).
    """

    TYPE: ClassVar[int] = 3
    epoch: int
    seq: int
    commit: int
    entries: tuple[Entry, ...] | EntryRun
    events: tuple[bytes, ...] = ()

    def payload(self) -> bytes:
        flags = 1 if self.events else 0
        head = _ENTRIES_HEAD.pack(self.commit, len(self.entries), flags)
        if not flags:
            return head + pack_entries(self.entries)
        if len(self.events) != len(self.entries):
            raise ValueError("Entries with events needs one events blob per entry")
        # Each entry's packed record, then its events (an EntryRun gives its bytes as they are).
        raw, size = pack_entries(self.entries), ENTRY.size
        parts = [head]
        for i, ev in enumerate(self.events):
            parts += (raw[i * size : (i + 1) * size], _U32.pack(len(ev)), ev)
        return b"".join(parts)

    @classmethod
    def from_payload(cls, r, epoch, seq):
        commit, n, flags = r.unpack(_ENTRIES_HEAD)
        if n * ENTRY.size > len(r.buf):
            raise DecodeError("bad_length", f"{n} entries cannot fit")
        if not flags & 1:
            raw = r.take(n * ENTRY.size)
            if n >= RUN_MIN:
                # Catch-up chunks: kept packed, seqs checked in one vectorised pass.
                return cls(epoch, seq, commit, EntryRun.from_bytes(raw, seq), ())
            # The live stream's small batches: one iter_unpack over all records.
            make = Entry._make
            entries = [make(t) for t in ENTRY.iter_unpack(raw)]
            for i, e in enumerate(entries):
                if e.seq != seq + i:
                    raise DecodeError("bad_payload", "entries are not consecutive")
            return cls(epoch, seq, commit, tuple(entries), ())
        entries, events = [], []
        for i in range(n):
            e = Entry(*r.unpack(ENTRY))
            if e.seq != seq + i:
                raise DecodeError("bad_payload", "entries are not consecutive")
            entries.append(e)
            if flags & 1:
                events.append(r.blob())
        return cls(epoch, seq, commit, tuple(entries), tuple(events))


@dataclass(slots=True, unsafe_hash=True)
class Ack(Message):
    """Standby -> primary: every entry up to ``seq`` is applied and journaled."""

    TYPE: ClassVar[int] = 4
    epoch: int
    seq: int
    node: str
    digest: int = 0
    LAYOUT = (("node", "text"), ("digest", "u64"))


@dataclass(slots=True, unsafe_hash=True)
class Heartbeat(Message):
    """Any node -> every peer and the witness: who I am and where I am."""

    TYPE: ClassVar[int] = 5
    epoch: int
    seq: int  # last_seq
    node: str
    role: int
    commit: int = 0
    leader: str = ""
    digest: int = 0
    isr: tuple[str, ...] = ()  # a sync primary's witness-confirmed in-sync set
    last_epoch: int = 0  # the epoch of entry ``seq``: with it, (last_epoch, seq) names a history
    LAYOUT = (
        ("node", "text"),
        ("role", "u8"),
        ("commit", "u64"),
        ("digest", "u64"),
        ("leader", "text"),
        ("isr", "names"),
        ("last_epoch", "u32"),
    )


@dataclass(slots=True, unsafe_hash=True)
class Refill(Message):
    """Standby/subscriber -> primary: resend entries ``seq`` .. ``to_seq`` (0 = up to the end)."""

    TYPE: ClassVar[int] = 6
    epoch: int
    seq: int
    to_seq: int
    node: str
    LAYOUT = (("to_seq", "u64"), ("node", "text"))


@dataclass(slots=True, unsafe_hash=True)
class Join(Message):
    """Standby -> primary: my last entry is (``last_epoch``, ``seq``); bring me up to date."""

    TYPE: ClassVar[int] = 7
    epoch: int
    seq: int
    node: str
    last_epoch: int
    LAYOUT = (("node", "text"), ("last_epoch", "u32"))


@dataclass(slots=True, unsafe_hash=True)
class Fence(Message):
    """Primary -> stale node: epoch ``epoch`` rules; discard your journal after ``seq``."""

    TYPE: ClassVar[int] = 8
    epoch: int
    seq: int
    node: str
    LAYOUT = (("node", "text"),)


@dataclass(slots=True, unsafe_hash=True)
class SnapshotChunk(Message):
    """Primary -> standby: part of a replica snapshot covering entries up to ``seq``."""

    TYPE: ClassVar[int] = 9
    epoch: int
    seq: int
    last_epoch: int
    offset: int
    total: int
    data: bytes

    def payload(self) -> bytes:
        return struct.pack("<IQQ", self.last_epoch, self.offset, self.total) + _blob(self.data)

    @classmethod
    def from_payload(cls, r, epoch, seq):
        last_epoch, offset, total = r.unpack(struct.Struct("<IQQ"))
        data = r.blob()
        if offset + len(data) > total or total > 1 << 40:
            raise DecodeError("bad_length", "snapshot chunk outside its total")
        return cls(epoch, seq, last_epoch, offset, total, data)


@dataclass(slots=True, unsafe_hash=True)
class StatusRequest(Message):
    TYPE: ClassVar[int] = 10


@dataclass(slots=True, unsafe_hash=True)
class Status(Message):
    """Node -> operator: a JSON document (role, epoch, last_seq, digest, lag, counters)."""

    TYPE: ClassVar[int] = 11
    body: bytes = b"{}"
    LAYOUT = (("body", "blob"),)


@dataclass(slots=True, unsafe_hash=True)
class Switchover(Message):
    """Operator -> primary: hand over to ``target`` with nothing lost."""

    TYPE: ClassVar[int] = 12
    target: str
    LAYOUT = (("target", "text"),)


@dataclass(slots=True, unsafe_hash=True)
class Handover(Message):
    """Old primary -> target: you have everything up to ``seq`` of ``epoch``; take over."""

    TYPE: ClassVar[int] = 13
    epoch: int
    seq: int
    node: str
    LAYOUT = (("node", "text"),)


@dataclass(slots=True, unsafe_hash=True)
class Promote(Message):
    """Operator -> standby: promote now (the operator breaks the tie when the witness cannot).

    Refused by a node behind what the group acknowledged, unless ``force``. With a
    witness, the node still takes its epoch from it (``operator_promote``).
    """

    TYPE: ClassVar[int] = 14
    force: bool = False
    LAYOUT = (("force", "bool?"),)


@dataclass(slots=True, unsafe_hash=True)
class VoteRequest(Message):
    """Candidate -> witness: may I be primary of ``epoch``? My last entry is (``last_epoch``, ``seq``).

    ``operator``: ``VOTE_OPERATOR`` (``VOTE_FORCED``) when an operator's ``Promote``
    (``--force``) asks, not the node's own failure detection: the witness then applies
    its operator rules (``WitnessMachine.operator_refusal``). An optional trailing field:
    an ordinary request is byte for byte what it was before the field existed.
    """

    TYPE: ClassVar[int] = 15
    epoch: int
    seq: int
    node: str
    last_epoch: int
    operator: int = 0  # VOTE_ORDINARY, VOTE_OPERATOR or VOTE_FORCED
    LAYOUT = (("node", "text"), ("last_epoch", "u32"), ("operator", "u8?"))


# VoteRequest.operator (and its echo in Vote.operator).
VOTE_ORDINARY, VOTE_OPERATOR, VOTE_FORCED = 0, 1, 2


@dataclass(slots=True, unsafe_hash=True)
class Vote(Message):
    """Witness -> candidate: promotion to ``epoch`` granted or not, and why."""

    TYPE: ClassVar[int] = 16
    epoch: int
    node: str
    granted: bool
    reason: str = ""
    isr: tuple[str, ...] | None = None  # the in-sync set recorded with the grant (None: every other node)
    # The answered request's ``VoteRequest.operator``, so a node tells the answer to its operator's
    # ask from one to its own candidacy. It travels in the frame header's seq slot (a Vote has no
    # seq): ``isr`` may be left off the payload, and decoders older than the field ignore the slot.
    operator: int = 0
    LAYOUT = (
        ("node", "text"),
        ("granted", "bool"),
        ("reason", "text"),
        ("isr", "names?"),
    )

    def header_epoch_seq(self) -> tuple[int, int]:
        return self.epoch, self.operator

    @classmethod
    def from_payload(cls, r, epoch, seq):
        vote = super(Vote, cls).from_payload(r, epoch, 0)
        vote.operator = seq
        return vote


@dataclass(slots=True, unsafe_hash=True)
class IsrUpdate(Message):
    """Sync primary -> witness: from now on ``members`` is my in-sync set (every one acks each entry).

    Only ISR members may be promoted in this epoch. Shrinking the set needs
    the witness's ``IsrAck`` before any reply the dropped member did not ack
    is released; an empty set is "running solo" (no automatic fail-over).
    """

    TYPE: ClassVar[int] = 17
    epoch: int
    seq: int
    node: str
    members: tuple[str, ...]
    proposal: int = 0  # grows with every proposal of the epoch: a reordered older one is refused
    LAYOUT = (
        ("node", "text"),
        ("members", "names"),
        ("proposal", "u64?"),
    )


@dataclass(slots=True, unsafe_hash=True)
class IsrAck(Message):
    """Witness -> primary: the in-sync set ``members`` of ``epoch`` is recorded (or refused)."""

    TYPE: ClassVar[int] = 19
    epoch: int
    node: str
    members: tuple[str, ...]
    granted: bool
    LAYOUT = (
        ("node", "text"),
        ("members", "names"),
        ("granted", "bool"),
    )


@dataclass(slots=True, unsafe_hash=True)
class PeerDown(Message):
    """Driver-local hint (never on the wire in practice): the connection to ``node`` dropped."""

    TYPE: ClassVar[int] = 18
    node: str
    LAYOUT = (("node", "text"),)


@dataclass(slots=True, unsafe_hash=True)
class Lease(Message):
    """Async primary -> witness and standbys: renew my lease (``seq`` is the ask's stamp); and the echo.

    A supporter (the witness, or a standby following ``node`` in ``epoch``)
    answers with the same stamp and its own name in ``node``, and promises not
    to help any node to a newer epoch for a lease period from then (see
    ``failover.NodeMachine.on_lease``). The primary acknowledges only while an
    echo of an ask it sent less than a lease period ago holds.
    """

    TYPE: ClassVar[int] = 22
    epoch: int
    seq: int
    node: str
    LAYOUT = (("node", "text"),)


MESSAGE_TYPES: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Request,
        Reply,
        Requests,
        Replies,
        Entries,
        Ack,
        Heartbeat,
        Refill,
        Join,
        Fence,
        SnapshotChunk,
        StatusRequest,
        Status,
        Switchover,
        Handover,
        Promote,
        VoteRequest,
        Vote,
        IsrUpdate,
        IsrAck,
        PeerDown,
        Lease,
    )
}


# --- frames ------------------------------------------------------------------------


def encode(msg: Message) -> bytes:
    """Frame one message.

    Parameters
    ----------
    msg : Message
        Any message dataclass of this module.

    Returns
    -------
    bytes
        Header + payload, checksummed. O(payload).
    """
    epoch, seq = msg.header_epoch_seq()
    return _frame(msg.TYPE, epoch, seq, msg.payload())


def _frame(type_: int, epoch: int, seq: int, body: bytes) -> bytes:
    head = HEADER.pack(MAGIC, VERSION, type_, epoch, seq, len(body), 0)[:20]
    crc = zlib.crc32(body, zlib.crc32(head))
    return head + _U32.pack(crc) + body


def encode_request_window(client_id: int, first: int, commands: Sequence[bytes]) -> bytes:
    """The frame of one client's requests ``first, first + 1, ...`` carrying ``commands``:
    byte for byte :func:`encode` of their ``Requests`` (of their ``Request`` if there is
    one), without a ``Request`` object per order (the client's pipelined path). O(n)."""
    if len(commands) == 1:
        return encode(Request(client_id, first, commands[0]))
    ids = range(first, first + len(commands))
    return _frame(Requests.TYPE, 0, 0, b"".join(map(_REQUEST.pack, repeat(client_id), ids, commands)))


# A Requests record as a NumPy dtype: encode_request_records lays a window out with no per-order work.
_REQUEST_DTYPE = np.dtype([("client_id", "<u8"), ("request_id", "<u8"), ("command", f"V{COMMAND_SIZE}")])


def encode_request_records(client_id: int, first: int, records: bytes) -> bytes:
    """:func:`encode_request_window` of the 56-byte command records packed back to back in
    ``records`` (e.g. a ``COMMAND_DTYPE`` array's bytes): the same frame, byte for byte,
    laid out by NumPy rather than a pack per order. O(n)."""
    n, odd = divmod(len(records), COMMAND_SIZE)
    if odd or not n:
        raise ValueError(f"{len(records)} bytes is not a positive whole number of command records")
    if first < 0 or first + n > 1 << 64:
        raise ValueError("request ids out of the u64 range")
    if n == 1:
        return encode(Request(client_id, first, bytes(records)))
    body = np.empty(n, _REQUEST_DTYPE)
    body["client_id"] = client_id
    body["request_id"] = np.arange(n, dtype=np.uint64)
    body["request_id"] += np.uint64(first)
    body["command"] = np.frombuffer(records, _REQUEST_DTYPE["command"])
    return _frame(Requests.TYPE, 0, 0, body.tobytes())


class RequestRun(PackedRun):
    """A ``Requests`` payload kept as its packed records: a read-only sequence of ``Request``.

    What the primary's driver hands the sequencer for a client's bundle, so that
    a window of orders is queued, checked and sequenced as columns (see
    ``queues.PendingQueue``), without a ``Request`` object per order.
    Indexing and iterating make ``Request`` messages on demand (O(1) each); a
    slice is another ``RequestRun`` (O(bytes)). Equal to any sequence of the
    same requests, and hashed as their tuple. Every record's command is
    ``COMMAND_SIZE`` bytes, by construction.
    """

    __slots__ = ()
    RECORD = _REQUEST  # u64 client id, u64 request id, command
    DTYPE = _REQUEST_DTYPE

    def __init__(self, raw: bytes) -> None:
        if len(raw) % _REQUEST.size:
            raise ValueError(f"{len(raw)} bytes is not a whole number of request records")
        super().__init__(bytes(raw))

    @staticmethod
    def _make(fields: tuple) -> Request:
        return Request(*fields)

    def commands(self, lo: int, hi: int) -> bytes:
        """The commands of records ``lo .. hi - 1``, back to back. O(hi - lo), vectorised."""
        return self.array["command"][lo:hi].tobytes()

    def __iter__(self):
        return starmap(Request, _REQUEST.iter_unpack(self.raw))  # no call of _make per record

    def __repr__(self) -> str:
        return f"RequestRun({len(self)} requests)"


class EventBlobs(Sequence):
    """A batch's events kept together: a read-only sequence of ``bytes``, blob ``i`` being
    ``events[offsets[i]:offsets[i + 1]]``, sliced only when read (an ``Entries`` message for
    the published stream carries them so: encoded only if someone subscribes). Equal to the
    tuple of its blobs, and hashed as it."""

    __slots__ = ("events", "offsets")

    def __init__(self, events: bytes, offsets: Sequence[int]) -> None:
        self.events, self.offsets = events, offsets  # one more offset than there are blobs

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return tuple(self)[i]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("EventBlobs index out of range")
        return self.events[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self):
        ev, off = self.events, self.offsets
        return (ev[a:b] for a, b in zip(off, off[1:], strict=False))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (EventBlobs, tuple, list)):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"EventBlobs({len(self)} blobs, {len(self.events)} bytes)"


def decode(frame: bytes) -> Message:
    """Decode one frame made by :func:`encode`.

    Parameters
    ----------
    frame : bytes
        Untrusted bytes.

    Returns
    -------
    Message

    Raises
    ------
    DecodeError
        With ``reason`` one of ``truncated``, ``bad_magic``, ``bad_version``,
        ``bad_length``, ``bad_checksum``, ``unknown_type``, ``bad_payload``.
        No other exception escapes for any input.
    """
    typ, epoch, seq, body = _open_frame(frame)
    if typ == 1 and len(body) == _REQUEST.size:  # fast path: the hot inbound message
        return Request(*_REQUEST.unpack(body))
    return _decode_payload(typ, epoch, seq, body)


def decode_packed(frame: bytes) -> Message:
    """:func:`decode`, except that a ``Requests`` frame keeps its records packed: its
    ``requests`` is a ``RequestRun`` (equal to the tuple ``decode`` gives), so a bundle
    costs no ``Request`` object per order. Raises ``DecodeError`` exactly where ``decode``
    does. O(frame)."""
    typ, epoch, seq, body = _open_frame(frame)
    if typ == Requests.TYPE:
        if not body or len(body) % _REQUEST.size:
            raise DecodeError("bad_payload", "not a whole number of request records")
        return Requests(RequestRun(body))
    if typ == 1 and len(body) == _REQUEST.size:
        return Request(*_REQUEST.unpack(body))
    return _decode_payload(typ, epoch, seq, body)


def _open_frame(frame: bytes) -> tuple[int, int, int, bytes]:
    """``(type, epoch, seq, payload)`` of a frame whose header, length and checksum hold."""
    try:
        frame = bytes(frame)
    except TypeError as exc:
        raise DecodeError("bad_payload", "not bytes") from exc
    if len(frame) < HEADER_SIZE:
        raise DecodeError("truncated", f"{len(frame)} bytes")
    magic, ver, typ, epoch, seq, length, crc = HEADER.unpack_from(frame)
    if magic != MAGIC:
        raise DecodeError("bad_magic")
    if ver != VERSION:
        raise DecodeError("bad_version", str(ver))
    if length > MAX_PAYLOAD:
        raise DecodeError("bad_length", f"{length} bytes claimed")
    if len(frame) - HEADER_SIZE < length:
        raise DecodeError("truncated", f"{len(frame) - HEADER_SIZE} of {length} payload bytes")
    if len(frame) - HEADER_SIZE > length:
        raise DecodeError("bad_length", "trailing bytes after payload")
    body = frame[HEADER_SIZE:]
    if zlib.crc32(body, zlib.crc32(frame[:20])) != crc:
        raise DecodeError("bad_checksum")
    return typ, epoch, seq, body


def _decode_payload(typ: int, epoch: int, seq: int, body: bytes) -> Message:
    cls = MESSAGE_TYPES.get(typ)
    if cls is None:
        raise DecodeError("unknown_type", str(typ))
    r = _Reader(body)
    try:
        msg = cls.from_payload(r, epoch, seq)
    except DecodeError:
        raise
    except (struct.error, ValueError, TypeError, IndexError) as exc:  # defensive: never leak these
        raise DecodeError("bad_payload", str(exc)) from exc
    r.done()
    return msg


# --- sans-IO outputs -------------------------------------------------------------------

Address = str | bytes


@dataclass(slots=True, unsafe_hash=True)
class Send:
    """Output: deliver ``msg`` to ``dest`` (peer name ``str`` or client address ``bytes``).

    ``needs_sync``: the message may acknowledge what the journal holds, so it leaves only once
    the journal's appends so far are durable (a driver that defers its fsync syncs first). The
    primary clears it on ``Entries``: they may leave before its own fsync, which then overlaps
    the standby's write and round trip (the standby acks only what it journaled itself).
    """

    dest: Address
    msg: Message
    needs_sync: bool = True


@dataclass(slots=True, unsafe_hash=True)
class Publish:
    """Output: broadcast ``msg`` to stream subscribers, best effort."""

    msg: Message
    topic: bytes = field(default=b"E")


class ReplyColumns(NamedTuple):
    """The OK replies of one sequenced batch, as columns: reply ``i`` answers request
    ``request_ids[i]`` of client ``client_ids[i]``, sequenced as ``first_seq + i`` in
    ``epoch`` by ``leader``, with events ``events[offsets[i]:offsets[i + 1]]``."""

    epoch: int
    first_seq: int
    leader: str
    client_ids: list[int] | np.ndarray  # both lists of ints, or both uint64 arrays
    request_ids: list[int] | np.ndarray
    events: bytes
    offsets: list[int]  # one more than there are replies

    def reply(self, i: int) -> Reply:
        """Reply ``i`` as a message. O(its events)."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return Reply(
            int(self.client_ids[i]),
            int(self.request_ids[i]),
            OK,
            self.epoch,
            self.first_seq + i,
            self.leader,
            self.events[a:b],
        )


@dataclass(slots=True, eq=False)
class ReplyRun:
    """Output: deliver replies ``lo .. hi - 1`` of ``cols`` to the client at ``dest``, in order.

    Means exactly one ``Send(dest, reply)`` per reply (:meth:`sends`): the
    primary releases a batch's replies this way, without a ``Reply`` object
    per order, and the driver packs them straight into its ``Replies`` frame
    (:func:`encode_replies`).
    """

    dest: Address
    cols: ReplyColumns
    lo: int
    hi: int

    def __len__(self) -> int:
        return self.hi - self.lo

    def replies(self) -> list[Reply]:
        """The replies as messages. O(replies)."""
        return [self.cols.reply(i) for i in range(self.lo, self.hi)]

    def sends(self) -> list[Send]:
        """The same outputs one ``Send`` per reply. O(replies)."""
        return [Send(self.dest, r) for r in self.replies()]

    def events_size(self) -> int:
        """Bytes of events of its replies. O(1)."""
        return self.cols.offsets[self.hi] - self.cols.offsets[self.lo]


def encode_replies(items: Sequence[Reply | ReplyRun]) -> bytes:
    """The frame of these replies (``Reply`` messages and runs, in order) to one client: byte
    for byte :func:`encode` of the lone reply, or of the ``Replies`` bundle of them all. O(bytes)."""
    from ..native.fastpath import pack_reply_run

    n = sum([1 if type(x) is Reply else len(x) for x in items])
    if n == 1:
        return encode(next(r for x in items for r in ([x] if type(x) is Reply else x.replies())))
    parts = []
    for x in items:
        if type(x) is Reply:
            parts.append(Replies((x,)).payload())
        elif len(x):
            c = x.cols
            leader = c.leader.encode("utf-8")
            parts.append(
                pack_reply_run(
                    c.client_ids, c.request_ids, x.lo, x.hi, c.epoch, c.first_seq, leader, c.events, c.offsets
                )
            )
    return _frame(Replies.TYPE, 0, 0, b"".join(parts))
