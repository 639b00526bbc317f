"""Socket options and process tuning, in one place, for every ZeroMQ process of a group.

For: the options of a node's ROUTER (``tune_router``), of a DEALER to a peer
or a node (``tune_dealer``, shared by the drivers and ``replication.Client``),
of the stream's XPUB (``tune_pub``), and the cyclic GC's setup for a
driver's loop (``tune_gc``). Not for: binding, connecting, CURVE (``curve``) or the
loop itself (``loop``).
"""

from __future__ import annotations

import gc

import zmq

from ..protocol import trust, wire

# Frames queued per connection, each way, on a node's ROUTER. Bounded memory: a client that sends
# without reading fills its reply pipe to this and its further replies are dropped and counted
# (``replies_dropped_hwm``; it re-asks, and the dedupe table answers); one that sends faster than
# the node reads waits in its own socket. A client that reads has about one reply frame per pass
# queued. Frames are at most wire.MAX_INBOUND_FRAME in, one reply bundle (BUNDLE_BYTES, usually
# far less) out. (At 1,000,000 a client that never read grew a primary by ~170 MB/s.)
ROUTER_HWM = 200
DEALER_HWM = 10_000  # Entries to one peer: past it they are dropped (counted) and the peer refills
PUB_MAX_INBOUND = 4096  # what an XPUB receives is subscriptions only

# The cyclic GC's youngest-generation threshold while a driver runs. A pass lives on
# per-request objects (decoded requests, queue entries) that all die when their batch is
# sequenced; at CPython's 700, a 4,096-request bundle set off a dozen young collections
# that promoted them all, and the old generations then filled and were scanned whole
# (about 13% of a loaded primary's CPU). Above a pass's live objects, almost all of them
# die young and unscanned. Startup objects are frozen out of every scan (gc.freeze).
GC_THRESHOLD0 = 100_000


def tune_gc() -> None:
    """Set the process's cyclic GC up for a driver's loop (see ``GC_THRESHOLD0``): freeze what
    startup made, then collect the young generation only past ``GC_THRESHOLD0`` objects."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD0, *gc.get_threshold()[1:])


def tune_router(sock: zmq.Socket) -> None:
    """A node's (or the witness's) ROUTER: bounded queues, small inbound frames, loud full pipes."""
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, ROUTER_HWM)
    sock.setsockopt(zmq.SNDHWM, ROUTER_HWM)
    # A bigger frame is never buffered: ZeroMQ drops it and disconnects its sender (counted by the
    # loop as inbound_disconnects; the sender may reconnect, and a real peer never sends one).
    sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_INBOUND_FRAME)
    # A full reply pipe (a client that does not read) raises instead of dropping silently.
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)


def tune_dealer(sock: zmq.Socket) -> None:
    """A DEALER to a node (a peer's, or a client's): nothing lingers or queues for a dead node
    (``IMMEDIATE``; a client turns it back off), bounded queues, quick reconnects, keepalives."""
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IMMEDIATE, 1)
    sock.setsockopt(zmq.SNDHWM, DEALER_HWM)
    sock.setsockopt(zmq.RCVHWM, DEALER_HWM)
    sock.setsockopt(zmq.RECONNECT_IVL, 5)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 50)
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)


def tune_peer_dealer(sock: zmq.Socket, me: str) -> None:
    """A driver's DEALER to a peer: ``tune_dealer``, identified as ``peer:<me>`` (``trust`` reads
    that routing id); the peer answers on our ROUTER, so what comes back here is small."""
    sock.setsockopt(zmq.IDENTITY, trust.PEER_PREFIX + me.encode())
    tune_dealer(sock)
    sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_INBOUND_FRAME)


def tune_pub(sock: zmq.Socket) -> None:
    """The entry stream's XPUB: nothing lingers; it only ever receives subscriptions."""
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, PUB_MAX_INBOUND)
