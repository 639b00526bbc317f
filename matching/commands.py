"""Commands: from the JSON-lines dict form to packed records and back.

A command travels through the engines as one fixed record whose fields are
those of ``codes.COMMAND_DTYPE`` (a tuple in that field order, or a row of a
NumPy array of that dtype). This module is the only place that reads the
human-readable form: it never raises on bad content, but encodes what is
wrong (an unknown op or side is code 255; a field of the wrong type sets
``BAD_FIELD``, and so does a key the op does not know, see
``COMMAND_KEYS``; an integer that does not fit its C type sets ``OUT_OF_RANGE``)
so that the engine, not the parser, rejects the command with a reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from . import codes

UINT64_MAX = (1 << 64) - 1


class CommandRecord(NamedTuple):
    """One command, field for field as ``codes.COMMAND_DTYPE``."""

    id: int = 0
    account: int = 0
    price: int = 0
    qty: int = 0
    display_qty: int = 0
    instrument: int = 0
    op: int = codes.INVALID_CODE
    side: int = codes.SIDE_BUY
    type: int = codes.TYPE_LIMIT
    tif: int = codes.TIF_GTC
    stp: int = codes.STP_NONE
    post_only: int = 0
    flags: int = 0
    ts: int = 0
    expire_ts: int = 0
    stop_price: int = 0


# The keys each op knows. A key outside its op's set is a typo or a feature this
# engine does not have (``dispaly_qty``); running the command without it would
# do something the sender did not ask for (a fully visible "iceberg"), so the
# command is rejected with ``bad_field`` instead.
COMMAND_KEYS: dict[int, frozenset[str]] = {
    codes.OP_NEW: frozenset(
        (
            "op",
            "instrument",
            "id",
            "side",
            "type",
            "price",
            "qty",
            "tif",
            "account",
            "post_only",
            "display_qty",
            "stp",
            "ts",
            "expire_ts",
            "stop_price",
        )
    ),
    codes.OP_CANCEL: frozenset(("op", "instrument", "id", "ts")),
    codes.OP_REPLACE: frozenset(("op", "instrument", "id", "price", "qty", "stop_price", "ts")),
    codes.OP_MASS_CANCEL: frozenset(("op", "id", "account", "instrument", "ts")),
    codes.OP_TIME: frozenset(("op", "ts")),
    codes.OP_END_OF_DAY: frozenset(("op", "instrument", "ts")),
    codes.OP_INSTRUMENT: frozenset(
        ("op", "instrument", "tick", "lot", "min_qty", "max_qty", "band", "ref_price", "ts")
    ),
    codes.OP_RISK: frozenset(("op", "account", "max_open_qty", "max_position", "ts")),
}
# Keys an op cannot do without (besides ``op``); a missing one is ``bad_field``.
REQUIRED_KEYS: dict[int, tuple[str, ...]] = {
    codes.OP_NEW: ("instrument",),
    codes.OP_CANCEL: ("instrument",),
    codes.OP_REPLACE: ("instrument",),
    codes.OP_TIME: ("ts",),
    codes.OP_END_OF_DAY: ("instrument",),
    codes.OP_INSTRUMENT: ("instrument",),
    codes.OP_RISK: ("account",),
}


def unknown_keys(d: Mapping) -> list[str]:
    """The keys of command dict ``d`` that its op does not know, sorted.

    ``[]`` when every key is known, or when the op itself is unknown (that
    command is rejected as ``invalid_op`` whatever its keys). O(len(d)).
    """
    known = COMMAND_KEYS.get(_Reader(d).code("op", codes.OP_NAMES, None))
    if known is None:
        return []
    return sorted(str(k) for k in d if k not in known)


class _Reader:
    """Reads fields of one dict, remembering whether any was bad."""

    def __init__(self, d: Mapping) -> None:
        self.d = d
        self.flags = 0

    def integer(self, key: str, lo: int, hi: int, flag: int = 0) -> int:
        value = self.d.get(key)
        if value is None:
            return 0
        # bool is an int subclass in Python, but true/false is not a number here.
        if isinstance(value, bool) or not isinstance(value, int):
            self.flags |= codes.BAD_FIELD
            return 0
        self.flags |= flag
        if value < lo or value > hi:
            self.flags |= codes.OUT_OF_RANGE
            return 0
        return value

    def code(self, key: str, names: Mapping[str, int], default: str | None, fold=str.lower) -> int:
        value = self.d.get(key, default)
        if not isinstance(value, str):
            return codes.INVALID_CODE
        return names.get(fold(value), codes.INVALID_CODE)

    def boolean(self, key: str) -> int:
        value = self.d.get(key, False)
        if value is None:
            return 0
        if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
            return int(value)
        self.flags |= codes.BAD_FIELD
        return 0


def command_record(d: Any) -> CommandRecord:
    """Encode one command-log dict as a record. Never raises.

    Parameters
    ----------
    d : Mapping
        A command as in the JSON-lines log (``{"op": "new", ...}``).

    Returns
    -------
    CommandRecord
        The record; anything wrong with ``d`` is encoded in it for the engine
        to reject with a reason.
    """
    if not isinstance(d, Mapping):
        return CommandRecord()
    r = _Reader(d)
    op = r.code("op", codes.OP_NAMES, None)
    if op in COMMAND_KEYS and not COMMAND_KEYS[op].issuperset(d):
        r.flags |= codes.BAD_FIELD  # an unknown key (see COMMAND_KEYS): never run without it
    if any(key not in d for key in REQUIRED_KEYS.get(op, ())):
        r.flags |= codes.BAD_FIELD
    id_ = r.integer("id", 0, UINT64_MAX)
    ts = r.integer("ts", 0, codes.INT64_MAX)
    if op == codes.OP_MASS_CANCEL:
        account = r.integer("account", 0, UINT64_MAX, codes.HAS_ACCOUNT)
        instrument = r.integer("instrument", 0, codes.UINT32_MAX, codes.HAS_INSTRUMENT)
        return CommandRecord(id=id_, account=account, instrument=instrument, op=op, flags=r.flags, ts=ts)
    instrument = r.integer("instrument", 0, codes.UINT32_MAX)
    if op == codes.OP_TIME or op == codes.OP_END_OF_DAY:
        return CommandRecord(instrument=instrument, op=op, flags=r.flags, ts=ts)
    if op == codes.OP_INSTRUMENT:  # the field mapping of codes.COMMAND_DTYPE's comment
        return CommandRecord(
            instrument=instrument,
            stop_price=r.integer("tick", codes.INT64_MIN, codes.INT64_MAX),
            account=r.integer("lot", 0, codes.INT64_MAX),
            display_qty=r.integer("min_qty", codes.INT64_MIN, codes.INT64_MAX),
            qty=r.integer("max_qty", codes.INT64_MIN, codes.INT64_MAX),
            expire_ts=r.integer("band", codes.INT64_MIN, codes.INT64_MAX),
            price=r.integer("ref_price", codes.INT64_MIN, codes.INT64_MAX),
            op=op,
            flags=r.flags,
            ts=ts,
        )
    if op == codes.OP_RISK:
        return CommandRecord(
            account=r.integer("account", 0, UINT64_MAX),
            qty=r.integer("max_open_qty", codes.INT64_MIN, codes.INT64_MAX),
            display_qty=r.integer("max_position", codes.INT64_MIN, codes.INT64_MAX),
            op=op,
            flags=r.flags,
            ts=ts,
        )
    account = r.integer("account", 0, UINT64_MAX)
    price = r.integer("price", codes.INT64_MIN, codes.INT64_MAX, codes.HAS_PRICE)
    qty = r.integer("qty", codes.INT64_MIN, codes.INT64_MAX, codes.HAS_QTY)
    display_qty = r.integer("display_qty", codes.INT64_MIN, codes.INT64_MAX)
    if op == codes.OP_REPLACE:
        stop_price = r.integer("stop_price", codes.INT64_MIN, codes.INT64_MAX, codes.HAS_STOP_PRICE)
        return CommandRecord(
            id=id_,
            price=price,
            qty=qty,
            instrument=instrument,
            op=op,
            flags=r.flags,
            ts=ts,
            stop_price=stop_price,
        )
    if op != codes.OP_NEW:
        return CommandRecord(id=id_, price=price, qty=qty, instrument=instrument, op=op, flags=r.flags, ts=ts)
    expire_ts = r.integer("expire_ts", 0, codes.INT64_MAX)
    stop_price = r.integer("stop_price", codes.INT64_MIN, codes.INT64_MAX)
    return CommandRecord(
        id=id_,
        account=account,
        price=price,
        qty=qty,
        display_qty=display_qty,
        instrument=instrument,
        op=op,
        side=r.code("side", codes.SIDE_NAMES, None),
        type=r.code("type", codes.TYPE_NAMES, "limit"),
        tif=r.code("tif", codes.TIF_NAMES, "GTC", fold=str.upper),
        stp=r.code("stp", codes.STP_NAMES, "none"),
        post_only=r.boolean("post_only"),
        flags=r.flags,
        ts=ts,
        expire_ts=expire_ts,
        stop_price=stop_price,
    )


def new_order_dict(
    instrument: int,
    id: int,
    side: str,
    price: int | None = None,
    qty: int = 0,
    type: str = "limit",
    tif: str = "GTC",
    account: int = 0,
    post_only: bool = False,
    display_qty: int = 0,
    stp: str = "none",
    stop_price: int | None = None,
    expire_ts: int | None = None,
    ts: int | None = None,
) -> dict:
    """The command-log dict of a new order given as keyword arguments (the ``submit`` signature)."""
    d = {
        "op": "new",
        "instrument": instrument,
        "id": id,
        "side": side,
        "qty": qty,
        "type": type,
        "tif": tif,
        "account": account,
        "post_only": post_only,
        "display_qty": display_qty,
        "stp": stp,
    }
    if price is not None:
        d["price"] = price
    for key, value in (("stop_price", stop_price), ("expire_ts", expire_ts), ("ts", ts)):
        if value is not None:
            d[key] = value
    return d


def new_order_record(*args: Any, **kwargs: Any) -> CommandRecord:
    """The record of a new order given as :func:`new_order_dict`'s arguments."""
    return command_record(new_order_dict(*args, **kwargs))


def cancel_dict(instrument: int, id: int) -> dict:
    """The command-log dict of a cancel."""
    return {"op": "cancel", "instrument": instrument, "id": id}


def replace_dict(
    instrument: int,
    id: int,
    price: int | None = None,
    qty: int | None = None,
    stop_price: int | None = None,
    ts: int | None = None,
) -> dict:
    """The command-log dict of a replace; ``None`` leaves a field unchanged (absent)."""
    d: dict = {"op": "replace", "instrument": instrument, "id": id}
    for key, value in (("price", price), ("qty", qty), ("stop_price", stop_price), ("ts", ts)):
        if value is not None:
            d[key] = value
    return d


def mass_cancel_dict(account: int | None = None, instrument: int | None = None) -> dict:
    """The command-log dict of a mass cancel; ``None`` means every account / instrument."""
    d: dict = {"op": "mass_cancel"}
    if account is not None:
        d["account"] = account
    if instrument is not None:
        d["instrument"] = instrument
    return d


def _name_of(names: Mapping[str, int], code: int) -> str:
    for name, value in names.items():
        if value == code:
            return name
    return "?"


def command_dict(rec: Any) -> dict:
    """The command-log dict of a record (a tuple, CommandRecord or array row).

    The inverse of :func:`command_record` for valid commands; used to print
    and to journal commands in readable form.
    """
    rec = CommandRecord(*(int(v) for v in (rec.tolist() if hasattr(rec, "tolist") else rec)))
    op = _name_of(codes.OP_NAMES, rec.op)
    d: dict = {"op": op}
    if rec.ts:
        d["ts"] = rec.ts
    if op == "mass_cancel":
        if rec.flags & codes.HAS_ACCOUNT:
            d["account"] = rec.account
        if rec.flags & codes.HAS_INSTRUMENT:
            d["instrument"] = rec.instrument
        return d
    if op == "time":
        d["ts"] = rec.ts
        return d
    if op == "end_of_day":
        d["instrument"] = rec.instrument
        return d
    if op == "instrument":
        d.update(
            instrument=rec.instrument,
            tick=rec.stop_price,
            lot=rec.account,
            min_qty=rec.display_qty,
            max_qty=rec.qty,
            band=rec.expire_ts,
            ref_price=rec.price,
        )
        return d
    if op == "risk":
        d.update(account=rec.account, max_open_qty=rec.qty, max_position=rec.display_qty)
        return d
    d.update(instrument=rec.instrument, id=rec.id)
    if op == "new":
        d["side"] = _name_of(codes.SIDE_NAMES, rec.side)
        d["type"] = _name_of(codes.TYPE_NAMES, rec.type)
    if rec.flags & codes.HAS_PRICE:
        d["price"] = rec.price
    if op == "new" or rec.flags & codes.HAS_QTY:
        d["qty"] = rec.qty
    if op == "new":
        d.update(
            tif=_name_of(codes.TIF_NAMES, rec.tif),
            account=rec.account,
            post_only=bool(rec.post_only),
            display_qty=rec.display_qty,
            stp=_name_of(codes.STP_NAMES, rec.stp),
        )
        if rec.expire_ts:
            d["expire_ts"] = rec.expire_ts
        if rec.stop_price:
            d["stop_price"] = rec.stop_price
    elif op == "replace" and rec.flags & codes.HAS_STOP_PRICE:
        d["stop_price"] = rec.stop_price
    return d


def command_array(commands: Iterable[Any]) -> np.ndarray:
    """A ``COMMAND_DTYPE`` array from command dicts (or records). O(n).

    >>> command_array([{"op": "cancel", "instrument": 1, "id": 7}]).dtype.itemsize
    80
    """
    rows = [tuple(c) if isinstance(c, tuple) else tuple(command_record(c)) for c in commands]
    # np.zeros, not np.array(rows): the record has padding bytes, and they must be
    # zero so that the same commands always give the same bytes (journals, wire).
    out = np.zeros(len(rows), dtype=codes.COMMAND_DTYPE)
    if rows:
        out[:] = rows
    return out
