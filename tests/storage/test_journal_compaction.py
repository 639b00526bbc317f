"""Journal compaction: bounded retention in whole segments, and a crash at any step of it recovers the same state."""

from __future__ import annotations

import os
import shutil

import pytest

from matching import ReferenceEngine
from replication.protocol.replica import Replica, recover
from replication.protocol.wire import Entry, EntryRun, pack_entries
from replication.storage.journal import RECORD, FileJournal, MemoryJournal

N = 60


def real_entries(n: int) -> list[Entry]:
    """Entries with real commands and digests (so recovery replays and checks them)."""
    from matching.commands import command_record
    from replication.protocol import wire

    r = Replica(ReferenceEngine)
    out = []
    for s in range(1, n + 1):
        cmd = {
            "op": "new",
            "instrument": 1,
            "id": s,
            "side": "buy" if s % 2 else "sell",
            "price": 100 + s % 3,
            "qty": 5,
        }
        raw = wire.pack_command(tuple(command_record(cmd)))
        _, digest = r.execute(1, s, 7, s, raw)
        out.append(Entry(1, s, 7, s, digest, raw))
    return out


ENTRIES = real_entries(N)


def snapshot_at(seq: int) -> bytes:
    r = Replica(ReferenceEngine)
    r.apply_entries(ENTRIES[:seq])
    return r.snapshot()


def test_compact_drops_whole_sealed_segments(tmp_path):
    j = FileJournal(str(tmp_path / "j"), segment_entries=10)
    j.append(ENTRIES[:25])
    assert j.compact(20) == 0  # no snapshot: nothing may go
    j.save_snapshot(25, 1, snapshot_at(25))
    assert j.compact(20) == 0  # seals 1..25 (it is past segment_entries), but 25 > 20 keeps it
    j.append(ENTRIES[25:40])
    j.save_snapshot(40, 1, snapshot_at(40))
    assert j.compact(30) == 25  # 26..40 sealed now; 1..25 all <= 30: gone
    assert j.base_seq == 25 and j.last_seq == 40
    assert j.read(26) == ENTRIES[25:40] and j.read(25) == [] and j.entry(25) is None
    j.append(ENTRIES[40:])
    assert j.read(26) == ENTRIES[25:]
    j.close()
    j = FileJournal(str(tmp_path / "j"), segment_entries=10)
    assert (j.base_seq, j.last_seq) == (25, N)
    assert recover(j, ReferenceEngine).digest == ENTRIES[-1].digest
    j.close()


def test_compact_never_passes_the_snapshot(tmp_path):
    for j in (FileJournal(str(tmp_path / "j"), segment_entries=1), MemoryJournal()):
        j.append(ENTRIES[:30])
        j.save_snapshot(12, 1, snapshot_at(12))
        j.compact(1000)
        assert j.base_seq <= 12 and j.last_seq == 30
        assert recover(j, ReferenceEngine).digest == ENTRIES[29].digest
        j.close()


def test_memory_journal_compacts_exactly(tmp_path):
    j = MemoryJournal(fsync="none")
    j.append(ENTRIES[:20])
    j.sync()
    j.save_snapshot(15, 1, snapshot_at(15))
    assert j.compact(10) == 10 and j.base_seq == 10 and j.read(11) == ENTRIES[10:20]
    j.append(ENTRIES[20:22])
    j.crash()  # the unsynced two go; the rest survives the shift of the front
    assert j.last_seq == 20 and j.read(11) == ENTRIES[10:20]


def test_reads_span_segments_and_runs_stay_packed(tmp_path):
    j = FileJournal(str(tmp_path / "j"), segment_entries=7)
    for a in range(0, N, 9):
        j.append(EntryRun(pack_entries(ENTRIES[a : a + 9])))  # the packed fast path
        j.save_snapshot(min(a + 9, N), 1, b"x")
        j.compact(0)  # seals, drops nothing
    run = j.read_run(3, 40)
    assert isinstance(run, EntryRun) and list(run) == ENTRIES[2:42]
    assert j.read(1) == ENTRIES
    assert len([n for n in os.listdir(j.path) if n.startswith("entries.")]) > 3
    j.close()


def _journal_with_segments(path: str) -> None:
    j = FileJournal(path, segment_entries=10)
    for a in range(0, 50, 10):
        j.append(ENTRIES[a : a + 10])
        j.save_snapshot(a + 10, 1, snapshot_at(a + 10))
        j.compact(-1)  # seal only
    j.append(ENTRIES[50:])
    j.close()


class _Crash(Exception):
    pass


@pytest.mark.parametrize("crash_after", range(12))
def test_crash_at_any_step_of_compaction(tmp_path, monkeypatch, crash_after):
    """Stop compaction after its k-th file operation (rename, open, unlink, fsync): reopening
    gives a consecutive run of entries that recovers to exactly the state of an uncrashed one."""
    path = str(tmp_path / "j")
    _journal_with_segments(path)
    j = FileJournal(path, segment_entries=10)
    j.save_snapshot(N, 1, snapshot_at(N))
    steps = {"n": 0}
    real = {name: getattr(os, name) for name in ("rename", "unlink", "open", "fsync")}

    def step(name):
        def op(*a, **k):
            if steps["n"] == crash_after:
                raise _Crash(name)
            steps["n"] += 1
            return real[name](*a, **k)

        return op

    for name in real:
        monkeypatch.setattr(os, name, step(name))
    try:
        j.compact(45)
        finished = True
    except _Crash:
        finished = False
    monkeypatch.undo()
    # The process is gone: its descriptors with it (nothing more is written).
    for seg in j._segs:
        try:
            os.close(seg.fd)
        except OSError:
            pass
    j2 = FileJournal(path, segment_entries=10)
    assert j2.base_seq <= N == j2.last_seq
    assert j2.read(j2.base_seq + 1) == ENTRIES[j2.base_seq :]
    r = recover(j2, ReferenceEngine)
    assert (r.seq, r.digest) == (N, ENTRIES[-1].digest)
    if finished:
        assert j2.base_seq == 40
    j2.append(real_entries(N + 1)[N:])  # and it goes on
    assert j2.last_seq == N + 1
    j2.close()


def _files(path: str) -> dict[str, bytes]:
    return {n: open(os.path.join(path, n), "rb").read() for n in sorted(os.listdir(path))}


@pytest.mark.parametrize("how", ["torn", "flip"])
def test_damage_in_a_sealed_segment_is_reported_and_nothing_deleted(tmp_path, how):
    """Sealed segments were synced whole: a torn or flipped record in one is damage, not a tail.
    Every later segment and the valid snapshot stay on disk, byte for byte."""
    path = str(tmp_path / "j")
    _journal_with_segments(path)
    sealed = sorted(n for n in os.listdir(path) if n.startswith("entries.0"))
    victim = os.path.join(path, sealed[2])  # seqs 21..30
    with open(victim, "r+b") as f:
        if how == "torn":
            f.truncate(5 * RECORD + 17)
        else:
            f.seek(5 * RECORD + 40)
            byte = f.read(1)
            f.seek(5 * RECORD + 40)
            f.write(bytes([byte[0] ^ 0x08]))
    before = _files(path)
    j = FileJournal(path)
    assert j.damage == f"journal: damaged {victim} at offset {5 * RECORD} (seq 26): bad record"
    assert j.last_seq == 0 and j.load_snapshot() is None
    assert _files(path) == before
    j.close()
    assert _files(path) == before


def test_a_missing_sealed_segment_is_damage(tmp_path):
    path = str(tmp_path / "j")
    _journal_with_segments(path)
    sealed = sorted(n for n in os.listdir(path) if n.startswith("entries.0"))
    os.rename(os.path.join(path, sealed[1]), str(tmp_path / "aside"))  # seqs 11..20 gone
    before = _files(path)
    j = FileJournal(path)
    assert "(seq 11): starts at seq 21, not 11" in j.damage and _files(path) == before
    j.close()


def test_entries_past_a_missing_snapshot_are_damage(tmp_path):
    """Compacted entries and no snapshot to rebuild them from: the node must not "start empty"."""
    path = str(tmp_path / "j")
    j = FileJournal(path, segment_entries=10)
    j.append(ENTRIES[:25])
    j.save_snapshot(25, 1, snapshot_at(25))
    j.compact(20)
    j.append(ENTRIES[25:40])
    j.save_snapshot(40, 1, snapshot_at(40))
    assert j.compact(30) == 25
    j.close()
    os.unlink(os.path.join(path, "snapshot.bin"))
    j = FileJournal(path)
    assert "entries start at seq 26 and no snapshot" in j.damage
    j.close()


def test_truncate_after_into_a_sealed_segment(tmp_path):
    path = str(tmp_path / "j")
    _journal_with_segments(path)
    j = FileJournal(path)
    j.truncate_after(23)
    assert j.last_seq == 23 and j.read(1) == ENTRIES[:23]
    j.append(ENTRIES[23:30])
    j.close()
    j = FileJournal(path)
    assert j.read(1) == ENTRIES[:30]
    j.close()


def test_reset_removes_every_segment(tmp_path):
    path = str(tmp_path / "j")
    _journal_with_segments(path)
    j = FileJournal(path)
    j.reset(100, 2, b"blob")
    assert (j.base_seq, j.last_seq) == (100, 100)
    assert [n for n in os.listdir(path) if n.startswith("entries.")] == ["entries.log"]
    j.close()
    j = FileJournal(path)
    assert (j.base_seq, j.last_seq) == (100, 100)
    j.close()
    shutil.rmtree(path)
