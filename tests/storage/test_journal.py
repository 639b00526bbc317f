"""The journal: append/read, a torn last record cut on open and any other corruption reported (never
cut), writes that complete or fail the journal, truncation, snapshots, metadata."""

from __future__ import annotations

import os

import pytest

from replication.protocol.journal_api import JournalDamaged, JournalFailed
from replication.protocol.wire import ENTRY, Entry
from replication.storage.journal import REC, FileJournal, MemoryJournal

RECORD = REC.size + ENTRY.size


def entries(first: int, n: int, epoch: int = 1) -> list[Entry]:
    return [Entry(epoch, s, 7, s * 10, s * 1000 + 1, bytes([s % 256]) * 80) for s in range(first, first + n)]


@pytest.fixture(params=["file", "memory"])
def journal(request, tmp_path):
    j = FileJournal(str(tmp_path / "j")) if request.param == "file" else MemoryJournal()
    yield j
    j.close()


def test_append_read(journal):
    assert journal.last_seq == 0 and journal.read(1) == [] and journal.last_epoch == 0
    journal.append(entries(1, 5))
    journal.append(entries(6, 3, epoch=2))
    assert journal.last_seq == 8 and journal.last_epoch == 2
    assert journal.read(1) == entries(1, 5) + entries(6, 3, epoch=2)
    assert journal.read(4, 2) == entries(4, 2)
    assert journal.entry(8) == entries(8, 1, epoch=2)[0]
    assert journal.entry(9) is None and journal.read(9) == [] and journal.read(0) == []
    with pytest.raises(ValueError):
        journal.append(entries(10, 1))


def test_truncate_after_and_snapshot(journal):
    journal.append(entries(1, 10))
    journal.save_snapshot(8, 1, b"snap8")
    journal.truncate_after(9)
    assert journal.last_seq == 9 and journal.load_snapshot() == (8, 1, b"snap8")
    journal.truncate_after(6)
    assert journal.last_seq == 6 and journal.load_snapshot() is None
    journal.append(entries(7, 2, epoch=3))
    assert journal.read(6) == entries(6, 1) + entries(7, 2, epoch=3)


def test_reset(journal):
    journal.append(entries(1, 10))
    journal.reset(50, 4, b"blob")
    assert journal.base_seq == 50 and journal.last_seq == 50 and journal.last_epoch == 4
    assert journal.read(10) == [] and journal.entry(50) is None
    journal.append(entries(51, 2, epoch=4))
    assert journal.read(51) == entries(51, 2, epoch=4)


def test_meta(journal):
    assert journal.load_meta() == {}
    journal.save_meta({"epoch": 3, "history": [[1, 1], [3, 9]]})
    assert journal.load_meta()["history"] == [[1, 1], [3, 9]]


def test_restart(tmp_path):
    path = str(tmp_path / "j")
    j = FileJournal(path, fsync="always")
    j.append(entries(1, 4))
    j.save_snapshot(3, 1, b"s3")
    j.save_meta({"epoch": 1})
    j.close()
    j = FileJournal(path, fsync="none")
    assert j.last_seq == 4 and j.read(1) == entries(1, 4) and j.truncated_bytes == 0
    assert j.load_snapshot() == (3, 1, b"s3") and j.load_meta() == {"epoch": 1}
    j.reset(20, 2, b"s20")
    j.append(entries(21, 1, epoch=2))
    j.close()
    j = FileJournal(path)
    assert j.base_seq == 20 and j.last_seq == 21 and j.read(21) == entries(21, 1, epoch=2)
    j.close()


def test_torn_tail_every_offset(tmp_path):
    path = str(tmp_path / "j")
    j = FileJournal(path)
    j.append(entries(1, 6))
    j.close()
    log_path = os.path.join(path, "entries.log")
    full = open(log_path, "rb").read()
    assert len(full) == 6 * RECORD
    # Cut anywhere inside the last two records: exactly the whole records survive.
    for cut in range(4 * RECORD, 6 * RECORD + 1):
        with open(log_path, "wb") as f:
            f.write(full[:cut])
        j = FileJournal(path)
        whole = cut // RECORD
        assert j.last_seq == whole, cut
        assert j.read(1) == entries(1, whole)
        assert os.path.getsize(log_path) == whole * RECORD
        j.append(entries(whole + 1, 6 - whole))  # and it continues cleanly after the cut
        assert j.read(1) == entries(1, 6)
        j.close()


def test_flipped_bytes(tmp_path):
    """A flip in the last record is a torn write (cut); one in the record before is damage (kept)."""
    path = str(tmp_path / "j")
    log_path = os.path.join(path, "entries.log")
    j = FileJournal(path)
    j.append(entries(1, 5))
    j.close()
    full = open(log_path, "rb").read()
    for pos in range(3 * RECORD, 5 * RECORD):
        for bit in (0, 7):
            bad = bytearray(full)
            bad[pos] ^= 1 << bit
            with open(log_path, "wb") as f:
                f.write(bad)
            j = FileJournal(path)
            if pos >= 4 * RECORD:  # the last record: cut, the four before it kept
                assert not j.damage and j.last_seq == 4 and j.read(1) == entries(1, 4), (pos, bit)
            else:  # record 4 of 5: reported, the file left exactly as it was
                assert j.damage and f"offset {3 * RECORD} (seq 4)" in j.damage, (pos, bit)
                assert j.last_seq == 0 and open(log_path, "rb").read() == bad, (pos, bit)
            j.close()


def test_big_appends_are_framed_like_small_ones(tmp_path):
    """Past RUN_MIN entries the records are framed in one vectorised pass (CRCs in one call, in C
    when built): the same bytes as record by record with zlib.crc32."""
    import zlib

    from replication.protocol.wire import RUN_MIN, EntryRun, pack_entries

    path = str(tmp_path / "j")
    j = FileJournal(path, "none")
    batch = entries(1, 3 * RUN_MIN + 5)
    j.append(batch[: RUN_MIN - 1])  # record by record
    j.append(EntryRun(pack_entries(batch[RUN_MIN - 1 :])))  # one pass
    j.close()
    want = b"".join(REC.pack(ENTRY.size, zlib.crc32(p)) + p for p in (ENTRY.pack(*e) for e in batch))
    assert open(os.path.join(path, "entries.log"), "rb").read() == want


def test_deferred_sync_of_big_appends(tmp_path):
    """fsync "batch" with the driver's deferred sync: a big append starts its write-back at once and
    leaves the fdatasync to sync(); what is read back, and after a reopen, is what was written."""
    from replication.protocol.wire import EntryRun, pack_entries
    from replication.storage.journal import WRITEBACK_MIN

    path = str(tmp_path / "j")
    j = FileJournal(path, "batch")
    j.defer_sync = True
    n = WRITEBACK_MIN // RECORD + 10
    j.append(EntryRun(pack_entries(entries(1, n))))
    assert j.dirty and j.read(1) == entries(1, n)
    j.sync()
    assert not j.dirty
    j.append(entries(n + 1, 3))  # small: no write-back started, still deferred
    assert j.dirty
    j.close()
    j = FileJournal(path)
    assert j.last_seq == n + 3 and j.read(1) == entries(1, n + 3)
    j.close()


def test_both_journals_defer_their_sync_when_the_owner_says_so(journal):
    """The interface's ``defer_sync``/``dirty``/``sync`` (what the node driver relies on): under
    fsync "batch", an append with ``defer_sync`` set leaves the journal dirty until ``sync``;
    without it, no append leaves it dirty."""
    assert not journal.dirty and journal.defer_sync is False and journal.failed == ""
    journal.append(entries(1, 2))
    assert not journal.dirty  # synced by the append itself
    journal.defer_sync = True
    journal.append(entries(3, 2))
    assert journal.dirty and journal.read(3) == entries(3, 2)
    journal.sync()
    assert not journal.dirty
    journal.sync()  # nothing to do
    assert not journal.dirty and journal.last_seq == 4


def test_a_memory_journal_loses_deferred_appends_in_a_crash_until_synced():
    j = MemoryJournal(fsync="batch")
    j.defer_sync = True
    j.append(entries(1, 3))
    j.sync()
    j.append(entries(4, 2))
    j.crash()
    assert j.last_seq == 3 and not j.dirty


def test_torn_last_record_versus_a_flipped_byte_in_record_10_of_1000(tmp_path):
    """Only the last record may be treated as torn. A flipped byte in record 10 of 1,000 (or in
    record 999) is corruption: reported by file, offset and seq, and not one byte is cut."""
    path = str(tmp_path / "j")
    log_path = os.path.join(path, "entries.log")
    j = FileJournal(path, "none")
    j.append(entries(1, 1000))
    j.close()
    full = open(log_path, "rb").read()
    for victim, pos in ((9, 9), (9, 60), (517, 60), (998, RECORD - 1), (999, REC.size), (999, 9)):
        bad = bytearray(full)
        bad[victim * RECORD + pos] ^= 0x10
        with open(log_path, "wb") as f:
            f.write(bad)
        j = FileJournal(path)
        if victim == 999:  # the last record: a torn write, never acknowledged; cut
            assert not j.damage and j.last_seq == 999 and j.truncated_bytes == RECORD
            assert j.read(1) == entries(1, 999)
        else:
            assert j.damage == (
                f"journal: damaged {log_path} at offset {victim * RECORD} (seq {victim + 1}): bad record"
            )
            assert j.last_seq == 0 and j.truncated_bytes == 0 and j.read(1) == []
            assert open(log_path, "rb").read() == bad  # nothing cut
            with pytest.raises(JournalDamaged):
                j.append(entries(1, 1))
        j.close()
        with open(log_path, "wb") as f:
            f.write(full)


def test_a_torn_last_record_after_a_bad_one_is_damage(tmp_path):
    """Two bad records at the end (a flip, then a partial record) are more than a torn write."""
    path = str(tmp_path / "j")
    log_path = os.path.join(path, "entries.log")
    j = FileJournal(path)
    j.append(entries(1, 10))
    j.close()
    bad = bytearray(open(log_path, "rb").read()[: 9 * RECORD + 40])
    bad[8 * RECORD + 30] ^= 1
    open(log_path, "wb").write(bad)
    j = FileJournal(path)
    assert "(seq 9)" in j.damage and os.path.getsize(log_path) == len(bad)
    j.close()


def test_a_damaged_journal_is_repaired_by_reset(tmp_path):
    """reset() (a peer's snapshot, or empty) is the one write a damaged journal takes."""
    path = str(tmp_path / "j")
    log_path = os.path.join(path, "entries.log")
    j = FileJournal(path)
    j.append(entries(1, 20))
    j.close()
    bad = bytearray(open(log_path, "rb").read())
    bad[3 * RECORD + 50] ^= 4
    open(log_path, "wb").write(bad)
    j = FileJournal(path)
    assert j.damage
    for write in (lambda: j.truncate_after(2), lambda: j.save_snapshot(1, 1, b"x"), lambda: j.compact(5)):
        try:
            write()
        except JournalDamaged:
            pass
    assert open(log_path, "rb").read() == bad
    j.reset(0, 0, b"")
    assert not j.damage and (j.base_seq, j.last_seq) == (0, 0) and j.load_snapshot() is None
    j.append(entries(1, 20))
    j.close()
    j = FileJournal(path)
    assert not j.damage and j.read(1) == entries(1, 20)
    j.close()


def test_bad_seq_order_is_cut(tmp_path):
    path = str(tmp_path / "j")
    j = FileJournal(path)
    j.append(entries(1, 3))
    j.close()
    # Append a well-formed record with a seq that does not follow: it is a bad tail.
    log_path = os.path.join(path, "entries.log")
    import zlib

    payload = ENTRY.pack(*entries(7, 1)[0])
    with open(log_path, "ab") as f:
        f.write(REC.pack(len(payload), zlib.crc32(payload)) + payload)
    j = FileJournal(path)
    assert j.last_seq == 3
    j.close()


@pytest.mark.parametrize("how", ["flip", "truncate", "header"])
def test_a_damaged_snapshot_is_reported_not_ignored(tmp_path, how):
    """A flipped or truncated snapshot is damage: never "start empty", nothing unlinked."""
    path = str(tmp_path / "j")
    j = FileJournal(path)
    j.append(entries(1, 3))
    j.save_snapshot(2, 1, b"hello")
    j.close()
    snap = os.path.join(path, "snapshot.bin")
    data = bytearray(open(snap, "rb").read())
    if how == "flip":
        data[-1] ^= 0xFF
    elif how == "truncate":
        data = data[:-2]
    else:
        data = data[:10]
    open(snap, "wb").write(data)
    before = sorted(os.listdir(path))
    j = FileJournal(path)
    assert j.damage.startswith(f"journal: damaged {snap}") and j.load_snapshot() is None
    assert j.last_seq == 0 and sorted(os.listdir(path)) == before
    assert open(snap, "rb").read() == data
    j.close()


def test_short_writes_are_completed(tmp_path, monkeypatch):
    """os.pwrite may write less than asked: the journal writes the rest, byte count by byte count."""
    real = os.pwrite
    calls = []

    def stingy(fd, data, off):
        calls.append(len(data))
        return real(fd, bytes(data)[:7], off)  # at most 7 bytes a call

    path = str(tmp_path / "j")
    j = FileJournal(path, "batch")
    monkeypatch.setattr(os, "pwrite", stingy)
    j.append(entries(1, 3))
    monkeypatch.undo()
    assert len(calls) == -(-3 * RECORD // 7)
    j.close()
    j = FileJournal(path)
    assert not j.damage and j.read(1) == entries(1, 3)
    j.close()


@pytest.mark.parametrize("errno_name", ["ENOSPC", "EIO"])
def test_a_failed_write_fails_the_journal(tmp_path, monkeypatch, errno_name):
    import errno

    path = str(tmp_path / "j")
    log_path = os.path.join(path, "entries.log")
    j = FileJournal(path, "batch")
    j.append(entries(1, 2))
    real = os.pwrite

    def half_then_fail(fd, data, off):
        if len(data) > RECORD:
            return real(fd, bytes(data)[: len(data) // 2], off)
        raise OSError(getattr(errno, errno_name), os.strerror(getattr(errno, errno_name)))

    monkeypatch.setattr(os, "pwrite", half_then_fail)
    with pytest.raises(JournalFailed) as exc:
        j.append(entries(3, 4))
    monkeypatch.undo()
    assert str(exc.value) == j.failed == f"journal: {errno_name} writing {log_path}"
    assert j.last_seq == 2 and os.path.getsize(log_path) == 2 * RECORD  # the half written is cut back
    with pytest.raises(JournalFailed):
        j.append(entries(3, 1))  # the disk may be fine again: the journal stays failed
    with pytest.raises(JournalFailed):
        j.save_meta({"epoch": 2})
    j.close()


def test_a_failed_fdatasync_is_never_retried(tmp_path, monkeypatch):
    """The fsyncgate lesson: after a failed fdatasync, a second one could "succeed" over lost pages."""
    import errno

    j = FileJournal(str(tmp_path / "j"), "batch")
    j.defer_sync = True
    j.append(entries(1, 2))
    syncs = []

    def failing(fd):
        syncs.append(fd)
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(JournalFailed, match="EIO syncing"):
        j.sync()
    monkeypatch.setattr(os, "fdatasync", lambda fd: syncs.append(fd))
    j.sync()  # nothing left to sync: it was not retried
    with pytest.raises(JournalFailed):
        j.append(entries(3, 1))
    j.close()
    assert len(syncs) == 1


def test_memory_crash():
    j = MemoryJournal(fsync="none")
    j.append(entries(1, 3))
    j.sync()
    j.append(entries(4, 2))
    j.crash()
    assert j.last_seq == 3
    j = MemoryJournal(fsync="batch")
    j.append(entries(1, 3))
    j.crash()
    assert j.last_seq == 3


def test_meta_slots_survive_a_torn_write_and_reopen(tmp_path):
    from replication.storage.journal import META_SLOT, FileJournal

    j = FileJournal(str(tmp_path / "j"))
    for e in range(1, 6):
        j.save_meta({"epoch": e})
    j.close()
    path = tmp_path / "j" / "meta.bin"
    data = bytearray(path.read_bytes())
    # Tear the slot holding the newest copy (counter 5 -> slot 1): the previous one wins.
    data[META_SLOT + 20] ^= 0xFF
    path.write_bytes(bytes(data))
    j2 = FileJournal(str(tmp_path / "j"))
    assert j2.load_meta() == {"epoch": 4}
    j2.save_meta({"epoch": 6})
    j2.close()
    assert FileJournal(str(tmp_path / "j")).load_meta() == {"epoch": 6}
