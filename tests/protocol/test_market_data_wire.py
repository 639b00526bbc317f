"""The wire form of market-data updates and snapshots: exact round trips, and nothing else decodes.

Updates and snapshots come from real flows (``tests/strategies.py`` through
an engine and a ``BookFeed``); every one must decode to itself. Any 64
bytes either fail with ``DecodeError`` or decode to an update that encodes
back to the very same bytes; each malformed field is refused by name.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from matching import BboUpdate, BookFeed, BookSnapshot, LevelUpdate, ReferenceEngine, TradeUpdate
from replication.protocol.fields import DecodeError
from replication.protocol.market_data import (
    SNAPSHOT_HEAD,
    UPDATE,
    UPDATE_SIZE,
    decode_snapshot,
    decode_update,
    decode_updates,
    encode_snapshot,
    encode_update,
    encode_updates,
)
from tests.strategies import INSTRUMENTS, command_lists


def _flow(cmds):
    engine, feed = ReferenceEngine(), BookFeed()
    updates = []
    for seq, cmd in enumerate(cmds, start=1):
        updates += feed.apply(seq, cmd, engine.apply(cmd))
    return feed, updates


def test_record_layout_is_64_aligned_bytes():
    assert UPDATE.size == UPDATE_SIZE == 64
    assert SNAPSHOT_HEAD.size == 40
    u = LevelUpdate(7, 3, 9, "sell", 101, 5, 2, 0xDEADBEEF)
    b = encode_update(u)
    assert b[0] == 1 and b[1] == 1 and b[4:8] == (3).to_bytes(4, "little")
    assert b[8:16] == (7).to_bytes(8, "little") and b[16:24] == (9).to_bytes(8, "little")
    assert b[24:48] == struct.pack("<qqq", 101, 5, 2) and b[56:60] == (0xDEADBEEF).to_bytes(4, "little")


@given(command_lists())
def test_every_update_and_snapshot_of_a_flow_round_trips(cmds):
    feed, updates = _flow(cmds)
    blob = encode_updates(updates)
    assert len(blob) == UPDATE_SIZE * len(updates)
    assert decode_updates(blob, max_updates=len(updates)) == updates
    for u in updates:
        assert decode_update(encode_update(u)) == u
    for ins in INSTRUMENTS:
        snap = feed.snapshot(ins)
        assert decode_snapshot(encode_snapshot(snap), max_levels=1000) == snap


@given(st.binary(min_size=UPDATE_SIZE, max_size=UPDATE_SIZE))
def test_any_64_bytes_decode_to_themselves_or_are_refused(raw):
    try:
        u = decode_update(raw)
    except DecodeError as e:
        assert e.reason == "bad_market_data"
        return
    assert encode_update(u) == raw


@given(
    st.sampled_from((1, 2, 3)),
    st.integers(0, 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(1, 2**64 - 1),
    st.integers(1, 2**62),
    st.integers(1, 10**12),
    st.integers(0, 2**32 - 1),
)
def test_well_formed_records_decode(kind, side, instrument, seq, iseq, price, qty, checksum):
    c, d = (1, 0) if kind == 1 else (0, 0)
    if kind == 3:  # a bbo: no side; the ask one tick above the bid
        side = 0
        price = min(price, 2**62 - 1)
        c, d = price + 1, qty
    raw = UPDATE.pack(kind, side, 0, instrument, seq, iseq, price, qty, c, d, checksum, 0)
    u = decode_update(raw)
    assert encode_update(u) == raw
    assert type(u) is {1: LevelUpdate, 2: TradeUpdate, 3: BboUpdate}[kind]


GOOD = (1, 0, 0, 1, 5, 6, 100, 10, 2, 0, 77, 0)  # a level: buy 100, qty 10, 2 orders


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (0, 0),  # kind
        (0, 4),
        (1, 2),  # side
        (2, 1),  # reserved
        (11, 1),  # reserved
        (5, 0),  # instrument_seq
        (6, 0),  # price
        (6, -1),
        (6, 2**62 + 1),
        (7, -1),  # qty
        (7, 0),  # qty 0 with orders 2
        (8, 0),  # orders 0 with qty 10
        (8, -1),
        (9, 1),  # d of a level
    ],
)
def test_each_impossible_field_is_refused(field, value):
    rec = list(GOOD)
    rec[field] = value
    with pytest.raises(DecodeError, match="bad_market_data"):
        decode_update(UPDATE.pack(*rec))


def test_impossible_trades_and_bbos_and_bad_runs_are_refused():
    bad = [
        (2, 0, 0, 1, 1, 1, 100, 0, 0, 0, 0, 0),  # trade qty 0
        (2, 0, 0, 1, 1, 1, 100, 5, 1, 0, 0, 0),  # trade with c
        (3, 1, 0, 1, 1, 1, 100, 5, 101, 5, 0, 0),  # bbo with a side
        (3, 0, 0, 1, 1, 1, 100, 0, 101, 5, 0, 0),  # bid price with qty 0
        (3, 0, 0, 1, 1, 1, 0, 5, 101, 5, 0, 0),  # no bid price with a qty
    ]
    for rec in bad:
        with pytest.raises(DecodeError):
            decode_update(UPDATE.pack(*rec))
    good = UPDATE.pack(*GOOD)
    for blob in (good[:-1], good + b"\0"):
        with pytest.raises(DecodeError):
            decode_update(blob)
    with pytest.raises(DecodeError):
        decode_updates(good * 2 + b"\0", max_updates=10)
    with pytest.raises(DecodeError):
        decode_updates(good * 3, max_updates=2)
    assert decode_updates(b"", max_updates=0) == []
    with pytest.raises(TypeError):
        encode_update(("level", 1))  # type: ignore[arg-type]


def test_malformed_snapshots_are_refused():
    snap = BookSnapshot(1, 9, 4, [(101, 5, 1), (100, 30, 2)], [(103, 5, 1)], 123)
    blob = encode_snapshot(snap)
    assert decode_snapshot(blob, max_levels=2) == snap
    with pytest.raises(DecodeError):
        decode_snapshot(blob, max_levels=1)  # deeper than allowed
    for cut in (blob[:10], blob[:-1], blob + b"\0"):
        with pytest.raises(DecodeError):
            decode_snapshot(cut, max_levels=10)
    for bids, asks in (
        ([(100, 30, 2), (101, 5, 1)], [(103, 5, 1)]),  # bids not best first
        ([(101, 5, 1), (101, 5, 1)], [(103, 5, 1)]),  # a level twice
        ([(101, 5, 1)], [(104, 5, 1), (103, 5, 1)]),  # asks not best first
        ([(103, 5, 1)], [(103, 5, 1)]),  # crossed
        ([(101, 0, 0)], []),  # an empty level
        ([(0, 5, 1)], []),  # no price
    ):
        with pytest.raises(DecodeError):
            decode_snapshot(encode_snapshot(snap._replace(bids=bids, asks=asks)), max_levels=10)
    head = bytearray(blob)
    head[16] = 1  # the reserved word
    with pytest.raises(DecodeError):
        decode_snapshot(bytes(head), max_levels=10)
