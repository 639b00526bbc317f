"""The node journal: an append-only log of sequenced entries, plus snapshots and metadata.

For: durable, self-checking storage of ``wire.Entry`` records with contiguous
seqs; torn/corrupt tail detection and truncation on open; fsync policy
(``none`` | ``batch`` | ``always``); reading entries from any seq (refill,
catch-up); truncate-after-seq (fencing); an atomic snapshot file that bounds
restart time; a tiny atomic metadata file (current epoch, epoch history).
Not for: deciding what to write — the node machines do that.

``FileJournal`` and ``MemoryJournal`` share one interface so the sans-IO
machines run unchanged in a simulator; ``MemoryJournal.crash`` models losing
what was never synced.

On-disk layout of a journal directory::

    entries.log   records: u32 length, u32 crc32(payload), payload (a packed Entry)
    snapshot.bin  u8[4] b"MCSN", u64 seq, u32 last_epoch, u32 crc32(blob), u64 len, blob
    meta.bin      two 64 KiB slots, written alternately in place (pwrite + fdatasync:
                  no new file, rename or directory fsync on a promotion's critical
                  path); each: u64 counter, u32 length, u32 crc32(json), json
    meta.json     {"epoch": ..., "history": [[epoch, first_seq], ...], "counter": n}:
                  the fallback for metadata too big for a slot, and older journals;
                  the valid copy with the highest counter wins

Entries cover seqs ``base_seq + 1 .. last_seq``; ``base_seq`` is the seq of
the snapshot installed by :meth:`reset` (0 for a journal that began empty).
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from abc import ABC, abstractmethod
from array import array
from typing import Any

from .wire import ENTRY, DecodeError, Entry

log = logging.getLogger("replication.journal")

REC = struct.Struct("<II")
SNAP = struct.Struct("<4sQIIQ")
SNAP_MAGIC = b"MCSN"
MAX_RECORD = 1 << 20
FSYNC_POLICIES = ("none", "batch", "always")
META_SLOT = 64 * 1024
META_HEAD = struct.Struct("<QII")  # counter, json length, crc32(json)


class JournalBase(ABC):
    """The interface every journal offers (documented here, implemented twice)."""

    fsync: str = "batch"

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
        return e.epoch if e is not None else self._base_epoch()

    def _base_epoch(self) -> int:
        snap = self.load_snapshot()
        return snap[1] if snap is not None and snap[0] == self.base_seq else 0

    @abstractmethod
    def append(self, entries: list[Entry]) -> None:
        """Append consecutive entries (the first must be ``last_seq + 1``). O(len)."""

    @abstractmethod
    def read(self, from_seq: int, max_count: int = 1 << 30) -> list[Entry]:
        """Entries ``from_seq ..`` (at most ``max_count``); ``[]`` if none are held. O(count)."""

    def entry(self, seq: int) -> Entry | None:
        """The entry at ``seq``, or None if not held. O(1)."""
        got = self.read(seq, 1)
        return got[0] if got and got[0].seq == seq else None

    @abstractmethod
    def truncate_after(self, seq: int) -> None:
        """Discard every entry after ``seq`` (and a snapshot beyond it)."""

    @abstractmethod
    def save_snapshot(self, seq: int, last_epoch: int, blob: bytes) -> None:
        """Store a snapshot covering entries up to ``seq`` (atomically replaces the old one)."""

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


class MemoryJournal(JournalBase):
    """An in-memory journal with the file journal's semantics, for tests and the simulator.

    ``crash()`` drops what a real crash could lose under the fsync policy:
    with ``none`` everything since the last ``sync_point``, with ``batch``
    nothing already returned from ``append`` (appends are synced per call).
    """

    def __init__(self, fsync: str = "batch") -> None:
        self.fsync = fsync
        self._entries: list[Entry] = []
        self._base = 0
        self._snap: tuple[int, int, bytes] | None = None
        self._meta: dict[str, Any] = {}
        self._synced = 0  # number of entries that survive a crash

    @property
    def base_seq(self) -> int:
        return self._base

    @property
    def last_seq(self) -> int:
        return self._base + len(self._entries)

    def append(self, entries: list[Entry]) -> None:
        for e in entries:
            if e.seq != self.last_seq + 1:
                raise ValueError(f"append of seq {e.seq} after {self.last_seq}")
            self._entries.append(e)
        if self.fsync != "none":
            self._synced = len(self._entries)

    def sync(self) -> None:
        self._synced = len(self._entries)

    def read(self, from_seq: int, max_count: int = 1 << 30) -> list[Entry]:
        i = max(from_seq - self._base - 1, 0)
        if from_seq <= self._base:
            return []
        return self._entries[i : i + max_count]

    def truncate_after(self, seq: int) -> None:
        keep = max(seq - self._base, 0)
        del self._entries[keep:]
        self._synced = min(self._synced, keep)
        if self._snap is not None and self._snap[0] > seq:
            self._snap = None

    def save_snapshot(self, seq: int, last_epoch: int, blob: bytes) -> None:
        self._snap = (seq, last_epoch, bytes(blob))

    def load_snapshot(self) -> tuple[int, int, bytes] | None:
        return self._snap

    def reset(self, seq: int, last_epoch: int, blob: bytes) -> None:
        self._entries = []
        self._synced = 0
        self._base = seq
        self._snap = (seq, last_epoch, bytes(blob))

    def load_meta(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._meta))

    def save_meta(self, meta: dict[str, Any]) -> None:
        self._meta = json.loads(json.dumps(meta))

    def crash(self) -> None:
        """Lose whatever a power cut would lose under the fsync policy."""
        del self._entries[self._synced :]


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a synced temp file and rename, so readers see old or new."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path) or ".")


class FileJournal(JournalBase):
    """The on-disk journal; see the module docstring for the layout.

    Parameters
    ----------
    path : str
        Directory (created if missing).
    fsync : str
        ``none`` (leave it to the OS), ``batch`` (one fsync per ``append``
        call — i.e. per sequenced batch), ``always`` (one per entry).
    """

    def __init__(self, path: str, fsync: str = "batch") -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}, not {fsync!r}")
        self.path = path
        self.fsync = fsync
        os.makedirs(path, exist_ok=True)
        self._log_path = os.path.join(path, "entries.log")
        self._snap_path = os.path.join(path, "snapshot.bin")
        self._meta_path = os.path.join(path, "meta.json")
        self._meta_bin_path = os.path.join(path, "meta.bin")
        self._meta_fd = -1
        self._meta_counter = 0
        self._meta_loaded = False
        self._snap_cache: tuple[int, int, bytes] | None = None
        self._snap_loaded = False
        self._offsets = array("Q")  # file offset of entry base+1+i; one extra = end of file
        self._base = 0
        self.truncated_bytes = 0  # how much torn/corrupt tail was cut on open
        # defer_sync: ``append`` under fsync="batch" only writes and marks the journal
        # dirty; the owner calls ``sync()`` before anything that depends on durability
        # (the ZeroMQ driver does, after sending Entries: see node.Driver.perform).
        self.defer_sync = False
        self.dirty = False
        self._fd = os.open(self._log_path, os.O_RDWR | os.O_CREAT, 0o644)
        self._scan()

    # -- open / recovery ---------------------------------------------------------

    def _scan(self) -> None:
        """Index every good record; cut the file at the first bad one (a torn or corrupt tail)."""
        size = os.fstat(self._fd).st_size
        with open(self._log_path, "rb") as f:
            data = f.read()
        pos, prev, offsets = 0, None, array("Q")
        while pos + REC.size <= len(data):
            length, crc = REC.unpack_from(data, pos)
            if length != ENTRY.size or pos + REC.size + length > len(data):
                break
            payload = data[pos + REC.size : pos + REC.size + length]
            if zlib.crc32(payload) != crc:
                break
            try:
                e = Entry.unpack(payload)
            except DecodeError:
                break
            if prev is not None and e.seq != prev + 1:
                break
            if prev is None:
                self._base = e.seq - 1
            prev = e.seq
            offsets.append(pos)
            pos += REC.size + length
        if prev is None:
            snap = self.load_snapshot()
            self._base = snap[0] if snap is not None else 0
        offsets.append(pos)
        self._offsets = offsets
        if pos != size:
            self.truncated_bytes = size - pos
            log.warning(
                "journal_tail_truncated path=%s cut_bytes=%d last_seq=%d",
                self.path,
                size - pos,
                self.last_seq,
            )
            os.ftruncate(self._fd, pos)
            os.fsync(self._fd)
        snap = self.load_snapshot()
        if snap is not None and not (self._base <= snap[0] <= self.last_seq):
            log.warning(
                "journal_snapshot_dropped path=%s snap_seq=%d last_seq=%d", self.path, snap[0], self.last_seq
            )
            self._drop_snapshot()

    # -- interface -------------------------------------------------------------------

    @property
    def base_seq(self) -> int:
        return self._base

    @property
    def last_seq(self) -> int:
        return self._base + len(self._offsets) - 1

    def append(self, entries: list[Entry]) -> None:
        if not entries:
            return
        for i, e in enumerate(entries):
            if e.seq != self.last_seq + 1 + i:
                raise ValueError(f"append of seq {e.seq} after {self.last_seq + i}")
        end = self._offsets[-1]
        chunks = []
        for e in entries:
            payload = ENTRY.pack(*e)
            rec = REC.pack(len(payload), zlib.crc32(payload)) + payload
            if self.fsync == "always":
                os.pwrite(self._fd, rec, end)
                os.fdatasync(self._fd)
            else:
                chunks.append(rec)
            end += len(rec)
            self._offsets.append(end)
        if chunks:
            os.pwrite(self._fd, b"".join(chunks), self._offsets[-1 - len(chunks)])
        if self.fsync == "batch":
            if self.defer_sync:
                self.dirty = True
            else:
                os.fdatasync(self._fd)

    def sync(self) -> None:
        """fdatasync what deferred appends wrote (no-op when nothing is pending)."""
        if self.dirty:
            self.dirty = False
            os.fdatasync(self._fd)

    def read(self, from_seq: int, max_count: int = 1 << 30) -> list[Entry]:
        if from_seq <= self._base or from_seq > self.last_seq or max_count <= 0:
            return []
        i = from_seq - self._base - 1
        j = min(i + max_count, len(self._offsets) - 1)
        start, stop = self._offsets[i], self._offsets[j]
        data = os.pread(self._fd, stop - start, start)
        out, pos = [], 0
        while pos < len(data):
            length = REC.unpack_from(data, pos)[0]
            out.append(Entry.unpack(data[pos + REC.size : pos + REC.size + length]))
            pos += REC.size + length
        return out

    def truncate_after(self, seq: int) -> None:
        if seq >= self.last_seq:
            return
        keep = max(seq - self._base, 0)
        cut = self._offsets[keep]
        del self._offsets[keep + 1 :]
        os.ftruncate(self._fd, cut)
        os.fsync(self._fd)
        snap = self.load_snapshot()
        if snap is not None and snap[0] > seq:
            self._drop_snapshot()
        log.info("journal_truncated path=%s after_seq=%d", self.path, seq)

    def save_snapshot(self, seq: int, last_epoch: int, blob: bytes) -> None:
        head = SNAP.pack(SNAP_MAGIC, seq, last_epoch, zlib.crc32(blob), len(blob))
        _atomic_write(self._snap_path, head + blob)
        self._snap_cache = (seq, last_epoch, bytes(blob))
        self._snap_loaded = True

    def load_snapshot(self) -> tuple[int, int, bytes] | None:
        if self._snap_loaded:
            return self._snap_cache
        self._snap_loaded = True
        try:
            with open(self._snap_path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        if len(data) < SNAP.size:
            log.warning("snapshot_corrupt path=%s reason=short", self._snap_path)
            return None
        magic, seq, last_epoch, crc, length = SNAP.unpack_from(data)
        blob = data[SNAP.size :]
        if magic != SNAP_MAGIC or len(blob) != length or zlib.crc32(blob) != crc:
            log.warning("snapshot_corrupt path=%s reason=checksum", self._snap_path)
            return None
        self._snap_cache = (seq, last_epoch, blob)
        return self._snap_cache

    def _drop_snapshot(self) -> None:
        try:
            os.unlink(self._snap_path)
        except FileNotFoundError:
            pass
        self._snap_cache, self._snap_loaded = None, True

    def reset(self, seq: int, last_epoch: int, blob: bytes) -> None:
        # Snapshot first: if we crash in between, the old log is cut on open
        # (its seqs do not reach the snapshot) and the snapshot stands.
        self.save_snapshot(seq, last_epoch, blob)
        os.ftruncate(self._fd, 0)
        os.fsync(self._fd)
        self._base = seq
        self._offsets = array("Q", [0])
        log.info("journal_reset path=%s base_seq=%d", self.path, seq)

    def _meta_candidates(self) -> list[tuple[int, dict[str, Any]]]:
        out = []
        try:
            with open(self._meta_path, encoding="utf-8") as f:
                doc = json.load(f)
            out.append((int(doc.get("counter", 0)), doc))
        except FileNotFoundError:
            pass
        except ValueError:
            log.warning("meta_corrupt path=%s", self._meta_path)
        try:
            with open(self._meta_bin_path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        for slot in range(2):
            off = slot * META_SLOT
            if len(data) < off + META_HEAD.size:
                continue
            counter, n, crc = META_HEAD.unpack_from(data, off)
            body = data[off + META_HEAD.size : off + META_HEAD.size + n]
            if counter == 0 or n > META_SLOT - META_HEAD.size or len(body) != n or zlib.crc32(body) != crc:
                continue  # empty, or torn by a crash mid-write: the other slot holds the previous copy
            try:
                out.append((counter, json.loads(body)))
            except ValueError:
                continue
        return out

    def load_meta(self) -> dict[str, Any]:
        got = self._meta_candidates()
        if not got:
            return {}
        counter, doc = max(got, key=lambda c: c[0])
        self._meta_counter = max(self._meta_counter, counter)
        doc.pop("counter", None)
        return doc

    def save_meta(self, meta: dict[str, Any]) -> None:
        """Durably replace the metadata: one in-place slot write + fdatasync (O(size))."""
        if self._meta_counter == 0 and not self._meta_loaded:
            self.load_meta()
        self._meta_loaded = True
        self._meta_counter += 1
        body = json.dumps(meta, sort_keys=True).encode()
        if len(body) > META_SLOT - META_HEAD.size:
            _atomic_write(
                self._meta_path, json.dumps(dict(meta, counter=self._meta_counter), sort_keys=True).encode()
            )
            return
        if self._meta_fd < 0:
            fresh = not os.path.exists(self._meta_bin_path)
            self._meta_fd = os.open(self._meta_bin_path, os.O_RDWR | os.O_CREAT, 0o644)
            if fresh or os.fstat(self._meta_fd).st_size < 2 * META_SLOT:
                os.pwrite(self._meta_fd, bytes(2 * META_SLOT), 0)  # allocate both slots once
                os.fsync(self._meta_fd)
                _fsync_dir(self.path)
        rec = META_HEAD.pack(self._meta_counter, len(body), zlib.crc32(body)) + body
        os.pwrite(self._meta_fd, rec, (self._meta_counter % 2) * META_SLOT)
        os.fdatasync(self._meta_fd)

    def close(self) -> None:
        if self._meta_fd >= 0:
            os.close(self._meta_fd)
            self._meta_fd = -1
        if self._fd >= 0:
            self.sync()
            os.close(self._fd)
            self._fd = -1
