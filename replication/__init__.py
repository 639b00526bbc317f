"""matchcore replication: a primary, hot standbys, a witness and clients.

What this package is for: keeping one or more standby engines in lockstep
with a primary by replaying its sequenced command stream, detecting
divergence by digest, failing over with no acknowledged order lost, and a
client library that hides all of that. What it is not for: matching (that is
``matching``), or any transport other than ZeroMQ (but see "Sans-IO" below:
the logic itself has no transport at all).

Layers (lowest first; each imports only those below it, ``tests/layout`` checks it)
------------------------------------------------------------------------------------
``native``     the C loops of the hot and catch-up paths, and their pure-Python twins.
``protocol``   the sans-IO core: ``wire`` (messages, codec, records, outputs), ``settings``,
               ``replica`` (engine + dedupe table + seq/epoch/digest), ``journal_api`` (what a
               machine may ask of a journal), ``session``, ``queues``, ``trust``, ``timers``,
               ``node`` (``NodeMachine`` and its roles: primary, standby, diverged),
               ``witness`` (``WitnessMachine``) and ``client_core`` (``ClientCore``).
``storage``    the file and memory journals, the record format, the witness's state file.
``transport``  the group file, the socket loop and the node and witness drivers, CURVE, metrics.
``client``     ``Client`` (one group), ``Router`` (several), ``MarketData`` (the public feed), the operator's calls.
``testing``    the simulator and its checker, golden traces, chaos, the process harness.
``ops``        the ``matchcore`` subcommands and the demo.

Sans-IO interface (what the driver and the simulator both use)
--------------------------------------------------------------
Every state machine (``NodeMachine``, ``WitnessMachine``, ``ClientCore``)
is deterministic: it reads no clock, no randomness, opens no socket, and
never iterates an unordered container to decide output order. Time is an
input: ``now`` is a float number of seconds from any monotonic origin.

    outputs = machine.handle(src, msg, now)   # one decoded inbound message
    outputs = machine.tick(now)               # timers, and flush of queued work

``src`` is an address: a ``str`` is a peer name from the group file (``"a"``,
``"b"``, ``"witness"``, or ``"operator"`` for local tooling), a ``bytes`` is an
opaque client address (a ZeroMQ routing id in production, anything hashable
and ordered in a simulator). ``msg`` is one of the dataclasses of
``replication.protocol.wire``. Outputs are a ``list`` of:

``wire.Send(dest, msg, needs_sync=True)``
    deliver ``msg`` to ``dest`` (same address space as ``src``). Delivery may
    fail, be delayed, duplicated or reordered: the protocol tolerates it.
    ``needs_sync``: the message may leave only once the journal's appends so
    far are durable (a driver that defers its fsync syncs first); the machine
    clears it where that is safe (the primary's ``Entries``).
``wire.Publish(msg)``
    best-effort broadcast to stream subscribers (market data, audit).

Effects that are not messages (journal writes, snapshots) are performed by
the machine on the injected ``journal`` object, synchronously, before the
outputs that depend on them are returned, through the interface of
``protocol.journal_api.JournalBase``. ``storage.journal.MemoryJournal`` has the
same interface as ``storage.journal.FileJournal`` (and can simulate a crash with a
torn tail) so a simulator can run many nodes in one process. The engine is
injected as a factory (``engine_factory()`` -> new engine,
``engine_factory.restore(blob)`` -> restored engine; any class with the
``matching.Engine`` surface works, e.g. ``matching.ReferenceEngine``).

Protocol in one paragraph: the primary of ``epoch`` sequences requests
(``Entries`` to every peer, ``Publish`` with events), and in ``sync`` mode
releases a reply once every member of its in-sync set (ISR) acked the entry
(``Ack``, or a ``Heartbeat`` whose digest proves the same history). The
witness records the ISR (``IsrUpdate``/``IsrAck``): a new epoch starts with
all other nodes in it; a member that holds replies up (dead, or no progress
for ``heartbeat_timeout``) is dropped only after the witness confirmed, and a
standby that caught up is added back. Only ISR members may be promoted
(``VoteRequest``/``Vote``; at most one grant per epoch, only if the witness
lost the primary too), so nothing acknowledged is lost; an empty ISR is
"solo" (no automatic fail-over). A standby (re)joins with ``Join``; the
primary answers ``Fence(seq)``: "your journal agrees up to seq" (truncate the
rest), then ``Entries`` / ``SnapshotChunk`` and ``Refill`` on gaps.
Switchover: ``Switchover`` to the primary, which drains (its heartbeat
names the target), sends ``Handover`` (re-sent until the target serves) and
follows the target; the target asks the witness for the next epoch, which
grants a handover's target at once (without a witness it promotes itself).
An operator's ``Promote`` also asks the witness (``VoteRequest.operator``),
which keeps one grant per epoch for it too (``operator_promote``).

A driver must: call ``handle`` for each inbound message, call ``tick`` after
each batch of inbound messages and at least every ``heartbeat_interval`` s,
then perform the outputs in list order. Between passes it may sleep for
``machine.idle_wait(now)`` seconds (the time to the machine's next timer,
rounded up to whole milliseconds; 0 when work is queued) unless a message
arrives: that is how the ZeroMQ driver keeps idle nodes off the CPU. Batching (one journal append and one
``Entries`` message for all requests that arrived since the last ``tick``)
falls out of that: requests are queued by ``handle`` and sequenced by
``tick``. A client's ``wire.Requests`` bundle may be fed in one call,
``outputs = node.handle_requests(src, msg.requests, now)`` (``NodeMachine``
only; the ZeroMQ driver does): the same outputs, in the same order, and the
same state as ``handle(src, r, now)`` for each request in turn, with the
per-request work of a primary's usual case done once per bundle. Peer
connection loss may be signalled as ``handle(peer, wire.PeerDown(peer), now)``
— a hint that shortens the heartbeat timeout; never required for correctness.
"""

from __future__ import annotations

from .protocol.session import SessionFenced

__all__ = ["Client", "MarketData", "ReportsGone", "Router", "SessionFenced", "__version__"]


def __getattr__(name: str):
    if name == "__version__":  # matchcore's one version (matching/_version.py)
        from matching._version import __version__

        return __version__
    # Lazy so that the sans-IO modules can be imported without pyzmq.
    if name == "Client":
        from .client.group_client import Client

        return Client
    if name == "Router":
        from .client.router import Router

        return Router
    if name == "ReportsGone":  # lazy too: its module loads numpy, which a node's CLI sets up first
        from .protocol.reports import ReportsGone

        return ReportsGone
    if name == "MarketData":
        from .client.market_data import MarketData

        return MarketData
    raise AttributeError(name)
