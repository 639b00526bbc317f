"""The packed catch-up path (wire.EntryRun) gives exactly what the entry-by-entry path gives."""

from __future__ import annotations

import pytest

import matching
from replication.protocol import wire
from replication.protocol.node.catch_up import REFILL_WINDOW
from replication.protocol.node.machine import NodeMachine
from replication.protocol.node.primary import PrimaryRole
from replication.protocol.replica import Replica
from replication.protocol.settings import Settings
from replication.protocol.wire import Entry, EntryRun, pack_entries
from replication.storage.journal import MemoryJournal

pytestmark = pytest.mark.skipif(matching.Engine is None, reason="native engine not built")


def make_entries(n: int, clients: int = 3, ids=None) -> list[Entry]:
    """``n`` entries with the primary's digests; entry ``s`` is of client ``s % (clients + 1)``
    (0: not remembered; every entry of client 1 if ``clients`` is 0) and request ``ids(s)``
    (default ``s``)."""
    from matching.commands import command_record

    r = Replica(matching.Engine)
    out = []
    for s in range(1, n + 1):
        side = "buy" if s % 3 else "sell"
        cmd = {
            "op": "new",
            "instrument": 1 + s % 2,
            "id": s,
            "side": side,
            "price": 100 + s % 5,
            "qty": 1 + s % 4,
        }
        raw = wire.pack_command(tuple(command_record(cmd)))
        cid = s % (clients + 1) if clients else 1  # client 0: not remembered; clients=0: one, client 1
        rid = ids(s) if ids else s
        _, digest = r.execute(1, s, cid, rid, raw)
        out.append(Entry(1, s, cid, rid, digest, raw))
    return out


ENTRIES = make_entries(700)


def test_run_roundtrip_and_sequence_behaviour():
    run = EntryRun.from_bytes(pack_entries(ENTRIES[:100]), 1)
    assert list(run) == ENTRIES[:100] and run == tuple(ENTRIES[:100]) and len(run) == 100
    assert run[-1] == ENTRIES[99] and run[5:7] == ENTRIES[5:7] and isinstance(run[5:], EntryRun)
    msg = wire.Entries(2, 1, 0, run)
    back = wire.decode(wire.encode(msg))
    assert isinstance(back.entries, EntryRun) and back == msg == wire.Entries(2, 1, 0, tuple(ENTRIES[:100]))
    with pytest.raises(wire.DecodeError):
        EntryRun.from_bytes(pack_entries(ENTRIES[:3] + ENTRIES[4:80]), 1)
    with pytest.raises(wire.DecodeError):
        EntryRun.from_bytes(pack_entries(ENTRIES[:80]), 2)


@pytest.mark.parametrize("window", [4096, 50])
def test_packed_apply_equals_entry_by_entry(window):
    a, b = Replica(matching.Engine, window), Replica(matching.Engine, window)
    for e in ENTRIES:
        assert a.apply_entry(e)[1]
    for i in range(0, len(ENTRIES), 128):
        run = EntryRun(pack_entries(ENTRIES[i : i + 128]))
        assert b.apply_entries(run) == len(run)
    assert (a.seq, a.last_epoch, a.digest) == (b.seq, b.last_epoch, b.digest)
    assert a.results == b.results  # the dedupe table, evictions and floors included
    assert a.snapshot() == b.snapshot()


@pytest.mark.parametrize(
    "window,clients,ids,pending_max",
    [
        (50, 1, None, 10**9),  # one client far past its window: the bulk path
        (50, 3, None, 300),  # several, flushed every few runs
        (7, 2, lambda s: s % 23, 200),  # repeated request ids: one by one
        (64, 5, lambda s: 1000 - s, 10**9),  # decreasing ids
        (4096, 3, None, 1),  # flushed after every run
        (50, 0, None, 10**9),  # every entry of one client, ids rising: the one-client flush
        (50, 0, None, 250),
        (50, 0, lambda s: s + 1000 * (s > 400), 10**9),  # ids jump (still rising)
        (50, 0, lambda s: s % 450, 10**9),  # ids start again: one by one
    ],
)
def test_deferred_dedupe_update_equals_entry_by_entry(window, clients, ids, pending_max):
    """Packed runs leave their dedupe update pending and record it in bulk later (Replica._pending):
    lookups in between, the table and the snapshot bytes are those of entry by entry."""
    entries = make_entries(700, clients, ids)
    a, b = Replica(matching.Engine, window), Replica(matching.Engine, window)
    b.pending_max = pending_max
    probes = [(c, r) for c in range(max(clients, 1) + 1) for r in (1, 5, 40, 200, 450, 650, 699, 977, 1400)]
    for i in range(0, len(entries), 96):
        chunk = entries[i : i + 96]
        for e in chunk:
            assert a.apply_entry(e)[1]
        assert b.apply_entries(EntryRun(pack_entries(chunk))) == len(chunk)
        if i % 288 == 0:  # now and then a lookup, as a newly promoted primary would make
            edges = [(c, slot[0] + d) for c, slot in a.results.items() for d in (-1, 0)]  # around each floor
            assert [a.lookup(c, r) for c, r in probes + edges] == [b.lookup(c, r) for c, r in probes + edges]
            assert a.results == b.results
    assert a.snapshot() == b.snapshot()
    assert a.results == b.results
    assert [list(t.items()) for _, t in a.results.values()] == [
        list(t.items()) for _, t in b.results.values()
    ]


def test_deferred_dedupe_update_on_a_table_restored_with_a_smaller_window():
    """A snapshot taken with a bigger window holds more per client than the window: entry by
    entry keeps that size (one eviction per insert), and so must the bulk update."""
    entries = make_entries(900, 1)
    big = Replica(matching.Engine, 400)
    for e in entries[:500]:
        assert big.apply_entry(e)[1]
    a = Replica.restore(big.snapshot(), matching.Engine, 100)
    b = Replica.restore(big.snapshot(), matching.Engine, 100)
    for e in entries[500:]:
        assert a.apply_entry(e)[1]
    assert b.apply_entries(EntryRun(pack_entries(entries[500:]))) == 400
    assert a.snapshot() == b.snapshot() and len(a.results[1][1]) == 250


def test_a_divergent_run_records_what_it_applied():
    """Entries up to the first bad digest (it included) are applied and remembered, as one by one."""
    entries = make_entries(300, 2)
    bad = list(entries)
    bad[200] = bad[200]._replace(digest=bad[200].digest ^ 1)
    a, b = Replica(matching.Engine, 64), Replica(matching.Engine, 64)
    for e in entries[:201]:
        a.apply_entry(e)
    assert b.apply_entries(EntryRun(pack_entries(bad))) == 200
    assert a.results == b.results and a.seq == b.seq == 201


@pytest.mark.parametrize("bad", [0, 1, 63, 99])
def test_packed_apply_names_the_first_bad_entry(bad):
    entries = list(ENTRIES[:100])
    entries[bad] = entries[bad]._replace(digest=entries[bad].digest ^ 1)
    r = Replica(matching.Engine)
    assert r.apply_entries(EntryRun(pack_entries(entries))) == bad
    assert r.seq == bad + 1  # it and what came before count as applied, as apply_entry does


def test_refills_are_pipelined_without_resending():
    """A primary holding 700 entries sends a window of chunks; each Refill tops it up."""
    c, w = 25, REFILL_WINDOW  # chunk size, chunks in flight
    s = Settings(refill_chunk=c, catchup_snapshot_lag=10_000)
    j = MemoryJournal()
    j.append(ENTRIES)
    p = NodeMachine("a", ["a", "b"], j, s, None, matching.Engine, "primary")
    p._enter(PrimaryRole(p))
    p.epoch = 1
    assert p.replica.seq == 700 and w * c + 100 <= 700
    first = p.current_role.catch_up.send("b", 1)
    assert [o.msg.seq for o in first] == list(range(1, w * c + 1, c))  # a window in flight
    # b applied four chunks and asks from 101: only what keeps the window full goes.
    more = p.current_role.catch_up.on_refill("b", wire.Refill(1, 101, 0, "b"), 0.0)
    assert [o.msg.seq for o in more] == list(range(w * c + 1, w * c + 101, c))
    # The same ask again (a lost chunk, re-asked after a timeout): the window from 101 again.
    again = p.current_role.catch_up.on_refill("b", wire.Refill(1, 101, 0, "b"), 1.0)
    assert [o.msg.seq for o in again][0] == 101 and sum(len(o.msg.entries) for o in again) == w * c
    # A gap refill is served as asked.
    gap = p.current_role.catch_up.on_refill("b", wire.Refill(1, 600, 620, "b"), 2.0)
    assert [(o.msg.seq, len(o.msg.entries)) for o in gap] == [(600, 21)]


def test_an_ask_crossing_the_window_sent_with_the_fence_is_not_served_twice():
    """The Fence that accepts a Join comes with the first window; the node's first Refill for the
    same seq crossed it on the wire and gets nothing. Asked again (the window was lost), it is sent."""
    c, w = 25, REFILL_WINDOW
    s = Settings(refill_chunk=c, catchup_snapshot_lag=10_000)
    j = MemoryJournal()
    j.append(ENTRIES)
    p = NodeMachine("a", ["a", "b"], j, s, None, matching.Engine, "primary")
    p._enter(PrimaryRole(p))
    p.epoch = 1
    window = list(range(1, w * c + 1, c))
    out = p.current_role.catch_up.on_join("b", wire.Join(1, 0, "b", 0), 0.0)
    assert [o.msg.seq for o in out if isinstance(o.msg, wire.Entries)] == window
    assert p.current_role.catch_up.on_refill("b", wire.Refill(1, 1, 0, "b"), 0.001) == []
    assert [
        o.msg.seq for o in p.current_role.catch_up.on_refill("b", wire.Refill(1, 1, 0, "b"), 0.5)
    ] == window
    # Progress into the window tops it up as usual.
    assert [
        o.msg.seq for o in p.current_role.catch_up.on_refill("b", wire.Refill(1, c + 1, 0, "b"), 0.6)
    ] == [w * c + 1]


@pytest.mark.parametrize(
    "epochs,last",
    [
        ([1] * 100, -1),
        ([1] * 100, 1),
        ([1] * 40 + [3] * 30 + [4] * 30, 2),
        ([0] * 70, -1),
        ([2] * 64 + [5] * 36, 5),
    ],
)
def test_epoch_starts_packed_equals_entry_by_entry(epochs, last):
    """Where a run starts new epochs (what the standby notes in its history), from the packed columns."""
    from replication.protocol.node.standby import _epoch_starts

    entries = [e._replace(epoch=ep) for e, ep in zip(ENTRIES, epochs, strict=False)]
    want, top = [], last
    for e in entries:  # the history rule, entry by entry
        if e.epoch > top:
            want.append((e.epoch, e.seq))
            top = e.epoch
    assert _epoch_starts(EntryRun(pack_entries(entries)), last) == want
    assert _epoch_starts(tuple(entries), last) == want
