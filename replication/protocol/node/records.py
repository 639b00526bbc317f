"""Named records of the node's state: what a role keeps in its queues and tables.

For: the small immutable records ``NodeMachine`` and its roles keep (a client
request held while running for primary, a catch-up window in flight, a
handover waiting for its proof, a lease ask), so code reads ``held.since``
rather than ``held[0][2]``. Not for: wire messages (``protocol.wire``) or the
primary's reply queue (``protocol.queues``).
"""

from __future__ import annotations

from typing import NamedTuple

from .. import wire


class HeldRequest(NamedTuple):
    """A client request a standby keeps while it runs for primary: served if it promotes."""

    src: wire.Address  # the client's address: the answer goes there
    request: wire.Request
    since: float  # when it arrived (a long candidacy refuses it after a heartbeat timeout)


class RefillWindow(NamedTuple):
    """The catch-up chunks a primary has in flight to one node (see ``CatchUp.on_refill``)."""

    epoch: int  # the primary's epoch when it sent them
    asked: int  # the first seq the node asked for (the window starts there)
    sent_to: int  # sent up to this seq
    with_fence: bool  # sent unasked with the Fence that accepted a Join, and not asked for since


class PendingHandover(NamedTuple):
    """After a switchover: the Handover we sent our target, re-sent until it proves it serves."""

    target: str
    message: wire.Handover
    sent_at: float


class LeaseAsk(NamedTuple):
    """One lease ask a primary sent (its stamp and when): an echo of it renews the lease."""

    stamp: int
    sent_at: float
