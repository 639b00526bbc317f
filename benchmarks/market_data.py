"""Market-data harness: what the public feed costs a node, how fast it reaches subscribers, and a stalled one.

For: the figures of the public feed (DESIGN.md "Public market data"):

1. **Feed CPU per order, in process** (no sockets): a replica applying the
   standard mix (:mod:`benchmarks.workload`) in batches of 1,024, as a
   primary does (``execute_batch``) and as a standby does (``apply_entries``
   of the primary's packed runs), with the feed off and on, interleaved
   (``--pairs`` pairs, medians). The difference is what every node pays per
   order for the feed, subscribers or not.
2. **A group** (``a`` primary, ``b`` standby, sync, on loopback), one run per
   setting: the feed off; on with 1 and with 10 subscribers
   (``replication.MarketData`` each in a process of its own, all on node a);
   on with 1 subscriber plus one that never reads. Each run has a throughput
   phase (``--orders`` orders of the standard mix, bundles of 1,024) —
   orders/s, updates/s the primary published, each node's CPU per order and
   the primary's CPU per update — and a latency phase (``--latency-orders``
   orders one at a time): the client's round trip p50/p99, and order sent ->
   its first update at a subscriber p50/p99 (both clocks CLOCK_MONOTONIC, one
   machine).

Not for: ``make test`` (nothing is asserted; ``tests/system/test_market_data_process.py``
proves the behaviour). CPU per order is the figure to compare on a shared
machine; rates and latencies move with the load (``uptime`` is recorded).
Run: ``python -m benchmarks.market_data [--quick] [--pairs 3]`` or ``matchcore bench market_data``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from typing import Any

from . import common, groups

SUMMARY = (
    "the public market-data feed: CPU per order on a node, updates/s, latency to subscribers, a stalled one"
)

FULL_ORDERS, QUICK_ORDERS = 100_000, 20_000
FULL_LATENCY, QUICK_LATENCY = 2000, 300
BATCH = 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of this harness (besides the common ones)."""
    parser.add_argument(
        "--pairs", type=int, default=None, help="interleaved off/on pairs in process (default 3)"
    )
    parser.add_argument("--latency-orders", type=int, default=None, help="orders sent one at a time per run")
    parser.add_argument("--no-group", action="store_true", help="only the in-process figure")


# -- 1. in process -----------------------------------------------------------------------------


def _replica_pass(feed: bool, setup: Any, ops: Any, runs: list | None) -> tuple[float, list]:
    """CPU seconds of one replica applying ``ops`` after ``setup`` (untimed); as a primary when
    ``runs`` is None (returns its packed runs), else as a standby applying ``runs``."""
    from matching import Engine
    from replication.protocol.replica import Replica
    from replication.transport.md_engine import feed_engine_factory

    r = Replica(feed_engine_factory(Engine, enabled=feed))
    r.execute_batch(1, [0] * len(setup), [0] * len(setup), setup.tobytes())
    made: list = []
    t0 = time.process_time()
    if runs is None:
        raw = ops.tobytes()
        size = ops.dtype.itemsize
        for start in range(0, len(ops), BATCH):
            n = min(BATCH, len(ops) - start)
            run, _, _ = r.execute_batch(1, [0] * n, [0] * n, raw[start * size : (start + n) * size])
            made.append(run)
    else:
        for run in runs:
            r.apply_entries(run)
    return time.process_time() - t0, made


def feed_cost(orders: int, pairs: int, seed: int) -> dict[str, Any]:
    """µs of CPU per order with the feed off and on, primary and standby paths, interleaved."""
    from .workload import command_array, generate

    wl = generate(orders, 1, seed)
    setup, ops = command_array(wl.setup), command_array(wl.ops)
    _, runs = _replica_pass(False, setup, ops, None)
    # The standby replays runs that start after the setup: renumber by building them on a
    # replica that applied the setup (the same runs the primary pass made).
    out: dict[str, list[float]] = {"primary_off": [], "primary_on": [], "standby_off": [], "standby_on": []}
    for _ in range(pairs):
        for feed in (False, True):
            s, _ = _replica_pass(feed, setup, ops, None)
            out[f"primary_{'on' if feed else 'off'}"].append(s * 1e6 / len(ops))
            s, _ = _replica_pass(feed, setup, ops, runs)
            out[f"standby_{'on' if feed else 'off'}"].append(s * 1e6 / len(ops))
    med = {k: round(statistics.median(v), 3) for k, v in out.items()}
    return {
        "orders": len(ops),
        "pairs": pairs,
        "us_per_order": {k: [round(x, 3) for x in v] for k, v in out.items()},
        "median_us_per_order": med,
        "feed_us_per_order": {
            "primary": round(med["primary_on"] - med["primary_off"], 3),
            "standby": round(med["standby_on"] - med["standby_off"], 3),
        },
    }


# -- 2. a group ---------------------------------------------------------------------------------


def _subscriber(path: str, instruments: list[int], stop: Any, ready: Any, out_path: str) -> None:
    """(A child process.) Follow the feed of node a; write when each group seq first arrived."""
    from replication import MarketData

    first: dict[int, int] = {}
    n = 0
    md = MarketData.from_config(path, instruments=instruments, node="a")
    try:
        while not stop.is_set():
            got = md.poll(0.01)
            now = time.monotonic_ns()
            n += len(got)
            for d in got:
                first.setdefault(d["seq"], now)
            if all(md.synced(i) for i in instruments):
                ready.set()
        counters = md.counters()
    finally:
        md.close()
    with open(out_path, "w") as f:
        json.dump({"first": first, "updates": n, "counters": counters}, f)


def _stalled_sub(endpoint: str) -> Any:
    import zmq

    from replication.transport.market_data_pub import md_endpoint

    s = zmq.Context.instance().socket(zmq.SUB)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVHWM, 1)
    s.setsockopt(zmq.SUBSCRIBE, b"")
    s.connect(md_endpoint(endpoint))
    return s  # never read


def _throughput(g: Any, records: list, setup: list) -> dict[str, Any]:
    with g.client(31) as c:
        for start in range(0, len(setup), BATCH):
            c.send_batch(setup[start : start + BATCH])
        while c.in_flight:
            c.poll_replies(0.01)
        before = g.status(2.0)
        cpu0 = {n: groups.cpu_seconds(g.procs[n].pid) for n in ("a", "b")}
        t0 = time.perf_counter()
        sent = 0
        while sent < len(records) or c.in_flight:
            while sent < len(records) and c.in_flight < 4 * BATCH:
                c.send_batch(records[sent : sent + BATCH])
                sent += min(BATCH, len(records) - sent)
            c.poll_replies(0.005)
        wall = time.perf_counter() - t0
        cpu1 = {n: groups.cpu_seconds(g.procs[n].pid) for n in ("a", "b")}
        after = g.status(2.0)
    n = len(records)
    md = {
        name: after[name].get("driver", {}).get("md_updates", 0)
        - before[name].get("driver", {}).get("md_updates", 0)
        for name in ("a", "b")
    }
    cpu = {name: (cpu1[name] or 0) - (cpu0[name] or 0) for name in ("a", "b")}
    return {
        "orders": n,
        "orders_per_s": round(n / wall),
        "cpu_us_per_order": {k: round(v * 1e6 / n, 2) for k, v in cpu.items()},
        "updates_published": md,
        "updates_per_s_primary": round(md["a"] / wall),
        "primary_cpu_us_per_update": round(cpu["a"] * 1e6 / md["a"], 3) if md["a"] else None,
    }


def _latency(g: Any, orders: int) -> tuple[list[int], dict[int, int]]:
    """Round trips (ns) of orders sent one at a time, and each one's (seq -> send time)."""
    from replication.testing.harness import order

    lat, sent_at = [], {}
    with g.client(32) as c:
        for i in range(orders):
            t0 = time.monotonic_ns()
            rid = c.send(order(10_000_000 + i))
            reply = None
            while reply is None:
                for r in c.poll_replies(0.5):
                    if r.request_id == rid:
                        reply = r
            lat.append(time.monotonic_ns() - t0)
            sent_at[reply.seq] = t0
    return lat, sent_at


def _group_run(label: str, subs: int, stalled: bool, feed: bool, orders: int, latency_orders: int, seed: int):
    mp = multiprocessing.get_context("spawn")
    setup, records = groups.mix_records(orders, seed)
    tmp = tempfile.mkdtemp(prefix="md-bench-")
    extra = {"snapshot_every": 0, "market_data": 1 if feed else 0}
    with groups.group(("a", "b"), "sync", extra=extra) as g:
        g.start_all()
        g.wait_ready()
        stop = mp.Event()
        procs, readies, outs = [], [], []
        for k in range(subs):
            ready = mp.Event()
            out = os.path.join(tmp, f"sub{k}.json")
            p = mp.Process(target=_subscriber, args=(g.path, [1, 2], stop, ready, out))
            p.start()
            procs.append(p)
            readies.append(ready)
            outs.append(out)
        stuck = _stalled_sub(g.endpoints["a"]) if stalled else None
        try:
            for r in readies:
                r.wait(30)
            tp = _throughput(g, records, setup)
            lat, sent_at = _latency(g, latency_orders)
        finally:
            stop.set()
            for p in procs:
                p.join(30)
                if p.is_alive():
                    p.kill()
            if stuck is not None:
                stuck.close(0)
    to_sub: list[int] = []
    sub_counters = []
    for out in outs:
        try:
            with open(out) as f:
                got = json.load(f)
        except OSError:
            continue
        sub_counters.append(got["counters"])
        first = {int(k): v for k, v in got["first"].items()}
        to_sub += [first[s] - t for s, t in sent_at.items() if s in first]
    return {
        "run": label,
        "feed": feed,
        "subscribers": subs,
        "stalled_subscriber": stalled,
        "throughput": tp,
        "client_round_trip_ns": common.latency_summary(common.histogram(lat)),
        "order_to_subscriber_ns": common.latency_summary(common.histogram(to_sub)) if to_sub else None,
        "subscriber_counters": sub_counters,
    }


RUNS = (  # label, subscribers, a stalled one, feed on
    ("feed off", 0, False, False),
    ("1 subscriber", 1, False, True),
    ("10 subscribers", 10, False, True),
    ("1 subscriber + 1 stalled", 1, True, True),
)


def run(args: argparse.Namespace) -> dict[str, Any]:
    orders = args.commands or (QUICK_ORDERS if args.quick else FULL_ORDERS)
    latency_orders = args.latency_orders or (QUICK_LATENCY if args.quick else FULL_LATENCY)
    pairs = args.pairs or (1 if args.quick else 3)
    info = common.machine_info()
    machine = common.machine_line(info)
    result = common.result_skeleton("market_data", args) | {
        "machine": info,
        "uptime": os.getloadavg(),
        "runs": [],
    }
    with groups.sigterm_interrupts():
        try:
            common.say(f"feed CPU per order in process: {orders} orders, {pairs} off/on pairs")
            result["in_process"] = feed_cost(orders, pairs, args.seed)
            if not args.no_group:
                for label, subs, stalled, feed in RUNS:
                    if args.quick and subs > 1:
                        continue
                    common.say(f"group run: {label}")
                    result["runs"].append(
                        _group_run(label, subs, stalled, feed, orders, latency_orders, args.seed)
                    )
        except KeyboardInterrupt:
            result["interrupted"] = True
    return common.finish("market_data", result, args, machine, _print, _plot)


def _print(result: dict[str, Any], machine: str) -> None:
    ip = result.get("in_process")
    if ip:
        med = ip["median_us_per_order"]
        common.print_table(
            f"Replica CPU per order, feed off / on ({ip['orders']:,} orders, medians of {ip['pairs']} pairs)",
            ["path", "off µs/order", "on µs/order", "feed µs/order"],
            [
                [p, f"{med[p + '_off']:.2f}", f"{med[p + '_on']:.2f}", f"{ip['feed_us_per_order'][p]:.2f}"]
                for p in ("primary", "standby")
            ],
            note=f"load {result.get('uptime')}. {machine}",
        )
    rows = []
    for r in result["runs"]:
        tp = r["throughput"]
        rt, ts = r["client_round_trip_ns"], r["order_to_subscriber_ns"] or {}
        rows.append(
            [
                r["run"],
                common.fmt_int(tp["orders_per_s"]),
                common.fmt_int(tp["updates_per_s_primary"]),
                f"{tp['cpu_us_per_order']['a']:.2f} / {tp['cpu_us_per_order']['b']:.2f}",
                "-" if tp["primary_cpu_us_per_update"] is None else f"{tp['primary_cpu_us_per_update']:.2f}",
                common.fmt_ns(rt.get("p50")),
                common.fmt_ns(rt.get("p99")),
                common.fmt_ns(ts.get("p50")),
                common.fmt_ns(ts.get("p99")),
            ]
        )
    if rows:
        common.print_table(
            "A group (a primary, b standby, sync) with the public feed",
            [
                "run",
                "orders/s",
                "updates/s (a)",
                "CPU µs/order a / b",
                "CPU µs/update (a)",
                "client p50",
                "client p99",
                "order->sub p50",
                "order->sub p99",
            ],
            rows,
            note=machine,
        )


def _plot(result: dict[str, Any], out: str, machine: str) -> list[str]:  # noqa: ARG001
    return []


if __name__ == "__main__":
    raise SystemExit(common.harness_main(__import__(__name__)))
