"""Entitlements (``replication.protocol.entitlement``): every rule, for a lone request, a bundle and a packed run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from matching import EVENT_DTYPE, codes, events_from_array
from matching.commands import command_record
from matching.events import Rejected
from replication.protocol import entitlement, wire
from replication.protocol.session import open_command

MINE = frozenset({1, 2})
# Live orders: id -> account (order 10 is account 1's, 20 account 3's); any other id is not live.
LIVE = {10: 1, 20: 3}


def account_of(order_id: int) -> int | None:
    return LIVE.get(order_id)


def cmd(**fields) -> bytes:
    return wire.pack_command(command_record(fields))


def new(id_: int, account: int | None = None, instrument: int = 1) -> bytes:
    d = {"op": "new", "instrument": instrument, "id": id_, "side": "buy", "price": 100, "qty": 1}
    if account is not None:
        d["account"] = account
    return cmd(**d)


def cancel(id_: int) -> bytes:
    return cmd(op="cancel", instrument=1, id=id_)


def replace(id_: int) -> bytes:
    return cmd(op="replace", instrument=1, id=id_, price=101)


def mass_cancel(**fields) -> bytes:
    return cmd(op="mass_cancel", **fields)


ALLOWED = [
    ("new for an account of the key", new(1, 1)),
    ("new for the other account of the key", new(1, 2)),
    ("cancel of an order of an account of the key", cancel(10)),
    ("replace of an order of an account of the key", replace(10)),
    ("cancel of an order that is not live (the engine answers unknown_order)", cancel(99)),
    ("replace of an order that is not live", replace(99)),
    ("mass cancel of an account of the key", mass_cancel(account=1)),
    ("mass cancel of an account of the key on one instrument", mass_cancel(account=2, instrument=1)),
    ("a session open (its account field is a nonce)", open_command(3)),
]
REFUSED = [
    ("new for another account", new(1, 3)),
    ("new with no account (account 0)", new(1)),
    ("cancel of another account's order", cancel(20)),
    ("replace of another account's order", replace(20)),
    ("mass cancel of another account", mass_cancel(account=3)),
    ("mass cancel of every account", mass_cancel()),
    ("mass cancel of every account on one instrument", mass_cancel(instrument=1)),
    ("an op the rules do not know", cmd(op="bogus", instrument=1, id=5, account=1)),
    # The venue's own commands (issue 19): a restricted client may not set the clock, end the
    # day, change an instrument's rules or set risk limits, even on its own account.
    ("a time command", cmd(op="time", ts=10**18)),
    ("an end of day", cmd(op="end_of_day", instrument=1)),
    (
        "an instrument's rules",
        cmd(op="instrument", instrument=1, tick=5, lot=1, min_qty=1, max_qty=100, band=5),
    ),
    ("risk limits on an account of the key", cmd(op="risk", account=1, max_open_qty=10, max_position=10)),
]


@pytest.mark.parametrize(("why", "command"), ALLOWED, ids=[w for w, _ in ALLOWED])
def test_allowed(why, command):
    assert entitlement.entitled(MINE, command, account_of), why
    req = wire.Request(7, 1, command)
    assert entitlement.screen(MINE, req, account_of) == (req, [])


@pytest.mark.parametrize(("why", "command"), REFUSED, ids=[w for w, _ in REFUSED])
def test_refused(why, command):
    assert not entitlement.entitled(MINE, command, account_of), why
    req = wire.Request(7, 1, command)
    allowed, refused = entitlement.screen(MINE, req, account_of)
    assert allowed is None
    assert refused == [entitlement.refusal(req)]


def test_account_zero_is_an_account_like_any_other():
    assert entitlement.entitled(frozenset({0}), new(1), account_of)
    assert not entitlement.entitled(frozenset({0}), new(1, 1), account_of)


def test_the_refusal_is_one_rejected_not_entitled_event_naming_the_command():
    req = wire.Request(7, 5 << 40 | 3, new(42, 3, instrument=9))
    reply = entitlement.refusal(req)
    assert (reply.client_id, reply.request_id, reply.status, reply.seq) == (
        7,
        5 << 40 | 3,
        wire.NOT_ENTITLED,
        0,
    )
    assert wire.STATUS_NAMES[reply.status] == "not_entitled"
    assert events_from_array(np.frombuffer(reply.events, dtype=EVENT_DTYPE)) == [
        Rejected(9, 42, "not_entitled")
    ]
    # It travels: a lone reply and a bundled one decode to the same.
    assert wire.decode(wire.encode(reply)) == reply
    assert wire.decode(wire.encode(wire.Replies((reply, reply)))).replies == (reply, reply)


def test_the_event_struct_is_the_engines_record():
    assert entitlement._EVENT.size == EVENT_DTYPE.itemsize
    rec = np.zeros(1, EVENT_DTYPE)
    rec[0] = (0, 42, 0, 0, 0, 0, 0, 9, codes.EV_REJECTED, codes.R_NOT_ENTITLED)
    assert entitlement.refusal(wire.Request(1, 1, new(42, 3, instrument=9))).events == rec.tobytes()


def test_not_entitled_is_a_new_reason_at_the_end():
    # It was appended after fok_unfilled; issue 19's reasons came after it, so its code stays 18.
    assert codes.REJECT_REASONS[17] == "not_entitled"
    assert codes.REASON_NAMES[codes.R_NOT_ENTITLED] == "not_entitled"
    assert codes.R_NOT_ENTITLED == 18 and len(codes.REJECT_REASONS) < 32  # below the cancel reasons
    assert codes.R_FOK_UNFILLED == 17  # the existing codes did not move


# -- bundles ------------------------------------------------------------------------------------

MIXED = [new(1, 1), new(2, 3), cancel(10), cancel(20), mass_cancel(account=2), mass_cancel(), replace(99)]
MIXED_OK = [True, False, True, False, True, False, True]


def _bundle(commands: list[bytes]) -> tuple[wire.Request, ...]:
    return tuple(wire.Request(7, 100 + i, c) for i, c in enumerate(commands))


def test_a_bundle_keeps_the_allowed_in_order_and_refuses_the_rest_in_order():
    reqs = _bundle(MIXED)
    allowed, refused = entitlement.screen(MINE, wire.Requests(reqs), account_of)
    assert type(allowed) is wire.Requests
    assert allowed.requests == tuple(r for r, ok in zip(reqs, MIXED_OK, strict=True) if ok)
    assert [r.request_id for r in refused] == [
        r.request_id for r, ok in zip(reqs, MIXED_OK, strict=True) if not ok
    ]
    assert all(r.status == wire.NOT_ENTITLED for r in refused)


def test_a_packed_run_gives_the_same_split_and_stays_packed():
    reqs = _bundle(MIXED)
    packed = wire.decode_packed(wire.encode(wire.Requests(reqs)))
    assert isinstance(packed.requests, wire.RequestRun)
    allowed, refused = entitlement.screen(MINE, packed, account_of)
    plain = entitlement.screen(MINE, wire.Requests(reqs), account_of)
    assert isinstance(allowed.requests, wire.RequestRun)
    assert allowed.requests == plain.allowed.requests
    assert refused == plain.refused


@pytest.mark.parametrize("packed", [False, True])
def test_a_bundle_all_allowed_comes_back_as_it_is(packed):
    msg = wire.Requests(_bundle([new(1, 1), cancel(10), mass_cancel(account=1), open_command(9)]))
    if packed:
        msg = wire.decode_packed(wire.encode(msg))
    allowed, refused = entitlement.screen(MINE, msg, account_of)
    assert allowed is msg and refused == []


@pytest.mark.parametrize("packed", [False, True])
def test_a_bundle_all_refused_hands_nothing_on(packed):
    reqs = _bundle([new(1, 3), cancel(20), mass_cancel()])
    msg = wire.Requests(reqs)
    if packed:
        msg = wire.decode_packed(wire.encode(msg))
    allowed, refused = entitlement.screen(MINE, msg, account_of)
    assert allowed is None
    assert refused == [entitlement.refusal(r) for r in reqs]


def test_a_packed_run_asks_account_of_only_for_cancels_and_replaces():
    asked: list[int] = []

    def spy(order_id: int) -> int | None:
        asked.append(order_id)
        return LIVE.get(order_id)

    msg = wire.decode_packed(wire.encode(wire.Requests(_bundle(MIXED))))
    entitlement.screen(MINE, msg, spy)
    assert asked == [10, 20, 99]


@pytest.mark.parametrize(
    "accounts", [{1}, {0, 2**64 - 1}, set(range(40)) | {2**64 - 1}], ids=["one", "extremes", "many"]
)
def test_a_packed_run_agrees_with_the_rule_request_by_request(accounts):
    accounts = frozenset(accounts)
    commands = [new(1, a) for a in (0, 1, 2, 39, 40, 2**64 - 1, 2**64 - 2)]
    commands += [mass_cancel(account=a) for a in (0, 1, 2**64 - 1)] + [mass_cancel()]
    commands += [cancel(10), cancel(20), replace(10), replace(99)]
    reqs = _bundle(commands)
    want = [r for r in reqs if entitlement.entitled(accounts, r.command, account_of)]
    allowed, refused = entitlement.screen(
        accounts, wire.decode_packed(wire.encode(wire.Requests(reqs))), account_of
    )
    assert (list(allowed.requests) if allowed else []) == want
    assert [r.request_id for r in refused] == [r.request_id for r in reqs if r not in want]


# -- queries ------------------------------------------------------------------------------------

# Orders a query can tell about (live or recently ended): id -> account.
KNOWN = {10: 1, 20: 3, 30: 3}


def query(kind: int, **fields) -> wire.Query:
    return wire.Query(7, 1, 5, kind, **fields)


QUERIES_ALLOWED = [
    ("the client's own open orders", query(wire.QUERY_OPEN_ORDERS)),
    ("the open orders of an account of the key", query(wire.QUERY_OPEN_ORDERS, account=2, has_account=True)),
    ("an order of an account of the key", query(wire.QUERY_ORDER, instrument=1, order_id=10)),
    (
        "an order the group does not know (answered unknown)",
        query(wire.QUERY_ORDER, instrument=1, order_id=99),
    ),
    ("a query of a kind the node ignores", query(99, order_id=20)),
]
QUERIES_REFUSED = [
    ("the open orders of another account", query(wire.QUERY_OPEN_ORDERS, account=3, has_account=True)),
    ("the open orders of account 0", query(wire.QUERY_OPEN_ORDERS, account=0, has_account=True)),
    ("another account's order", query(wire.QUERY_ORDER, instrument=1, order_id=20)),
    ("another account's ended order", query(wire.QUERY_ORDER, instrument=2, order_id=30)),
]


@pytest.mark.parametrize(("why", "q"), QUERIES_ALLOWED, ids=[w for w, _ in QUERIES_ALLOWED])
def test_query_allowed(why, q):
    assert entitlement.screen_query(MINE, q, KNOWN.get) is None, why


@pytest.mark.parametrize(("why", "q"), QUERIES_REFUSED, ids=[w for w, _ in QUERIES_REFUSED])
def test_query_refused(why, q):
    answer = entitlement.screen_query(MINE, q, KNOWN.get)
    assert (answer.client_id, answer.query_id, answer.status) == (7, 5, wire.NOT_ENTITLED), why
    body = json.loads(answer.body)
    assert body["status"] == "not_entitled"
    assert wire.decode(wire.encode(answer)) == answer


# -- the check again when sequenced: a cancel sent before its target's new was sequenced ----------


@pytest.mark.parametrize("victim_first", [True, False])
def test_a_cancel_of_an_order_not_yet_sequenced_is_checked_again_when_it_is(victim_first):
    """An attacker restricted to account 1 cancels order 50 before the victim's new(50, account 2)
    is sequenced: screened, the order is unknown (let through, deferred); sequenced after the
    victim's new, it is refused then and never sequenced; sequenced before it, the engine
    answers unknown_order. Either way the victim's order stays live."""
    from _net import group

    net = group()
    net.run(0.05)
    a = net.machines["a"]
    attacker, victim = frozenset({1}), 8
    cancel_req = wire.Request(9, 1, cancel(50))
    new_req = wire.Request(victim, 1, new(50, account=2))
    allowed, refused = entitlement.screen(attacker, cancel_req, a.replica.order_account)
    assert allowed == cancel_req and refused == []
    deferred = entitlement.unknown_targets(allowed, a.replica.order_account)
    assert deferred == [(9, 1)]
    a.defer_entitlement(deferred, attacker)
    first, second = (
        ((b"v", new_req), (b"x", cancel_req)) if victim_first else ((b"x", cancel_req), (b"v", new_req))
    )
    out = a.handle(first[0], first[1], net.now) + a.handle(second[0], second[1], net.now)
    assert out == []
    out = a.tick(net.now + 0.001)
    refusals = [o.msg for o in out if type(o) is wire.Send and type(o.msg) is wire.Reply]
    journal = net.journals["a"].read(1)
    sequenced = [(e.client_id, e.request_id) for e in journal]
    if victim_first:
        assert [(r.client_id, r.status) for r in refusals] == [(9, wire.NOT_ENTITLED)]
        assert (9, 1) not in sequenced and a.counters["refused_not_entitled"] == 1
    else:
        assert (9, 1) in sequenced  # sequenced first: nothing to cancel yet
    assert (victim, 1) in sequenced
    assert a.replica.order_account(50) == 2  # the victim's order is live
    assert a.entitlement_checks == {}
