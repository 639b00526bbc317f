"""Journal recovery, byte by byte: a torn last record is cut, any other damage is reported and kept.

``test_journal.py`` pins the journal alone. This goes further and through the
node's recovery (``replica.recover``): every bit of every byte of the last
few records, a flip *and* a cut together, a record whose checksum was
recomputed over wrong content (only the chained digest can catch that), junk
after the last record, and a torn tail behind a snapshot. Where only the
last record is bad, the rebuilt replica holds exactly the good prefix, with
the digest the primary recorded; anywhere else the journal says where the
damage is and the file is left exactly as it was.
"""

from __future__ import annotations

import os
import struct
import zlib

import pytest

from matching import ReferenceEngine
from replication.protocol.journal_api import JournalDamaged
from replication.protocol.replica import Replica, recover
from replication.protocol.wire import ENTRY, Entry, pack_command
from replication.storage.journal import REC, FileJournal

RECORD = REC.size + ENTRY.size
N = 8
LAST = 3  # records at the tail that get damaged


def real_entries(n: int = N) -> list[Entry]:
    """Entries with the digests a primary computes (so recovery can check them)."""
    from matching.commands import command_record

    r = Replica(ReferenceEngine)
    out = []
    for s in range(1, n + 1):
        cmd = pack_command(
            command_record(
                {
                    "op": "new",
                    "instrument": 1,
                    "id": s,
                    "side": "buy" if s % 2 else "sell",
                    "price": 100 + s % 3,
                    "qty": 5,
                }
            )
        )
        _, digest = r.execute(1, s, 7, s, cmd)
        out.append(Entry(1, s, 7, s, digest, cmd))
    return out


ENTRIES = real_entries()


@pytest.fixture
def good_file(tmp_path):
    path = str(tmp_path / "j")
    j = FileJournal(path)
    j.append(ENTRIES)
    j.close()
    log_path = os.path.join(path, "entries.log")
    with open(log_path, "rb") as f:
        return path, log_path, f.read()


def reopen(path: str, log_path: str, data: bytes) -> tuple[FileJournal, Replica]:
    with open(log_path, "wb") as f:
        f.write(data)
    j = FileJournal(path)
    return j, recover(j, ReferenceEngine)


def assert_at(j: FileJournal, r: Replica, good: int, what) -> None:
    assert j.last_seq == good, what
    assert r.seq == good, what
    assert r.digest == (ENTRIES[good - 1].digest if good else 0), what
    assert j.read(1) == ENTRIES[:good], what


def assert_damaged(j: FileJournal, log_path: str, data: bytes, seq: int, what) -> None:
    assert f"(seq {seq})" in j.damage and log_path in j.damage, what
    assert j.last_seq == 0 and j.read(1) == [], what
    with open(log_path, "rb") as f:
        assert f.read() == data, what  # not one byte cut


def test_every_bit_of_the_last_records(good_file):
    path, log_path, full = good_file
    for pos in range((N - LAST) * RECORD, N * RECORD):
        for bit in range(8) if pos >= (N - 1) * RECORD else (0, 5):  # every bit of the last record
            bad = bytearray(full)
            bad[pos] ^= 1 << bit
            j, r = reopen(path, log_path, bytes(bad))
            if pos >= (N - 1) * RECORD:
                assert_at(j, r, N - 1, (pos, bit))
            else:
                assert_damaged(j, log_path, bytes(bad), pos // RECORD + 1, (pos, bit))
            j.close()


def test_flip_and_cut_together(good_file):
    """A flip then a cut: torn only if the bad bytes from the flipped record on are one record at most."""
    path, log_path, full = good_file
    start = (N - LAST) * RECORD
    for pos in range(start, N * RECORD, 13):
        for cut in range(pos + 1, N * RECORD + 1, 29):
            bad = bytearray(full[:cut])
            bad[pos] ^= 0x10
            if cut - pos // RECORD * RECORD > RECORD:
                with open(log_path, "wb") as f:
                    f.write(bad)
                j = FileJournal(path)
                assert_damaged(j, log_path, bytes(bad), pos // RECORD + 1, (pos, cut))
                j.close()
                continue
            j, r = reopen(path, log_path, bytes(bad))
            assert_at(j, r, pos // RECORD, (pos, cut))
            # and it takes new entries right after the good prefix
            good = pos // RECORD
            j.append(ENTRIES[good:])
            assert j.read(1) == ENTRIES
            j.close()


def test_recomputed_checksum_over_wrong_content_is_caught_by_the_digest(good_file):
    """A record that passes its CRC but holds another command: replay disagrees with the recorded
    digest. No torn write makes a right CRC: it is damage, even in the last record, and kept."""
    path, log_path, full = good_file
    for victim in range(N - LAST, N):
        bad = bytearray(full)
        off = victim * RECORD + REC.size
        e = ENTRIES[victim]
        payload = ENTRY.pack(*e._replace(command=ENTRIES[0].command))  # a different, well-formed command
        bad[off : off + ENTRY.size] = payload
        struct.pack_into("<I", bad, victim * RECORD + 4, zlib.crc32(payload))
        with open(log_path, "wb") as f:
            f.write(bad)
        j = FileJournal(path)
        with pytest.raises(JournalDamaged, match=f"entry seq {victim + 1} .* does not replay"):
            recover(j, ReferenceEngine)
        assert j.last_seq == N  # nothing cut
        j.close()


@pytest.mark.parametrize(
    "junk",
    [
        b"\x00",
        b"\xff" * 3,
        REC.pack(ENTRY.size, 0),
        REC.pack(1 << 30, 5) + b"abc",
        b"\x00" * (RECORD - 1),
        b"\x00" * RECORD,
    ],
)
def test_junk_after_the_last_record(good_file, junk):
    path, log_path, full = good_file
    j, r = reopen(path, log_path, full + junk)
    assert_at(j, r, N, junk)
    assert j.truncated_bytes == len(junk) and os.path.getsize(log_path) == len(full)
    j.close()


def test_torn_tail_behind_a_snapshot(tmp_path):
    path = str(tmp_path / "j")
    r = Replica(ReferenceEngine)
    for e in ENTRIES[:4]:
        r.apply_entry(e)
    j = FileJournal(path)
    j.append(ENTRIES)
    j.save_snapshot(4, 1, r.snapshot())
    j.close()
    log_path = os.path.join(path, "entries.log")
    with open(log_path, "rb") as f:
        full = f.read()
    for cut in range(4 * RECORD, N * RECORD + 1, 5):
        j, rec = reopen(path, log_path, full[:cut])
        assert_at(j, rec, cut // RECORD, cut)
        assert j.load_snapshot() is not None
        j.close()
