"""The market-data feed against the engine it follows, for random flows, on both engines.

For random sessions from ``tests/strategies.py`` (icebergs, self-trade
prevention, replaces, mass cancels, IOC/FOK/market orders, bad input): a
subscriber that starts from an empty book and one that starts from a
snapshot taken at a random command both hold exactly ``Engine.depth`` after
every command, every update's checksum verifies, per-instrument seqs run
without a gap, trades and BBO say what the events say, and no update has a
field that names an order, an account or a client. The batch form of the
feed gives the same updates as the per-command one.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import matching
from matching import (
    Accepted,
    BboUpdate,
    BookFeed,
    LocalBook,
    ReferenceEngine,
    Trade,
    TradeUpdate,
    Triggered,
    command_array,
    command_record,
    depth_checksum,
    update_dict,
)
from matching.market_data import APPLIED
from tests.engine.test_market_data import PUBLIC_FIELDS  # noqa: E402
from tests.strategies import INSTRUMENTS, command_lists, timed_command_lists

ENGINES = [ReferenceEngine]
if matching.Engine is not None:
    ENGINES.append(matching.Engine)


def _best(depth) -> tuple[int, int, int, int]:
    bids, asks = depth
    bid = bids[0][:2] if bids else (0, 0)
    ask = asks[0][:2] if asks else (0, 0)
    return (*bid, *ask)


def _aggressor_side(engine, cmd: dict) -> str | None:
    """The side a trade of this command is reported with: the new order's, or the replaced order's."""
    op = cmd.get("op")
    op = op.lower() if isinstance(op, str) else op  # the engine reads ops and sides in any case
    if op == "new":
        side = cmd.get("side")
        return side.lower() if isinstance(side, str) else None
    if op == "replace":
        try:
            live = engine.order(cmd["id"])
        except (KeyError, TypeError, OverflowError):
            return None
        return None if live is None else live["side"]
    return None


@pytest.mark.parametrize("engine_cls", ENGINES, ids=lambda cls: cls.__name__)
@given(cmds=st.one_of(command_lists(), timed_command_lists()), data=st.data())
def test_books_rebuilt_from_the_feed_equal_the_engine_at_every_seq(engine_cls, cmds, data):
    cut = data.draw(st.integers(min_value=0, max_value=len(cmds)), label="snapshot before command")
    # Every instrument the flow names, as the engine reads them ("instrument": None is 0), subscribed to.
    instruments = sorted({command_record(c).instrument for c in cmds} | set(INSTRUMENTS))
    engine = engine_cls()
    feed = BookFeed()
    from_start, late = LocalBook(), LocalBook()
    for ins in instruments:
        assert from_start.load(feed.snapshot(ins))
    last_seq = dict.fromkeys(instruments, 0)
    every_update = []
    stop_sides: dict[int, str] = {}
    for i, cmd in enumerate(cmds):
        if i == cut:
            for ins in instruments:
                snap = feed.snapshot(ins)
                assert (snap.bids, snap.asks) == engine.depth(ins)
                assert snap.instrument_seq == last_seq[ins] and snap.seq == i
                assert late.load(snap)
        best_before = {ins: _best(engine.depth(ins)) for ins in instruments}
        aggressor = _aggressor_side(engine, cmd)
        events = engine.apply(cmd)
        updates = feed.apply(i + 1, cmd, events)  # group seqs start at 1
        feed._check()
        every_update += updates

        for u in updates:
            assert set(update_dict(u)) <= PUBLIC_FIELDS
            assert u.seq == i + 1
            assert u.instrument_seq == last_seq[u.instrument] + 1, "per-instrument seq with a gap"
            last_seq[u.instrument] = u.instrument_seq
            assert from_start.apply(u) == APPLIED
            if i >= cut:
                assert late.apply(u) == APPLIED
        trades = [u for u in updates if type(u) is TradeUpdate]
        # A triggered stop aggresses with its own side (it was accepted by an earlier command).
        triggered: set[int] = set()
        expected = []
        for e in events:
            if type(e) is Triggered:
                triggered.add(e.id)
            elif type(e) is Trade:
                side = stop_sides[e.taker] if e.taker in triggered else aggressor
                expected.append((e.instrument, e.price, e.qty, side))
        if cmd.get("type") in ("stop", "stop_limit") and events and type(events[-1]) is Accepted:
            stop_sides[cmd["id"]] = cmd["side"]
        assert [(u.instrument, u.price, u.qty, u.aggressor) for u in trades] == expected
        for ins in instruments:
            depth = engine.depth(ins)
            assert from_start.book(ins) == depth, f"command {i}: {cmd}"
            if i >= cut:
                assert late.book(ins) == depth, f"command {i}: {cmd}"
            mine = [u for u in updates if u.instrument == ins]
            if mine:
                assert mine[-1].checksum == depth_checksum(*depth)
            bbos = [(u.bid_price, u.bid_qty, u.ask_price, u.ask_qty) for u in mine if type(u) is BboUpdate]
            best = _best(depth)
            assert bbos == ([best] if best != best_before[ins] else [])
    if cut == len(cmds):
        for ins in instruments:
            assert late.load(feed.snapshot(ins))
            assert late.book(ins) == engine.depth(ins)
    for book in (from_start, late):
        assert (book.gaps, book.checksum_failures) == (0, 0)
        assert all(book.synced(ins) for ins in instruments)

    # The batch form: the same commands in one array give the same updates.
    arr = command_array(cmds)
    batch_feed = BookFeed()
    assert batch_feed.apply_batch(arr, engine_cls().apply_batch(arr), first_seq=1) == every_update
