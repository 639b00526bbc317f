"""The fixed-size records replication moves in bulk, and their packed containers.

For: the command record (``COMMAND``, ``pack_command``), the journal entry
(``Entry``, ``ENTRY`` and its NumPy twin ``ENTRY_DTYPE``), a request record
(``REQUEST``, ``REQUEST_DTYPE``), and the containers that keep many of them
as packed bytes without a Python object each: ``PackedRun`` (the common
part), ``EntryRun`` (entries: the catch-up path, the primary's batches) and
``EventBlobs`` (a batch's events). ``RequestRun``, a run of ``Request``
messages, lives with the messages it makes (``messages``). Not for: frames
or message layouts. Reached as ``wire.X`` by the rest of the code.
"""

from __future__ import annotations

import struct
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .fields import DecodeError

COMMAND_SIZE = 80  # one matching.codes.COMMAND_DTYPE record (version 2; version 1 was 56 bytes)
EVENT_SIZE = 64  # one matching.codes.EVENT_DTYPE record
# The packed command record, field for field ``matching.codes.COMMAND_DTYPE``
# (tests/protocol/test_wire.py pins the two together).
COMMAND = struct.Struct("<QQqqqIBBBBBBH4xqqq")


def pack_command(record: tuple) -> bytes:
    """The 80 bytes of a command record (a tuple in ``COMMAND_DTYPE`` field order)."""
    return COMMAND.pack(*record)


def unpack_command(b: bytes) -> tuple:
    """The record tuple of 80 command bytes."""
    return COMMAND.unpack(b)


ENTRY = struct.Struct("<IQQQQ80s")  # epoch, seq, client_id, request_id, digest, command
REQUEST = struct.Struct("<QQ80s")  # client_id, request_id, command


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
    def _make(iterable: Iterable[Any]) -> object:
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


# A Requests record as a NumPy dtype: encode_request_records lays a window out with no per-order work.
REQUEST_DTYPE = np.dtype([("client_id", "<u8"), ("request_id", "<u8"), ("command", f"V{COMMAND_SIZE}")])


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
