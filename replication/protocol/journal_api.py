"""What the node machines may ask of a journal, and how a journal says it went bad.

For: :class:`JournalBase`, the interface every journal implements (the file
journal on disk, the memory journal of the simulator and the tests), and the
failures it raises: :class:`JournalFailed` (a write or a sync failed while
running) and :class:`JournalDamaged` (opening found corruption other than a
torn last record). The protocol layer depends on this module only, never on
a journal's implementation. Not for: the on-disk format (``storage.journal``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from .wire import Entry


class JournalFault(Exception):
    """Base of the journal's failures; ``str(exc)`` is the one-line reason (no traceback needed)."""


class JournalFailed(JournalFault):
    """A write or sync failed: nothing more is acknowledged from this journal until a restart."""


class JournalDamaged(JournalFault):
    """Opening found corruption other than a torn last record: the history must come from a peer."""


class JournalBase(ABC):
    """The interface every journal offers (documented here, implemented twice)."""

    fsync: str = "batch"
    # Set by the journal's owner (the ZeroMQ node driver) to say it calls :meth:`sync` before
    # anything that depends on durability leaves: an ``append`` under fsync="batch" may then only
    # write, and mark the journal ``dirty``. Left False (the simulator), every append is synced.
    defer_sync: bool = False
    # Deferred appends are written but not yet synced: :meth:`sync` has work to do.
    dirty: bool = False
    # A write or sync failed (ENOSPC, EIO): the reason; every later write is refused.
    failed: str = ""

    @property
    @abstractmethod
    def base_seq(self) -> int:
        """Seq of the installed snapshot (0 for a journal that began empty)."""

    @property
    @abstractmethod
    def last_seq(self) -> int:
        """Seq of the last entry held (``base_seq`` when there is none)."""

    @property
    def last_epoch(self) -> int:
        """Epoch of the last entry (or of the installed snapshot's last entry, or 0)."""
        e = self.entry(self.last_seq)
        return e.epoch if e is not None else self.base_epoch()

    def base_epoch(self) -> int:
        """Epoch of the entry at ``base_seq`` (the installed snapshot's last), or 0. Reads the snapshot."""
        snap = self.load_snapshot()
        return snap[1] if snap is not None and snap[0] == self.base_seq else 0

    @abstractmethod
    def append(self, entries: list[Entry]) -> None:
        """Append consecutive entries (the first must be ``last_seq + 1``). O(len)."""

    @abstractmethod
    def sync(self) -> None:
        """Make every deferred append durable and clear ``dirty`` (a no-op when it is clear).

        Raises :class:`JournalFailed` if the sync fails (or failed before): the journal is then
        ``failed`` for good.
        """

    @abstractmethod
    def read(self, from_seq: int, max_count: int = 1 << 30) -> list[Entry]:
        """Entries ``from_seq ..`` (at most ``max_count``); ``[]`` if none are held. O(count)."""

    def entry(self, seq: int) -> Entry | None:
        """The entry at ``seq``, or None if not held. O(1)."""
        got = self.read(seq, 1)
        return got[0] if got and got[0].seq == seq else None

    def read_run(self, from_seq: int, max_count: int = 1 << 30) -> Sequence[Entry]:
        """Like :meth:`read`, as cheap as the journal can make it (the file journal: an ``EntryRun``)."""
        return self.read(from_seq, max_count)

    @abstractmethod
    def compact(self, upto: int) -> int:
        """Drop entries up to ``upto`` — some or all, never past the snapshot; how many were dropped.

        ``base_seq`` rises to the last one dropped. Crash-safe: any prefix of the
        work leaves a journal that recovers to the same state.
        """

    @abstractmethod
    def truncate_after(self, seq: int) -> None:
        """Discard every entry after ``seq`` (and a snapshot beyond it)."""

    @abstractmethod
    def save_snapshot(self, seq: int, last_epoch: int, blob: bytes) -> None:
        """Store a snapshot covering entries up to ``seq`` (atomically replaces the old one)."""

    def save_snapshot_later(self, seq: int, last_epoch: int, blob: bytes) -> None:
        """:meth:`save_snapshot`, possibly finished in the background: ``load_snapshot`` gives it
        at once, ``compact`` never relies on it before it is whole where it is stored."""
        self.save_snapshot(seq, last_epoch, blob)

    @abstractmethod
    def load_snapshot(self) -> tuple[int, int, bytes] | None:
        """``(seq, last_epoch, blob)`` of the stored snapshot, or None."""

    @abstractmethod
    def reset(self, seq: int, last_epoch: int, blob: bytes) -> None:
        """Forget every entry; install a snapshot at ``seq`` so the next append is ``seq + 1``."""

    @abstractmethod
    def load_meta(self) -> dict[str, Any]:
        """The metadata last saved (``{}`` if none)."""

    @abstractmethod
    def save_meta(self, meta: dict[str, Any]) -> None:
        """Durably replace the metadata (always synced: it holds the epoch)."""

    def close(self) -> None:  # noqa: B027 - optional hook: a memory journal has nothing to close
        """Release files (a no-op where there are none)."""
