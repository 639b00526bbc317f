"""Write the journal fixture beside this file with the code of a given commit (run once, kept in git).

Run from a checkout of the layout before issue 14 (commit 384c0d8), with the
extensions built: ``PYTHONPATH=. python tests/storage/old_journal/make.py OUT``.
It writes a journal directory (sealed segments, the active segment, a
snapshot, compaction, the metadata slots) and ``expected.json``: what the
journal must read back as, and the replica's digest and seq after recovery.
"""

from __future__ import annotations

import json
import random
import sys

from replication.journal import FileJournal
from replication.replica import Replica, recover
from replication.sim_schedule import pack, random_commands
from replication.wire import Entry


def main(out: str) -> None:
    journal = FileJournal(f"{out}/journal", fsync="batch", segment_entries=40)
    replica = Replica()
    cmds = [pack(c) for c in random_commands(random.Random(14), 7, 130)]
    history = [[1, 1], [2, 61]]  # epoch 1 from seq 1, epoch 2 from seq 61
    for seq, cmd in enumerate(cmds, start=1):
        epoch = 1 if seq < 61 else 2
        _events, digest = replica.execute(epoch, seq, 7, (1 << 40) | seq, cmd)
        journal.append([Entry(epoch, seq, 7, (1 << 40) | seq, digest, cmd)])
        if seq == 100:
            journal.save_snapshot(100, epoch, replica.snapshot())
            journal.compact(60)
    journal.save_meta({"epoch": 2, "history": history})
    journal.close()
    entries = FileJournal(f"{out}/journal").read(1)
    got = recover(FileJournal(f"{out}/journal"))
    expected = {
        "base_seq": entries[0].seq - 1,
        "last_seq": entries[-1].seq,
        "entries": [[e.epoch, e.seq, e.client_id, e.request_id, e.digest, e.command.hex()] for e in entries],
        "meta": {"epoch": 2, "history": history},
        "recovered": {"seq": got.seq, "digest": got.digest, "last_epoch": got.last_epoch},
    }
    with open(f"{out}/expected.json", "w") as f:
        json.dump(expected, f, indent=0)


if __name__ == "__main__":
    main(sys.argv[1])
