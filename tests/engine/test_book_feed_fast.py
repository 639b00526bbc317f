"""The C feed (``matching._book_feed.FastBookFeed``) against its specification, ``BookFeed``, on random flows.

For random sessions (``tests/strategies.py``: icebergs, self-trade
prevention, replaces, mass cancels, IOC/FOK/market orders, bad input) cut
into random batches: the records the C feed writes are exactly the Python
feed's updates in wire form, and after every batch both hold the same
books, instrument seqs, snapshots and state; a C feed rebuilt from either's
state carries on identically.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import matching
from matching import BookFeed, command_array
from tests.strategies import INSTRUMENTS, command_lists, timed_command_lists

fast = pytest.importorskip("matching._book_feed")
pytestmark = pytest.mark.skipif(matching.Engine is None, reason="the native engine is not built")


@given(cmds=st.one_of(command_lists(), timed_command_lists()), data=st.data())
def test_the_c_feed_writes_the_python_feeds_updates(cmds, data):
    from replication.protocol.market_data import encode_updates

    engine, spec, feed = matching.Engine(), BookFeed(), fast.FastBookFeed()
    arr = command_array(cmds)
    start, seq = 0, 1
    while start < len(arr):
        n = data.draw(st.integers(1, 12), label="batch")
        batch = arr[start : start + n]
        events = engine.apply_batch(batch)
        expected = spec.apply_batch(batch, events, seq)
        assert feed.apply_records(batch, events, seq) == encode_updates(expected)
        start += n
        seq += len(batch)
        assert feed.seq == spec.seq and feed.instrument_seqs() == spec.instrument_seqs()
        for ins in sorted(set(INSTRUMENTS) | set(spec.instruments())):
            assert feed.snapshot(ins) == spec.snapshot(ins)
        assert feed.state() == spec.state()
    # Rebuilt from the state (its own, or the Python feed's), it carries on the same.
    again = fast.FastBookFeed.from_state(*spec.state())
    assert again.state() == feed.state()
    more = command_array(cmds[: data.draw(st.integers(0, len(cmds)), label="more")])
    events = engine.apply_batch(more)
    assert again.apply_records(more, events, seq) == encode_updates(spec.apply_batch(more, events, seq))
