"""The witness's state file: saved by its driver before the vote that changed it, loaded on start.

Stored through ``replication.storage.slotfile.SlotFile`` (two slots written in place);
an older version's plain JSON file still loads and the next save converts it.
"""

from __future__ import annotations

import json
import os

import pytest

from replication.storage import slotfile
from replication.storage.slotfile import HEAD, SlotFile
from replication.storage.witness_state import SLOT_SIZE, load_witness_state, save_witness_state


def _state(epoch: int, isr: list[str] | None = None) -> dict:
    isr = ["b"] if isr is None else isr
    return {"epoch": epoch, "primary": "ab"[epoch % 2], "isr": isr, "isr_proposal": epoch}


def _legacy_save(path: str, state: dict) -> None:
    """What older versions wrote: plain JSON (their temp file and rename do not matter here)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(state, f, sort_keys=True)


@pytest.fixture
def syncs(monkeypatch):
    """Count the calls that make a save slow: fsync, fdatasync, rename, directory fsync."""
    calls: list[str] = []
    real_fsync = os.fsync

    def fsync_dir(path: str) -> None:  # counted once, not as the fsync it makes
        calls.append("fsync_dir")
        fd = os.open(path, os.O_RDONLY)
        try:
            real_fsync(fd)
        finally:
            os.close(fd)

    for name in ("fsync", "fdatasync", "replace"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda *a, _real=real, _name=name: (calls.append(_name), _real(*a))[1])
    monkeypatch.setattr(slotfile, "fsync_dir", fsync_dir)
    return calls


# -- the driver (needs ZeroMQ) -------------------------------------------------------------


def _group(tmp_path, state: str = "w/witness.state"):
    pytest.importorskip("zmq")
    from replication.testing.harness import free_ports
    from replication.transport import group_file as config

    ports = free_ports(3)
    path = str(tmp_path / "group.toml")
    nodes = {n: (f"tcp://127.0.0.1:{p}", n) for n, p in zip("ab", ports, strict=False)}
    config.write(path, "sync", nodes, f"tcp://127.0.0.1:{ports[2]}", witness_state=state)
    return config.load(path)


def test_state_path_is_relative_to_the_group_file(tmp_path):
    cfg = _group(tmp_path)
    assert cfg.witness_state == str(tmp_path / "w" / "witness.state")
    assert _group(tmp_path, state="").witness_state == ""


def test_a_grant_is_saved_by_the_driver_and_reloaded(tmp_path):
    cfg = _group(tmp_path)
    from replication.protocol import wire
    from replication.transport.witness_driver import witness_driver

    d = witness_driver(cfg)
    try:
        d.machine.handle("a", wire.VoteRequest(1, 0, "a", 0), 0.0)
        d.run_once(0)
        saved = load_witness_state(cfg.witness_state)
        assert saved == {"epoch": 1, "primary": "a", "isr": ["b"], "isr_proposal": 0}
    finally:
        d.close()
    again = witness_driver(cfg)
    try:
        assert again.machine.durable_state()["epoch"] == 1 and again.machine.primary == "a"
    finally:
        again.close()


def test_the_witness_driver_uses_the_state_file_functions():
    pytest.importorskip("zmq")
    from replication.transport import witness_driver

    assert witness_driver.load_witness_state is load_witness_state
    assert witness_driver.save_witness_state is save_witness_state


# -- save and load -------------------------------------------------------------------------


def test_round_trip(tmp_path):
    path = str(tmp_path / "w" / "witness.state")  # the directory is made by the first save
    assert load_witness_state(path) is None
    for epoch in range(1, 6):
        save_witness_state(path, _state(epoch))
        assert load_witness_state(path) == _state(epoch)
    assert os.path.getsize(path) == 2 * SLOT_SIZE and not os.path.exists(path + ".tmp")
    save_witness_state(path, {"epoch": 6, "primary": "", "isr": None, "isr_proposal": 0})
    assert load_witness_state(path) == {"epoch": 6, "primary": "", "isr": None, "isr_proposal": 0}


def test_a_save_is_one_fdatasync_and_creating_the_file_syncs_its_directory(tmp_path, syncs):
    path = str(tmp_path / "witness.json")
    save_witness_state(path, _state(1))
    assert syncs == ["fsync", "replace", "fsync_dir"]  # the file's existence is durable
    for epoch in range(2, 5):
        syncs.clear()
        save_witness_state(path, _state(epoch))
        assert syncs == ["fdatasync"]
    assert load_witness_state(path) == _state(4)


def test_an_old_json_file_loads_and_the_next_save_converts_it(tmp_path, syncs):
    path = str(tmp_path / "witness.json")
    _legacy_save(path, _state(3))
    assert load_witness_state(path) == _state(3)
    save_witness_state(path, _state(4))
    assert syncs == ["fsync", "replace", "fsync_dir"]  # replaced whole: old or new, never neither
    with open(path, "rb") as f:
        assert f.read(1) != b"{"
    assert os.path.getsize(path) == 2 * SLOT_SIZE and load_witness_state(path) == _state(4)
    syncs.clear()
    save_witness_state(path, _state(5))
    assert syncs == ["fdatasync"] and load_witness_state(path) == _state(5)


def _slot_of_newest(path: str) -> int:
    with open(path, "rb") as f:
        data = f.read()
    counters = [HEAD.unpack_from(data, k * SLOT_SIZE)[0] for k in range(2)]
    return counters.index(max(counters))


class Crash(BaseException):
    """The process dies here."""


def test_a_save_torn_by_a_crash_leaves_the_previous_state(tmp_path, monkeypatch):
    path = str(tmp_path / "witness.json")
    for epoch in (1, 2, 3):
        save_witness_state(path, _state(epoch))
    newest = _slot_of_newest(path)
    real_pwrite = os.pwrite

    def torn_pwrite(fd, data, offset):  # the crash: half the record reaches the disk
        assert offset == (1 - newest) * SLOT_SIZE  # never the slot holding the newest state
        real_pwrite(fd, data[: len(data) // 2], offset)
        raise Crash

    monkeypatch.setattr(os, "pwrite", torn_pwrite)
    with pytest.raises(Crash):
        save_witness_state(path, _state(4, isr=["b", "c"]))
    monkeypatch.undo()
    assert load_witness_state(path) == _state(3)
    save_witness_state(path, _state(5))  # after the restart, saves go on
    assert load_witness_state(path) == _state(5)


def test_garbage_over_the_newest_slot_falls_back_to_the_one_before(tmp_path):
    path = str(tmp_path / "witness.json")
    for epoch in (1, 2, 3):
        save_witness_state(path, _state(epoch))
    with open(path, "r+b") as f:
        f.seek(_slot_of_newest(path) * SLOT_SIZE + HEAD.size + 3)
        f.write(b"\xff\x00garbage")
    assert load_witness_state(path) == _state(2)


def test_a_truncated_file_falls_back_and_the_next_save_rebuilds_it(tmp_path):
    path = str(tmp_path / "witness.json")
    for epoch in (1, 2, 3):
        save_witness_state(path, _state(epoch))
    assert _slot_of_newest(path) == 1  # counters 1, 2, 3 from a fresh file: 3 is in slot 1
    os.truncate(path, SLOT_SIZE + HEAD.size + 2)  # slot 1's body is cut short
    assert load_witness_state(path) == _state(2)
    save_witness_state(path, _state(9))
    assert os.path.getsize(path) == 2 * SLOT_SIZE and load_witness_state(path) == _state(9)


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b"\x00" * (2 * SLOT_SIZE), b"\x02garbage" * 100, b'{"epoch": 1}'],
    ids=["bad-json", "empty", "no-record", "garbage", "json-missing-keys"],
)
def test_a_damaged_state_file_stops_the_start(tmp_path, content):
    path = str(tmp_path / "witness.json")
    with open(path, "wb") as f:
        f.write(content)
    with pytest.raises(SystemExit, match="witness state file .* is unreadable .*; restore it, or remove it"):
        load_witness_state(path)


def test_both_slots_damaged_stops_the_start(tmp_path):
    path = str(tmp_path / "witness.json")
    for epoch in (1, 2):
        save_witness_state(path, _state(epoch))
    with open(path, "r+b") as f:
        for k in range(2):
            f.seek(k * SLOT_SIZE + HEAD.size)
            f.write(b"[junk]")
    with pytest.raises(SystemExit, match="unreadable .*no valid record"):
        load_witness_state(path)


def test_a_valid_record_that_is_not_a_state_stops_the_start(tmp_path):
    path = str(tmp_path / "witness.json")
    SlotFile(path, SLOT_SIZE).save(b"[1, 2]")
    with pytest.raises(SystemExit, match="unreadable .*missing keys"):
        load_witness_state(path)


@pytest.mark.parametrize("legacy", [False, True], ids=["slot-file", "old-json-file"])
def test_a_state_too_big_for_a_slot_is_an_error_and_changes_nothing(tmp_path, legacy):
    path = str(tmp_path / "witness.json")
    (_legacy_save if legacy else save_witness_state)(path, _state(1))
    with open(path, "rb") as f:
        before = f.read()
    with pytest.raises(ValueError, match="does not fit a 4096-byte slot"):
        save_witness_state(path, _state(2, isr=[f"node-{i}" for i in range(1000)]))
    with open(path, "rb") as f:
        assert f.read() == before
    assert load_witness_state(path) == _state(1)


# -- SlotFile itself -----------------------------------------------------------------------


def test_slotfile_layout_and_parity(tmp_path):
    path = str(tmp_path / "s")
    s = SlotFile(path, 64)
    assert s.capacity == 64 - HEAD.size and s.load() is None
    for i in range(1, 301):
        s.save(b"x%d" % i)
        with open(path, "rb") as f:
            data = f.read()
        assert len(data) == 128 and data[0] % 2 == 0  # never b"{": slot 0 holds even counters only
        counter, n, _ = HEAD.unpack_from(data, (i % 2) * 64)
        assert (counter, n, data[(i % 2) * 64 + HEAD.size :][:n]) == (i, len(b"x%d" % i), b"x%d" % i)
    s.close()
    again = SlotFile(path, 64)
    assert again.load() == b"x300" and again.counter == 300
    again.save(b"y")
    again.close()
    assert SlotFile(path, 64).records() == [(300, b"x300"), (301, b"y")]  # slot 0 first
    assert SlotFile(path, 64).load() == b"y"


def test_slotfile_rejects_bad_sizes(tmp_path):
    with pytest.raises(ValueError, match="slot_size"):
        SlotFile(str(tmp_path / "s"), HEAD.size)
    s = SlotFile(str(tmp_path / "s"), 64)
    s.save(b"a" * s.capacity)
    with pytest.raises(ValueError, match="does not fit"):
        s.save(b"a" * (s.capacity + 1))
    s.close()
    assert SlotFile(str(tmp_path / "s"), 64).load() == b"a" * 48


def test_slotfile_retries_a_failed_save_in_the_same_slot(tmp_path, monkeypatch):
    path = str(tmp_path / "s")
    s = SlotFile(path, 64)
    s.save(b"one")
    s.save(b"two")  # counter 2, slot 0; "one" stays in slot 1 until a save is durable
    real_fdatasync = os.fdatasync

    def failing(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(OSError):
        s.save(b"three")  # written to slot 1, not known durable
    monkeypatch.setattr(os, "fdatasync", real_fdatasync)
    assert s.counter == 2
    s.save(b"four")  # slot 1 again: slot 0's "two" is the last record known durable
    s.close()
    assert SlotFile(path, 64).records() == [(2, b"two"), (3, b"four")]
