"""Process-level fault: a client that floods without reading, and an outsider sending oversized frames.

A real group (primary a, standby b, witness) on loopback. While a
well-behaved client sends its orders, a flooder sends request bundles as
fast as its socket takes them and never reads a reply, and an outsider sends
frames larger than ``wire.MAX_INBOUND_FRAME``. The primary must answer the
well-behaved client completely and correctly, keep its memory bounded (its
RSS is sampled throughout), keep its epoch (no spurious fail-over), and
lose or execute twice nothing it acknowledged. Nothing here asserts a time.

``MATCHCORE_FAULT_SCALE`` (default 1) multiplies the flood and the orders.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

zmq = pytest.importorskip("zmq")

from replication.client.group_client import MAX_BUNDLE, pack_commands  # noqa: E402
from replication.protocol import wire  # noqa: E402
from replication.protocol.replica import Replica  # noqa: E402
from replication.testing.harness import Group, order  # noqa: E402

pytestmark = pytest.mark.timeout(180)

SCALE = int(os.environ.get("MATCHCORE_FAULT_SCALE", "1"))
GOOD_ORDERS = 600 * SCALE
FLOOD_SECONDS = 3.0 * SCALE  # the flooder sends bundles of MAX_BUNDLE requests this long
FRESH_BUNDLES = 8  # of new orders, first (then re-sends of the first bundle)
OVERSIZED = [wire.MAX_INBOUND_FRAME + 1, 16 << 20, 64 << 20]  # bytes per outsider frame
RSS_GROWTH_MB = 120  # the primary's resident memory, at any sample, above its size before the flood
FLOOD_CID, GOOD_CID = 900, 11


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def flood(endpoint: str, stop: threading.Event, sent: list[int]) -> None:
    """Send request bundles as fast as our socket takes them and never read a reply; count them.

    The first ``FRESH_BUNDLES`` are new orders (instrument 7): past the node's per-client bound
    they are answered busy. Then the last bundle again and again: every request of it executed,
    so each re-send makes the node answer its 1,024 results from the dedupe table (replies with
    events) to a client that never reads them: what must not grow the node's memory.
    """
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    frames = [
        wire.encode_request_records(
            FLOOD_CID,
            1 + k * MAX_BUNDLE,
            b"".join(
                pack_commands(
                    {
                        "op": "new",
                        "instrument": 7,
                        "id": 10**9 + k * MAX_BUNDLE + i,
                        "side": "buy",
                        "price": 50 + i % 10,
                        "qty": 1,
                    }
                    for i in range(MAX_BUNDLE)
                )
            ),
        )
        for k in range(FRESH_BUNDLES)
    ]
    n, end = 0, time.monotonic() + FLOOD_SECONDS
    try:
        while time.monotonic() < end and not stop.is_set():
            frame = frames[min(n, FRESH_BUNDLES - 1)]
            try:
                s.send(frame, zmq.NOBLOCK)
                n += 1
            except zmq.Again:
                time.sleep(0.001)  # our own queue is full: the node reads no faster
    finally:
        sent.append(n * MAX_BUNDLE)
        s.close(0)
        ctx.term()


def oversized(endpoint: str) -> None:
    """Frames past the node's MAXMSGSIZE (ZeroMQ reconnects the socket after each disconnect)."""
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    try:
        for size in OVERSIZED:
            s.send(wire.encode(wire.Status(b"x" * size)))  # a well-formed frame, only too big
            time.sleep(0.2)
    finally:
        s.close(0)
        ctx.term()


def good_flow(c, n: int, window: int = 16) -> tuple[list[int], dict[int, wire.Reply]]:
    """Orders 0..n-1 pipelined: their request ids, and every final reply by request id."""
    got: dict[int, wire.Reply] = {}
    rids: list[int] = []
    deadline = time.monotonic() + 90
    while len(got) < n:
        assert time.monotonic() < deadline, f"the well-behaved client stalled at {len(got)}/{n}"
        while len(rids) < n and c.in_flight < window:
            rids.append(c.send(order(len(rids))))
        for r in c.poll_replies(0.005):
            got[r.request_id] = r
    return rids, got


def test_a_flood_and_oversized_frames_neither_starve_others_nor_grow_memory_nor_fail_over():
    # A bound below one bundle: the flood's first bundle alone meets it, whatever the timing. A
    # silence timeout of a second: on 2 shared cores the flood's CPU alone can deschedule a node
    # for the default 100 ms, which is a real (if unwanted) detection; what must not cause one
    # here is the flood reaching the node's memory or loop (the oversized frames once did).
    extra = {"snapshot_every": 0, "max_in_flight": 1000, "timeout_ms": 1000}
    g = Group(("a", "b"), "sync", extra=extra)
    try:
        g.start_all()
        g.wait_ready()
        pid = g.procs["a"].pid
        stop, flood_sent, peak = threading.Event(), [], [rss_mb(pid)]
        flooder = threading.Thread(target=flood, args=(g.endpoints["a"], stop, flood_sent))
        outsider = threading.Thread(target=oversized, args=(g.endpoints["a"],))
        flooder.start()
        outsider.start()
        c = g.client(GOOD_CID)
        try:
            rids, replies, during = [], {}, 0
            sampler_stop = threading.Event()

            def sample() -> None:
                while not sampler_stop.is_set():
                    peak.append(rss_mb(pid))
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample)
            sampler.start()
            try:
                rids, replies = good_flow(c, GOOD_ORDERS)
                outsider.join(30)
                # Before the flooder and this client leave: each oversized frame cost its sender
                # its connection (besides, the outsider's own close and the flooder's, at most 2).
                during = g.status(1.0)["a"].get("driver", {}).get("inbound_disconnects", 0)
                flooder.join(60)  # the flood ends on its own; memory is sampled all along
            finally:
                stop.set()
                sampler_stop.set()
                sampler.join(5)
        finally:
            c.close()
        flooder.join(10)
        outsider.join(10)
        st = g.wait_for(lambda s: s["b"].get("last_seq") == s["a"].get("last_seq"), what="b level with a")
        drv = st["a"].get("driver", {})
        counters = st["a"]["counters"]
    finally:
        try:
            for name in ("a", "b", "witness"):
                g.kill(name, 15)  # SIGTERM: a clean stop, then the journal is read
            entries = g.journal_entries("a")
            logs = g.tail_logs(12)
        finally:
            g.stop()

    # The well-behaved client: every order answered OK (none refused busy: its window is small).
    assert len(rids) == GOOD_ORDERS and sorted(replies) == sorted(rids)
    assert {r.status for r in replies.values()} == {wire.OK}
    # The flood was refused past its bound, and the oversized frames cost their senders the link.
    assert counters.get("requests_busy", 0) > 0, counters
    assert during >= len(OVERSIZED), drv
    print(f"flood: {flood_sent} requests sent; primary RSS peak {max(peak):.0f} MB; {counters}; {drv}")
    # Bounded memory; no fail-over.
    assert max(peak) - peak[0] < RSS_GROWTH_MB, f"primary RSS grew from {peak[0]:.0f} to {max(peak):.0f} MB"
    assert st["a"]["role"] == "primary" and st["a"]["epoch"] == 1 and st["b"]["epoch"] == 1, logs
    assert st["b"]["counters"].get("promotions", 0) == 0
    # Nothing acknowledged lost or executed twice; each reply carries the history's events.
    seen: dict[tuple[int, int], int] = {}
    replica = Replica()
    events_at: dict[int, bytes] = {}
    for e in entries:
        assert (e.client_id, e.request_id) not in seen, f"executed twice: {(e.client_id, e.request_id)}"
        seen[(e.client_id, e.request_id)] = e.seq
        events_at[e.seq], _ = replica.execute(e.epoch, e.seq, e.client_id, e.request_id, e.command)
    for rid, r in replies.items():
        assert seen.get((GOOD_CID, rid)) == r.seq, (
            f"request {rid} acknowledged at {r.seq}, not in the journal there"
        )
        assert r.events == events_at[r.seq]
