"""The journal: append/read, torn and corrupt tails cut on open, truncation, snapshots, metadata."""

from __future__ import annotations

import os

import pytest

from replication.journal import REC, FileJournal, MemoryJournal
from replication.wire import ENTRY, Entry

RECORD = REC.size + ENTRY.size


def entries(first: int, n: int, epoch: int = 1) -> list[Entry]:
    return [Entry(epoch, s, 7, s * 10, s * 1000 + 1, bytes([s % 256]) * 56) for s in range(first, first + n)]


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
            # The record holding the flipped byte and everything after it is gone.
            assert j.last_seq == pos // RECORD, (pos, bit)
            assert j.read(1) == entries(1, pos // RECORD)
            j.close()


def test_big_appends_are_framed_like_small_ones(tmp_path):
    """Past RUN_MIN entries the records are framed in one vectorised pass (CRCs in one call, in C
    when built): the same bytes as record by record with zlib.crc32."""
    import zlib

    from replication.wire import RUN_MIN, EntryRun, pack_entries

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
    from replication.journal import WRITEBACK_MIN
    from replication.wire import EntryRun, pack_entries

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


def test_a_flipped_byte_deep_in_a_big_file_cuts_there(tmp_path):
    """The scan on open checks every record's CRC in one call: the first bad one ends the run."""
    path = str(tmp_path / "j")
    log_path = os.path.join(path, "entries.log")
    j = FileJournal(path, "none")
    j.append(entries(1, 1000))
    j.close()
    full = open(log_path, "rb").read()
    for victim, pos in ((0, 9), (517, 60), (998, RECORD - 1), (999, REC.size)):
        bad = bytearray(full)
        bad[victim * RECORD + pos] ^= 0x10
        with open(log_path, "wb") as f:
            f.write(bad)
        j = FileJournal(path)
        assert j.last_seq == victim and j.truncated_bytes == (1000 - victim) * RECORD, victim
        assert j.read(1) == entries(1, victim)
        j.close()
        with open(log_path, "wb") as f:
            f.write(full)


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


def test_corrupt_snapshot_ignored(tmp_path):
    path = str(tmp_path / "j")
    j = FileJournal(path)
    j.append(entries(1, 3))
    j.save_snapshot(2, 1, b"hello")
    j.close()
    snap = os.path.join(path, "snapshot.bin")
    data = bytearray(open(snap, "rb").read())
    data[-1] ^= 0xFF
    open(snap, "wb").write(data)
    j = FileJournal(path)
    assert j.load_snapshot() is None and j.last_seq == 3
    j.close()


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
    from replication.journal import META_SLOT, FileJournal

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
