"""The wire form of the public market-data feed: one fixed 64-byte record per update, and snapshots.

For: packing ``matching.market_data`` updates (``LevelUpdate``,
``TradeUpdate``, ``BboUpdate``) into compact fixed-size records and back
(``encode_update`` / ``decode_update``, and runs of them: ``encode_updates`` /
``decode_updates``), and a ``BookSnapshot`` into a header plus one 24-byte
record per level (``encode_snapshot`` / ``decode_snapshot``). Decoding trusts
nothing: a wrong length, an unknown kind or side, a non-zero reserved field
or a value no engine could produce is a ``DecodeError`` (reason
``bad_market_data``), never an exception of another type.

Not for: publishing (sockets, queues, conflation) or choosing what to send;
no existing message changes. Sans-IO, deterministic.

Update record (little-endian, 64 bytes, every field aligned)::

    offset size field
         0    1 kind            1 level, 2 trade, 3 bbo
         1    1 side            level: 0 buy (bid) / 1 sell (ask); trade: the aggressor's; bbo: 0
         2    2 reserved        0
         4    4 instrument      uint32
         8    8 seq             uint64, the group seq
        16    8 instrument_seq  uint64, >= 1
        24    8 a               level, trade: price; bbo: bid_price
        32    8 b               level, trade: qty; bbo: bid_qty
        40    8 c               level: orders; trade: 0; bbo: ask_price
        48    8 d               level, trade: 0; bbo: ask_qty
        56    4 checksum        uint32 (docs/semantics.md "The checksum")
        60    4 reserved        0

Snapshot: a 40-byte header (instrument u32, bid levels u32, ask levels u32,
checksum u32, reserved u64 = 0, seq u64, instrument_seq u64) then each level
as price, qty, orders (three int64), bids best first then asks best first.
"""

from __future__ import annotations

import struct

from matching.codes import MAX_PRICE, MAX_QTY
from matching.market_data import (
    SIDE_CODES,
    SIDE_NAMES,
    BboUpdate,
    BookSnapshot,
    LevelUpdate,
    TradeUpdate,
    Update,
)

from .fields import DecodeError

UPDATE = struct.Struct("<BBHIQQqqqqII")
UPDATE_SIZE = UPDATE.size  # 64
KIND_LEVEL, KIND_TRADE, KIND_BBO = 1, 2, 3
SNAPSHOT_HEAD = struct.Struct("<IIIIQQQ")
SNAPSHOT_LEVEL = struct.Struct("<qqq")
MAX_ORDERS = 1 << 32  # an order count no engine reaches (its level counts are int32)
UINT64_MAX = (1 << 64) - 1


def _bad(detail: str) -> DecodeError:
    return DecodeError("bad_market_data", detail)


def encode_update(u: Update) -> bytes:
    """The 64-byte record of one update. O(1)."""
    if isinstance(u, LevelUpdate):
        a, b, c, d = u.price, u.qty, u.orders, 0
        kind, side = KIND_LEVEL, SIDE_CODES[u.side]
    elif isinstance(u, TradeUpdate):
        a, b, c, d = u.price, u.qty, 0, 0
        kind, side = KIND_TRADE, SIDE_CODES[u.aggressor]
    elif isinstance(u, BboUpdate):
        a, b, c, d = u.bid_price, u.bid_qty, u.ask_price, u.ask_qty
        kind, side = KIND_BBO, 0
    else:
        raise TypeError(f"not a market-data update: {u!r}")
    return UPDATE.pack(kind, side, 0, u.instrument, u.seq, u.instrument_seq, a, b, c, d, u.checksum, 0)


def encode_updates(updates: list[Update]) -> bytes:
    """The records of ``updates`` back to back (a message body). O(n)."""
    return b"".join([encode_update(u) for u in updates])


def _level_ok(price: int, qty: int, orders: int) -> bool:
    """A level an engine could report: a valid price; qty and orders both zero (removed) or both positive."""
    if not 1 <= price <= MAX_PRICE or not 0 <= orders < MAX_ORDERS:
        return False
    return (qty == 0 and orders == 0) or (0 < qty <= orders * MAX_QTY and orders > 0)


def _best_ok(price: int, qty: int) -> bool:
    """A side of a BBO: empty (0, 0) or a valid price with a positive qty."""
    return (price == 0 and qty == 0) or (1 <= price <= MAX_PRICE and qty > 0)


def decode_update(buf: bytes) -> Update:
    """The update in one 64-byte record; ``DecodeError`` for anything an honest feed never sends. O(1)."""
    if len(buf) != UPDATE_SIZE:
        raise _bad(f"an update record is {UPDATE_SIZE} bytes, not {len(buf)}")
    return _decode_at(buf, 0)


def _decode_at(buf: bytes, offset: int) -> Update:
    kind, side, reserved, instrument, seq, iseq, a, b, c, d, checksum, reserved2 = UPDATE.unpack_from(
        buf, offset
    )
    if reserved or reserved2:
        raise _bad("reserved bytes not zero")
    if iseq == 0:
        raise _bad("instrument_seq 0")
    if side > 1:
        raise _bad(f"side {side}")
    if kind == KIND_LEVEL:
        if d or not _level_ok(a, b, c):
            raise _bad("impossible level")
        return LevelUpdate(seq, instrument, iseq, SIDE_NAMES[side], a, b, c, checksum)
    if kind == KIND_TRADE:
        if c or d or not 1 <= a <= MAX_PRICE or not 0 < b <= MAX_QTY:
            raise _bad("impossible trade")
        return TradeUpdate(seq, instrument, iseq, a, b, SIDE_NAMES[side], checksum)
    if kind == KIND_BBO:
        if side or not _best_ok(a, b) or not _best_ok(c, d):
            raise _bad("impossible bbo")
        return BboUpdate(seq, instrument, iseq, a, b, c, d, checksum)
    raise _bad(f"unknown update kind {kind}")


def decode_updates(buf: bytes, max_updates: int) -> list[Update]:
    """Every update of a run of records, at most ``max_updates`` of them. O(n)."""
    if len(buf) % UPDATE_SIZE:
        raise _bad(f"{len(buf)} bytes is not a whole number of update records")
    n = len(buf) // UPDATE_SIZE
    if n > max_updates:
        raise _bad(f"{n} updates, more than {max_updates}")
    return [_decode_at(buf, i) for i in range(0, len(buf), UPDATE_SIZE)]


def encode_snapshot(snap: BookSnapshot) -> bytes:
    """A snapshot as its header and level records. O(levels)."""
    head = SNAPSHOT_HEAD.pack(
        snap.instrument, len(snap.bids), len(snap.asks), snap.checksum, 0, snap.seq, snap.instrument_seq
    )
    return head + b"".join([SNAPSHOT_LEVEL.pack(*row) for row in (*snap.bids, *snap.asks)])


def decode_snapshot(buf: bytes, max_levels: int) -> BookSnapshot:
    """The snapshot in ``buf``; ``DecodeError`` if malformed, impossible or deeper than ``max_levels`` a side.

    Each side must run strictly best first (bids descending, asks ascending)
    and hold only live levels; the book must not be crossed. O(levels).
    """
    if len(buf) < SNAPSHOT_HEAD.size:
        raise _bad("snapshot shorter than its header")
    instrument, nb, na, checksum, reserved, seq, iseq = SNAPSHOT_HEAD.unpack_from(buf)
    if reserved:
        raise _bad("reserved bytes not zero")
    if nb > max_levels or na > max_levels:
        raise _bad(f"{nb} bid and {na} ask levels, more than {max_levels} a side")
    if len(buf) != SNAPSHOT_HEAD.size + (nb + na) * SNAPSHOT_LEVEL.size:
        raise _bad("snapshot length does not match its level counts")
    rows = list(SNAPSHOT_LEVEL.iter_unpack(memoryview(buf)[SNAPSHOT_HEAD.size :]))
    bids, asks = rows[:nb], rows[nb:]
    for side_rows, step in ((bids, -1), (asks, 1)):
        prev = None
        for price, qty, orders in side_rows:
            if qty == 0 or not _level_ok(price, qty, orders):
                raise _bad("impossible level in a snapshot")
            if prev is not None and (price - prev) * step <= 0:
                raise _bad("snapshot levels not best first")
            prev = price
    if bids and asks and bids[0][0] >= asks[0][0]:
        raise _bad("crossed snapshot")
    return BookSnapshot(instrument, seq, iseq, bids, asks, checksum)


# --- the feed's frames on a node's sockets (docs/operations.md "Public market data") ----------
# PUB (node port + 200): [topic, body]. Updates: topic TOPIC_UPDATES + instrument (u32,
# big-endian, so a SUB prefix selects one instrument), body a run of update records, all of
# that instrument. Heartbeat: topic TOPIC_HEARTBEAT, body the group seq the feed is at and the
# instrument seq of every instrument (a subscriber that holds less lost the tail: it resyncs).
# Snapshot service (ROUTER, node port + 201): request SNAPSHOT_ASK + instrument (u32); reply
# SNAPSHOT_REPLY + status byte + 3 zero bytes + the snapshot (status SNAP_OK), or nothing
# after the status (SNAP_UNAVAILABLE: the node's feed does not know its book).

TOPIC_UPDATES = b"U"
TOPIC_HEARTBEAT = b"H"
HEARTBEAT = struct.Struct("<QI")  # group seq, instruments; then (instrument u32, instrument seq u64) each
_HEARTBEAT_ENTRY = struct.Struct("<IQ")
MAX_HEARTBEAT_INSTRUMENTS = 1 << 16
SNAPSHOT_ASK = b"MDSQ"
SNAPSHOT_REPLY = b"MDSR"
SNAP_OK, SNAP_UNAVAILABLE = 0, 1
_ASK = struct.Struct("<4sI")
_REPLY_HEAD = struct.Struct("<4sB3x")
MAX_UPDATES_PER_FRAME = 1 << 16  # a publisher splits longer runs


def update_topic(instrument: int) -> bytes:
    """The PUB topic of one instrument's updates (a SUB subscribes to it, or to ``TOPIC_UPDATES`` for all)."""
    return TOPIC_UPDATES + instrument.to_bytes(4, "big")


def topic_instrument(topic: bytes) -> int:
    """The instrument of an update topic; ``DecodeError`` if it is not one."""
    if len(topic) != 5 or topic[:1] != TOPIC_UPDATES:
        raise _bad("not an update topic")
    return int.from_bytes(topic[1:], "big")


def encode_snapshot_ask(instrument: int) -> bytes:
    return _ASK.pack(SNAPSHOT_ASK, instrument)


def decode_snapshot_ask(buf: bytes) -> int:
    """The instrument a snapshot request names; ``DecodeError`` for anything else."""
    if len(buf) != _ASK.size or buf[:4] != SNAPSHOT_ASK:
        raise _bad("not a snapshot request")
    return _ASK.unpack(buf)[1]


def encode_snapshot_reply(snap: BookSnapshot | None) -> bytes:
    """A snapshot service's answer: the snapshot, or ``None`` for unavailable."""
    if snap is None:
        return _REPLY_HEAD.pack(SNAPSHOT_REPLY, SNAP_UNAVAILABLE)
    return _REPLY_HEAD.pack(SNAPSHOT_REPLY, SNAP_OK) + encode_snapshot(snap)


def decode_snapshot_reply(buf: bytes, max_levels: int) -> BookSnapshot | None:
    """The snapshot in an answer, ``None`` if the node said unavailable; ``DecodeError`` if malformed."""
    if len(buf) < _REPLY_HEAD.size or buf[:4] != SNAPSHOT_REPLY:
        raise _bad("not a snapshot reply")
    _, status = _REPLY_HEAD.unpack_from(buf)
    if status == SNAP_UNAVAILABLE and len(buf) == _REPLY_HEAD.size:
        return None
    if status != SNAP_OK:
        raise _bad(f"snapshot reply status {status}")
    return decode_snapshot(buf[_REPLY_HEAD.size :], max_levels)


def encode_heartbeat(seq: int, instrument_seqs: list[tuple[int, int]]) -> bytes:
    """A feed's heartbeat: its group seq and the last instrument seq of each instrument (at most
    ``MAX_HEARTBEAT_INSTRUMENTS`` of them, the first ones ascending)."""
    pairs = instrument_seqs[:MAX_HEARTBEAT_INSTRUMENTS]
    return HEARTBEAT.pack(seq, len(pairs)) + b"".join([_HEARTBEAT_ENTRY.pack(i, s) for i, s in pairs])


def decode_heartbeat(buf: bytes) -> tuple[int, dict[int, int]]:
    """``(group seq, {instrument: instrument seq})`` of a heartbeat; ``DecodeError`` if malformed."""
    if len(buf) < HEARTBEAT.size:
        raise _bad("heartbeat shorter than its header")
    seq, n = HEARTBEAT.unpack_from(buf)
    if n > MAX_HEARTBEAT_INSTRUMENTS or len(buf) != HEARTBEAT.size + n * _HEARTBEAT_ENTRY.size:
        raise _bad("heartbeat length does not match its count")
    return seq, dict(_HEARTBEAT_ENTRY.iter_unpack(buf[HEARTBEAT.size :]))
