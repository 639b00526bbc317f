"""Entitlements: which commands and queries a client key restricted to some accounts may send.

For: splitting a restricted client's ``wire.Request`` or ``wire.Requests``
bundle (a tuple of requests, or the packed ``wire.RequestRun`` the driver
decodes) into what it may send, handed on to the node as before, and what it
may not, each answered at once with a ``wire.NOT_ENTITLED`` reply carrying
one ``rejected not_entitled`` event, and never sequenced (docs/operations.md
"Entitlements"). The ZeroMQ driver (``transport.loop``) and the simulator
(``testing.sim.forge``) call :func:`screen` right after ``trust.Policy.check``
admitted the frame, for a client whose ``[clients.NAME]`` entry lists
``accounts``; a client without that list never reaches this module, so the
unrestricted path pays nothing per request.

The rules, per command (``matching.codes`` ops):

- ``new``: its ``account`` (0 if not given) is one of the client's;
- ``mass_cancel``: it names an account (``HAS_ACCOUNT``) that is one of the
  client's. A mass cancel of every account is never entitled;
- ``cancel`` and ``replace``: the order they name is of one of the client's
  accounts. An order the group does not know as live (``account_of`` gives
  None: never placed, already filled or cancelled, or not sequenced yet) is
  let through here (refusing it would answer the everyday race of a cancel
  against a fill, or a cancel sent right behind its own order, with
  ``not_entitled``), and checked again when the primary sequences it
  (:func:`unknown_targets`, ``NodeMachine.defer_entitlement``): if the order
  became live meanwhile, of another account, it is refused then, never
  sequenced; if still unknown, the engine answers it ``unknown_order``;
- a session open (``session.OP_SESSION``: its ``account`` field is a nonce,
  not an account) is every client's;
- any other op is refused: an op this module does not know may touch any
  account.

And per query (``wire.Query``, :func:`screen_query`): the open orders of an
account (``open_orders(account=N)``) only of one of the client's (its own
open orders, with no account named, are always its to see); an order's state
only of an order of one of the client's accounts, or of one the group does
not know (answered ``unknown``). A refused query is answered with a
``QueryReply`` of status ``NOT_ENTITLED``.

Not for: who the sender is or which client id it may use (``trust``), or
sockets. Deterministic: the answer depends on the accounts, the commands and
``account_of`` only.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from matching import codes

from . import wire
from .session import OP_SESSION

# A function giving the account of a live order by its id, None if no order of that id is live
# (``Replica.order_account``).
AccountOf = Callable[[int], "int | None"]

# The fields of a command record (``codes.COMMAND_DTYPE``) the rules read: id, account,
# instrument, op and flags (offsets 0, 8, 40, 44, 50).
_FIELDS = struct.Struct("<QQ24xIB5xH4x24x")
# The same fields of a request record (``wire.REQUEST``: client id, request id, then the
# command at byte 16), as columns of a packed run.
_RUN_FIELDS = np.dtype(
    {
        "names": ["id", "account", "instrument", "op", "flags"],
        "formats": ["<u8", "<u8", "<u4", "u1", "<u2"],
        "offsets": [16, 24, 56, 60, 66],
        "itemsize": wire.REQUEST.size,
    }
)
_EVENT = struct.Struct("<QQQqqqqIBB2x")  # codes.EVENT_DTYPE, field for field (tests pin it)


class Screened(NamedTuple):
    """What :func:`screen` made of a message: the part to hand on (None: nothing) and the refusals.

    ``allowed`` is of the message's own type (a ``Request``; a ``Requests`` with a
    tuple, or with a ``RequestRun`` when it came packed) and keeps the allowed
    requests in their order; ``refused`` holds one ``NOT_ENTITLED`` reply per
    refused request, in the order they came.
    """

    allowed: wire.Request | wire.Requests | None
    refused: list[wire.Reply]


def unknown_targets(msg: wire.Request | wire.Requests | None, account_of: AccountOf) -> list[tuple[int, int]]:
    """The ``(client id, request id)`` of every cancel and replace in ``msg`` (what :func:`screen`
    let through) whose order ``account_of`` does not know: the node checks those again when it
    sequences them (``NodeMachine.defer_entitlement``), when the entries before them are applied.
    So a cancel sent before its target's ``new`` was sequenced cannot slip past the rule. O(requests)."""
    if msg is None:
        return []
    if type(msg) is wire.Request:
        requests: Any = (msg,)
    elif isinstance(msg.requests, wire.RequestRun):  # type: ignore[union-attr]
        run = msg.requests  # type: ignore[union-attr]
        cols = np.frombuffer(run.raw, dtype=_RUN_FIELDS)
        by_order = np.flatnonzero((cols["op"] == codes.OP_CANCEL) | (cols["op"] == codes.OP_REPLACE))
        requests = [run[i] for i in by_order.tolist()]
    else:
        requests = msg.requests  # type: ignore[union-attr]
    out = []
    for r in requests:
        order_id, _, _, op, _ = _FIELDS.unpack(r.command)
        if (op == codes.OP_CANCEL or op == codes.OP_REPLACE) and account_of(order_id) is None:
            out.append((r.client_id, r.request_id))
    return out


def entitled(accounts: frozenset[int], command: bytes, account_of: AccountOf) -> bool:
    """Whether a client restricted to ``accounts`` may send the 80-byte ``command``. O(1)."""
    order_id, account, _, op, flags = _FIELDS.unpack(command)
    return _entitled(accounts, op, account, flags, order_id, account_of)


def _entitled(
    accounts: frozenset[int], op: int, account: int, flags: int, order_id: int, account_of: AccountOf
) -> bool:
    if op == codes.OP_NEW:
        return account in accounts
    if op == codes.OP_CANCEL or op == codes.OP_REPLACE:
        owner = account_of(order_id)
        return owner is None or owner in accounts
    if op == codes.OP_MASS_CANCEL:
        return bool(flags & codes.HAS_ACCOUNT) and account in accounts
    return op == OP_SESSION


def refusal(request: wire.Request) -> wire.Reply:
    """The ``NOT_ENTITLED`` answer to ``request``: one ``rejected not_entitled`` event naming the
    command's instrument and id, as the engine would name them in a rejection. O(1)."""
    order_id, _, instrument, _, _ = _FIELDS.unpack(request.command)
    event = _EVENT.pack(0, order_id, 0, 0, 0, 0, 0, instrument, codes.EV_REJECTED, codes.R_NOT_ENTITLED)
    return wire.Reply(request.client_id, request.request_id, wire.NOT_ENTITLED, events=event)


def screen_query(
    accounts: frozenset[int], query: wire.Query, account_of: AccountOf
) -> wire.QueryReply | None:
    """None if a client restricted to ``accounts`` may ask ``query``, else its ``NOT_ENTITLED`` answer.

    ``account_of`` gives the account of a live or recently ended order (what an
    order query can tell about), None for an order the group does not know. A
    query of an unknown kind passes (the node ignores it). O(1).
    """
    if query.kind == wire.QUERY_OPEN_ORDERS:
        if not query.has_account or query.account in accounts:
            return None
        body: dict = {"status": "not_entitled", "account": query.account}
    elif query.kind == wire.QUERY_ORDER:
        owner = account_of(query.order_id)
        if owner is None or owner in accounts:
            return None
        body = {"status": "not_entitled", "instrument": query.instrument, "id": query.order_id}
    else:
        return None
    return wire.QueryReply(query.client_id, query.query_id, wire.NOT_ENTITLED, "", json.dumps(body).encode())


def screen(accounts: frozenset[int], msg: wire.Request | wire.Requests, account_of: AccountOf) -> Screened:
    """Split a restricted client's request or bundle into the allowed part and the refusals.

    ``accounts`` is the client's (never empty: an empty list means no
    restriction, and the caller skips this module). A bundle whose every
    request is allowed comes back as it is. O(requests), vectorised over a
    packed run but for ``account_of`` of each cancel and replace.
    """
    if type(msg) is wire.Request:
        if entitled(accounts, msg.command, account_of):
            return Screened(msg, [])
        return Screened(None, [refusal(msg)])
    requests = msg.requests  # type: ignore[union-attr]
    if isinstance(requests, wire.RequestRun):
        return _screen_run(accounts, msg, requests, account_of)  # type: ignore[arg-type]
    allowed: list[wire.Request] = []
    refused: list[wire.Reply] = []
    for req in requests:
        if entitled(accounts, req.command, account_of):
            allowed.append(req)
        else:
            refused.append(refusal(req))
    if not refused:
        return Screened(msg, [])
    return Screened(wire.Requests(tuple(allowed)) if allowed else None, refused)


def _screen_run(
    accounts: frozenset[int], msg: wire.Requests, run: wire.RequestRun, account_of: AccountOf
) -> Screened:
    """:func:`screen` of a packed run: the rules as column operations, then one slice of the bytes."""
    cols = np.frombuffer(run.raw, dtype=_RUN_FIELDS)
    op, flags = cols["op"], cols["flags"]
    mine = _of_accounts(cols["account"], accounts)
    ok = (op == codes.OP_NEW) & mine
    ok |= (op == codes.OP_MASS_CANCEL) & ((flags & codes.HAS_ACCOUNT) != 0) & mine
    ok |= op == OP_SESSION
    by_order = np.flatnonzero((op == codes.OP_CANCEL) | (op == codes.OP_REPLACE))
    for i, order_id in zip(by_order.tolist(), cols["id"][by_order].tolist(), strict=True):
        owner = account_of(order_id)
        ok[i] = owner is None or owner in accounts
    if ok.all():
        return Screened(msg, [])
    records = np.frombuffer(run.raw, dtype=np.dtype((np.void, wire.REQUEST.size)))
    refused = [refusal(run[i]) for i in np.flatnonzero(~ok).tolist()]
    if not ok.any():
        return Screened(None, refused)
    return Screened(wire.Requests(wire.RequestRun(records[ok].tobytes())), refused)


def _of_accounts(column: np.ndarray, accounts: frozenset[int]) -> np.ndarray:
    """Which entries of a u64 ``column`` are in ``accounts``: a comparison per account for the
    usual handful (4x faster than ``np.isin``'s sort at a bundle's size), ``np.isin`` past that."""
    if len(accounts) > 16:
        return np.isin(column, np.fromiter(accounts, np.uint64, len(accounts)))
    mine = np.zeros(len(column), dtype=bool)
    for account in sorted(accounts):
        mine |= column == account
    return mine
