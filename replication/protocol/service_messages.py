"""The messages of the client service beside requests: execution reports and queries.

For: ``ReportFetch`` (client -> primary: my reports after ``after``, or after
group seq ``after_seq``), ``Reports`` (primary -> client: the committed
reports from number ``first`` on, or why not), ``Query`` (client ->
primary: one order's state, or my open orders) and ``QueryReply`` (its
answer, a JSON document, or why not), and the statuses only they carry
(``GONE``). They join ``messages.MESSAGE_TYPES`` here, so that the codec
decodes them; ``wire`` imports this module. Not for: what a node answers
(``node.service``) or how a client follows them (``client_service``).

A ``Reports``/``QueryReply`` status is one of the reply statuses
(``messages.OK``, ``NOT_PRIMARY`` with a ``leader`` hint, ``UNAVAILABLE``,
``FENCED``) or ``GONE``: the reports asked for are past the group's retention
window (``detail`` says which; the client resyncs with ``open_orders``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .messages import MESSAGE_TYPES, OK, STATUS_NAMES, Message

GONE = 7
STATUS_NAMES[GONE] = "gone"

# Query kinds.
QUERY_ORDER, QUERY_OPEN_ORDERS = 1, 2


@dataclass(slots=True, unsafe_hash=True)
class ReportFetch(Message):
    """Client -> primary: send me my execution reports numbered above ``after`` (or, with
    ``by_seq``, those from entries above group seq ``after_seq``), once committed.

    ``session``: the sender's session (a fetch of a fenced session is answered ``FENCED``).
    Without ``by_seq``, ``after_seq`` is the seq of the client's report ``after``: a primary whose
    report ``after`` has another seq (or that has fewer reports) lost entries the client was told
    of (an async fail-over) and answers ``GONE`` from its reports after that seq.
    A primary with nothing new parks the fetch and answers when reports commit, or
    empty after ``report_poll`` seconds (the client re-sends at once: the liveness check).
    """

    TYPE: ClassVar[int] = 23
    client_id: int
    session: int
    after: int
    after_seq: int = 0
    by_seq: bool = False
    LAYOUT = (
        ("client_id", "u64"),
        ("session", "u64"),
        ("after", "u64"),
        ("after_seq", "u64"),
        ("by_seq", "bool"),
    )


@dataclass(slots=True, unsafe_hash=True)
class Reports(Message):
    """Primary -> client: reports ``first, first + 1, ...`` (``reports.REPORT_SIZE`` bytes each,
    in ``records``), all committed; or a refusal (``status``, ``leader``, ``detail``)."""

    TYPE: ClassVar[int] = 24
    client_id: int
    session: int
    status: int = OK
    first: int = 0
    leader: str = ""
    detail: str = ""
    records: bytes = b""
    after: int = 0  # the ``after`` of the fetch this answers (a client takes a GONE for its own only)
    LAYOUT = (
        ("client_id", "u64"),
        ("session", "u64"),
        ("status", "u8"),
        ("first", "u64"),
        ("leader", "text"),
        ("detail", "text"),
        ("records", "blob"),
        ("after", "u64"),
    )


@dataclass(slots=True, unsafe_hash=True)
class Query(Message):
    """Client -> primary: ``QUERY_ORDER`` (order ``order_id`` of ``instrument``) or
    ``QUERY_OPEN_ORDERS`` (the client's open orders; ``has_account``: only ``account``'s).
    ``query_id`` names it in the answer (the client's own counter)."""

    TYPE: ClassVar[int] = 25
    client_id: int
    session: int
    query_id: int
    kind: int
    instrument: int = 0
    order_id: int = 0
    account: int = 0
    has_account: bool = False
    LAYOUT = (
        ("client_id", "u64"),
        ("session", "u64"),
        ("query_id", "u64"),
        ("kind", "u8"),
        ("instrument", "u64"),
        ("order_id", "u64"),
        ("account", "u64"),
        ("has_account", "bool"),
    )


@dataclass(slots=True, unsafe_hash=True)
class QueryReply(Message):
    """Primary -> client: the answer to query ``query_id`` (``body``: JSON), released once the
    state it read is committed; or a refusal (``status``, ``leader``)."""

    TYPE: ClassVar[int] = 26
    client_id: int
    query_id: int
    status: int = OK
    leader: str = ""
    body: bytes = b""
    LAYOUT = (
        ("client_id", "u64"),
        ("query_id", "u64"),
        ("status", "u8"),
        ("leader", "text"),
        ("body", "blob"),
    )


for _cls in (ReportFetch, Reports, Query, QueryReply):
    assert _cls.TYPE not in MESSAGE_TYPES, f"message type {_cls.TYPE} taken twice"
    MESSAGE_TYPES[_cls.TYPE] = _cls
