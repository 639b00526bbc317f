"""A journal written before the layered restructure (issue 14) opens and replays the same after it.

``old_journal/journal`` was written by ``old_journal/make.py`` at commit 384c0d8
(the flat ``replication/`` layout): a sealed segment, the active segment, a
snapshot at seq 100 and the metadata slots. ``expected.json`` is what that
code read back. The journal format is a contract: this must hold for good.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import matching
from replication.protocol.replica import recover
from replication.storage.journal import FileJournal

HERE = Path(__file__).resolve().parent / "old_journal"
pytestmark = pytest.mark.skipif(matching.Engine is None, reason="native engine not built")


@pytest.fixture
def journal_dir(tmp_path):
    # A copy: opening a journal may write (a new metadata slot, a cut torn tail).
    return shutil.copytree(HERE / "journal", tmp_path / "journal")


@pytest.fixture(scope="module")
def expected():
    return json.loads((HERE / "expected.json").read_text())


def test_every_entry_reads_back_as_the_old_code_wrote_it(journal_dir, expected):
    j = FileJournal(str(journal_dir))
    assert (j.base_seq, j.last_seq) == (expected["base_seq"], expected["last_seq"])
    read = j.read(1)
    # The old commands were version 1 (56 bytes): they read back as version 2, the same 56 bytes
    # then ts, expire_ts and stop_price zero (matching.codes.upgrade_command).
    got = [[e.epoch, e.seq, e.client_id, e.request_id, e.digest, bytes(e.command)[:56].hex()] for e in read]
    assert got == expected["entries"]
    assert all(len(e.command) == 80 and bytes(e.command)[56:] == bytes(24) for e in read)
    assert j.load_meta()["history"] == expected["meta"]["history"]
    assert j.load_meta()["epoch"] == expected["meta"]["epoch"]
    assert not j.damage


def test_the_replica_recovers_to_the_old_code_digest(journal_dir, expected):
    r = recover(FileJournal(str(journal_dir)))
    assert {"seq": r.seq, "digest": r.digest, "last_epoch": r.last_epoch} == expected["recovered"]


def test_the_upgraded_journal_opens_again_unchanged(journal_dir, expected):
    # The first open rewrote the version-1 segments; a second open reads the new layout as is.
    first = [tuple(e) for e in FileJournal(str(journal_dir)).read(1)]
    again = FileJournal(str(journal_dir))
    assert [tuple(e) for e in again.read(1)] == first and not again.damage
    assert again.last_seq == expected["last_seq"]


def test_a_changed_byte_in_the_old_journal_is_noticed(journal_dir, expected):
    # The comparison is not vacuous: flip one command byte of a sealed record, and the journal
    # reports damage (CRC) instead of reading it back as written.
    seg = next(journal_dir.glob("entries.0*.log"))
    data = bytearray(seg.read_bytes())
    data[100 * 5 + 60] ^= 0xFF
    seg.write_bytes(bytes(data))
    assert FileJournal(str(journal_dir)).damage
