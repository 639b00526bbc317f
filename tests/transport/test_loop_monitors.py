"""The loop's connection monitors, polled by their file descriptors: a peer's dropped connection
wakes a sleeping poll and becomes a ``PeerDown``, every time it drops (the wakeup is re-armed);
a client's dropped connection is counted (``inbound_disconnects``).

Real sockets on loopback; every wait is bounded (a poll's timeout, never a measure).
"""

from __future__ import annotations

import zmq

from replication.protocol import wire
from replication.testing.harness import free_ports
from replication.transport.loop import SocketLoop

WAIT_MS = 5000  # a bound on each wait, far above what any of them takes


class _Machine:
    def __init__(self) -> None:
        self.seen: list = []

    def handle(self, src, msg, now):
        self.seen.append((src, msg))
        return []


class _Loop(SocketLoop):
    def run_once(self, timeout_ms: float) -> None:  # pragma: no cover - not used here
        raise AssertionError


def _connected(ctx: zmq.Context, endpoint: str, dealer: zmq.Socket) -> zmq.Socket:
    """A ROUTER bound at ``endpoint`` that has received a frame from ``dealer`` (so connected)."""
    peer = ctx.socket(zmq.ROUTER)
    peer.setsockopt(zmq.LINGER, 0)
    peer.bind(endpoint)
    for _ in range(50):  # the DEALER (IMMEDIATE) drops frames until it is connected
        try:
            dealer.send(b"hello", zmq.NOBLOCK)
        except zmq.Again:
            pass
        if peer.poll(100):
            peer.recv_multipart()
            return peer
    raise AssertionError("the loop's DEALER never connected")


def _wait_for(lp: _Loop, until) -> None:  # noqa: ANN001 - a predicate
    """Poll as the loop does (sleeping until a socket or descriptor is ready) until ``until()``."""
    for _ in range(20):
        events, now = lp.poll(WAIT_MS)
        lp.disconnects(events, now)
        if until():
            return
    raise AssertionError("the poll never woke for the monitor's event")


def test_a_peers_dropped_connection_wakes_the_poll_each_time_it_drops():
    mine, theirs = free_ports(2)
    machine = _Machine()
    ctx = zmq.Context()
    lp = _Loop(machine, "a", f"tcp://127.0.0.1:{mine}", {"b": f"tcp://127.0.0.1:{theirs}"}, ctx)
    try:
        assert lp.monitors  # (and none of them is a ZeroMQ socket of the poller: see _watch_monitor)
        assert all(not isinstance(s, zmq.Socket) or s is lp.router for s, _ in lp.poller.sockets)
        for drop in (1, 2):
            peer = _connected(ctx, f"tcp://127.0.0.1:{theirs}", lp.dealers["b"])
            peer.close(0)
            _wait_for(lp, lambda n=drop: len(machine.seen) == n)
            assert machine.seen[-1] == ("b", wire.PeerDown("b"))
    finally:
        lp.close()


def test_a_clients_dropped_connection_is_counted():
    (mine,) = free_ports(1)
    ctx = zmq.Context()
    lp = _Loop(_Machine(), "a", f"tcp://127.0.0.1:{mine}", {}, ctx)
    try:
        client = ctx.socket(zmq.DEALER)
        client.setsockopt(zmq.LINGER, 0)
        client.connect(f"tcp://127.0.0.1:{mine}")
        client.send_multipart([b"not a message"])
        assert lp.router.poll(WAIT_MS)  # connected: its frame arrived
        lp.router.recv_multipart()  # (read: the router has nothing more to wake the poll for)
        client.close(0)
        _wait_for(lp, lambda: lp.counters.get("inbound_disconnects") == 1)
    finally:
        lp.close()
