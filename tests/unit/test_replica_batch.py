"""Batch apply on a standby: one apply_batch per run, same state as entry by entry, first bad seq named."""

from __future__ import annotations

from benchmarks import groups
from replication import wire
from replication.journal import MemoryJournal
from replication.replica import Replica, recover


def _entries(n: int) -> list[wire.Entry]:
    setup, ops = groups.mix_records(n, 3)
    p = Replica()
    out = []
    for i, rec in enumerate((setup + ops)[:n]):
        cmd = wire.pack_command(rec)
        _, d = p.execute(1, i + 1, 7 if i % 2 else 0, i + 1, cmd)
        out.append(wire.Entry(1, i + 1, 7 if i % 2 else 0, i + 1, d, cmd))
    return out


def test_run_apply_matches_entry_by_entry():
    es = _entries(600)
    a, b = Replica(), Replica()
    assert a.apply_entries(es[:250]) == 250 and a.apply_entries(es[250:]) == 350
    for e in es:
        assert b.apply_entry(e)[1]
    assert (a.seq, a.digest, a.last_epoch) == (b.seq, b.digest, b.last_epoch)
    assert a.results == b.results


def test_a_bad_digest_inside_a_run_is_located():
    es = _entries(300)
    bad = es[:]
    other = wire.pack_command(groups.mix_records(2, 99)[1][0])
    bad[137] = bad[137]._replace(command=other)  # this replica's book diverges at seq 138
    j = MemoryJournal()
    r = Replica()
    assert r.apply_entries(bad[:100]) == 100
    j.append(bad[:100])
    assert r.apply_entries(bad[100:]) == -1  # the run's end digest differs (the chain carries on)
    r2 = recover(j)
    assert r2.locate_divergence(bad[100:]) == 37  # seq 138


def test_execute_many_matches_execute_one_by_one():
    """The primary's one-engine-call batch gives every request the events and digest of its own call."""
    setup, ops = groups.mix_records(800, 5)
    reqs = [(7 if i % 3 else 0, i + 1, wire.pack_command(rec)) for i, rec in enumerate((setup + ops)[:800])]
    a, b = Replica(), Replica()
    got = a.execute_many(1, reqs[:300]) + a.execute_many(1, reqs[300:])
    want = [b.execute(1, i + 1, c, r, cmd) for i, (c, r, cmd) in enumerate(reqs)]
    assert got == want
    assert a.results == b.results and (a.seq, a.digest) == (b.seq, b.digest)
