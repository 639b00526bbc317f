"""Execution reports and queries as a client application sees them.

For: ``report_dict`` (one 64-byte report as the JSON form ``executions``
returns: the event's fields as ``matchcore replay`` writes them, plus
``seq``, and ``side`` taker|maker on trades), and ``ReportsGone``, the error
``executions`` raises once when reports were past the group's retention
window (resync with ``open_orders``; the following calls go on from the
oldest report the group kept). Not for: fetching (``protocol.client_service``).
"""

from __future__ import annotations

from matching.events import event_dict, make_event

from ..protocol.reports import EVENT_WORDS, ROLE_NAMES, ReportsGone

_ROLE_OFFSET = 62

__all__ = ["ReportsGone", "report_dict"]


def report_dict(record: bytes) -> dict:
    """One report (``reports.REPORT_SIZE`` bytes) as a dict. O(1)."""
    seq, oid, maker, price, qty, a, b, instrument, kind, reason = EVENT_WORDS.unpack(record)
    d = event_dict(make_event(kind, reason, instrument, oid, maker, price, qty, a, b))
    d["seq"] = seq
    role = record[_ROLE_OFFSET]
    if role:
        d["side"] = ROLE_NAMES[role]
    return d
