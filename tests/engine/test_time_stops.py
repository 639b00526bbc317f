"""One test per rule of time, expiry and stops (docs/semantics.md), run against both engines.

Each test states a rule in a few commands and checks the exact events, on
the reference engine and on the Cython core alike.
"""

from __future__ import annotations

import struct
import zlib

import pytest

import matching
from matching import Accepted, Cancelled, ReferenceEngine, Rejected, Replaced, Trade, Triggered

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


def stop(e, id, side, stop_price, qty, price=None, **kw):
    kind = "stop" if price is None else "stop_limit"
    return e.submit(
        instrument=1, id=id, side=side, type=kind, stop_price=stop_price, price=price, qty=qty, **kw
    )


# ----- time and expiry ------------------------------------------------------------------


def test_gtd_expires_before_the_events_of_the_command_whose_ts_reaches_it(e):
    assert buy(e, 1, 100, 5, tif="GTD", expire_ts=50, ts=10) == [Accepted(1, 1)]
    assert sell(e, 2, 100, 5, ts=49)[1:] == [Trade(1, 2, 1, 100, 5, 0, 0)]
    buy(e, 3, 100, 5, tif="GTD", expire_ts=60, ts=50)
    # ts 60 reaches expire_ts 60: the order is gone before the sell can trade with it.
    assert sell(e, 4, 100, 5, ts=60) == [Cancelled(1, 3, 5, "expired"), Accepted(1, 4)]
    assert e.depth(1) == ([], [(100, 5, 1)])


def test_a_time_command_expires_and_does_nothing_else(e):
    buy(e, 1, 100, 5, tif="GTD", expire_ts=20, ts=1)
    assert e.apply({"op": "time", "ts": 19}) == []
    assert e.apply({"op": "time", "ts": 25}) == [Cancelled(1, 1, 5, "expired")]
    assert e.order(1) is None


def test_expiries_come_by_expire_ts_then_acceptance_order(e):
    buy(e, 1, 100, 1, tif="GTD", expire_ts=30, ts=1)
    buy(e, 2, 99, 1, tif="GTD", expire_ts=20, ts=1)
    buy(e, 3, 98, 1, tif="GTD", expire_ts=30, ts=1)
    stop(e, 4, "sell", 90, 1, tif="GTD", expire_ts=20, ts=1)
    assert e.apply({"op": "time", "ts": 100}) == [
        Cancelled(1, 2, 1, "expired"),
        Cancelled(1, 4, 1, "expired"),
        Cancelled(1, 1, 1, "expired"),
        Cancelled(1, 3, 1, "expired"),
    ]


def test_time_never_goes_back(e):
    e.apply({"op": "time", "ts": 100})
    # A command stamped earlier does not move the clock back: expire_ts 50 is already past.
    assert buy(e, 1, 100, 5, tif="GTD", expire_ts=50, ts=10) == [Rejected(1, 1, "invalid_expiry")]
    assert e.now == 100


def test_day_orders_end_at_end_of_day_of_their_instrument_in_acceptance_order(e):
    buy(e, 1, 100, 5, tif="DAY")
    e.submit(instrument=2, id=2, side="buy", price=100, qty=5, tif="DAY")
    stop(e, 3, "buy", 105, 2, tif="DAY")
    sell(e, 4, 101, 5, tif="DAY")
    buy(e, 5, 99, 5)  # GTC: stays
    assert e.apply({"op": "end_of_day", "instrument": 1}) == [
        Cancelled(1, 1, 5, "expired"),
        Cancelled(1, 3, 2, "expired"),
        Cancelled(1, 4, 5, "expired"),
    ]
    assert e.depth(1) == ([(99, 5, 1)], []) and e.depth(2) == ([(100, 5, 1)], [])
    assert e.apply({"op": "end_of_day", "instrument": 9}) == []


@pytest.mark.parametrize(
    "kw",
    [
        {"tif": "GTD"},  # no expire_ts
        {"tif": "GTD", "expire_ts": 5, "ts": 5},  # already due
        {"tif": "GTC", "expire_ts": 50},  # expire_ts without GTD
        {"tif": "DAY", "expire_ts": 50},
    ],
)
def test_invalid_expiry(e, kw):
    assert buy(e, 1, 100, 5, **kw) == [Rejected(1, 1, "invalid_expiry")]


def test_a_replaced_gtd_order_keeps_its_expiry(e):
    buy(e, 1, 100, 5, tif="GTD", expire_ts=40, ts=1)
    assert e.replace(1, 1, price=101, qty=7) == [Replaced(1, 1, 101, 7)]
    assert e.order(1)["tif"] == "GTD" and e.order(1)["expire_ts"] == 40
    assert e.apply({"op": "time", "ts": 40}) == [Cancelled(1, 1, 7, "expired")]


def test_an_order_filled_before_its_expiry_leaves_nothing_to_expire(e):
    buy(e, 1, 100, 5, tif="GTD", expire_ts=40, ts=1)
    sell(e, 2, 100, 5, ts=2)
    buy(e, 1, 100, 3, ts=3)  # the id again, GTC: the old expiry must not touch it
    assert e.apply({"op": "time", "ts": 50}) == []
    assert e.order(1)["open"] == 3


# ----- stops ----------------------------------------------------------------------------


def test_a_buy_stop_triggers_on_a_print_at_or_above_its_stop_price(e):
    sell(e, 1, 100, 5)
    sell(e, 2, 101, 5)
    assert stop(e, 3, "buy", 101, 2) == [Accepted(1, 3)]
    assert e.depth(1) == ([], [(100, 5, 1), (101, 5, 1)]) and e.waiting_stops == 1
    assert buy(e, 4, 100, 1)[1:] == [Trade(1, 4, 1, 100, 1, 0, 4)]  # 100 < 101: waits
    assert buy(e, 5, 101, 5)[1:] == [
        Trade(1, 5, 1, 100, 4, 1, 0),
        Trade(1, 5, 2, 101, 1, 0, 4),
        Triggered(1, 3, 101, 2),
        Trade(1, 3, 2, 101, 2, 0, 2),
    ]
    assert e.waiting_stops == 0


def test_a_sell_stop_triggers_at_or_below_and_its_market_remainder_is_cancelled(e):
    buy(e, 1, 100, 3)
    stop(e, 2, "sell", 100, 5)
    assert sell(e, 3, 100, 1)[1:] == [
        Trade(1, 3, 1, 100, 1, 0, 2),
        Triggered(1, 2, 100, 5),
        Trade(1, 2, 1, 100, 2, 3, 0),
        Cancelled(1, 2, 3, "remainder"),
    ]


def test_a_triggered_stop_limit_rests_at_its_limit(e):
    sell(e, 1, 100, 1)
    sell(e, 2, 103, 5)
    stop(e, 3, "buy", 100, 4, price=101)
    assert buy(e, 4, 100, 1)[1:] == [Trade(1, 4, 1, 100, 1, 0, 0), Triggered(1, 3, 100, 4)]
    assert e.depth(1) == ([(101, 4, 1)], [(103, 5, 1)])
    assert e.order(3)["type"] == "limit"


def test_triggered_stops_enter_in_acceptance_order(e):
    sell(e, 1, 100, 1)
    sell(e, 2, 105, 10)
    stop(e, 3, "buy", 100, 1)  # accepted first, further from the print
    stop(e, 4, "buy", 99, 1)
    assert [ev for ev in buy(e, 5, 100, 1) if type(ev) is Triggered] == [
        Triggered(1, 3, 100, 1),
        Triggered(1, 4, 99, 1),
    ]


def test_a_cascade_triggered_stops_prints_trigger_more(e):
    sell(e, 1, 100, 1)
    sell(e, 2, 102, 1)
    sell(e, 3, 104, 5)
    stop(e, 4, "buy", 102, 1)  # reached only by stop 5's print at 102
    stop(e, 5, "buy", 100, 1)
    assert buy(e, 6, 100, 1)[1:] == [
        Trade(1, 6, 1, 100, 1, 0, 0),
        Triggered(1, 5, 100, 1),
        Trade(1, 5, 2, 102, 1, 0, 0),
        Triggered(1, 4, 102, 1),
        Trade(1, 4, 3, 104, 1, 0, 4),
    ]


def test_a_waiting_stop_is_cancelled_and_replaced(e):
    stop(e, 1, "sell", 95, 5, price=94)
    assert e.order(1) | {} == {
        "instrument": 1,
        "side": "sell",
        "price": 94,
        "open": 5,
        "visible": 0,
        "display_qty": 0,
        "account": 0,
        "stp": "none",
        "post_only": False,
        "type": "stop_limit",
        "stop_price": 95,
        "triggered": False,
        "tif": "GTC",
        "expire_ts": 0,
    }
    assert e.replace(1, 1, stop_price=96, qty=4) == [Replaced(1, 1, 94, 4)]
    assert e.order(1)["stop_price"] == 96 and e.order(1)["open"] == 4
    assert e.cancel(1, 1) == [Cancelled(1, 1, 4, "user")]
    assert e.order(1) is None and e.waiting_stops == 0


def test_a_replaced_stop_goes_behind_in_trigger_order_unless_it_only_shrinks(e):
    sell(e, 1, 100, 1)
    sell(e, 2, 105, 10)
    stop(e, 3, "buy", 100, 2)
    stop(e, 4, "buy", 100, 1)
    stop(e, 5, "buy", 100, 1)
    e.replace(1, 3, qty=1)  # keeps its place
    e.replace(1, 4, stop_price=99)  # goes behind 5
    got = [ev.id for ev in buy(e, 6, 100, 1) if type(ev) is Triggered]
    assert got == [3, 5, 4]


@pytest.mark.parametrize(
    "kw, reason",
    [
        ({"type": "stop", "qty": 1}, "invalid_stop"),  # no stop_price
        ({"type": "stop", "qty": 1, "stop_price": 0}, "invalid_stop"),
        ({"type": "limit", "price": 100, "qty": 1, "stop_price": 100}, "invalid_stop"),
        ({"type": "stop", "price": 100, "qty": 1, "stop_price": 100}, "price_on_market"),
        ({"type": "stop_limit", "qty": 1, "stop_price": 100}, "invalid_price"),
        (
            {"type": "stop_limit", "price": 100, "qty": 1, "stop_price": 100, "tif": "FOK"},
            "invalid_combination",
        ),
        (
            {"type": "stop_limit", "price": 100, "qty": 1, "stop_price": 100, "post_only": True},
            "invalid_combination",
        ),
        ({"type": "stop", "qty": 1, "stop_price": (1 << 62) + 1}, "out_of_range"),
    ],
)
def test_bad_stops_are_rejected(e, kw, reason):
    assert e.submit(instrument=1, id=1, side="buy", **kw) == [Rejected(1, 1, reason)]
    assert e.waiting_stops == 0


def test_replace_rejects_for_stops(e):
    stop(e, 1, "buy", 105, 1)
    buy(e, 2, 90, 1)
    assert e.replace(1, 1, price=100) == [Rejected(1, 1, "price_on_market")]  # a stop has no limit
    assert e.replace(1, 1, stop_price=0) == [Rejected(1, 1, "invalid_stop")]
    assert e.replace(1, 2, stop_price=80) == [Rejected(1, 2, "invalid_stop")]  # a resting order has none


def test_a_waiting_stop_holds_its_id(e):
    stop(e, 1, "buy", 105, 1)
    assert buy(e, 1, 90, 1) == [Rejected(1, 1, "duplicate_id")]
    assert e.cancel(2, 1) == [Rejected(2, 1, "unknown_order")]  # another instrument's id


def test_mass_cancel_takes_waiting_stops_after_the_books_orders(e):
    stop(e, 1, "buy", 105, 1, account=3)
    buy(e, 2, 90, 2, account=3)
    stop(e, 3, "sell", 80, 4, account=4)
    assert e.mass_cancel(account=3) == [Cancelled(1, 2, 2, "mass_cancel"), Cancelled(1, 1, 1, "mass_cancel")]
    assert e.waiting_stops == 1


def test_stops_are_not_in_depth_or_bbo(e):
    stop(e, 1, "buy", 105, 1, price=104)
    buy(e, 2, 90, 2)
    sell(e, 3, 110, 3)
    assert e.bbo(1) == (90, 2, 110, 3)
    assert e.bbo(2) == (0, 0, 0, 0)
    assert e.depth(1) == ([(90, 2, 1)], [(110, 3, 1)])


def test_a_self_trade_cancelled_triggered_stop(e):
    buy(e, 1, 100, 5, account=7)
    stop(e, 2, "sell", 100, 3, account=7, stp="cancel_taker")
    assert sell(e, 3, 100, 1)[1:] == [
        Trade(1, 3, 1, 100, 1, 0, 4),
        Triggered(1, 2, 100, 3),
        Cancelled(1, 2, 3, "self_trade"),
    ]


# ----- snapshots ------------------------------------------------------------------------


def test_a_snapshot_keeps_stops_time_and_expiries(e):
    sell(e, 1, 100, 1)
    sell(e, 2, 102, 5)
    stop(e, 3, "buy", 100, 2, price=101, tif="GTD", expire_ts=70, ts=5)
    buy(e, 4, 90, 1, tif="DAY")
    buy(e, 5, 91, 1, tif="GTD", expire_ts=60)
    again = type(e).restore(e.snapshot())
    again._check()
    assert again.book_digest() == e.book_digest()
    for engine in (e, again):
        assert buy(engine, 6, 100, 1, ts=6)[1:] == [Trade(1, 6, 1, 100, 1, 0, 0), Triggered(1, 3, 100, 2)]
        assert engine.apply({"op": "time", "ts": 65}) == [Cancelled(1, 5, 1, "expired")]
        assert engine.apply({"op": "end_of_day", "instrument": 1}) == [Cancelled(1, 4, 1, "expired")]
        assert engine.apply({"op": "time", "ts": 70}) == [Cancelled(1, 3, 2, "expired")]
    assert again.digest == e.digest


@pytest.mark.skipif(matching.Engine is None, reason="extension not built")
def test_a_version_1_snapshot_still_restores_and_a_future_one_is_refused():
    e = matching.Engine()
    buy(e, 1, 100, 5)
    sell(e, 2, 101, 3)
    blob = e.snapshot()
    # The version-1 form of the same state: no time section (24 bytes when nothing is timed).
    payload = blob[24:-24]
    v1 = b"MCENGINE" + struct.pack("<IIQ", 1, zlib.crc32(payload), len(payload)) + payload
    old = matching.Engine.restore(v1)
    assert old.book_digest() == e.book_digest() and old.depth(1) == e.depth(1)
    v3 = b"MCENGINE" + struct.pack("<IIQ", 3, zlib.crc32(payload), len(payload)) + payload
    with pytest.raises(ValueError, match="unsupported snapshot version 3"):
        matching.Engine.restore(v3)


def test_a_version_1_reference_snapshot_still_restores():
    e = ReferenceEngine()
    buy(e, 1, 100, 5)
    body = b'{"digest":5,"commands_applied":1,"books":[[1,[[1,0,100,5,5,0,0,0,0]]]]}'
    v1 = (
        b"MCREF"
        + bytes([1])
        + zlib.crc32(body).to_bytes(4, "little")
        + len(body).to_bytes(8, "little")
        + body
    )
    old = ReferenceEngine.restore(v1)
    assert old.depth(1) == e.depth(1) and old.order(1)["tif"] == "GTC"


# ----- instrument rules -----------------------------------------------------------------


def rules(e, **kw):
    return e.apply({"op": "instrument", "instrument": 1, **kw})


@pytest.mark.parametrize(
    "rule, order, reason",
    [
        ({"tick": 5}, {"price": 102, "qty": 1}, "bad_tick"),
        ({"tick": 5}, {"type": "stop", "stop_price": 103, "qty": 1}, "bad_tick"),
        ({"lot": 10}, {"price": 100, "qty": 15}, "bad_lot"),
        ({"min_qty": 5}, {"price": 100, "qty": 4}, "qty_limit"),
        ({"max_qty": 50}, {"price": 100, "qty": 51}, "qty_limit"),
        ({"band": 2, "ref_price": 100}, {"price": 103, "qty": 1}, "price_band"),
        ({"band": 2, "ref_price": 100, "tick": 5}, {"price": 115, "qty": 1}, "price_band"),
    ],
)
def test_an_order_breaking_an_instrument_rule_is_rejected(e, rule, order, reason):
    assert rules(e, **rule) == []
    assert e.submit(instrument=1, id=1, side="buy", **order) == [Rejected(1, 1, reason)]
    # Another instrument has no rules.
    assert e.submit(instrument=2, id=1, side="buy", **order)[0] == Accepted(2, 1)


def test_orders_within_the_rules_are_accepted(e):
    rules(e, tick=5, lot=10, min_qty=10, max_qty=100, band=2, ref_price=100)
    assert buy(e, 1, 110, 20) == [Accepted(1, 1)]
    assert buy(e, 2, 90, 100) == [Accepted(1, 2)]


def test_the_band_follows_the_last_print(e):
    rules(e, band=2, ref_price=100)
    sell(e, 1, 102, 1)
    buy(e, 2, 102, 1)  # prints at 102: the band is now 100 .. 104
    assert buy(e, 3, 104, 1) == [Accepted(1, 3)]
    assert sell(e, 4, 99, 1) == [Rejected(1, 4, "price_band")]


def test_a_replace_breaking_a_rule_is_rejected_and_changes_nothing(e):
    buy(e, 1, 100, 10)
    stop(e, 2, "sell", 90, 10)
    rules(e, tick=5, lot=5)
    assert e.replace(1, 1, price=101) == [Rejected(1, 1, "bad_tick")]
    assert e.replace(1, 1, qty=7) == [Rejected(1, 1, "bad_lot")]
    assert e.replace(1, 2, stop_price=91) == [Rejected(1, 2, "bad_tick")]
    assert e.replace(1, 1, qty=0) == [Cancelled(1, 1, 10, "user")]  # a cancel is never refused
    assert e.order(2)["stop_price"] == 90


def test_a_bad_instrument_command_is_rejected(e):
    assert rules(e, tick=-1) == [Rejected(1, 0, "out_of_range")]
    assert e.apply({"op": "instrument", "instrument": 1, "tik": 5}) == [Rejected(1, 0, "bad_field")]


# ----- per-account risk -------------------------------------------------------------------


def risk(e, account, **kw):
    return e.apply({"op": "risk", "account": account, **kw})


def test_max_open_qty_counts_resting_orders_and_waiting_stops(e):
    buy(e, 1, 90, 10, account=3)  # before the limits: counted too
    assert risk(e, 3, max_open_qty=30) == []
    stop(e, 2, "sell", 80, 10, account=3)
    assert buy(e, 3, 91, 11, account=3) == [Rejected(1, 3, "risk_limit")]
    assert buy(e, 3, 91, 10, account=3) == [Accepted(1, 3)]
    assert buy(e, 4, 91, 10, account=4) == [Accepted(1, 4)]  # another account: no limit
    e.cancel(1, 1)
    assert buy(e, 5, 91, 10, account=3) == [Accepted(1, 5)]


def test_a_filled_order_frees_its_open_qty(e):
    risk(e, 3, max_open_qty=10)
    buy(e, 1, 100, 10, account=3)
    sell(e, 2, 100, 4)
    assert buy(e, 3, 100, 5, account=3) == [Rejected(1, 3, "risk_limit")]
    assert buy(e, 3, 99, 4, account=3) == [Accepted(1, 3)]


def test_max_position_counts_fills_per_instrument(e):
    risk(e, 3, max_position=10)
    sell(e, 1, 100, 20)
    buy(e, 2, 100, 8, account=3)  # position +8
    assert buy(e, 3, 100, 3, account=3) == [Rejected(1, 3, "risk_limit")]  # could reach 11
    assert sell(e, 4, 120, 18, account=3) == [Accepted(1, 4)]  # could reach -10
    assert sell(e, 5, 120, 19, account=3) == [Rejected(1, 5, "risk_limit")]  # could reach -11
    # Another instrument has its own position.
    assert e.submit(instrument=2, id=6, side="buy", price=100, qty=10, account=3) == [Accepted(2, 6)]


def test_a_replace_raising_the_qty_is_checked(e):
    risk(e, 3, max_open_qty=10)
    buy(e, 1, 90, 5, account=3)
    stop(e, 2, "buy", 120, 3, account=3)
    assert e.replace(1, 1, qty=8) == [Rejected(1, 1, "risk_limit")]
    assert e.replace(1, 2, qty=6) == [Rejected(1, 2, "risk_limit")]
    assert e.replace(1, 1, qty=7) == [Replaced(1, 1, 90, 7)]
    assert e.replace(1, 1, qty=2) == [Replaced(1, 1, 90, 2)]  # lowering is never refused


def test_a_bad_risk_command_is_rejected(e):
    assert risk(e, 3, max_open_qty=-1) == [Rejected(0, 0, "out_of_range")]
    assert e.apply({"op": "risk", "account": 3, "max_open": 5}) == [Rejected(0, 0, "bad_field")]


def test_risk_limits_and_positions_survive_a_snapshot(e):
    risk(e, 3, max_open_qty=50, max_position=10)
    sell(e, 1, 100, 20)
    buy(e, 2, 100, 8, account=3)
    again = type(e).restore(e.snapshot())
    again._check()
    assert again.book_digest() == e.book_digest()
    for engine in (e, again):
        assert buy(engine, 3, 100, 3, account=3) == [Rejected(1, 3, "risk_limit")]
