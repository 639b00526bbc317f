"""The public market-data feed, case by case: the checksum's worked example, each events -> updates rule, LocalBook.

Each rule of docs/semantics.md "Market data" in a few commands, run on both
engines; the property test (``test_book_feed_property.py``) covers random
flows.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import matching
from matching import (
    BboUpdate,
    BookFeed,
    BookSnapshot,
    LevelUpdate,
    LocalBook,
    ReferenceEngine,
    TradeUpdate,
    command_array,
    depth_checksum,
    update_dict,
)
from matching.market_data import APPLIED, GAP, MISMATCH, STALE, UNSYNCED, L2Book, checksum_bytes

ENGINES = [ReferenceEngine]
if matching.Engine is not None:
    ENGINES.append(matching.Engine)

# The worked example of docs/semantics.md "The checksum".
EXAMPLE = [
    {"op": "new", "instrument": 1, "id": 1, "side": "buy", "price": 100, "qty": 30},
    {"op": "new", "instrument": 1, "id": 2, "side": "sell", "price": 103, "qty": 20, "display_qty": 7},
    {"op": "new", "instrument": 1, "id": 3, "side": "buy", "price": 101, "qty": 5},
    {"op": "new", "instrument": 1, "id": 4, "side": "buy", "price": 103, "qty": 9, "tif": "IOC"},
]
EXAMPLE_BYTES = bytes.fromhex(
    "0200000000000000"
    "6500000000000000"
    "0500000000000000"
    "0100000000000000"
    "6400000000000000"
    "1e00000000000000"
    "0100000000000000"
    "0100000000000000"
    "6700000000000000"
    "0500000000000000"
    "0100000000000000"
)

# Every field a public update may carry (docs/semantics.md, market data: never an order id,
# account or client id); the property test checks its flows against the same set.
PUBLIC_FIELDS = frozenset(
    {
        "kind",
        "seq",
        "instrument",
        "instrument_seq",
        "checksum",
        "side",
        "price",
        "qty",
        "orders",
        "aggressor",
        "bid_price",
        "bid_qty",
        "ask_price",
        "ask_qty",
    }
)


class Session:
    """An engine and its feed, fed command by command (seq = 1, 2, ...)."""

    def __init__(self, engine_cls) -> None:
        self.engine = engine_cls()
        self.feed = BookFeed()
        self.seq = 0

    def run(self, cmd: dict) -> list:
        self.seq += 1
        updates = self.feed.apply(self.seq, cmd, self.engine.apply(cmd))
        self.feed._check()
        for ins in self.engine.instruments():
            assert self.feed.depth(ins) == self.engine.depth(ins)
        return updates


@pytest.fixture(params=ENGINES, ids=lambda cls: cls.__name__)
def s(request):
    return Session(request.param)


def new(id, side, price, qty, instrument=1, **kw):
    d = {"op": "new", "instrument": instrument, "id": id, "side": side, "qty": qty, **kw}
    if price is not None:
        d["price"] = price
    return d


def strip(updates):
    """Updates without their seqs and checksums: what they say about the book."""
    out = []
    for u in updates:
        d = update_dict(u)
        for k in ("seq", "instrument_seq", "checksum"):
            del d[k]
        out.append(d)
    return out


def level(side, price, qty, orders, instrument=1):
    return {
        "kind": "level",
        "instrument": instrument,
        "side": side,
        "price": price,
        "qty": qty,
        "orders": orders,
    }


def trade(price, qty, aggressor, instrument=1):
    return {"kind": "trade", "instrument": instrument, "price": price, "qty": qty, "aggressor": aggressor}


def bbo(bid, bid_qty, ask, ask_qty, instrument=1):
    return {
        "kind": "bbo",
        "instrument": instrument,
        "bid_price": bid,
        "bid_qty": bid_qty,
        "ask_price": ask,
        "ask_qty": ask_qty,
    }


# ----- the checksum -----------------------------------------------------------------------


def test_checksum_of_the_worked_example():
    bids, asks = [(101, 5, 1), (100, 30, 1)], [(103, 5, 1)]
    assert checksum_bytes(bids, asks) == EXAMPLE_BYTES
    assert zlib.crc32(EXAMPLE_BYTES) == 0x378F7FC6 == 932151238
    assert depth_checksum(bids, asks) == 932151238
    assert depth_checksum([], []) == zlib.crc32(bytes(16)) == 0xECBB4B55


def test_checksum_covers_ten_levels_per_side_and_each_field():
    bids = [(100 - i, 1 + i, 1) for i in range(12)]
    asks = [(200 + i, 2, 1 + i) for i in range(12)]
    top = depth_checksum(bids, asks)
    assert len(checksum_bytes(bids, asks)) == 8 * (2 + 3 * 20)
    assert depth_checksum(bids[:10], asks[:10]) == top  # the 11th level on is not covered
    assert depth_checksum(bids[:9], asks) != top
    for side in (0, 1):
        for field in (0, 1, 2):
            rows = [list(bids), list(asks)]
            row = list(rows[side][9])
            row[field] += 1
            rows[side][9] = tuple(row)
            assert depth_checksum(*rows) != top, (side, field)
    # The same levels on the other side are another book.
    assert depth_checksum([(100, 1, 1)], []) != depth_checksum([], [(100, 1, 1)])


def test_worked_example_updates(s):
    updates = [s.run(c) for c in EXAMPLE]
    assert s.engine.depth(1) == ([(101, 5, 1), (100, 30, 1)], [(103, 5, 1)])
    assert updates[3] == [
        LevelUpdate(4, 1, 7, "sell", 103, 5, 1, 932151238),
        TradeUpdate(4, 1, 8, 103, 7, "buy", 932151238),
        TradeUpdate(4, 1, 9, 103, 2, "buy", 932151238),
        BboUpdate(4, 1, 10, 101, 5, 103, 5, 932151238),
    ]
    assert [[u.instrument_seq for u in us] for us in updates] == [[1, 2], [3, 4], [5, 6], [7, 8, 9, 10]]


# ----- events -> updates ----------------------------------------------------------------


def test_resting_orders_add_levels_and_counts(s):
    assert strip(s.run(new(1, "buy", 100, 10))) == [level("buy", 100, 10, 1), bbo(100, 10, 0, 0)]
    assert strip(s.run(new(2, "buy", 100, 5))) == [level("buy", 100, 15, 2), bbo(100, 15, 0, 0)]
    # Behind the best: a level, and no BBO update.
    assert strip(s.run(new(3, "buy", 99, 5))) == [level("buy", 99, 5, 1)]
    assert strip(s.run(new(4, "sell", 102, 1))) == [level("sell", 102, 1, 1), bbo(100, 15, 102, 1)]


def test_trade_removes_a_filled_maker_and_reports_the_aggressor_side(s):
    s.run(new(1, "sell", 101, 4))
    s.run(new(2, "sell", 102, 6))
    assert strip(s.run(new(3, "buy", 102, 7))) == [
        level("sell", 101, 0, 0),
        level("sell", 102, 3, 1),
        trade(101, 4, "buy"),
        trade(102, 3, "buy"),
        bbo(0, 0, 102, 3),
    ]
    s.run(new(4, "buy", 100, 2))
    assert strip(s.run(new(5, "sell", None, 1, type="market"))) == [
        level("buy", 100, 1, 1),
        trade(100, 1, "sell"),
        bbo(100, 1, 102, 3),
    ]


def test_the_remainder_of_an_aggressor_rests_or_is_cancelled(s):
    s.run(new(1, "sell", 101, 4))
    assert strip(s.run(new(2, "buy", 101, 6, tif="IOC"))) == [
        level("sell", 101, 0, 0),
        trade(101, 4, "buy"),
        bbo(0, 0, 0, 0),
    ]
    s.run(new(3, "sell", 101, 4))
    assert strip(s.run(new(4, "buy", 101, 6))) == [
        level("sell", 101, 0, 0),
        level("buy", 101, 2, 1),
        trade(101, 4, "buy"),
        bbo(101, 2, 0, 0),
    ]


def test_an_iceberg_shows_only_its_slice_and_refills(s):
    assert strip(s.run(new(1, "sell", 101, 10, display_qty=3))) == [
        level("sell", 101, 3, 1),
        bbo(0, 0, 101, 3),
    ]
    # Its slice traded and refilled, alone at its price: the level ends as it began.
    assert strip(s.run(new(2, "buy", 101, 3))) == [trade(101, 3, "buy")]
    s.run(new(3, "sell", 101, 2))
    assert s.engine.depth(1) == ([], [(101, 5, 2)])
    # Its slice (open 7 -> 4, refilled behind order 3), order 3, then 1 of its new slice.
    assert strip(s.run(new(4, "buy", 101, 6))) == [
        level("sell", 101, 2, 1),
        trade(101, 3, "buy"),
        trade(101, 2, "buy"),
        trade(101, 1, "buy"),
        bbo(0, 0, 101, 2),
    ]
    assert s.engine.order(1)["open"] == 3


def test_cancel_and_mass_cancel_remove_visible_qty(s):
    s.run(new(1, "sell", 101, 10, display_qty=3, account=5))
    s.run(new(2, "sell", 101, 4, account=6))
    s.run(new(3, "buy", 100, 4, account=5, instrument=2))
    s.run(new(4, "buy", 99, 4, account=5, instrument=7))
    assert strip(s.run({"op": "cancel", "instrument": 1, "id": 2})) == [
        level("sell", 101, 3, 1),
        bbo(0, 0, 101, 3),
    ]
    ups = s.run({"op": "mass_cancel", "account": 5})
    assert strip(ups) == [
        level("sell", 101, 0, 0),
        bbo(0, 0, 0, 0),
        level("buy", 100, 0, 0, instrument=2),
        bbo(0, 0, 0, 0, instrument=2),
        level("buy", 99, 0, 0, instrument=7),
        bbo(0, 0, 0, 0, instrument=7),
    ]
    assert [(u.instrument, u.instrument_seq) for u in ups] == [(1, 7), (1, 8), (2, 3), (2, 4), (7, 3), (7, 4)]
    assert s.run({"op": "mass_cancel"}) == []


def test_self_trade_prevention_cancels_are_level_changes(s):
    s.run(new(1, "sell", 101, 4, account=9))
    s.run(new(2, "sell", 101, 5, account=8))
    assert strip(s.run(new(3, "buy", 101, 6, account=9, stp="cancel_maker"))) == [
        level("sell", 101, 0, 0),  # maker 1 cancelled (self-trade), maker 2 filled
        level("buy", 101, 1, 1),
        trade(101, 5, "buy"),
        bbo(101, 1, 0, 0),
    ]
    s.run(new(4, "sell", 102, 4, account=7))
    # cancel_taker: the maker stays, the taker's remainder never rests.
    assert strip(s.run(new(5, "buy", 102, 4, account=7, stp="cancel_taker"))) == []


def test_replace_in_place_shrinks_and_a_move_trades_as_the_order_side(s):
    s.run(new(1, "buy", 100, 10, display_qty=4))
    s.run(new(2, "buy", 100, 2))
    assert strip(s.run({"op": "replace", "instrument": 1, "id": 1, "qty": 3})) == [
        level("buy", 100, 5, 2),
        bbo(100, 5, 0, 0),
    ]
    s.run(new(3, "sell", 103, 3))
    # Moved up through the ask: trades as a buy, the remainder rests at 103.
    assert strip(s.run({"op": "replace", "instrument": 1, "id": 2, "price": 103, "qty": 5})) == [
        level("buy", 100, 3, 1),
        level("sell", 103, 0, 0),
        level("buy", 103, 2, 1),
        trade(103, 3, "buy"),
        bbo(103, 2, 0, 0),
    ]
    assert strip(s.run({"op": "replace", "instrument": 1, "id": 2, "qty": 0})) == [
        level("buy", 103, 0, 0),
        bbo(100, 3, 0, 0),
    ]


def test_rejected_commands_give_no_update_and_keep_the_numbering(s):
    s.run(new(1, "buy", 100, 1))
    assert s.run(new(1, "buy", 100, 1)) == []  # duplicate_id
    assert s.run({"op": "cancel", "instrument": 1, "id": 9}) == []
    assert s.run(new(2, "sell", 100, 5, tif="FOK")) == []  # fok_unfilled
    assert [u.instrument_seq for u in s.run(new(3, "buy", 101, 1))] == [3, 4]


def test_updates_never_name_an_order_an_account_or_a_client(s):
    fields = set()
    for u in (
        *s.run(new(1, "sell", 101, 4, account=3)),
        *s.run(new(2, "buy", 101, 6, account=4)),
    ):
        fields |= set(update_dict(u))
    assert fields.isdisjoint({"id", "taker", "maker", "account", "client", "client_id", "order_id"})
    assert fields <= PUBLIC_FIELDS


def test_batch_gives_the_updates_of_command_by_command():
    if matching.Engine is None:
        pytest.skip("extension not built")
    flow = [*EXAMPLE, {"op": "mass_cancel", "account": 3}, {"op": "cancel", "instrument": 1, "id": 1}]
    one = Session(matching.Engine)
    expected = [u for c in flow for u in one.run(c)]
    arr = command_array(flow)
    feed = BookFeed()
    got = feed.apply_batch(arr, matching.Engine().apply_batch(arr), first_seq=1)
    assert got == expected
    assert feed.seq == len(flow)  # the last command (a cancel) counted even with updates of its own
    assert feed.apply_batch(arr[:0], np.zeros(0, matching.EVENT_DTYPE), first_seq=9) == []


# ----- snapshot and LocalBook ---------------------------------------------------------------


def test_snapshot_of_an_unknown_instrument_is_empty():
    snap = BookFeed().snapshot(5)
    assert snap == BookSnapshot(5, 0, 0, [], [], depth_checksum([], []))


def test_local_book_follows_from_a_snapshot_and_skips_what_it_holds(s):
    for c in EXAMPLE[:2]:
        s.run(c)
    snap = s.feed.snapshot(1)
    assert (snap.seq, snap.instrument_seq) == (2, 4)
    local = LocalBook()
    assert local.load(snap) and local.synced(1)
    late = [u for c in EXAMPLE[2:] for u in s.run(c)]
    for u in late:
        assert local.apply(u) == APPLIED
        assert local.apply(u) == STALE
    assert local.book(1) == s.engine.depth(1)
    assert local.instrument_seq(1) == 10
    assert (local.gaps, local.checksum_failures, local.resyncs) == (0, 0, 0)
    assert local.apply(late[0]._replace(instrument=2)) == UNSYNCED
    assert local.instruments() == [1]


def test_local_book_detects_a_gap_and_waits_for_a_new_snapshot(s):
    local = LocalBook()
    local.load(s.feed.snapshot(1))
    ups = [u for c in EXAMPLE for u in s.run(c)]
    assert local.apply(ups[0]) == APPLIED
    assert local.apply(ups[2]) == GAP
    assert local.apply(ups[1]) == UNSYNCED  # nothing more until a snapshot
    assert not local.synced(1) and local.gaps == 1
    assert local.load(s.feed.snapshot(1))
    assert local.resyncs == 1 and local.book(1) == s.engine.depth(1)


def test_local_book_detects_a_wrong_level_a_wrong_checksum_and_a_wrong_bbo(s):
    ups = [u for c in EXAMPLE for u in s.run(c)]
    bad_level = ups[0]._replace(qty=ups[0].qty + 1)
    bad_checksum = ups[0]._replace(checksum=ups[0].checksum ^ 1)
    bad_bbo = ups[1]._replace(bid_qty=29, checksum=ups[1].checksum)
    for tampered, at in ((bad_level, 0), (bad_checksum, 0), (bad_bbo, 1)):
        local = LocalBook()
        local.load(BookFeed().snapshot(1))
        for u in ups[:at]:
            assert local.apply(u) == APPLIED
        assert local.apply(tampered) == MISMATCH
        assert local.checksum_failures == 1 and not local.synced(1)
        assert local.apply(ups[at + 1]) == UNSYNCED
    local = LocalBook()
    assert not local.load(s.feed.snapshot(1)._replace(checksum=1))
    assert local.checksum_failures == 1 and not local.synced(1)


# ----- L2Book ---------------------------------------------------------------------------------


def test_l2_book_keeps_both_sides_best_first_and_its_checksum_current():
    book = L2Book(1)
    for price in (5, 1, 9, 3, 7, 2, 8, 4, 6, 10, 11, 12):
        book.set_level(0, price, price, 1)
        book.set_level(1, 100 + price, price, 2)
        book._check()
    bids, asks = book.depth()
    assert [p for p, _, _ in bids] == list(range(12, 0, -1))
    assert [p for p, _, _ in asks] == list(range(101, 113))
    assert book.checksum() == depth_checksum(bids, asks)
    # Below the top 10 the checksum does not move; at the top it does.
    before = book.checksum()
    assert book.set_level(0, 1, 0, 0)
    assert book.checksum() == before
    assert book.set_level(0, 12, 1, 1)
    assert book.checksum() != before
    assert not book.set_level(0, 12, 1, 1)  # no change
    assert not book.set_level(1, 500, 0, 0)  # removing what is not there
    book._check()
    assert book.best(0) == (12, 1) and book.best(1) == (101, 1)
    assert book.level(0, 12) == (1, 1) and book.level(0, 1) == (0, 0)
