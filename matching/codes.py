"""Integer codes, record layouts and the digest function shared by both engines.

Everything the Cython core and the plain-Python reference must agree on bit
for bit lives here: the numeric codes of ops, sides, order types, time in
force, self-trade-prevention modes, event kinds and reasons; the packed
record layouts of commands and events (as NumPy dtypes, pinned to the C
structs in ``_engine.pxd`` by a test); the value limits; and the 64-bit
mixing function that both digests are built from.

It holds no logic beyond tables and the digest arithmetic.
"""

from __future__ import annotations

import numpy as np

MASK64 = (1 << 64) - 1
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
UINT32_MAX = (1 << 32) - 1

MAX_PRICE = 1 << 62
MAX_QTY = 10**12

# --- command fields -------------------------------------------------------

OP_NEW, OP_CANCEL, OP_REPLACE, OP_MASS_CANCEL = 0, 1, 2, 3
OP_TIME, OP_END_OF_DAY, OP_INSTRUMENT, OP_RISK = 4, 5, 6, 7
SIDE_BUY, SIDE_SELL = 0, 1
TYPE_LIMIT, TYPE_MARKET, TYPE_STOP, TYPE_STOP_LIMIT = 0, 1, 2, 3
TIF_GTC, TIF_IOC, TIF_FOK, TIF_DAY, TIF_GTD = 0, 1, 2, 3, 4
STP_NONE, STP_CANCEL_TAKER, STP_CANCEL_MAKER, STP_CANCEL_BOTH = 0, 1, 2, 3
INVALID_CODE = 255  # any enum field whose text was not recognised

OP_NAMES = {
    "new": OP_NEW,
    "cancel": OP_CANCEL,
    "replace": OP_REPLACE,
    "mass_cancel": OP_MASS_CANCEL,
    "time": OP_TIME,
    "end_of_day": OP_END_OF_DAY,
    "instrument": OP_INSTRUMENT,
    "risk": OP_RISK,
}
SIDE_NAMES = {"buy": SIDE_BUY, "sell": SIDE_SELL}
TYPE_NAMES = {"limit": TYPE_LIMIT, "market": TYPE_MARKET, "stop": TYPE_STOP, "stop_limit": TYPE_STOP_LIMIT}
TIF_NAMES = {"GTC": TIF_GTC, "IOC": TIF_IOC, "FOK": TIF_FOK, "DAY": TIF_DAY, "GTD": TIF_GTD}
STP_NAMES = {
    "none": STP_NONE,
    "cancel_taker": STP_CANCEL_TAKER,
    "cancel_maker": STP_CANCEL_MAKER,
    "cancel_both": STP_CANCEL_BOTH,
}
STP_LABELS = tuple(STP_NAMES)  # code -> name (the codes are 0..3 in this order)
assert all(STP_NAMES[name] == code for code, name in enumerate(STP_LABELS))

# Bits of the ``flags`` field of a command record.
HAS_PRICE = 1  # a price was given (required for limit, forbidden for market)
HAS_QTY = 2  # a qty was given (replace: absent = unchanged)
HAS_ACCOUNT = 4  # mass_cancel: filter by account
HAS_INSTRUMENT = 8  # mass_cancel: filter by instrument
OUT_OF_RANGE = 16  # some integer did not fit its field; it was stored as 0
BAD_FIELD = 32  # some field had the wrong JSON type (not an integer / bool)
HAS_STOP_PRICE = 64  # replace: a new stop price was given

# --- events ------------------------------------------------------------------

EV_ACCEPTED, EV_REJECTED, EV_TRADE, EV_CANCELLED, EV_REPLACED, EV_TRIGGERED = 1, 2, 3, 4, 5, 6
EVENT_KIND_NAMES = {
    EV_ACCEPTED: "accepted",
    EV_REJECTED: "rejected",
    EV_TRADE: "trade",
    EV_CANCELLED: "cancelled",
    EV_REPLACED: "replaced",
    EV_TRIGGERED: "triggered",
}

# Reject reasons (1..31) and cancel reasons (32..) share one code space so a
# reason code alone says what it is.
REJECT_REASONS = [
    "invalid_op",
    "invalid_side",
    "invalid_type",
    "invalid_tif",
    "invalid_stp",
    "bad_field",
    "out_of_range",
    "invalid_id",
    "invalid_qty",
    "invalid_price",
    "price_on_market",
    "invalid_display",
    "invalid_combination",
    "duplicate_id",
    "unknown_order",
    "would_cross",
    "fok_unfilled",
    # Never produced by an engine: a replicated group refuses, before sequencing, a command for
    # an account the sender's key may not use (replication.protocol.entitlement).
    "not_entitled",
    # Issue 19: time, stops, instrument rules and risk.
    "invalid_expiry",
    "invalid_stop",
    "bad_tick",
    "bad_lot",
    "qty_limit",
    "price_band",
    "risk_limit",
]
CANCEL_REASONS = ["user", "remainder", "self_trade", "mass_cancel", "expired"]

REASON_CODES: dict[str, int] = {}
for _i, _name in enumerate(REJECT_REASONS):
    REASON_CODES[_name] = 1 + _i
for _i, _name in enumerate(CANCEL_REASONS):
    REASON_CODES[_name] = 32 + _i
REASON_NAMES = {code: name for name, code in REASON_CODES.items()}
REASON_NAMES[0] = ""

R_INVALID_OP = REASON_CODES["invalid_op"]
R_INVALID_SIDE = REASON_CODES["invalid_side"]
R_INVALID_TYPE = REASON_CODES["invalid_type"]
R_INVALID_TIF = REASON_CODES["invalid_tif"]
R_INVALID_STP = REASON_CODES["invalid_stp"]
R_BAD_FIELD = REASON_CODES["bad_field"]
R_OUT_OF_RANGE = REASON_CODES["out_of_range"]
R_INVALID_ID = REASON_CODES["invalid_id"]
R_INVALID_QTY = REASON_CODES["invalid_qty"]
R_INVALID_PRICE = REASON_CODES["invalid_price"]
R_PRICE_ON_MARKET = REASON_CODES["price_on_market"]
R_INVALID_DISPLAY = REASON_CODES["invalid_display"]
R_INVALID_COMBINATION = REASON_CODES["invalid_combination"]
R_DUPLICATE_ID = REASON_CODES["duplicate_id"]
R_UNKNOWN_ORDER = REASON_CODES["unknown_order"]
R_WOULD_CROSS = REASON_CODES["would_cross"]
R_FOK_UNFILLED = REASON_CODES["fok_unfilled"]
R_NOT_ENTITLED = REASON_CODES["not_entitled"]
R_USER = REASON_CODES["user"]
R_REMAINDER = REASON_CODES["remainder"]
R_SELF_TRADE = REASON_CODES["self_trade"]
R_MASS_CANCEL = REASON_CODES["mass_cancel"]
R_INVALID_EXPIRY = REASON_CODES["invalid_expiry"]
R_INVALID_STOP = REASON_CODES["invalid_stop"]
R_BAD_TICK = REASON_CODES["bad_tick"]
R_BAD_LOT = REASON_CODES["bad_lot"]
R_QTY_LIMIT = REASON_CODES["qty_limit"]
R_PRICE_BAND = REASON_CODES["price_band"]
R_RISK_LIMIT = REASON_CODES["risk_limit"]
R_EXPIRED = REASON_CODES["expired"]

# --- packed records ------------------------------------------------------------
# These layouts are mirrored by ``command_t`` and ``event_t`` in _engine.pxd;
# tests/engine/test_layout.py pins itemsize and every offset.
#
# Record versions. Version 1 was 56 bytes (bytes 0..56 below, 52..56 padding).
# Version 2 (issue 19) appends ``ts``, ``expire_ts`` and ``stop_price`` (int64
# each) at 56, 64 and 72: the first 56 bytes keep their meaning, so a version-1
# record reads as version 2 with those three zero (``upgrade_command``), which is
# exactly what it meant (no time, no expiry, no stop).
#
# The ``instrument`` and ``risk`` commands reuse fields rather than grow the record:
#   instrument: instrument, stop_price = tick, account = lot, display_qty = min_qty,
#               qty = max_qty, expire_ts = band (in ticks), price = ref_price;
#   risk:       account, qty = max_open_qty, display_qty = max_position.
# (``commands.command_record`` / ``command_dict`` do the mapping both ways.)
COMMAND_SIZE_V1 = 56

COMMAND_DTYPE = np.dtype(
    {
        "names": [
            "id",
            "account",
            "price",
            "qty",
            "display_qty",
            "instrument",
            "op",
            "side",
            "type",
            "tif",
            "stp",
            "post_only",
            "flags",
            "ts",
            "expire_ts",
            "stop_price",
        ],
        "formats": [
            "<u8",
            "<u8",
            "<i8",
            "<i8",
            "<i8",
            "<u4",
            "u1",
            "u1",
            "u1",
            "u1",
            "u1",
            "u1",
            "<u2",
            "<i8",
            "<i8",
            "<i8",
        ],
        "offsets": [0, 8, 16, 24, 32, 40, 44, 45, 46, 47, 48, 49, 50, 56, 64, 72],
        "itemsize": 80,
    }
)

EVENT_DTYPE = np.dtype(
    {
        "names": ["cmd", "id", "maker", "price", "qty", "open_a", "open_b", "instrument", "kind", "reason"],
        "formats": ["<u8", "<u8", "<u8", "<i8", "<i8", "<i8", "<i8", "<u4", "u1", "u1"],
        "offsets": [0, 8, 16, 24, 32, 40, 48, 56, 60, 61],
        "itemsize": 64,
    }
)

COMMAND_SIZE = COMMAND_DTYPE.itemsize
_V2_TAIL = bytes(COMMAND_SIZE - COMMAND_SIZE_V1)


def upgrade_command(b: bytes) -> bytes:
    """A command record of either version as the current one (a version-1 record gains zeros). O(1)."""
    if len(b) == COMMAND_SIZE:
        return bytes(b)
    if len(b) == COMMAND_SIZE_V1:
        return bytes(b) + _V2_TAIL
    raise ValueError(
        f"a command record is {COMMAND_SIZE} (or, version 1, {COMMAND_SIZE_V1}) bytes, not {len(b)}"
    )


# --- digest arithmetic -------------------------------------------------------

GOLDEN = 0x9E3779B97F4A7C15


def mix64(x: int) -> int:
    """The splitmix64 finaliser: a bijective, well-spread 64-bit mix."""
    x &= MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def absorb(h: int, v: int) -> int:
    """Fold one 64-bit word ``v`` (taken mod 2**64) into the digest ``h``."""
    return (mix64(h ^ (v & MASK64)) + GOLDEN) & MASK64


def digest_hex(d: int) -> str:
    """The printed form of a digest: 16 lower-case hex digits."""
    return f"{d & MASK64:016x}"
