"""The node's feed engine: the feed follows every path a replica applies entries by, and survives its snapshots.

A primary's batches and a standby's entries (packed runs and lists) give the
same updates at the same group seqs; a replica restored from a snapshot
(the feed's state inside the engine blob) publishes exactly what one that
never stopped publishes; an old snapshot (a plain engine blob) restores with
the feed unavailable; a damaged feed state is refused.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching import BookFeed, Engine, LocalBook, command_record
from replication.protocol.market_data import decode_updates, encode_updates
from replication.protocol.replica import Replica
from replication.transport.md_engine import MAGIC, feed_engine_factory
from tests.strategies import command_lists

pytestmark = pytest.mark.skipif(Engine is None, reason="the native engine is not built")


def _packed(cmds: list[dict]) -> list[bytes]:
    import numpy as np

    from matching import COMMAND_DTYPE

    return [np.array([tuple(command_record(c))], dtype=COMMAND_DTYPE).tobytes() for c in cmds]


def _primary(cmds: list[bytes], cut: int) -> tuple[Replica, list, list]:
    """A primary's replica running ``cmds`` in two batches; its entries and its updates."""
    r = Replica(feed_engine_factory(Engine))
    r.engine.collect = True
    runs = []
    for part in (cmds[:cut], cmds[cut:]):
        if part:
            ids = list(range(len(part)))
            run, _, _ = r.execute_batch(
                1, [7] * len(part), [i + 1 + len(runs) * 1000 for i in ids], b"".join(part)
            )
            runs.append(run)
    return r, runs, r.engine.take()


@settings(max_examples=40, deadline=None)
@given(cmds=command_lists(), data=st.data())
def test_every_apply_path_and_a_snapshot_restore_give_the_same_feed(cmds, data):
    raw = _packed(cmds)
    cut = data.draw(st.integers(0, len(raw)), label="cut")
    primary, runs, expected = _primary(raw, cut)
    # The feed holds the engine's book, and numbers its updates without a gap.
    for ins in primary.engine.instruments():
        assert primary.engine.feed.depth(ins) == primary.engine.depth(ins)
    # A standby applying the packed runs, and one applying Entry lists, publish the same.
    for as_list in (False, True):
        s = Replica(feed_engine_factory(Engine))
        s.engine.collect = True
        for run in runs:
            assert s.apply_entries(list(run) if as_list else run) == len(run)
        assert s.engine.take() == expected
    # A replica restored from the first batch's snapshot publishes what follows exactly.
    if runs:
        first = Replica(feed_engine_factory(Engine))
        first.apply_entries(runs[0])
        blob = first.snapshot()
        restored = Replica.restore(blob, feed_engine_factory(Engine))
        assert restored.engine.available
        restored.engine.collect = True
        for run in runs[1:]:
            restored.apply_entries(run)
        tail = [u for u in decode_updates(expected, 1 << 30) if u.seq > len(runs[0])]
        assert restored.engine.take() == encode_updates(tail)
        assert restored.digest == primary.digest
        # And a subscriber that loads the restored node's snapshots agrees with the primary's.
        book = LocalBook()
        for ins in primary.engine.feed.instruments():
            assert book.load(restored.engine.feed.snapshot(ins))
            assert book.book(ins) == primary.engine.depth(ins)


def test_a_plain_engine_snapshot_restores_with_the_feed_unavailable():
    r = Replica(Engine)
    r.execute(
        1,
        1,
        7,
        1,
        _packed([{"op": "new", "instrument": 1, "id": 1, "side": "buy", "price": 10, "qty": 5}])[0],
    )
    restored = Replica.restore(r.snapshot(), feed_engine_factory(Engine))
    assert not restored.engine.available
    assert restored.engine.depth(1) == ([(10, 5, 1)], [])
    assert restored.snapshot()[: len(MAGIC)] != MAGIC  # nothing untrue is written back


def test_a_damaged_feed_state_is_refused():
    make = feed_engine_factory(Engine)
    e = make()
    e.apply_batch(
        __import__("numpy").frombuffer(
            _packed([{"op": "new", "instrument": 1, "id": 1, "side": "buy", "price": 10, "qty": 5}])[0],
            dtype=__import__("matching").COMMAND_DTYPE,
        )
    )
    blob = e.snapshot()
    assert type(e).restore(blob).feed.depth(1) == ([(10, 5, 1)], [])
    with pytest.raises(ValueError):
        type(e).restore(blob[:-3])
    with pytest.raises(ValueError):
        type(e).restore(blob + b"\0")


def test_the_feed_state_round_trips():
    feed = BookFeed()
    eng = Engine()
    for i, c in enumerate(
        [
            {"op": "new", "instrument": 1, "id": 1, "side": "buy", "price": 10, "qty": 50, "display_qty": 10},
            {"op": "new", "instrument": 2, "id": 2, "side": "sell", "price": 12, "qty": 5},
            {"op": "new", "instrument": 1, "id": 3, "side": "sell", "price": 10, "qty": 4},
            {"op": "cancel", "instrument": 2, "id": 2},
        ]
    ):
        feed.apply(i + 1, c, eng.apply(c))
    again = BookFeed.from_state(*feed.state())
    again._check()
    for ins in (1, 2):
        assert again.snapshot(ins) == feed.snapshot(ins)


def test_with_the_feed_switched_off_a_snapshot_written_with_it_still_restores():
    on = Replica(feed_engine_factory(Engine))
    on.execute(
        1,
        1,
        7,
        1,
        _packed([{"op": "new", "instrument": 1, "id": 1, "side": "buy", "price": 10, "qty": 5}])[0],
    )
    off = Replica.restore(on.snapshot(), feed_engine_factory(Engine, enabled=False))
    assert not off.engine.available and off.digest == on.digest
    off.execute(1, 2, 7, 2, _packed([{"op": "cancel", "instrument": 1, "id": 1}])[0])
    assert off.engine.feed.depth(1) == ([], []) and off.engine.depth(1) == ([], [])
    assert off.snapshot()[: len(MAGIC)] != MAGIC


@settings(max_examples=20, deadline=None)
@given(cmds=command_lists())
def test_without_the_c_feed_a_node_publishes_the_same_records(cmds):
    import replication.transport.md_engine as md_engine

    raw = _packed(cmds)
    with_c = _primary(raw, len(raw) // 2)[2]
    saved = md_engine._Feed
    md_engine._Feed = None
    try:
        without = _primary(raw, len(raw) // 2)
        assert type(without[0].engine.feed) is BookFeed
    finally:
        md_engine._Feed = saved
    assert without[2] == with_c


@settings(max_examples=20, deadline=None)
@given(cmds=command_lists())
def test_a_node_on_the_reference_engine_publishes_the_same_feed(cmds):
    from matching import ReferenceEngine

    raw = _packed(cmds)
    native = _primary(raw, len(raw) // 2)[2]
    r = Replica(feed_engine_factory(ReferenceEngine))
    r.engine.collect = True
    for part in (raw[: len(raw) // 2], raw[len(raw) // 2 :]):
        if part:
            r.execute_batch(1, [7] * len(part), list(range(1, len(part) + 1)), b"".join(part))
    assert r.engine.take() == native
    again = Replica.restore(r.snapshot(), feed_engine_factory(ReferenceEngine))
    assert again.engine.available and again.engine.feed.state() == r.engine.feed.state()
