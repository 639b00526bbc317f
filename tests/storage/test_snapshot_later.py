"""``FileJournal.save_snapshot_later``: the snapshot file written on a thread while the node goes on.

The journal relies on it (compaction) only once it is whole on disk; a failed write
fails the journal at its next write, as an in-line write would, and leaves the old
snapshot standing; a restart finds whichever snapshot is whole.
"""

from __future__ import annotations

import errno
import threading
import time

import pytest

from matching import ReferenceEngine
from matching.commands import command_record
from replication.protocol import wire
from replication.protocol.journal_api import JournalFailed
from replication.protocol.replica import Replica, recover
from replication.storage import journal as journal_module
from replication.storage.journal import FileJournal


def _entries(n: int) -> list[wire.Entry]:
    r, out = Replica(ReferenceEngine), []
    for s in range(1, n + 1):
        raw = wire.pack_command(
            tuple(
                command_record({"op": "new", "instrument": 1, "id": s, "side": "buy", "price": 100, "qty": 5})
            )
        )
        _, digest = r.execute(1, s, 7, s, raw)
        out.append(wire.Entry(1, s, 7, s, digest, raw))
    return out


ENTRIES = _entries(60)


def snapshot_at(seq: int) -> bytes:
    r = Replica(ReferenceEngine)
    r.apply_entries(ENTRIES[:seq])
    return r.snapshot()


@pytest.fixture
def gated_writes(monkeypatch):
    """Snapshot files wait for ``gate`` before being written; ``fail`` makes them raise ENOSPC."""
    gate, state = threading.Event(), {"fail": False}
    real = journal_module._atomic_write

    def gated(path, *parts):
        if path.endswith("snapshot.bin"):
            assert gate.wait(10), "test gate never opened"
            if state["fail"]:
                raise OSError(errno.ENOSPC, "No space left on device", path + ".tmp")
        return real(path, *parts)

    monkeypatch.setattr(journal_module, "_atomic_write", gated)
    return gate, state


def test_compaction_waits_for_the_snapshot_to_be_whole_on_disk(tmp_path, gated_writes):
    gate, _ = gated_writes
    gate.set()
    j = FileJournal(str(tmp_path / "j"), segment_entries=10)
    j.append(ENTRIES[:25])
    j.save_snapshot_later(25, 1, snapshot_at(25))
    _settle(j)
    assert j.compact(20) == 0  # seals 1..25 (written or not, 25 > 20 keeps it)
    j.append(ENTRIES[25:40])  # the loop goes on
    gate.clear()
    j.save_snapshot_later(40, 1, snapshot_at(40))  # waits for the first (written), starts the second
    assert j.load_snapshot()[0] == 40  # the journal's snapshot at once (a peer's catch-up may take it)
    assert j.compact(40) == 25  # in flight: no further than seq 25, the snapshot whole on disk
    assert j.base_seq == 25 and j.last_seq == 40
    gate.set()
    _settle(j)
    assert j.compact(40) == 15  # whole on disk now: up to 40
    j.close()
    again = FileJournal(str(tmp_path / "j"), segment_entries=10)
    assert again.load_snapshot()[0] == 40 and again.base_seq == 40 and again.last_seq == 40
    assert recover(again, ReferenceEngine).digest == recover(_full(tmp_path), ReferenceEngine).digest


def _settle(j: FileJournal) -> None:
    """Wait (bounded) until the snapshot write in flight has ended, one way or the other."""
    for _ in range(10_000):
        if not j._snap_writer.busy:
            return
        time.sleep(0.001)
    raise AssertionError("the snapshot write never ended")


def _full(tmp_path):
    j = FileJournal(str(tmp_path / "full"))
    j.append(ENTRIES[:40])
    return j


def test_a_failed_background_write_fails_the_journal_and_keeps_the_old_snapshot(tmp_path, gated_writes):
    gate, state = gated_writes
    gate.set()
    j = FileJournal(str(tmp_path / "j"), segment_entries=10)
    j.append(ENTRIES[:25])
    j.save_snapshot_later(25, 1, snapshot_at(25))
    j.append(ENTRIES[25:40])
    j.sync()
    state["fail"] = True
    j.save_snapshot_later(40, 1, snapshot_at(40))
    _settle(j)  # the write fails on its thread
    with pytest.raises(JournalFailed, match="ENOSPC writing .*snapshot.bin"):
        j.append(ENTRIES[40:41])  # the journal's next write says so
    assert "snapshot.bin" in j.failed
    with pytest.raises(JournalFailed):
        j.append(ENTRIES[40:41])  # refused from now on
    j.close()
    again = FileJournal(str(tmp_path / "j"), segment_entries=10)
    assert again.load_snapshot()[0] == 25 and again.last_seq == 40  # the old snapshot stands
    assert recover(again, ReferenceEngine).seq == 40


def test_close_waits_for_the_write(tmp_path, gated_writes):
    gate, _ = gated_writes
    j = FileJournal(str(tmp_path / "j"))
    j.append(ENTRIES[:30])
    j.save_snapshot_later(30, 1, snapshot_at(30))
    threading.Timer(0.05, gate.set).start()
    j.close()  # returns once the file is whole
    assert FileJournal(str(tmp_path / "j")).load_snapshot()[0] == 30


def test_the_memory_journal_saves_at_once():
    from replication.storage.journal import MemoryJournal

    j = MemoryJournal()
    j.append(ENTRIES[:10])
    j.save_snapshot_later(10, 1, snapshot_at(10))
    assert j.load_snapshot()[0] == 10 and j.compact(10) == 10
