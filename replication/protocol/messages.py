"""The messages replication puts on a socket, and the constants they carry.

For: reply statuses (``OK`` .. ``NOT_ENTITLED``), node roles (``ROLE_*``), vote
flags (``VOTE_*``), the ``Message`` base with its generic ``LAYOUT``
payload, every message dataclass (client requests and replies, journal
entries, acks, heartbeats, refills, snapshots, status, switchover/fencing,
witness votes, leases), ``RequestRun`` (a ``Requests`` payload kept packed)
and ``MESSAGE_TYPES`` (frame type code -> class). Not for: the frame around
a payload (``codec``) or any protocol decision. Reached as ``wire.X`` by the
rest of the code.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import starmap
from typing import Any, ClassVar, cast

from .fields import FIELD_CODECS, U32, DecodeError, Reader, pack_blob
from .records import (
    ENTRY,
    EVENT_SIZE,
    REQUEST,
    REQUEST_DTYPE,
    RUN_MIN,
    Entry,
    EntryRun,
    EventBlobs,
    PackedRun,
    pack_entries,
)

# Reply statuses. FENCED: the request's session is older than its client id's current one;
# it was never executed. BUSY: the client already has ``max_in_flight`` requests queued at the
# primary; this one was not sequenced (re-send it later: the dedupe table keeps that exactly-once).
# NOT_ENTITLED: the sender's key may not trade the command's account (``entitlement``); never
# sequenced, final: the reply carries one ``rejected not_entitled`` event, as an OK reply its events.
OK, NOT_PRIMARY, EXPIRED, UNAVAILABLE, FENCED, BUSY, NOT_ENTITLED = 0, 1, 2, 3, 4, 5, 6
STATUS_NAMES = {
    OK: "ok",
    NOT_PRIMARY: "not_primary",
    EXPIRED: "expired",
    UNAVAILABLE: "unavailable",
    FENCED: "fenced",
    BUSY: "busy",
    NOT_ENTITLED: "not_entitled",
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
_ENTRIES_HEAD = struct.Struct("<QIB")  # commit, count, flags
_REPLY_HEAD = struct.Struct("<QQBH")  # client_id, request_id, status, leader length


# Messages are plain slotted dataclasses, not frozen ones: a frozen dataclass
# pays object.__setattr__ per field (about 1.5 us for a Reply against 0.2 us),
# several times per order on the hot path. Treat them as immutable all the same.
@dataclass(slots=True, unsafe_hash=True)
class Message:
    """Base of every message. ``TYPE`` is the frame type code.

    A message's ``epoch`` and ``seq`` fields (if it has them) travel in the
    frame header; the rest of its payload is described by ``LAYOUT``, a
    tuple of ``(field, codec)`` pairs (codecs: see ``FIELD_CODECS``), which the
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
            parts.append(FIELD_CODECS[codec.rstrip("?")][0](value))
        return b"".join(parts)

    @classmethod
    def from_payload(cls, r: Reader, epoch: int, seq: int) -> Message:
        fields = cls.__dataclass_fields__
        values: dict = {}
        if "epoch" in fields:
            values["epoch"] = epoch
        if "seq" in fields:
            values["seq"] = seq
        for name, codec in cls.LAYOUT:
            if codec.endswith("?") and r.pos == len(r.buf):
                break  # an optional trailing field left off: the dataclass default
            values[name] = FIELD_CODECS[codec.rstrip("?")][1](r)
        return cls(**values)


@dataclass(slots=True, unsafe_hash=True)
class Request(Message):
    """Client -> node: execute ``command`` (a 80-byte record) once."""

    TYPE: ClassVar[int] = 1
    client_id: int
    request_id: int
    command: bytes

    def payload(self) -> bytes:
        return REQUEST.pack(self.client_id, self.request_id, self.command)

    @classmethod
    def from_payload(cls, r, epoch, seq):
        cid, rid, cmd = r.unpack(REQUEST)
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
                U32.pack(len(self.events)),
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
        pack = REQUEST.pack
        return b"".join([pack(q.client_id, q.request_id, q.command) for q in self.requests])

    @classmethod
    def from_payload(cls, r, epoch, seq):
        body = r.take(len(r.buf) - r.pos)
        if not body or len(body) % REQUEST.size:
            raise DecodeError("bad_payload", "not a whole number of request records")
        return cls(tuple(starmap(Request, REQUEST.iter_unpack(body))))


BUNDLED_REPLY = struct.Struct("<QQBIQHI")  # client_id, request_id, status, epoch, seq, leader len, events len


@dataclass(slots=True, unsafe_hash=True)
class Replies(Message):
    """Node -> client: several replies to one client in one frame (the driver bundles them).

    Each reply carries its own epoch and seq, which a lone ``Reply`` takes
    from the frame header.
    """

    TYPE: ClassVar[int] = 21
    replies: tuple[Reply, ...]

    def payload(self) -> bytes:
        parts: list[bytes] = []
        pack = BUNDLED_REPLY.pack
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
        head, unpack = BUNDLED_REPLY.size, BUNDLED_REPLY.unpack_from
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
    events: tuple[bytes, ...] | EventBlobs = ()

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
            parts += (raw[i * size : (i + 1) * size], U32.pack(len(ev)), ev)
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
        return struct.pack("<IQQ", self.last_epoch, self.offset, self.total) + pack_blob(self.data)

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
        vote = cast(Vote, super(Vote, cls).from_payload(r, epoch, 0))
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
    ``node.lease.LeasePromise.on_ask``). The primary acknowledges only while an
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
    RECORD = REQUEST  # u64 client id, u64 request id, command
    DTYPE = REQUEST_DTYPE

    def __init__(self, raw: bytes) -> None:
        if len(raw) % REQUEST.size:
            raise ValueError(f"{len(raw)} bytes is not a whole number of request records")
        super().__init__(bytes(raw))

    @staticmethod
    def _make(iterable: Iterable[Any]) -> Request:
        return Request(*iterable)

    def commands(self, lo: int, hi: int) -> bytes:
        """The commands of records ``lo .. hi - 1``, back to back. O(hi - lo), vectorised."""
        return self.array["command"][lo:hi].tobytes()

    def __iter__(self):
        return starmap(Request, REQUEST.iter_unpack(self.raw))  # no call of _make per record

    def __repr__(self) -> str:
        return f"RequestRun({len(self)} requests)"
