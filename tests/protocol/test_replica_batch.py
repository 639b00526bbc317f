"""Batch apply on a standby: one apply_batch per run, same state as entry by entry, first bad seq named."""

from __future__ import annotations

from benchmarks import groups
from replication.protocol import wire
from replication.protocol.replica import REMEMBER_BULK, Replica, recover
from replication.storage.journal import MemoryJournal


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


def test_execute_run_gives_each_request_its_own_events_and_digest():
    """The primary's one-engine-call batch gives every request the events and digest of its own call."""
    setup, ops = groups.mix_records(800, 5)
    reqs = [(7 if i % 3 else 0, i + 1, wire.pack_command(rec)) for i, rec in enumerate((setup + ops)[:800])]
    a, b = Replica(), Replica()

    def batch(part):
        run, events = a.execute_run(
            1, [c for c, _, _ in part], [r for _, r, _ in part], b"".join(x for *_, x in part)
        )
        return list(zip(events, [e.digest for e in run], strict=True))

    got = batch(reqs[:300]) + batch(reqs[300:])
    want = [b.execute(1, i + 1, c, r, cmd) for i, (c, r, cmd) in enumerate(reqs)]
    assert got == want
    assert a.results == b.results and (a.seq, a.digest) == (b.seq, b.digest)


def _requests(n: int, seed: int) -> list[tuple[int, int, bytes]]:
    setup, ops = groups.mix_records(n, seed)
    # Two clients and client 0 (never remembered), request ids rising per client.
    return [(i % 3 * 7, i + 1, wire.pack_command(rec)) for i, rec in enumerate((setup + ops)[:n])]


def test_execute_run_matches_execute_one_by_one():
    """The primary's batch path: same events, digests, entries, dedupe table and snapshot as one
    ``execute`` per request, for batches on either side of REMEMBER_BULK, past the dedupe window."""
    reqs = _requests(700, 11)
    a, b = Replica(dedupe_window=64), Replica(dedupe_window=64)
    got_events, runs, at = [], [], 0
    for size in (1, 3, REMEMBER_BULK - 1, REMEMBER_BULK, 200, 1, 480 - 2 * REMEMBER_BULK - 4):
        part = reqs[at : at + size]
        run, events = a.execute_run(
            1, [c for c, _, _ in part], [r for _, r, _ in part], b"".join(c for *_, c in part)
        )
        got_events += events
        runs.append(run)
        at += size
    want = [b.execute(1, i + 1, c, r, cmd) for i, (c, r, cmd) in enumerate(reqs[:at])]
    assert got_events == [ev for ev, _ in want]
    entries = [e for run in runs for e in run]
    assert entries == [
        wire.Entry(1, i + 1, c, r, d, cmd)
        for i, ((c, r, cmd), (_, d)) in enumerate(zip(reqs[:at], want, strict=True))
    ]
    assert a.results == b.results and a.snapshot() == b.snapshot()
    assert (a.seq, a.digest, a.last_epoch) == (b.seq, b.digest, b.last_epoch)


def test_execute_run_after_a_deferred_catch_up_run():
    """A standby that applied a packed run (its dedupe update deferred) and then sequences as primary."""
    reqs = _requests(300, 12)
    src = Replica()
    run, _ = src.execute_run(
        1, [c for c, _, _ in reqs[:200]], [r for _, r, _ in reqs[:200]], b"".join(c for *_, c in reqs[:200])
    )
    a, b = Replica(dedupe_window=32), Replica(dedupe_window=32)
    assert a.apply_entries(wire.EntryRun(run.raw)) == 200 and a._pending
    for e in run:
        assert b.apply_entry(e)[1]
    rest = reqs[200:]
    a.execute_run(2, [c for c, _, _ in rest], [r for _, r, _ in rest], b"".join(c for *_, c in rest))
    for i, (c, r, cmd) in enumerate(rest):
        b.execute(2, 201 + i, c, r, cmd)
    assert a.results == b.results and a.snapshot() == b.snapshot()
