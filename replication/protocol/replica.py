"""Replicated state: the engine plus everything else that must be identical on every node.

For: applying sequenced entries to an engine, the dedupe table of executed
``(client_id, request_id)`` -> first result (replicated by replay, so a
standby that takes over answers a re-sent request with its first result),
the session table (client id -> its current session, learnt from the
entries that open sessions: see ``session``), snapshot/restore of all of
it, and rebuilding it from a journal. Not for:
deciding what to apply (the sequencer and standby do that) or any I/O.
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from ..native.fastpath import fresh_span, pack_results, remember_run
from .journal_api import JournalDamaged
from .reports import ReportBook
from .session import COUNTER_MASK, SESSION_SHIFT, Held, nonce_of
from .wire import COMMAND_SIZE, EVENT_SIZE, RUN_MIN, Entry, EntryRun, pack_entries

log = logging.getLogger("replication.replica")

SNAP_HEAD = struct.Struct("<4sBQIQQ")  # magic, version, seq, last_epoch, engine blob len, n clients
CLIENT_HEAD = struct.Struct("<QQI")  # client id, floor, n results
RESULT_HEAD = struct.Struct("<QQI")  # request id, seq, events len
SESSIONS_HEAD = struct.Struct("<Q")  # n sessions (version 2 on: after the dedupe table)
SESSION_REC = struct.Struct("<QQQ")  # client id, session, nonce
# Earlier sessions remembered per client id (their opens' nonces): a re-sent open of one of
# them (its answer lost, a newer session opened meanwhile) is answered FENCED, never reopened.
OLD_SESSIONS = 8
MAGIC = b"MCRP"
# 1: no session table (still restored: every client id without a session); 2: no report book
# (still restored: the orders then live have no owner, and no client has reports).
VERSION = 3

EXPIRED = object()  # lookup result: the request is older than the dedupe window remembers
# How much of packed runs may wait for its dedupe update (see Replica._pending). A flush
# makes up to a window of results per client whatever it holds, so it waits for many
# windows' worth of entries (or this many bytes of their events, whichever comes first).
PENDING_WINDOWS = 32
PENDING_BYTES = 16 << 20
# Batches of at least this many requests record their results with one remember_run call;
# smaller ones (the usual batch at low load) call _remember per request, as NumPy's per-call
# overhead would cost more than it saves.
REMEMBER_BULK = 16


def default_engine_factory() -> Any:
    """``matching.Engine`` if the extension is built, else ``matching.ReferenceEngine``."""
    import matching

    return matching.Engine() if matching.Engine is not None else matching.ReferenceEngine()


def _event_pad() -> int:
    """Offset of the padding at the end of an ``EVENT_DTYPE`` record."""
    from matching.codes import EVENT_DTYPE

    return max(off + dt.itemsize for dt, off, *_ in (EVENT_DTYPE.fields or {}).values())


def _command_dtype() -> np.dtype:
    from matching.codes import COMMAND_DTYPE

    return COMMAND_DTYPE


class Replica:
    """Engine + dedupe table + position (seq, epoch of the last entry).

    Parameters
    ----------
    engine_factory : callable
        ``engine_factory()`` returns a fresh engine with the ``matching.Engine``
        surface; restore goes through ``type(engine).restore``.
    dedupe_window : int
        Results remembered per client. A request older than the window that
        is re-sent gets an ``EXPIRED`` answer, never a second execution.
    perturb_seq : int
        Test-only: just before applying this seq, feed the engine one extra
        command so this replica's digest diverges (0 = never).
    report_window, order_window : int
        Execution reports kept per client, and ended orders kept for queries
        (``reports.ReportBook``).
    """

    def __init__(
        self,
        engine_factory: Callable[[], Any] = default_engine_factory,
        dedupe_window: int = 4096,
        perturb_seq: int = 0,
        report_window: int = 65536,
        order_window: int = 65536,
    ) -> None:
        self.engine_factory = engine_factory
        self.engine = engine_factory()
        self.dedupe_window = dedupe_window
        self.perturb_seq = perturb_seq
        self.seq = 0
        self.last_epoch = 0
        # client id -> [floor, OrderedDict{request id -> (seq, events)}]: insertion
        # order, so eviction is deterministic and identical on every replica; an
        # OrderedDict because evicting the oldest of a plain dict (next(iter(d))
        # after many front deletions) scans the deleted slots: O(window), not O(1).
        # Read it through ``results``, which first applies the deferred updates.
        self._results: dict[int, list] = {}
        # client id -> its current session (session.Held), in the order the ids first
        # opened one: the same on every replica, as it follows the journal.
        self.sessions: dict[int, Held] = {}
        # client id -> its last OLD_SESSIONS sessions before the current one, oldest first.
        self.old_sessions: dict[int, list[Held]] = {}
        # Owners, order states and execution reports (see ``reports``): derived from the
        # entries like the rest, so the same on every replica.
        self.reports = ReportBook(report_window, order_window)
        # Packed runs applied but not yet recorded in the table (_Run records). A catch-up streams hundreds of thousands
        # of entries past a window of a few thousand: recorded in bulk, most of them
        # would only be inserted to be evicted again. See _remember_runs.
        self._pending: list[_Run] = []
        self._pending_n = self._pending_bytes = 0
        # client id -> the highest request id the table holds or will hold once the deferred
        # runs are recorded (never below any id remembered, nor below its floor - 1). A
        # request id above it is new without a look at the table (``fresh_count``), so a
        # primary defers its own batches' dedupe updates too and flushes only in bulk.
        self._high: dict[int, int] = {}
        self.pending_max = max(PENDING_WINDOWS * dedupe_window, 1024)  # entries
        self._dtype = _command_dtype()
        # Event records are compared as bytes (dedupe table, replies): the padding after the
        # last field must be deterministic. The native engine writes zeros; an engine
        # that builds its array from tuples (the reference) may leave garbage there.
        self._pad = _event_pad() if type(self.engine).__module__ != "matching._engine" else 0

    @property
    def digest(self) -> int:
        return int(self.engine.digest)

    @property
    def last_ts(self) -> int:
        """The latest ``ts`` applied (the engine's time: it never goes back, and a snapshot keeps
        it): the floor of the sequencer's next stamp (``group_time.next_stamp``). O(1)."""
        return int(self.engine.now)

    @property
    def results(self) -> dict[int, list]:
        """The dedupe table, client id -> ``[floor, OrderedDict{request id -> (seq, events)}]``.

        O(1), or O(deferred entries) the first time after a catch-up run.
        """
        if self._pending:
            self._flush()
        return self._results

    def order_account(self, order_id: int) -> int | None:
        """The account of a live order (the replicated owner table), or None. O(1)."""
        return self.reports.account_of(order_id)

    def lookup(self, client_id: int, request_id: int) -> tuple[int, bytes] | object | None:
        """First result ``(seq, events)`` of an executed request, ``EXPIRED``, or None. O(1)."""
        if self._pending:
            self._flush()
        slot = self._results.get(client_id)
        if slot is None:
            return None
        got = slot[1].get(request_id)
        if got is not None:
            return got
        return EXPIRED if request_id < slot[0] else None

    def execute(
        self, epoch: int, seq: int, client_id: int, request_id: int, command: bytes
    ) -> tuple[bytes, int]:
        """Apply one command as entry ``seq``; remember its result; return ``(events, digest)``.

        ``events`` is the engine's ``EVENT_DTYPE`` records as bytes. O(engine).
        """
        if seq != self.seq + 1:
            raise ValueError(f"replica at seq {self.seq} cannot apply seq {seq}")
        if seq == self.perturb_seq:
            self._perturb()
        events = self._events(self.engine.apply_batch(np.frombuffer(command, dtype=self._dtype)))
        self.seq = seq
        self.last_epoch = epoch
        if events:
            self.reports.absorb(seq, client_id, command, events)
        if client_id:
            self._remember(client_id, request_id, seq, events)
            if request_id and not request_id & COUNTER_MASK:
                self._opened(client_id, request_id, command)
        return events, int(self.engine.digest)

    def _events(self, ev: np.ndarray) -> bytes:
        if self._pad and len(ev):
            ev.view(np.uint8).reshape(len(ev), -1)[:, self._pad :] = 0
        return ev.tobytes()

    def execute_run(
        self,
        epoch: int,
        client_ids: list[int] | np.ndarray,
        request_ids: list[int] | np.ndarray,
        commands: bytes,
    ) -> tuple[EntryRun, list[bytes]]:
        """Apply requests (their ids, and their ``COMMAND_SIZE``-byte commands back to back) as the
        next seqs; return the journal entries they became, packed, and each one's events.

        Same state and results as one :meth:`execute` per request, with one engine call
        for the batch (each command still gets its own digest: entries carry it). The
        packed run is what the primary journals and streams: each entry packed once. O(batch).
        """
        run, raw, ends = self.execute_batch(epoch, client_ids, request_ids, commands)
        return run, [raw[a:b] for a, b in zip(ends, ends[1:], strict=False)]

    def execute_batch(
        self,
        epoch: int,
        client_ids: list[int] | np.ndarray,
        request_ids: list[int] | np.ndarray,
        commands: bytes,
    ) -> tuple[EntryRun, bytes, list[int]]:
        """:meth:`execute_run` with the events left together: ``(run, events, offsets)``, request
        ``i``'s events being ``events[offsets[i]:offsets[i + 1]]`` (the primary's replies take
        them so, as ``wire.ReplyColumns``, with no ``bytes`` per request). The ids may come as
        lists of ints or as uint64 arrays (a batch of packed requests). O(batch)."""
        n = len(client_ids)
        first = self.seq + 1
        if isinstance(client_ids, np.ndarray) and (n < RUN_MIN or self.perturb_seq):
            # The per-entry paths below want ints (the dedupe table's keys are ints); the ids
            # come as two arrays or two lists (asarray: a no-op that tells the type checker so).
            client_ids, request_ids = client_ids.tolist(), np.asarray(request_ids).tolist()
        if self.perturb_seq and first <= self.perturb_seq < first + n:
            size = len(commands) // n if n else 0
            entries, out = [], []
            for i in range(n):
                cmd = commands[i * size : (i + 1) * size]
                events, digest = self.execute(epoch, first + i, client_ids[i], request_ids[i], cmd)
                entries.append(Entry(epoch, first + i, client_ids[i], request_ids[i], digest, cmd))
                out.append(events)
            ends = [0]
            for events in out:
                ends.append(ends[-1] + len(events))
            return EntryRun(pack_entries(entries)), b"".join(out), ends
        digests = np.empty(n, dtype=np.uint64)
        arr = np.frombuffer(commands, dtype=self._dtype)
        raw, ends = self._split_events(self.engine.apply_batch(arr, digests), n, EVENT_SIZE)
        if n < REMEMBER_BULK:
            remember = self._remember
            for i in range(n):
                if client_ids[i]:
                    remember(client_ids[i], request_ids[i], first + i, raw[ends[i] : ends[i + 1]])
        else:
            # The dedupe update waits, as a standby's does (see _pending): recorded in bulk,
            # most of a busy client's results would be made only to be evicted again. Copies
            # of the id columns: they may be views of the requests' frames.
            client_ids = np.array(client_ids, dtype=np.uint64)
            request_ids = np.array(request_ids, dtype=np.uint64)
            offsets = np.array(ends, dtype=np.int64)
            self._defer(_run(first, client_ids, request_ids, raw, offsets[:-1], offsets[1:]))
        self._note_opens(client_ids, request_ids, commands)
        self.reports.absorb_batch(first, client_ids, commands, raw, ends)
        self.seq = first + n - 1
        self.last_epoch = epoch
        return EntryRun.build(epoch, first, client_ids, request_ids, digests, commands), raw, ends

    def _split_events(self, events: np.ndarray, n: int, unit: int = 1) -> tuple[bytes, list[int]]:
        """A batch's events as bytes, and where each of its ``n`` commands' events start (plus the
        end), counted in records, or in bytes with ``unit=EVENT_SIZE``.

        ``cmd`` is zeroed, as a one-command batch reports it (the replies and
        the dedupe table hold exactly what ``execute`` would have).
        """
        if n == 1:  # the common case at low load: skip NumPy's per-call overhead
            bounds = [0, len(events) * unit]
        else:
            bounds = (np.searchsorted(events["cmd"], np.arange(n + 1)) * unit).tolist()
        events["cmd"] = 0
        return self._events(events), bounds

    def apply_entries(self, entries: list[Entry] | tuple[Entry, ...] | EntryRun) -> int:
        """Apply consecutive entries from ``self.seq + 1``; stop at the first whose digest differs.

        Returns how many were applied with matching digests (``len(entries)`` if
        all). When fewer, entry ``n`` is the first divergence and the engine
        has applied at least it (the book is then wrong: the caller stops using
        it); -1: the run's last digest differs, so some entry diverged: re-apply
        the run with :meth:`locate_divergence` on a replica rebuilt as of its
        start to name it. One ``apply_batch`` for the whole run: a divergence of
        the book inside it carries to the last entry's chained digest.
        O(entries).
        """
        n = len(entries)
        if not n:
            return 0
        first = entries[0].seq
        if first != self.seq + 1:
            raise ValueError(f"replica at seq {self.seq} cannot apply seq {first}")
        if entries[-1].seq != first + n - 1:
            raise ValueError("entries are not consecutive")
        if self.perturb_seq and first <= self.perturb_seq < first + n:
            for i, e in enumerate(entries):
                if not self.apply_entry(e)[1]:
                    return i
            return n
        if isinstance(entries, EntryRun):
            return self._apply_run(entries)
        arr = np.frombuffer(b"".join([e.command for e in entries]), dtype=self._dtype)
        events = self.engine.apply_batch(arr)
        if int(self.engine.digest) != entries[-1].digest:
            return -1  # somewhere in the run: the caller locates it (see locate_divergence)
        raw, bounds = self._split_events(events, n)
        remember, absorb = self._remember, self.reports.absorb
        for i, e in enumerate(entries):
            if bounds[i] != bounds[i + 1]:
                absorb(
                    e.seq, e.client_id, e.command, raw[bounds[i] * EVENT_SIZE : bounds[i + 1] * EVENT_SIZE]
                )
            if e.client_id:
                remember(
                    e.client_id, e.request_id, e.seq, raw[bounds[i] * EVENT_SIZE : bounds[i + 1] * EVENT_SIZE]
                )
                if e.request_id and not e.request_id & COUNTER_MASK:
                    self._opened(e.client_id, e.request_id, e.command)
        self.seq = entries[-1].seq
        self.last_epoch = entries[-1].epoch
        return n

    def _apply_run(self, run: EntryRun) -> int:
        """:meth:`apply_entries` for packed entries: columns, no ``Entry`` per entry.

        The engine writes its chained digest after every command, so the first
        entry whose digest differs is found here, without a rebuild. O(entries).
        """
        n = len(run)
        cols = run.array
        digests = np.empty(n, dtype=np.uint64)
        events = self.engine.apply_batch(np.frombuffer(run.commands, dtype=self._dtype), digests)
        bad = np.flatnonzero(digests != cols["digest"])
        # On a mismatch: entries up to the first bad one count as applied (it included,
        # as apply_entry does); the book is wrong from there and the caller stops using it.
        k = int(bad[0]) + 1 if len(bad) else n
        # Where each command's events start, as _split_events finds them, but kept an array.
        ends = np.searchsorted(events["cmd"], np.arange(n + 1)).astype(np.int64) * EVENT_SIZE
        events["cmd"] = 0
        raw = self._events(events)
        seq = int(cols["seq"][0])
        # The dedupe update waits (see _pending): copies of the id columns, not views of the run.
        cids = np.ascontiguousarray(cols["client_id"][:k])
        rids = np.ascontiguousarray(cols["request_id"][:k])
        self._note_opens(cids, rids, run.array["command"][:k])
        self.reports.absorb_batch(seq, cids, run.commands[: k * COMMAND_SIZE], raw, ends[: k + 1])
        self._defer(_run(seq, cids, rids, raw, ends[:k], ends[1 : k + 1]))
        self.seq = seq + k - 1
        self.last_epoch = int(cols["epoch"][k - 1])
        return k - 1 if len(bad) else n

    def locate_divergence(self, entries: list[Entry] | tuple[Entry, ...]) -> int:
        """On a replica at the run's start: apply entry by entry; index of the first bad digest (or len)."""
        for i, e in enumerate(entries):
            if not self.apply_entry(e)[1]:
                return i
        return len(entries)

    def apply_entry(self, e: Entry) -> tuple[bytes, bool]:
        """Apply a journal entry; return ``(events, digest_matches)``."""
        events, digest = self.execute(e.epoch, e.seq, e.client_id, e.request_id, e.command)
        return events, digest == e.digest

    def _note_opens(self, client_ids, request_ids, commands) -> None:
        """Learn the sessions opened by a batch of applied entries (ids as lists or uint64 arrays;
        commands back to back as bytes, or a ``V80`` array). O(batch), vectorised for arrays."""
        if type(request_ids) is np.ndarray:
            if not len(request_ids):
                return
            hits = np.flatnonzero(
                ((request_ids & np.uint64(COUNTER_MASK)) == 0) & (request_ids != 0)
            ).tolist()
        else:
            hits = [i for i, r in enumerate(request_ids) if r and not r & COUNTER_MASK]
        for i in hits:
            cmd = (
                bytes(commands[i])
                if type(commands) is np.ndarray
                else commands[i * COMMAND_SIZE : (i + 1) * COMMAND_SIZE]
            )
            if client_ids[i]:
                self._opened(int(client_ids[i]), int(request_ids[i]), cmd)

    def _opened(self, client_id: int, request_id: int, command: bytes) -> None:
        """Entry ``request_id`` of ``client_id`` opened a session: it is the id's current one."""
        session = request_id >> SESSION_SHIFT
        held = self.sessions.get(client_id)
        if held is None or session > held.session:  # (the primary only opens newer ones)
            self.sessions[client_id] = Held(session, nonce_of(command))
            if held is not None:
                old = self.old_sessions.setdefault(client_id, [])
                old.append(held)
                del old[:-OLD_SESSIONS]

    def fenced_open(self, client_id: int, nonce: int) -> bool:
        """Whether ``nonce`` opened one of the client id's earlier sessions (now fenced). O(1)."""
        return any(h.nonce == nonce for h in self.old_sessions.get(client_id, ()))

    def _defer(self, run: _Run) -> None:
        """Queue ``run``'s dedupe update (recorded at the next flush); flush past the bounds."""
        self._pending.append(run)
        self._pending_n += len(run.cids)
        self._pending_bytes += len(run.events)
        _raise_highs(self._high, run)
        if self._pending_n >= self.pending_max or self._pending_bytes >= PENDING_BYTES:
            self._flush()

    def _flush(self) -> None:
        runs, self._pending, self._pending_n, self._pending_bytes = self._pending, [], 0, 0
        _remember_runs(self._results, self.dedupe_window, runs)

    def fresh_count(self, client_id: int, first: int, count: int) -> int:
        """How many of request ids ``first .. first + count - 1`` of ``client_id``, from the
        first, :meth:`lookup` would answer None (neither executed nor expired).

        A client's requests mostly arrive in rising order, each above all it has
        had executed: that is answered from the highest id alone, with no flush
        of the deferred updates and no probe. Otherwise ``fastpath.fresh_span``
        on the flushed table. O(1), else O(that many).
        """
        if first > self._high.get(client_id, -1) and first + count <= 1 << 64:
            return count
        return fresh_span(self.results, client_id, first, count)

    def _remember(self, client_id: int, request_id: int, seq: int, events: bytes) -> None:
        if self._pending:
            self._flush()
        if request_id > self._high.get(client_id, -1):
            self._high[client_id] = request_id
        slot = self._results.get(client_id)
        if slot is None:
            slot = self._results[client_id] = [0, OrderedDict()]
        table = slot[1]
        table[request_id] = (seq, events)
        if len(table) > self.dedupe_window:
            old = table.popitem(last=False)[0]
            slot[0] = max(slot[0], old + 1)

    def _perturb(self) -> None:
        from matching.commands import command_record

        rec = command_record(
            {"op": "new", "instrument": 4242, "id": (1 << 63) + 4242, "side": "buy", "price": 1, "qty": 1}
        )
        self.engine.apply_batch(np.array([tuple(rec)], dtype=self._dtype))
        log.warning("replica_perturbed seq=%d (test-only flag)", self.seq + 1)

    # -- snapshot ------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """Everything replicated, as bytes (engine blob + dedupe table), with a CRC. O(state)."""
        blob = self.engine.snapshot()
        results = self.results
        head = SNAP_HEAD.pack(MAGIC, VERSION, self.seq, self.last_epoch, len(blob), len(results))
        sessions = [SESSIONS_HEAD.pack(len(self.sessions))]
        sessions += [SESSION_REC.pack(cid, h.session, h.nonce) for cid, h in self.sessions.items()]
        # Version 3 on: the earlier sessions, as (client id, session, nonce) records.
        old = [(cid, h) for cid, hs in self.old_sessions.items() for h in hs]
        sessions.append(SESSIONS_HEAD.pack(len(old)))
        sessions += [SESSION_REC.pack(cid, h.session, h.nonce) for cid, h in old]
        # CLIENT_HEAD, RESULT_HEADs and events, then the session table.
        parts = [head, blob, pack_results(results), *sessions, self.reports.pack()]
        # The CRC part by part, and one join with it: the snapshot (megabytes, mostly the
        # report book) is copied once, not joined and then copied again to append the CRC.
        crc = 0
        for part in parts:
            crc = zlib.crc32(part, crc)
        parts.append(struct.pack("<I", crc))
        return b"".join(parts)

    @classmethod
    def restore(
        cls,
        blob: bytes,
        engine_factory: Callable[[], Any] = default_engine_factory,
        dedupe_window: int = 4096,
        perturb_seq: int = 0,
        report_window: int = 65536,
        order_window: int = 65536,
    ) -> Replica:
        """Rebuild from :meth:`snapshot` bytes; ``ValueError`` on damaged input."""
        if len(blob) < SNAP_HEAD.size + 4 or zlib.crc32(blob[:-4]) != struct.unpack("<I", blob[-4:])[0]:
            raise ValueError("replica snapshot damaged (short or bad checksum)")
        magic, ver, seq, last_epoch, elen, nclients = SNAP_HEAD.unpack_from(blob)
        if magic != MAGIC or not 1 <= ver <= VERSION:
            raise ValueError("not a replica snapshot")
        r = cls(engine_factory, dedupe_window, perturb_seq, report_window, order_window)
        pos = SNAP_HEAD.size
        r.engine = type(r.engine).restore(bytes(blob[pos : pos + elen]))
        pos += elen
        for _ in range(nclients):
            cid, floor, n = CLIENT_HEAD.unpack_from(blob, pos)
            pos += CLIENT_HEAD.size
            table: OrderedDict = OrderedDict()
            for _ in range(n):
                rid, s, ln = RESULT_HEAD.unpack_from(blob, pos)
                pos += RESULT_HEAD.size
                table[rid] = (s, bytes(blob[pos : pos + ln]))
                pos += ln
            r.results[cid] = [floor, table]
            r._high[cid] = max(max(table, default=-1), floor - 1)
        if ver >= 2:
            held, pos = _read_sessions(blob, pos, "session table")
            r.sessions.update(held)
        if ver >= 3:
            earlier, pos = _read_sessions(blob, pos, "earlier sessions")
            for cid, h in earlier:
                r.old_sessions.setdefault(cid, []).append(h)
            r.reports, pos = ReportBook.unpack(blob, pos)
            r.reports.report_window, r.reports.order_window = report_window, order_window
        r.seq, r.last_epoch = seq, last_epoch
        return r


def _read_sessions(blob: bytes, pos: int, what: str) -> tuple[list[tuple[int, Held]], int]:
    """A snapshot's table of (client id, session, nonce) records at ``pos``: the records as
    ``(client id, Held)`` and the position after them; ``ValueError`` if it runs past the end."""
    (n,) = SESSIONS_HEAD.unpack_from(blob, pos)
    pos += SESSIONS_HEAD.size
    if pos + n * SESSION_REC.size > len(blob) - 4:
        raise ValueError(f"replica snapshot damaged ({what} runs past its end)")
    out = []
    for _ in range(n):
        cid, session, nonce = SESSION_REC.unpack_from(blob, pos)
        pos += SESSION_REC.size
        out.append((cid, Held(session, nonce)))
    return out, pos


class _Run(NamedTuple):
    """A packed run waiting for its dedupe update (see ``Replica._pending``)."""

    first: int  # seq of its first entry
    cids: np.ndarray  # client id per entry (uint64)
    rids: np.ndarray  # request id per entry (uint64)
    events: bytes  # the run's events; entry i's are events[starts[i]:stops[i]]
    starts: np.ndarray
    stops: np.ndarray
    client: int  # the one client of every entry, or -1
    rising: bool  # request ids strictly increasing


def _run(first: int, cids: np.ndarray, rids: np.ndarray, events: bytes, starts, stops) -> _Run:
    """A ``_Run``, with what the one-client flush needs found while the arrays are small. O(len)."""
    client = int(cids[0]) if len(cids) and (cids == cids[0]).all() else -1
    return _Run(first, cids, rids, events, starts, stops, client, bool((rids[1:] > rids[:-1]).all()))


def _raise_highs(high: dict[int, int], run: _Run) -> None:
    """Raise each client's highest request id (``Replica._high``) to the highest in ``run``.
    O(1) numpy calls for a run of one client; O(n log n) for a mixed one."""
    if run.client > 0:
        top = int(run.rids[-1] if run.rising else run.rids.max())
        if top > high.get(run.client, -1):
            high[run.client] = top
        return
    if run.client == 0 or not len(run.cids):
        return
    order = np.lexsort((run.rids, run.cids))  # by client, then request id: each group's last is its top
    cids, rids = run.cids[order], run.rids[order]
    last = np.flatnonzero(np.append(cids[1:] != cids[:-1], True))
    for c, r in zip(cids[last].tolist(), rids[last].tolist(), strict=True):
        if c and r > high.get(c, -1):
            high[c] = r


def _remember_one_client(results: dict[int, list], window: int, runs: list[_Run]) -> bool:
    """:func:`_remember_runs` for its common case, in O(runs + window): every entry is of one
    client, with request ids rising throughout and above all it holds, more than a window of
    them (a catch-up from a primary fed by one client). False, having changed nothing, otherwise."""
    c = runs[0].client
    if c <= 0 or any(r.client != c or not r.rising for r in runs):
        return False
    if any(int(a.rids[-1]) >= int(b.rids[0]) for a, b in zip(runs, runs[1:], strict=False)):
        return False
    slot = results.get(c)
    table = slot[1] if slot is not None else OrderedDict()
    held = max(table, default=-1)
    m = sum(len(r.cids) for r in runs)
    if m <= window or len(table) > window or int(runs[0].rids[0]) <= held:
        return False
    if slot is None:
        slot = results[c] = [0, table]
    # As one by one: all it held, then its first m - window entries are evicted (ids rising:
    # the last of them is the highest), and the last window stay.
    cut, at = m - window, 0
    for r in runs:
        if at + len(r.cids) >= cut:
            top = max(int(r.rids[cut - at - 1]), held) + 1
            break
        at += len(r.cids)
    if top > slot[0]:
        slot[0] = top
    table.clear()
    at = 0
    for r in runs:
        lo, at = max(cut - at, 0), at + len(r.cids)
        if lo < len(r.cids):
            seqs = np.arange(r.first + lo, r.first + len(r.cids), dtype=np.uint64)
            remember_run(
                results, window, r.cids[lo:], r.rids[lo:], seqs, r.events, r.starts[lo:], r.stops[lo:]
            )
    return True


def _distinct(r: np.ndarray, table: OrderedDict, held: int) -> bool:
    """Are the request ids ``r`` all different, and none of them a key of ``table`` (``held``: its
    largest key, or -1)? O(len(r)) when they increase past ``held``, as a client's ids do."""
    if (r[1:] > r[:-1]).all():
        if int(r[0]) > held:
            return True
    else:
        s = np.sort(r)
        if (s[1:] == s[:-1]).any():
            return False
    return not table or not np.isin(r, np.fromiter(table, np.uint64, len(table))).any()


def _remember_runs(results: dict[int, list], window: int, runs: list[_Run]) -> None:
    """Record deferred runs in the dedupe table.

    The table ends exactly as :meth:`Replica._remember` per entry, in seq
    order, would leave it (``test_catchup_run`` checks tables and snapshot
    bytes). A client with more than ``window`` entries here, all with distinct
    request ids none of which it already holds, is done in bulk: entry by entry,
    its older results and then its first ``m - window`` entries would be evicted,
    each raising its floor past it, and the last ``window`` would stay. So those
    are dropped at once and the floor raised to the highest dropped id + 1;
    every other entry goes through ``remember_run`` (per entry, in C when
    built). O(entries), and only about ``window`` results made per client.
    """
    if _remember_one_client(results, window, runs):
        return
    cids = np.concatenate([r.cids for r in runs])
    rids = np.concatenate([r.rids for r in runs])
    named = np.flatnonzero(cids)  # client 0: not remembered
    if not len(named):
        return
    # Group by client (a stable sort keeps each client's entries in seq order); np.unique
    # would do it too, but at ten times the cost.
    order = named[cids[named].argsort(kind="stable")]
    grouped = cids[order]
    heads = np.flatnonzero(np.concatenate(([True], grouped[1:] != grouped[:-1])))
    ends = np.append(heads[1:], len(order))
    # New clients enter the table in the order of their first entry, as one by one they would.
    for h in heads[np.argsort(order[heads])]:
        results.setdefault(int(grouped[h]), [0, OrderedDict()])
    keep = np.ones(len(cids), dtype=bool)
    for h, e in zip(heads.tolist(), ends.tolist(), strict=True):
        if e - h <= window:
            continue
        slot = results[int(grouped[h])]
        table = slot[1]
        mine = order[h:e]
        r = rids[mine]
        held = max(table, default=-1)
        if len(table) > window or not _distinct(r, table, held):
            # Restored with a smaller window (entry by entry keeps the size), or a repeated
            # id (updated in place, no eviction): one by one below.
            continue
        cut = len(r) - window
        top = max(int(r[:cut].max()), held) + 1
        if top > slot[0]:
            slot[0] = top
        table.clear()
        keep[mine[:cut]] = False
    # The rest, run by run in seq order (each with its own events: no copy of them all).
    at = 0
    for run in runs:
        c, r, starts, stops = run.cids, run.rids, run.starts, run.stops
        k = keep[at : at + len(c)]
        at += len(c)
        if not k.any():
            continue
        seqs = np.arange(run.first, run.first + len(c), dtype=np.uint64)
        if not k.all():
            c, r, seqs, starts, stops = c[k], r[k], seqs[k], starts[k], stops[k]
        remember_run(results, window, c, r, seqs, run.events, starts, stops)


def recover(
    journal: Any,
    engine_factory: Callable[[], Any] = default_engine_factory,
    dedupe_window: int = 4096,
    chunk: int = 65536,
    report_window: int = 65536,
    order_window: int = 65536,
) -> Replica:
    """Rebuild the replica from a journal: its snapshot (if any) then the entries after it.

    Raises ``JournalDamaged`` rather than drop anything: a journal entry whose
    digest does not match what the engine computes (local corruption that
    passed the CRC, or an engine change), or entries that start past 1 with no
    usable snapshot to rebuild from. (A snapshot that does not restore while the
    entries start at 1 is skipped: the entries rebuild the same state.) The node
    then gets its history back from a peer. O(entries replayed).
    """
    snap = journal.load_snapshot()
    r = None
    if snap is not None:
        snap_seq, _, blob = snap  # (seq, last_epoch, blob): JournalBase.load_snapshot
        if journal.base_seq <= snap_seq <= journal.last_seq:
            try:
                r = Replica.restore(blob, engine_factory, dedupe_window, 0, report_window, order_window)
            except ValueError as exc:
                log.warning("snapshot_unusable seq=%d reason=%s", snap_seq, exc)
    if r is None:
        if journal.base_seq > 0:
            raise JournalDamaged(
                f"journal: entries start at seq {journal.base_seq + 1} and no usable snapshot covers "
                f"seq {journal.base_seq}"
            )
        r = Replica(engine_factory, dedupe_window, 0, report_window, order_window)
    while r.seq < journal.last_seq:
        batch = journal.read_run(r.seq + 1, chunk)
        if not batch:
            break
        if isinstance(batch, EntryRun):
            # The file journal's packed run: one engine pass (and one of the feed's, when the
            # engine carries one), every entry's digest checked; entry by entry, a restart
            # replaying 100,000 entries took seconds.
            good = r.apply_entries(batch)
            if good == len(batch):
                continue
            raise _replay_mismatch(batch[good])  # the first entry whose digest differs
        for e in batch:
            _, ok = r.apply_entry(e)
            if not ok:
                raise _replay_mismatch(e)
    return r


def _replay_mismatch(e: Entry) -> JournalDamaged:
    return JournalDamaged(
        f"journal: entry seq {e.seq} (epoch {e.epoch}) does not replay to its recorded digest"
    )
