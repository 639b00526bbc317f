"""The node journal: an append-only log of sequenced entries, plus snapshots and metadata.

For: durable, self-checking storage of ``wire.Entry`` records with contiguous
seqs; on open, a torn last record cut and any other corruption reported
by name, never cut (``damage``); writes that complete or fail the journal
for good (``failed``: ENOSPC, EIO, a failed fdatasync); fsync policy
(``none`` | ``batch`` | ``always``); reading entries from any seq (refill,
catch-up; the file journal hands them out as packed bytes, an ``EntryRun``);
truncate-after-seq (fencing); an atomic snapshot file that bounds restart
time; compaction after a snapshot (whole old segments deleted, so disk use
is bounded); a tiny atomic metadata file (current epoch, epoch history).
Not for: deciding what to write — the node machines do that.

``FileJournal`` and ``MemoryJournal`` share one interface so the sans-IO
machines run unchanged in a simulator; ``MemoryJournal.crash`` models losing
what was never synced.

On-disk layout of a journal directory::

    entries.log   the active segment: records u32 length, u32 crc32(payload), payload
                  (one packed Entry; every record is RECORD = 124 bytes). A segment of
                  version 1 (56-byte commands, 100-byte records: journals written before
                  issue 19) is rewritten once on open as the current layout, its
                  commands gaining ts = expire_ts = stop_price = 0 (see _upgrade_version1)
    entries.<first seq, 20 digits>.log
                  sealed segments, same records: entries.log renamed by compact()
                  once it is big enough; deleted, oldest first, once the snapshot
                  and the retention margin are past their last entry. Together
                  with entries.log they hold one consecutive run of seqs; on open
                  only a torn last record of entries.log is cut; a bad record
                  anywhere else makes the journal ``damage``d (nothing deleted).
    snapshot.bin  u8[4] b"MCSN", u64 seq, u32 last_epoch, u32 crc32(blob), u64 len, blob
    meta.bin      a ``slotfile.SlotFile`` of two 64 KiB slots, written alternately in
                  place (pwrite + fdatasync: no new file, rename or directory fsync on
                  a promotion's critical path); each: u64 counter, u32 length,
                  u32 crc32(json), json
    meta.json     {"epoch": ..., "history": [[epoch, first_seq], ...], "counter": n}:
                  the fallback for metadata too big for a slot, and older journals;
                  the valid copy with the highest counter wins

Entries cover seqs ``base_seq + 1 .. last_seq``; ``base_seq`` is the seq of
the snapshot installed by :meth:`reset` (0 for a journal that began empty), or
the last entry :meth:`compact` dropped; it never passes the snapshot.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

from ..native.fastpath import start_writeback
from ..protocol.journal_api import JournalBase, JournalDamaged, JournalFailed
from ..protocol.wire import Entry, EntryRun, pack_entries
from .diskio import describe, write_all
from .journal_records import (  # noqa: F401 (REC: re-exported)
    REC,
    RECORD,
    V1_ENTRY_SIZE,
    V1_RECORD,
    frame,
    good_records,
    is_version1,
    payloads,
    upgrade,
)
from .slotfile import SlotFile, fsync_dir
from .snapshot_writer import SnapshotWriter

log = logging.getLogger("replication.journal")

SNAP = struct.Struct("<4sQIIQ")
SNAP_MAGIC = b"MCSN"
MAX_RECORD = 1 << 20
FSYNC_POLICIES = ("none", "batch", "always")
META_SLOT = 64 * 1024  # meta.bin's slot size (see slotfile)
SEGMENT_ENTRIES = 65536  # compact() seals the active segment past this many entries (~7 MB)
WRITEBACK_MIN = 64 * 1024  # appends this big start their write-back at once (see append)


class MemoryJournal(JournalBase):
    """An in-memory journal with the file journal's semantics, for tests and the simulator.

    ``crash()`` drops what a real crash could lose under the fsync policy:
    with ``none`` everything since the last ``sync``, with ``batch``
    nothing already returned from ``append`` (appends are synced per call),
    unless the owner set ``defer_sync``: then everything since the last ``sync``.

    Disk faults, for the simulator: ``inject(kind)`` makes the next append
    fail (``enospc``: nothing written; ``short``: the first half written;
    ``fsync``: all written, the sync failed), after which the journal is
    ``failed`` like a file journal; ``corrupt(reason)`` is what opening a file
    journal with a flipped byte mid-journal gives: ``damage`` set, nothing held
    (the entries kept aside, never dropped, until ``reset`` repairs it).
    """

    def __init__(self, fsync: str = "batch") -> None:
        self.fsync = fsync
        self._entries: list[Entry] = []
        self._base = 0
        self._snap: tuple[int, int, bytes] | None = None
        self._meta: dict[str, Any] = {}
        self._synced = 0  # number of entries that survive a crash
        self.failed = ""
        self.damage = ""
        self.fault = ""  # the next append's injected fault (see inject)
        self._aside: tuple | None = None  # a damaged journal's content, untouched

    @property
    def base_seq(self) -> int:
        return self._base

    @property
    def last_seq(self) -> int:
        return self._base + len(self._entries)

    def append(self, entries: Sequence[Entry]) -> None:
        if self.failed or self.damage or self.fault:
            self._check_append(entries)
        for e in entries:
            if e.seq != self.last_seq + 1:
                raise ValueError(f"append of seq {e.seq} after {self.last_seq}")
            self._entries.append(e)
        if self.fsync == "batch" and self.defer_sync:
            self.dirty = True  # written, not yet synced: sync() makes it survive a crash
        elif self.fsync != "none":
            self._synced = len(self._entries)

    def _check_append(self, entries: Sequence[Entry]) -> None:
        """Refuse, or play the injected fault: what an append on a bad disk does."""
        if self.failed:
            raise JournalFailed(self.failed)
        if self.damage:
            raise JournalDamaged(self.damage)
        kind, self.fault = self.fault, ""
        if not len(entries):
            return
        keep = {"enospc": 0, "short": len(entries) // 2, "fsync": len(entries)}[kind]
        self._entries.extend(entries[:keep])  # written, never synced: a crash may lose them
        self.failed = f"journal: {'EIO syncing' if kind == 'fsync' else 'ENOSPC writing'} memory journal"
        raise JournalFailed(self.failed)

    def inject(self, kind: str) -> None:
        """Make the next non-empty append fail: ``enospc``, ``short`` or ``fsync``."""
        if kind not in ("enospc", "short", "fsync"):
            raise ValueError(f"unknown disk fault {kind!r}")
        self.fault = kind

    def corrupt(self, reason: str) -> None:
        """Be a journal whose open found corruption: ``damage`` set, nothing held until :meth:`reset`."""
        self.damage = reason
        self._aside = (self._entries, self._base, self._snap, self._synced)
        self._entries, self._base, self._snap, self._synced = [], 0, None, 0

    def sync(self) -> None:
        if self.failed:
            raise JournalFailed(self.failed)
        self._synced = len(self._entries)
        self.dirty = False

    def _writable(self) -> None:
        if self.failed:
            raise JournalFailed(self.failed)
        if self.damage:
            raise JournalDamaged(self.damage)

    def compact(self, upto: int) -> int:
        if self._snap is None:
            return 0
        self._writable()
        k = min(upto, self._snap[0]) - self._base
        if k <= 0:
            return 0
        k = min(k, len(self._entries))
        del self._entries[:k]
        self._base += k
        self._synced = max(self._synced - k, 0)
        return k

    def read(self, from_seq: int, max_count: int = 1 << 30) -> list[Entry]:
        i = max(from_seq - self._base - 1, 0)
        if from_seq <= self._base:
            return []
        return self._entries[i : i + max_count]

    def truncate_after(self, seq: int) -> None:
        if seq >= self.last_seq:
            return
        self._writable()
        keep = max(seq - self._base, 0)
        del self._entries[keep:]
        self._synced = min(self._synced, keep)
        if self._snap is not None and self._snap[0] > seq:
            self._snap = None

    def save_snapshot(self, seq: int, last_epoch: int, blob: bytes) -> None:
        self._writable()
        self._snap = (seq, last_epoch, bytes(blob))

    def load_snapshot(self) -> tuple[int, int, bytes] | None:
        return self._snap

    def reset(self, seq: int, last_epoch: int, blob: bytes) -> None:
        if self.failed:
            raise JournalFailed(self.failed)
        self.damage, self._aside = "", None
        self._entries = []
        self._synced = 0
        self._base = seq
        self._snap = (seq, last_epoch, bytes(blob)) if seq or blob else None

    def load_meta(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._meta))

    def save_meta(self, meta: dict[str, Any]) -> None:
        if self.failed:
            raise JournalFailed(self.failed)
        self._meta = json.loads(json.dumps(meta))

    def crash(self) -> None:
        """Lose whatever a power cut would lose under the fsync policy (a failed disk comes back)."""
        del self._entries[self._synced :]
        self.failed = self.fault = ""
        self.dirty = False


def _atomic_write(path: str, *parts: bytes) -> None:
    """Write ``parts`` (one after the other) to ``path`` via a synced temp file and rename, so
    readers see old or new."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            for data in parts:
                f.write(data)  # a buffered write: all of it, or an OSError
            f.flush()
            os.fsync(f.fileno())
    except OSError:
        try:
            os.unlink(tmp)  # (a full disk: give its space back)
        except OSError:
            pass
        raise
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path) or ".")


class _Segment:
    """One entry-log file: ``n`` fixed-size records holding seqs ``first .. first + n - 1``."""

    __slots__ = ("first", "n", "path", "fd")

    def __init__(self, first: int, n: int, path: str, fd: int) -> None:
        self.first, self.n, self.path, self.fd = first, n, path, fd

    @property
    def last(self) -> int:
        return self.first + self.n - 1


def _segment_name(first: int) -> str:
    return f"entries.{first:020d}.log"


class FileJournal(JournalBase):
    """The on-disk journal; see the module docstring for the layout.

    Parameters
    ----------
    path : str
        Directory (created if missing).
    fsync : str
        ``none`` (leave it to the OS), ``batch`` (one fsync per ``append``
        call — i.e. per sequenced batch), ``always`` (one per entry).
    segment_entries : int
        :meth:`compact` seals the active segment once it holds this many
        entries (sealed segments are what compaction deletes).
    """

    def __init__(self, path: str, fsync: str = "batch", segment_entries: int = SEGMENT_ENTRIES) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}, not {fsync!r}")
        self.path = path
        self.fsync = fsync
        self.segment_entries = segment_entries
        os.makedirs(path, exist_ok=True)
        self._log_path = os.path.join(path, "entries.log")
        self._snap_path = os.path.join(path, "snapshot.bin")
        self._meta_path = os.path.join(path, "meta.json")
        self._meta_slots = SlotFile(os.path.join(path, "meta.bin"), META_SLOT)
        self._meta_loaded = False
        self._snap_cache: tuple[int, int, bytes] | None = None
        self._snap_loaded = False
        self._snap_writer = SnapshotWriter()  # save_snapshot_later's file, written on a thread
        self._segs: list[_Segment] = []  # oldest first; the last is the active entries.log
        self._base = 0
        self.truncated_bytes = 0  # how much of a torn last record was cut on open
        # A write or sync failed (ENOSPC, EIO): the reason; every later write is refused.
        self.failed = ""
        # Corruption found on open (not a torn last record): the reason, naming the file,
        # offset and seq. The journal then holds nothing until reset() (see _scan).
        self.damage = ""
        # defer_sync: ``append`` under fsync="batch" only writes and marks the journal
        # dirty; the owner calls ``sync()`` before anything that depends on durability
        # (the ZeroMQ node driver does, once the outputs that may leave first are sent).
        self.defer_sync = False
        self.dirty = False
        self._scan()

    # -- open / recovery ---------------------------------------------------------

    def _scan(self) -> None:
        """Index every segment's records; only the last record of the last segment may be torn.

        A torn last record (a partial one, or one whose length, CRC or seq is wrong, with
        nothing after it) is what a crash during an append leaves: it was never
        acknowledged, so it is cut and logged. Anything else that is wrong — a bad record
        with more after it, a bad or missing record in a sealed segment (those were synced
        whole before their rename), a gap between segments, a damaged snapshot, entries
        that start past 1 with no snapshot to rebuild from — may hide acknowledged
        entries: it is reported by name (:attr:`damage`) and nothing is cut or unlinked.
        A damaged journal then holds nothing as far as its owner can tell (see
        :meth:`_hold_nothing`) until :meth:`reset` replaces it with a peer's history.
        """
        self._upgrade_version1()
        sealed = self._sealed_names()
        expect: int | None = None  # the seq the next segment must start with
        for first, name in sealed:
            path = os.path.join(self.path, name)
            fd = os.open(path, os.O_RDWR)
            data = os.pread(fd, os.fstat(fd).st_size, 0)
            got, n = good_records(data, first if expect is None else expect)
            if got != first or n == 0 or n * RECORD != len(data):
                os.close(fd)
                start = first if expect is None else expect
                why = "bad record" if start == first else f"starts at seq {first}, not {start}"
                return self._damaged(path, n * RECORD, start + n, why)
            self._segs.append(_Segment(first, n, path, fd))
            expect = first + n
        fd = os.open(self._log_path, os.O_RDWR | os.O_CREAT, 0o644)
        data = os.pread(fd, os.fstat(fd).st_size, 0)
        # The open log's first seq: None if no sealed segment or record of its own says (the snapshot does).
        log_first, n = good_records(data, expect)
        self._segs.append(_Segment(0, n, self._log_path, fd))
        bad = len(data) - n * RECORD
        if bad > RECORD:
            snap = self.load_snapshot()
            seq = log_first if log_first is not None else (snap[0] + 1 if snap is not None else 1)
            return self._damaged(self._log_path, n * RECORD, seq + n, "bad record")
        if bad:
            self._cut(fd, self._log_path, n * RECORD, len(data))
        if log_first is None:
            snap = self.load_snapshot()
            log_first = (snap[0] if snap is not None else 0) + 1
        self._segs[-1].first = log_first
        self._base = self._segs[0].first - 1
        fsync_dir(self.path)
        self._check_snapshot()

    def _upgrade_version1(self) -> None:
        """Rewrite every segment of the version-1 layout (56-byte commands) as the current one.

        Each file is replaced whole (synced temp file, rename), so a crash leaves it old or new and
        the next open finishes the job. Only a file whose version-1 records check whole is
        rewritten (the active one may also lose a torn last record, as :meth:`_scan` would cut
        it); any other leaves the file as it is, and the scan then reports it as damaged.
        """
        names = [name for _first, name in self._sealed_names()] + ["entries.log"]
        for name in names:
            path = os.path.join(self.path, name)
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                continue
            if not is_version1(data):
                continue
            _first, n = good_records(data, None, V1_ENTRY_SIZE)
            torn = len(data) - n * V1_RECORD
            if torn and (name != "entries.log" or torn > V1_RECORD):
                continue  # damaged, not just torn: the scan names it
            _atomic_write(path, upgrade(data, n))
            self.truncated_bytes += torn
            log.warning("journal_upgraded path=%s entries=%d from=version1 cut_bytes=%d", path, n, torn)

    def _sealed_names(self) -> list[tuple[int, str]]:
        """``(first seq, file name)`` of every sealed segment in the directory, oldest first."""
        return sorted(
            (int(name[8:28]), name)
            for name in os.listdir(self.path)
            if len(name) == 32
            and name.startswith("entries.")
            and name.endswith(".log")
            and name[8:28].isdigit()
        )

    def _check_snapshot(self) -> None:
        """The snapshot must be whole, and must cover ``base_seq`` when entries start past 1."""
        why = self._snapshot_problem()
        snap = None if why else self.load_snapshot()
        if why:
            self._damaged(self._snap_path, 0, None, why)
        elif self._base > 0 and (snap is None or not self._base <= snap[0] <= self.last_seq):
            have = "no snapshot" if snap is None else f"the snapshot is at seq {snap[0]}"
            self._damaged(self._snap_path, 0, self._base, f"entries start at seq {self._base + 1} and {have}")
        elif snap is not None and not self._base <= snap[0] <= self.last_seq:
            # A crash inside reset(): the peer's snapshot was saved, our old entries not yet
            # removed. Nothing of it was acknowledged; the old entries stand. Left on disk.
            log.warning(
                "journal_snapshot_ignored path=%s snap_seq=%d last_seq=%d", self.path, snap[0], self.last_seq
            )
            self._snap_cache, self._snap_loaded = None, True

    def _damaged(self, path: str, offset: int, seq: int | None, why: str) -> None:
        """Record (and log, one line) corruption found on open; hold nothing; touch no file."""
        at = f" (seq {seq})" if seq is not None else ""
        self.damage = f"journal: damaged {path} at offset {offset}{at}: {why}"
        # (The owner logs it, once: the node's journal_damaged line names all of this.)
        log.debug("journal_damaged path=%s offset=%d seq=%s reason=%s", path, offset, seq, why)
        self._hold_nothing()

    def _hold_nothing(self) -> None:
        """The view of a damaged journal: no entry, no snapshot (only :meth:`reset` writes)."""
        active = self._segs[-1] if self._segs and self._segs[-1].path == self._log_path else None
        for seg in self._segs:
            if seg is not active:
                os.close(seg.fd)
        if active is None:
            fd = os.open(self._log_path, os.O_RDWR | os.O_CREAT, 0o644)
            active = _Segment(1, 0, self._log_path, fd)
        active.first, active.n = 1, 0
        self._segs, self._base = [active], 0
        self._snap_cache, self._snap_loaded = None, True

    def _cut(self, fd: int, path: str, keep: int, size: int) -> None:
        """Cut a torn last record (the one change opening a journal may make)."""
        if keep == size:
            return
        self.truncated_bytes += size - keep
        log.warning("journal_tail_truncated path=%s cut_bytes=%d", path, size - keep)
        os.ftruncate(fd, keep)
        os.fsync(fd)

    # -- failures while running ------------------------------------------------------

    def _writable(self) -> None:
        """Refuse to write to a failed journal (never again) or a damaged one (until reset)."""
        if self._snap_writer.started and not self._snap_writer.busy:
            self._finish_snapshot()  # its failure fails the journal, as an in-line write's would
        if self.failed:
            raise JournalFailed(self.failed)
        if self.damage:
            raise JournalDamaged(self.damage)

    def _finish_snapshot(self) -> None:
        """Wait for the snapshot file in flight (if any); fail the journal if it was not written."""
        error = self._snap_writer.finish()
        if error is not None:
            self.failed = ""  # (set by the thread already: _fail says it once, with the reason)
            self._fail(error, "writing", self._snap_path)

    def _fail(self, exc: OSError, doing: str, path: str, fd: int = -1, keep: int = -1) -> NoReturn:
        """A write or sync failed: the journal refuses every later write (see ``diskio``).

        What the failed append wrote is cut again where possible (best effort: it was
        never acknowledged either way, and a restart cuts a torn last record anyway).
        """
        self.failed = describe(exc, doing, path)
        self.dirty = False
        log.debug("journal_failed path=%s error=%s", self.path, self.failed)  # the owner logs it, once
        if fd >= 0 and keep >= 0:
            try:
                os.ftruncate(fd, keep)
            except OSError:
                pass
        raise JournalFailed(self.failed) from None

    @contextmanager
    def _writing(self, doing: str, path: str) -> Iterator[None]:
        """Run a write that must not fail silently: an OSError fails the journal."""
        self._writable()
        try:
            yield
        except OSError as exc:
            self._fail(exc, doing, path)

    # -- interface -------------------------------------------------------------------

    @property
    def base_seq(self) -> int:
        return self._base

    @property
    def last_seq(self) -> int:
        return self._segs[-1].last

    def append(self, entries: Sequence[Entry]) -> None:
        """Append consecutive entries; an ``EntryRun`` is framed without a Python object per entry. O(len)."""
        if not len(entries):
            return
        last = self.last_seq
        if isinstance(entries, EntryRun):
            raw = entries.raw  # its seqs are consecutive by construction
            if entries[0].seq != last + 1:
                raise ValueError(f"append of seq {entries[0].seq} after {last}")
        else:
            for i, e in enumerate(entries):
                if e.seq != last + 1 + i:
                    raise ValueError(f"append of seq {e.seq} after {last + i}")
            raw = pack_entries(entries)
        if self.failed or self.damage:
            self._writable()
        recs = frame(raw)
        active = self._segs[-1]
        end = active.n * RECORD
        try:
            if self.fsync == "always":
                for off in range(0, len(recs), RECORD):
                    write_all(active.fd, recs[off : off + RECORD], end + off)
                    os.fdatasync(active.fd)
            else:
                write_all(active.fd, recs, end)
                if self.fsync == "batch" and self.defer_sync and len(recs) >= WRITEBACK_MIN:
                    # A catch-up chunk: the fdatasync comes at the end of the driver's pass, after
                    # many such chunks. Writing each back as it comes leaves that fsync (on the
                    # node's critical path: its ack and next refill wait for it) little to do.
                    start_writeback(active.fd, end, len(recs))
            if self.fsync == "batch" and not self.defer_sync:
                os.fdatasync(active.fd)
        except OSError as exc:
            self._fail(exc, "writing", active.path, active.fd, end)
        active.n += len(recs) // RECORD
        if self.fsync == "batch" and self.defer_sync:
            self.dirty = True

    def sync(self) -> None:
        """fdatasync what deferred appends wrote (no-op when nothing is pending)."""
        if self.dirty:
            self.dirty = False
            active = self._segs[-1]
            try:
                os.fdatasync(active.fd)
            except OSError as exc:
                self._fail(exc, "syncing", active.path)

    def read(self, from_seq: int, max_count: int = 1 << 30) -> list[Entry]:
        return list(self.read_run(from_seq, max_count))

    def read_run(self, from_seq: int, max_count: int = 1 << 30) -> Sequence[Entry]:
        """Entries ``from_seq ..`` (at most ``max_count``) as an ``EntryRun``: the bytes on disk
        with the record framing stripped, no ``Entry`` made. O(count)."""
        last = self.last_seq
        if from_seq <= self._base or from_seq > last or max_count <= 0:
            return ()
        stop = min(from_seq + max_count - 1, last)
        parts = []
        for seg in self._segs:
            lo, hi = max(from_seq, seg.first), min(stop, seg.last)
            if lo <= hi:
                start = (lo - seg.first) * RECORD
                parts.append(payloads(os.pread(seg.fd, (hi - lo + 1) * RECORD, start)))
        return EntryRun(b"".join(parts))

    def truncate_after(self, seq: int) -> None:
        if seq >= self.last_seq:
            return
        with self._writing("truncating", self.path):
            self._truncate_after(seq)

    def _truncate_after(self, seq: int) -> None:
        # From the newest segment back, so that a crash part-way leaves a longer
        # prefix of the same entries (the next Fence cuts it again), never a gap.
        active = self._segs[-1]
        while self._segs:
            seg = self._segs[-1]
            if seg.first <= seq:
                keep = seq - seg.first + 1
                os.ftruncate(seg.fd, keep * RECORD)
                os.fsync(seg.fd)
                seg.n = keep
                break
            if seg is active:
                os.ftruncate(seg.fd, 0)
                os.fsync(seg.fd)
                seg.n = 0
                self._segs.pop()
            else:
                os.close(seg.fd)
                os.unlink(seg.path)
                self._segs.pop()
        if self._segs and self._segs[-1] is not active:
            active.first = self._segs[-1].last + 1  # appends go on in entries.log
        elif not self._segs:
            active.first = self._base + 1
        if self._segs[-1:] != [active]:
            self._segs.append(active)
        fsync_dir(self.path)
        snap = self.load_snapshot()
        if snap is not None and snap[0] > seq:
            self._drop_snapshot()
        log.info("journal_truncated path=%s after_seq=%d", self.path, seq)

    def save_snapshot(self, seq: int, last_epoch: int, blob: bytes) -> None:
        self._finish_snapshot()
        head = SNAP.pack(SNAP_MAGIC, seq, last_epoch, zlib.crc32(blob), len(blob))
        with self._writing("writing", self._snap_path):
            _atomic_write(self._snap_path, head, blob)
        self._snap_cache = (seq, last_epoch, bytes(blob))
        self._snap_loaded = True

    def save_snapshot_later(self, seq: int, last_epoch: int, blob: bytes) -> None:
        """:meth:`save_snapshot`, the file written on a thread (``snapshot_writer``): the snapshot
        is this journal's at once (``load_snapshot``), on disk a little later; ``compact``
        goes no further than the one that is whole on disk. A failed write fails the journal
        at its next write. The checksum and the write release the GIL."""
        self._finish_snapshot()
        self._writable()
        blob = bytes(blob)
        before = self.load_snapshot()
        path = self._snap_path

        def write() -> None:
            head = SNAP.pack(SNAP_MAGIC, seq, last_epoch, zlib.crc32(blob), len(blob))
            try:
                _atomic_write(path, head, blob)
            except OSError as exc:
                # Failed at once (a str assignment): the next append, and the driver's check
                # before any output, see it without waiting for finish().
                self.failed = self.failed or describe(exc, "writing", path)
                raise

        self._snap_writer.start(seq, before[0] if before is not None else None, write)
        self._snap_cache = (seq, last_epoch, blob)
        self._snap_loaded = True

    def load_snapshot(self) -> tuple[int, int, bytes] | None:
        if not self._snap_loaded:
            self._snapshot_problem()
        return self._snap_cache

    def _snapshot_problem(self) -> str:
        """Read snapshot.bin into the cache; why it is unusable ("" if it is whole, or absent)."""
        self._snap_loaded, self._snap_cache = True, None
        try:
            with open(self._snap_path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return ""
        if len(data) < SNAP.size:
            return f"snapshot of {len(data)} bytes is shorter than its header"
        magic, seq, last_epoch, crc, length = SNAP.unpack_from(data)
        blob = data[SNAP.size :]
        if magic != SNAP_MAGIC or len(blob) != length or zlib.crc32(blob) != crc:
            return f"snapshot at seq {seq}: bad magic, length or checksum ({len(blob)} of {length} bytes)"
        self._snap_cache = (seq, last_epoch, blob)
        return ""

    def _drop_snapshot(self) -> None:
        self._finish_snapshot()
        try:
            os.unlink(self._snap_path)
        except FileNotFoundError:
            pass
        self._snap_cache, self._snap_loaded = None, True

    def reset(self, seq: int, last_epoch: int, blob: bytes) -> None:
        """Also how a damaged journal is repaired: with a peer's snapshot (or ``seq`` 0: empty)."""
        if self.failed:
            raise JournalFailed(self.failed)
        damaged, self.damage = self.damage, ""
        with self._writing("resetting", self.path):
            self._reset(seq, last_epoch, blob, damaged)
        if damaged:
            log.debug("journal_repair_started path=%s was=%r", self.path, damaged)  # the node logs it

    def _reset(self, seq: int, last_epoch: int, blob: bytes, damaged: str) -> None:
        # Snapshot first: if we crash in between, the old entries stand and the
        # snapshot beyond them is ignored on open (the node fetches it again).
        # Then newest segment first, so a crash part-way leaves a prefix.
        if seq or blob:
            self.save_snapshot(seq, last_epoch, blob)
        else:
            self._drop_snapshot()  # back to empty: a damaged journal's first repair step
        active = self._segs[-1]
        os.ftruncate(active.fd, 0)
        os.fsync(active.fd)
        for seg in reversed(self._segs[:-1]):
            os.close(seg.fd)
            os.unlink(seg.path)
        if damaged:  # the sealed segments a damaged journal never indexed
            for _, name in reversed(self._sealed_names()):
                os.unlink(os.path.join(self.path, name))
        fsync_dir(self.path)
        active.first, active.n = seq + 1, 0
        self._segs = [active]
        self._base = seq
        log.info("journal_reset path=%s base_seq=%d", self.path, seq)

    def compact(self, upto: int) -> int:
        """Drop entries up to ``upto`` (never past the snapshot), in whole sealed segments.

        Seals the active segment (one rename) once it holds ``segment_entries``,
        then deletes the sealed segments that hold only dropped entries, oldest
        first: a crash at any point leaves a consecutive run of entries that
        still starts at or below the snapshot. A few file operations, no copy.
        Returns how many entries were dropped.
        """
        writer = self._snap_writer
        if writer.busy:  # the newest snapshot is not whole on disk yet: only up to the one before
            seq = writer.fallback_seq
        else:
            self._finish_snapshot()
            snap = self.load_snapshot()
            seq = snap[0] if snap is not None else None
        if seq is None:
            return 0
        with self._writing("compacting", self.path):
            return self._compact(min(upto, seq))

    def _compact(self, upto: int) -> int:
        active = self._segs[-1]
        if active.n >= self.segment_entries:
            self._seal()
        dropped = 0
        while len(self._segs) > 1 and self._segs[0].last <= upto:
            seg = self._segs.pop(0)
            os.close(seg.fd)
            os.unlink(seg.path)
            dropped += seg.n
        if dropped:
            self._base = self._segs[0].first - 1
            fsync_dir(self.path)
            log.info("journal_compacted path=%s dropped=%d base_seq=%d", self.path, dropped, self._base)
        return dropped

    def _seal(self) -> None:
        """Rename entries.log to its sealed name and start an empty one."""
        active = self._segs[-1]
        if self.dirty or self.fsync == "none":
            os.fdatasync(active.fd)  # a sealed segment is complete on disk
            self.dirty = False
        sealed = os.path.join(self.path, _segment_name(active.first))
        os.rename(self._log_path, sealed)  # a crash here: open finds no entries.log and makes one
        active.path = sealed
        fd = os.open(self._log_path, os.O_RDWR | os.O_CREAT, 0o644)
        fsync_dir(self.path)
        self._segs.append(_Segment(active.last + 1, 0, self._log_path, fd))

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
        for counter, body in self._meta_slots.records():
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
        slots = self._meta_slots
        slots.counter = max(slots.counter, counter)  # the next save outranks meta.json too
        doc.pop("counter", None)
        return doc

    def save_meta(self, meta: dict[str, Any]) -> None:
        """Durably replace the metadata: one in-place slot write + fdatasync (O(size))."""
        if self.failed:
            raise JournalFailed(self.failed)
        slots = self._meta_slots
        if slots.counter == 0 and not self._meta_loaded:
            self.load_meta()
        self._meta_loaded = True
        body = json.dumps(meta, sort_keys=True).encode()
        try:
            if len(body) > slots.capacity:
                slots.counter += 1
                _atomic_write(
                    self._meta_path, json.dumps(dict(meta, counter=slots.counter), sort_keys=True).encode()
                )
                return
            slots.save(body)
        except OSError as exc:
            self._fail(exc, "writing", self._meta_slots.path)

    def close(self) -> None:
        try:
            self._finish_snapshot()
        except JournalFailed:
            pass  # already logged; the process is closing (the old snapshot stands)
        self._meta_slots.close()
        if self._segs:
            try:
                self.sync()
            except JournalFailed:
                pass  # already logged; the process is closing
            for seg in self._segs:
                os.close(seg.fd)
            self._segs = []
