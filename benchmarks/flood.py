"""Flood harness: a well-behaved client's latency while another client floods the primary.

Set-up, on loopback with real processes (``replication.testing.harness.Group``, sync
mode): a "good" client sends ``--orders`` orders one at a time (each waits
for its reply: the latency a careful trading client sees) and records each
round trip. It does so twice: alone, then while a flooder (a raw ZeroMQ
DEALER in a process of its own) sends bundles of 1,024 new orders as fast
as its socket takes them and never reads a reply. The flooder meets the
primary's per-client bound (``max_in_flight``): its further requests are
answered ``busy`` and not sequenced, so it holds at most that many requests
queued; its unread replies are bounded by the ROUTER's high-water mark.

Reported: the good client's p50 / p99 / p99.9 / max round trip in both runs,
the flooded/quiet ratio, the requests the flooder sent, and the primary's
``requests_busy``, ``replies_dropped_hwm`` and peak RSS in the flooded run.
On 2 shared cores the flooder's process and the I/O it causes compete with the
nodes for CPU: the ratio is an upper bound on what the protocol costs.

Not a throughput benchmark, and not a test: nothing is asserted here
(``tests/faults/test_flood.py`` asserts the bounds).
"""

from __future__ import annotations

import argparse
import multiprocessing
import threading
import time
from typing import Any

from . import common, groups

SUMMARY = "a well-behaved client's latency while another client floods the primary"

FULL_ORDERS = 5000
QUICK_ORDERS = 1000
GOOD_CID, FLOOD_CID = 11, 900


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of this harness (besides the common ones)."""
    parser.add_argument("--orders", type=int, default=None, help="the good client's orders per run")
    parser.add_argument(
        "--max-in-flight", type=int, default=4096, help="the group's max_in_flight (default 4096)"
    )


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _flood(endpoint: str, stop: Any, sent: Any) -> None:
    """(A child process.) New requests in bundles of 1,024, as fast as the socket takes them; never a read.

    The orders repeat (the engine rejects the repeated ids: each request is still sequenced).
    """
    import zmq

    from replication.client.group_client import MAX_BUNDLE, pack_commands
    from replication.protocol import wire

    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    records = b"".join(
        pack_commands(
            {"op": "new", "instrument": 7, "id": 10**9 + i, "side": "buy", "price": 50, "qty": 1}
            for i in range(MAX_BUNDLE)
        )
    )
    rid = 1
    try:
        while not stop.is_set():
            frame = wire.encode_request_records(FLOOD_CID, rid, records)
            while not stop.is_set():
                try:
                    s.send(frame, zmq.NOBLOCK)
                    sent.value += MAX_BUNDLE
                    break
                except zmq.Again:
                    time.sleep(0.001)
            rid += MAX_BUNDLE
    finally:
        s.close(0)
        ctx.term()


def _good_run(g: Any, orders: int) -> list[int]:
    """Round trips (ns) of ``orders`` orders sent one at a time."""
    from replication.testing.harness import order

    lat = []
    with g.client(GOOD_CID) as c:
        for i in range(orders):
            t0 = time.perf_counter_ns()
            c.apply(order(i))
            lat.append(time.perf_counter_ns() - t0)
    return lat


def _measure(orders: int, flood: bool, max_in_flight: int) -> dict[str, Any]:
    with groups.group(("a", "b"), "sync", extra={"snapshot_every": 0, "max_in_flight": max_in_flight}) as g:
        g.start_all()
        g.wait_ready()
        pid = g.procs["a"].pid
        # The flooder is a process of its own: in a thread here it would take the GIL from the
        # good client and count against the group what is this process's contention.
        mp = multiprocessing.get_context("spawn")
        stop, sent, peak = mp.Event(), mp.Value("q", 0), [_rss_mb(pid)]

        def sample() -> None:
            while not stop.is_set():
                peak.append(_rss_mb(pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        flooder = mp.Process(target=_flood, args=(g.endpoints["a"], stop, sent)) if flood else None
        sampler.start()
        try:
            if flooder is not None:
                flooder.start()
                time.sleep(1.0)  # the flood under way first (the child's start-up included)
            lat = _good_run(g, orders)
        finally:
            stop.set()
            sampler.join(10)
            if flooder is not None:
                flooder.join(10)
                if flooder.is_alive():
                    flooder.kill()
        st = g.status(1.0)["a"]
    h = common.histogram(lat)
    return {
        "flood": flood,
        "latency_ns": common.latency_summary(h),
        "flood_requests_sent": sent.value,
        "requests_busy": st.get("counters", {}).get("requests_busy", 0),
        "replies_dropped_hwm": st.get("driver", {}).get("replies_dropped_hwm", 0),
        "primary_rss_peak_mb": round(max(peak), 1),
        "epoch": st.get("epoch"),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    orders = args.orders or args.commands or (QUICK_ORDERS if args.quick else FULL_ORDERS)
    info = common.machine_info()
    machine = common.machine_line(info)
    result = common.result_skeleton("flood", args) | {"machine": info, "orders": orders, "runs": []}
    with groups.sigterm_interrupts():
        try:
            for flood in (False, True):
                common.say(f"{'flooded' if flood else 'quiet'} run: {orders} orders one at a time")
                result["runs"].append(_measure(orders, flood, args.max_in_flight))
        except KeyboardInterrupt:
            result["interrupted"] = True
    quiet = next((r for r in result["runs"] if not r["flood"]), None)
    loud = next((r for r in result["runs"] if r["flood"]), None)
    if quiet and loud:
        result["ratio"] = {
            k: round(loud["latency_ns"][k] / quiet["latency_ns"][k], 2)
            for k in ("p50", "p99")
            if quiet["latency_ns"].get(k) and loud["latency_ns"].get(k)
        }
    return common.finish("flood", result, args, machine, _print, _plot)


def _print(result: dict[str, Any], machine: str) -> None:
    rows = []
    for r in result["runs"]:
        lat = r["latency_ns"]
        rows.append(
            [
                "flooded" if r["flood"] else "quiet",
                common.fmt_ns(lat.get("p50")),
                common.fmt_ns(lat.get("p99")),
                common.fmt_ns(lat.get("p99.9")),
                common.fmt_ns(lat.get("max")),
                common.fmt_int(r["flood_requests_sent"]),
                common.fmt_int(r["requests_busy"]),
                common.fmt_int(r["replies_dropped_hwm"]),
                f"{r['primary_rss_peak_mb']:.0f} MB",
            ]
        )
    ratio = result.get("ratio", {})
    common.print_table(
        f"A well-behaved client's round trip ({result['orders']} orders, one at a time), quiet and flooded",
        ["run", "p50", "p99", "p99.9", "max", "flood sent", "busy", "replies dropped", "primary RSS"],
        rows,
        note=f"flooded / quiet: p50 x{ratio.get('p50', '-')}, p99 x{ratio.get('p99', '-')}. {machine}",
    )


def _plot(result: dict[str, Any], out: str, machine: str) -> list[str]:  # noqa: ARG001
    return []


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(common.harness_main(sys.modules[__name__]))
