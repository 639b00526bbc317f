"""One test per matching rule, run against both engines.

Each test states a rule of docs/semantics.md in a few commands and checks
the exact events. The same cases run on the reference engine and on the
Cython core, so a rule can never hold in one and not the other.
"""

from __future__ import annotations

import pytest

import matching
from matching import Accepted, Cancelled, ReferenceEngine, Rejected, Replaced, Trade
from matching.codes import MAX_PRICE, MAX_QTY

ENGINES = [ReferenceEngine]
if matching.Engine is not None:
    ENGINES.append(matching.Engine)


@pytest.fixture(params=ENGINES, ids=lambda cls: cls.__name__)
def e(request):
    engine = request.param()
    yield engine
    engine._check()


def sell(e, id, price, qty, **kw):
    return e.submit(instrument=1, id=id, side="sell", price=price, qty=qty, **kw)


def buy(e, id, price, qty, **kw):
    return e.submit(instrument=1, id=id, side="buy", price=price, qty=qty, **kw)


# ----- price-time priority ------------------------------------------------------


def test_resting_order_is_accepted_and_shown_in_depth(e):
    assert buy(e, 1, 100, 10) == [Accepted(1, 1)]
    assert e.depth(1) == ([(100, 10, 1)], [])


def test_trade_prints_at_the_makers_price(e):
    sell(e, 1, 100, 10)
    assert buy(e, 2, 105, 4) == [Accepted(1, 2), Trade(1, 2, 1, 100, 4, 0, 6)]


def test_better_price_matches_first(e):
    sell(e, 1, 102, 5)
    sell(e, 2, 101, 5)
    events = buy(e, 3, 102, 7)
    assert events[1:] == [Trade(1, 3, 2, 101, 5, 2, 0), Trade(1, 3, 1, 102, 2, 0, 3)]


def test_fifo_within_a_level(e):
    sell(e, 1, 100, 5)
    sell(e, 2, 100, 5)
    assert buy(e, 3, 100, 7)[1:] == [Trade(1, 3, 1, 100, 5, 2, 0), Trade(1, 3, 2, 100, 2, 0, 3)]


def test_limit_remainder_rests(e):
    sell(e, 1, 100, 5)
    buy(e, 2, 101, 8)
    assert e.depth(1) == ([(101, 3, 1)], [])


def test_limit_does_not_trade_through_its_price(e):
    sell(e, 1, 101, 5)
    assert buy(e, 2, 100, 5) == [Accepted(1, 2)]
    assert e.depth(1) == ([(100, 5, 1)], [(101, 5, 1)])


def test_instruments_are_separate_books(e):
    e.submit(instrument=1, id=1, side="sell", price=100, qty=5)
    assert e.submit(instrument=2, id=2, side="buy", price=100, qty=5) == [Accepted(2, 2)]
    assert e.instruments() == [1, 2]


# ----- market, IOC, FOK -----------------------------------------------------------


def test_market_order_sweeps_and_cancels_its_remainder(e):
    sell(e, 1, 100, 5)
    sell(e, 2, 110, 5)
    events = e.submit(instrument=1, id=3, side="buy", qty=12, type="market", tif="IOC")
    assert events == [
        Accepted(1, 3),
        Trade(1, 3, 1, 100, 5, 7, 0),
        Trade(1, 3, 2, 110, 5, 2, 0),
        Cancelled(1, 3, 2, "remainder"),
    ]
    assert e.depth(1) == ([], [])


def test_market_order_never_rests_even_with_gtc(e):
    events = e.submit(instrument=1, id=1, side="sell", qty=5, type="market")
    assert events == [Accepted(1, 1), Cancelled(1, 1, 5, "remainder")]
    assert e.order(1) is None


def test_ioc_remainder_is_cancelled(e):
    sell(e, 1, 100, 5)
    assert buy(e, 2, 100, 8, tif="IOC")[-1] == Cancelled(1, 2, 3, "remainder")
    assert e.depth(1) == ([], [])


def test_fok_fills_completely(e):
    sell(e, 1, 100, 5)
    sell(e, 2, 101, 5)
    events = buy(e, 3, 101, 10, tif="FOK")
    assert events == [Accepted(1, 3), Trade(1, 3, 1, 100, 5, 5, 0), Trade(1, 3, 2, 101, 5, 0, 0)]


def test_fok_that_cannot_fill_is_rejected_without_trading(e):
    sell(e, 1, 100, 5)
    assert buy(e, 2, 100, 6, tif="FOK") == [Rejected(1, 2, "fok_unfilled")]
    assert e.depth(1) == ([], [(100, 5, 1)])


def test_fok_counts_hidden_iceberg_quantity(e):
    sell(e, 1, 100, 30, display_qty=5)
    events = buy(e, 2, 100, 30, tif="FOK")
    assert events[0] == Accepted(1, 2) and events[-1].taker_open == 0


def test_fok_stops_at_own_order_under_cancel_taker(e):
    sell(e, 1, 100, 5, account=9)
    sell(e, 2, 100, 50, account=4)
    assert buy(e, 3, 100, 10, tif="FOK", account=9, stp="cancel_taker") == [Rejected(1, 3, "fok_unfilled")]


# ----- post-only and icebergs -----------------------------------------------------------


def test_post_only_that_would_cross_is_rejected(e):
    sell(e, 1, 100, 5)
    assert buy(e, 2, 100, 5, post_only=True) == [Rejected(1, 2, "would_cross")]
    assert buy(e, 3, 99, 5, post_only=True) == [Accepted(1, 3)]


def test_post_only_needs_limit_gtc(e):
    assert buy(e, 1, 100, 5, post_only=True, tif="IOC") == [Rejected(1, 1, "invalid_combination")]


def test_iceberg_shows_only_its_display_qty(e):
    sell(e, 1, 100, 50, display_qty=10)
    assert e.depth(1) == ([], [(100, 10, 1)])
    assert e.order(1)["open"] == 50


def test_iceberg_refill_goes_to_the_back_of_its_level(e):
    sell(e, 1, 100, 20, display_qty=5)
    sell(e, 2, 100, 5)
    events = buy(e, 3, 100, 12)
    assert events[1:] == [
        Trade(1, 3, 1, 100, 5, 7, 15),
        Trade(1, 3, 2, 100, 5, 2, 0),
        Trade(1, 3, 1, 100, 2, 0, 13),
    ]
    assert e.depth(1) == ([], [(100, 3, 1)])


# ----- self-trade prevention -----------------------------------------------------------


def test_stp_none_allows_a_self_trade(e):
    sell(e, 1, 100, 5, account=3)
    assert buy(e, 2, 100, 5, account=3)[1] == Trade(1, 2, 1, 100, 5, 0, 0)


def test_stp_cancel_taker(e):
    sell(e, 1, 100, 5, account=3)
    assert buy(e, 2, 100, 5, account=3, stp="cancel_taker") == [
        Accepted(1, 2),
        Cancelled(1, 2, 5, "self_trade"),
    ]
    assert e.depth(1) == ([], [(100, 5, 1)])


def test_stp_cancel_maker_then_keeps_matching(e):
    sell(e, 1, 100, 5, account=3)
    sell(e, 2, 100, 5, account=4)
    events = buy(e, 3, 100, 5, account=3, stp="cancel_maker")
    assert events == [Accepted(1, 3), Cancelled(1, 1, 5, "self_trade"), Trade(1, 3, 2, 100, 5, 0, 0)]


def test_stp_cancel_both(e):
    sell(e, 1, 100, 5, account=3)
    events = buy(e, 2, 100, 8, account=3, stp="cancel_both")
    assert events == [Accepted(1, 2), Cancelled(1, 1, 5, "self_trade"), Cancelled(1, 2, 8, "self_trade")]
    assert e.depth(1) == ([], [])


def test_account_zero_is_never_a_self_trade(e):
    sell(e, 1, 100, 5)
    assert buy(e, 2, 100, 5, stp="cancel_both")[1] == Trade(1, 2, 1, 100, 5, 0, 0)


# ----- cancel, replace, mass cancel ---------------------------------------------------------


def test_cancel_removes_the_order(e):
    buy(e, 1, 100, 5)
    assert e.cancel(instrument=1, id=1) == [Cancelled(1, 1, 5, "user")]
    assert e.depth(1) == ([], []) and e.order(1) is None


def test_cancel_of_an_unknown_or_dead_id_is_rejected(e):
    buy(e, 1, 100, 5)
    e.cancel(instrument=1, id=1)
    assert e.cancel(instrument=1, id=1) == [Rejected(1, 1, "unknown_order")]


def test_cancel_in_the_wrong_instrument_is_rejected(e):
    buy(e, 1, 100, 5)
    assert e.cancel(instrument=2, id=1) == [Rejected(2, 1, "unknown_order")]


def test_replace_lowering_qty_keeps_priority(e):
    sell(e, 1, 100, 10)
    sell(e, 2, 100, 10)
    assert e.replace(instrument=1, id=1, qty=4) == [Replaced(1, 1, 100, 4)]
    assert buy(e, 3, 100, 4)[1] == Trade(1, 3, 1, 100, 4, 0, 0)


def test_replace_raising_qty_goes_to_the_back(e):
    sell(e, 1, 100, 10)
    sell(e, 2, 100, 10)
    e.replace(instrument=1, id=1, qty=12)
    assert buy(e, 3, 100, 4)[1] == Trade(1, 3, 2, 100, 4, 0, 6)


def test_replace_to_a_crossing_price_trades_as_aggressor(e):
    sell(e, 1, 101, 5)
    buy(e, 2, 99, 8)
    events = e.replace(instrument=1, id=2, price=101)
    assert events == [Replaced(1, 2, 101, 8), Trade(1, 2, 1, 101, 5, 3, 0)]
    assert e.depth(1) == ([(101, 3, 1)], [])


def test_replace_to_zero_qty_cancels(e):
    buy(e, 1, 100, 5)
    assert e.replace(instrument=1, id=1, qty=0) == [Cancelled(1, 1, 5, "user")]


def test_replace_of_post_only_to_a_crossing_price_is_rejected(e):
    sell(e, 1, 101, 5)
    buy(e, 2, 99, 5, post_only=True)
    assert e.replace(instrument=1, id=2, price=101) == [Rejected(1, 2, "would_cross")]
    assert e.order(2)["price"] == 99


def test_mass_cancel_by_account_in_book_order(e):
    buy(e, 1, 99, 5, account=7)
    buy(e, 2, 100, 5, account=7)
    sell(e, 3, 105, 5, account=8)
    e.submit(instrument=2, id=4, side="sell", price=105, qty=5, account=7)
    events = e.mass_cancel(account=7)
    assert events == [
        Cancelled(1, 2, 5, "mass_cancel"),
        Cancelled(1, 1, 5, "mass_cancel"),
        Cancelled(2, 4, 5, "mass_cancel"),
    ]
    assert e.depth(1) == ([], [(105, 5, 1)])


def test_mass_cancel_by_instrument(e):
    buy(e, 1, 99, 5)
    e.submit(instrument=2, id=2, side="buy", price=99, qty=5)
    assert e.mass_cancel(instrument=2) == [Cancelled(2, 2, 5, "mass_cancel")]
    assert e.live_orders == 1


def test_order_id_can_be_reused_once_gone(e):
    buy(e, 1, 100, 5)
    e.cancel(instrument=1, id=1)
    assert buy(e, 1, 100, 5) == [Accepted(1, 1)]


# ----- rejects: every reason, and nothing changes ---------------------------------------------

REJECTS = [
    ({"op": "fly", "instrument": 1, "id": 5}, "invalid_op"),
    ({"op": "new", "instrument": 1, "id": 5, "side": "buy", "price": "100", "qty": 1}, "bad_field"),
    ({"op": "new", "id": 5, "side": "buy", "price": 100, "qty": 1}, "bad_field"),
    ({"op": "new", "instrument": 1, "id": 5, "side": "long", "price": 100, "qty": 1}, "invalid_side"),
    (
        {
            "op": "new",
            "instrument": 1,
            "id": 5,
            "side": "buy",
            "price": 100,
            "qty": 1,
            "type": "trailing_stop",
        },
        "invalid_type",
    ),
    (
        {"op": "new", "instrument": 1, "id": 5, "side": "buy", "price": 100, "qty": 1, "tif": "GTX"},
        "invalid_tif",
    ),
    (
        {"op": "new", "instrument": 1, "id": 5, "side": "buy", "price": 100, "qty": 1, "stp": "x"},
        "invalid_stp",
    ),
    ({"op": "new", "instrument": 1, "id": 5, "side": "buy", "price": 1 << 63, "qty": 1}, "out_of_range"),
    (
        {"op": "new", "instrument": 1, "id": 5, "side": "buy", "price": MAX_PRICE + 1, "qty": 1},
        "out_of_range",
    ),
    (
        {"op": "new", "instrument": 1, "id": 5, "side": "buy", "price": 100, "qty": MAX_QTY + 1},
        "out_of_range",
    ),
    ({"op": "new", "instrument": 1, "id": -1, "side": "buy", "price": 100, "qty": 1}, "out_of_range"),
    ({"op": "new", "instrument": 1 << 32, "id": 5, "side": "buy", "price": 100, "qty": 1}, "out_of_range"),
    ({"op": "new", "instrument": 1, "id": 0, "side": "buy", "price": 100, "qty": 1}, "invalid_id"),
    ({"op": "new", "instrument": 1, "id": 5, "side": "buy", "price": 100, "qty": 0}, "invalid_qty"),
    ({"op": "new", "instrument": 1, "id": 5, "side": "buy", "price": 100, "qty": -3}, "invalid_qty"),
    ({"op": "new", "instrument": 1, "id": 5, "side": "buy", "price": 0, "qty": 1}, "invalid_price"),
    ({"op": "new", "instrument": 1, "id": 5, "side": "buy", "qty": 1}, "invalid_price"),
    (
        {"op": "new", "instrument": 1, "id": 5, "side": "buy", "price": 100, "qty": 1, "type": "market"},
        "price_on_market",
    ),
    (
        {"op": "new", "instrument": 1, "id": 5, "side": "buy", "price": 100, "qty": 3, "display_qty": 4},
        "invalid_display",
    ),
    (
        {"op": "new", "instrument": 1, "id": 5, "side": "buy", "price": 100, "qty": 3, "display_qty": -1},
        "invalid_display",
    ),
    ({"op": "new", "instrument": 1, "id": 1, "side": "buy", "price": 90, "qty": 3}, "duplicate_id"),
    ({"op": "cancel", "instrument": 1, "id": 0}, "invalid_id"),
    ({"op": "cancel", "instrument": 1, "id": 77}, "unknown_order"),
    ({"op": "replace", "instrument": 1, "id": 1, "qty": -1}, "invalid_qty"),
    ({"op": "replace", "instrument": 1, "id": 1, "price": 0}, "invalid_price"),
    ({"op": "replace", "instrument": 1, "id": 1, "qty": MAX_QTY + 1}, "out_of_range"),
    ({"op": "replace", "instrument": 1, "id": 77, "qty": 5}, "unknown_order"),
    ({"op": "mass_cancel", "account": -4}, "out_of_range"),
    ({"op": "mass_cancel", "account": "all"}, "bad_field"),
]


@pytest.mark.parametrize("cmd, reason", REJECTS, ids=[f"{r}-{i}" for i, (_, r) in enumerate(REJECTS)])
def test_bad_input_is_rejected_and_changes_nothing(e, cmd, reason):
    buy(e, 1, 100, 5)
    sell(e, 2, 101, 5)
    # Everything book_digest() hashes besides the chained digest (which a reject advances):
    # the levels, and each live order's every field (account, stp, display... that depth
    # does not show).
    ids = (1, 2, cmd.get("id"))
    before = (e.depth(1), [e.order(i) if type(i) is int and i > 0 else None for i in ids], e.live_orders)
    digest_before = e.digest
    events = e.apply(cmd)
    assert len(events) == 1 and isinstance(events[0], Rejected)
    assert events[0].reason == reason
    after = (e.depth(1), [e.order(i) if type(i) is int and i > 0 else None for i in ids], e.live_orders)
    assert after == before
    assert e.digest != digest_before  # a reject still advances the chained digest


def test_non_mapping_command_is_rejected(e):
    assert e.apply(["new"]) == [Rejected(0, 0, "invalid_op")]


# ----- digests and snapshots -------------------------------------------------------------------


def _script(e):
    sell(e, 1, 100, 30, display_qty=10, account=1)
    sell(e, 2, 101, 5)
    buy(e, 3, 101, 12, account=2)
    e.replace(instrument=1, id=2, price=102)
    e.cancel(instrument=1, id=99)
    e.submit(instrument=3, id=4, side="buy", price=7, qty=1)


def test_digest_is_the_same_for_the_same_commands(e):
    other = type(e)()
    _script(e)
    _script(other)
    assert e.digest == other.digest and e.book_digest() == other.book_digest()


def test_digest_is_identical_across_engines():
    digests = set()
    for cls in ENGINES:
        engine = cls()
        _script(engine)
        digests.add((engine.digest, engine.book_digest()))
    assert len(digests) == 1


def test_book_digest_sees_a_change_of_state(e):
    _script(e)
    d = e.book_digest()
    e.replace(instrument=1, id=1, qty=1)
    assert e.book_digest() != d


def test_snapshot_restore_continues_identically(e):
    _script(e)
    clone = type(e).restore(e.snapshot())
    clone._check()
    assert clone.book_digest() == e.book_digest() and clone.depth(1) == e.depth(1)
    for engine in (e, clone):
        buy(engine, 10, 102, 50)
    assert clone.digest == e.digest and clone.book_digest() == e.book_digest()


@pytest.mark.parametrize("damage", ["truncate", "flip", "magic"])
def test_damaged_snapshot_is_refused(e, damage):
    _script(e)
    blob = bytearray(e.snapshot())
    if damage == "truncate":
        blob = blob[:-3]
    elif damage == "flip":
        blob[len(blob) // 2 + 8] ^= 0x40
    else:
        blob[0] ^= 0xFF
    with pytest.raises(ValueError):
        type(e).restore(bytes(blob))
