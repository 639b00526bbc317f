"""Engine events as small named tuples, and their JSON form.

Both engines emit the same six kinds of event. Internally an event is nine
integer words (kind, reason, instrument, id, maker, price, qty, open_a,
open_b) — the same words the digest absorbs and the batch API's
``EVENT_DTYPE`` stores; this module turns those words into the named tuples
users see and into the JSON dicts of the command-log tool.
"""

from __future__ import annotations

import struct
from typing import NamedTuple, Union

import numpy as np

from . import codes


class Accepted(NamedTuple):
    instrument: int
    id: int


class Rejected(NamedTuple):
    instrument: int
    id: int
    reason: str


class Trade(NamedTuple):
    instrument: int
    taker: int
    maker: int
    price: int
    qty: int
    taker_open: int
    maker_open: int


class Cancelled(NamedTuple):
    instrument: int
    id: int
    open: int
    reason: str


class Replaced(NamedTuple):
    instrument: int
    id: int
    price: int
    qty: int


class Triggered(NamedTuple):
    """A stop order became live (its trigger price printed); its entry's events follow."""

    instrument: int
    id: int
    stop_price: int
    qty: int


Event = Union[Accepted, Rejected, Trade, Cancelled, Replaced, Triggered]  # noqa: UP007 - a runtime alias; | needs 3.10 types

_KIND_OF = {
    Accepted: codes.EV_ACCEPTED,
    Rejected: codes.EV_REJECTED,
    Trade: codes.EV_TRADE,
    Cancelled: codes.EV_CANCELLED,
    Replaced: codes.EV_REPLACED,
    Triggered: codes.EV_TRIGGERED,
}


class _Builders(dict):
    """kind -> a function of the other eight raw words building that kind's named tuple."""

    def __missing__(self, kind: int):
        raise ValueError(f"unknown event kind {kind}")


# One table for both decoders below: a dict look-up and one call per event, rather than
# a chain of kind tests (events_from_bytes runs once per event of every reply a client gets).
_BUILD = _Builders(
    {
        codes.EV_TRADE: lambda reason, ins, id_, maker, price, qty, a, b: Trade(
            ins, id_, maker, price, qty, a, b
        ),
        codes.EV_ACCEPTED: lambda reason, ins, id_, maker, price, qty, a, b: Accepted(ins, id_),
        codes.EV_CANCELLED: lambda reason, ins, id_, maker, price, qty, a, b: Cancelled(
            ins, id_, a, codes.REASON_NAMES[reason]
        ),
        codes.EV_REPLACED: lambda reason, ins, id_, maker, price, qty, a, b: Replaced(ins, id_, price, qty),
        codes.EV_TRIGGERED: lambda reason, ins, id_, maker, price, qty, a, b: Triggered(ins, id_, price, qty),
        codes.EV_REJECTED: lambda reason, ins, id_, maker, price, qty, a, b: Rejected(
            ins, id_, codes.REASON_NAMES[reason]
        ),
    }
)


def make_event(
    kind: int,
    reason: int,
    instrument: int,
    id: int,
    maker: int,
    price: int,
    qty: int,
    open_a: int,
    open_b: int,
) -> Event:
    """Build the named tuple for one event from its nine raw words."""
    return _BUILD[kind](reason, instrument, id, maker, price, qty, open_a, open_b)


def event_words(ev: Event) -> tuple[int, ...]:
    """The nine raw words of an event, in digest order (inverse of make_event)."""
    kind = _KIND_OF[type(ev)]
    if kind == codes.EV_TRADE:
        return (kind, 0, ev.instrument, ev.taker, ev.maker, ev.price, ev.qty, ev.taker_open, ev.maker_open)
    if kind == codes.EV_ACCEPTED:
        return (kind, 0, ev.instrument, ev.id, 0, 0, 0, 0, 0)
    if kind == codes.EV_CANCELLED:
        return (kind, codes.REASON_CODES[ev.reason], ev.instrument, ev.id, 0, 0, 0, ev.open, 0)
    if kind == codes.EV_REPLACED:
        return (kind, 0, ev.instrument, ev.id, 0, ev.price, ev.qty, 0, 0)
    if kind == codes.EV_TRIGGERED:
        return (kind, 0, ev.instrument, ev.id, 0, ev.stop_price, ev.qty, 0, 0)
    return (kind, codes.REASON_CODES[ev.reason], ev.instrument, ev.id, 0, 0, 0, 0, 0)


def event_dict(ev: Event) -> dict:
    """The JSON form of an event, as written by ``matchcore replay``.

    >>> event_dict(Accepted(1, 4))
    {'event': 'accepted', 'id': 4, 'instrument': 1}
    """
    name = codes.EVENT_KIND_NAMES[_KIND_OF[type(ev)]]
    out = {"event": name}
    fields = ev._asdict()
    instrument = fields.pop("instrument")
    out.update(fields)
    out["instrument"] = instrument
    return out


def events_from_array(arr: np.ndarray) -> list[Event]:
    """Named tuples for every row of an ``EVENT_DTYPE`` array, in order. O(n)."""
    rows = arr[["kind", "reason", "instrument", "id", "maker", "price", "qty", "open_a", "open_b"]].tolist()
    return [make_event(*row) for row in rows]


# One ``EVENT_DTYPE`` record, field for field (cmd, id, maker, price, qty, open_a,
# open_b, instrument, kind, reason, padding); tests pin it to the dtype.
EVENT_RECORD = struct.Struct("<QQQqqqqIBB2x")


def events_from_bytes(buf: bytes) -> list[Event]:
    """Named tuples for the ``EVENT_DTYPE`` records packed in ``buf`` (a reply's events). O(n).

    The same as ``events_from_array(np.frombuffer(buf, EVENT_DTYPE))`` without
    NumPy's per-call overhead, which dominates for the one to three events of a
    typical reply.
    """
    if len(buf) % EVENT_RECORD.size:
        raise ValueError(f"{len(buf)} bytes is not a whole number of event records")
    build = _BUILD
    return [
        build[kind](reason, instrument, id_, maker, price, qty, a, b)
        for _, id_, maker, price, qty, a, b, instrument, kind, reason in EVENT_RECORD.iter_unpack(buf)
    ]


def events_to_array(events: list[Event], cmd: int = 0) -> np.ndarray:
    """An ``EVENT_DTYPE`` array holding ``events``, each tagged with command index ``cmd``."""
    out = np.zeros(len(events), dtype=codes.EVENT_DTYPE)
    for i, ev in enumerate(events):
        kind, reason, instrument, id_, maker, price, qty, open_a, open_b = event_words(ev)
        out[i] = (cmd, id_, maker, price, qty, open_a, open_b, instrument, kind, reason)
    return out
