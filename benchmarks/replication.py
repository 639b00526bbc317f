"""Replication harness: end-to-end latency and throughput of a group, next to the bare-pyzmq floor.

What it measures, all on loopback with real processes (primary, one
standby, witness; started by :class:`replication.testing.harness.Group` as the demo
does) and a :class:`replication.Client` in this process:

- **paced latency** (``--rate``, default 10,000 orders/s), ``sync`` and
  ``async``: client -> primary -> (standby ack, in sync) -> client. The load
  is open-loop: order *i* is due at ``t0 + i / rate`` (``time.perf_counter_ns``),
  the client sends everything that is due, then polls; latency is counted
  from the **intended** send time, not the actual one, so a stall delays the
  orders behind it and shows in the figures instead of hiding them
  (no coordinated omission). How late the sends themselves were is reported
  too (``send_lag_ns``).
- **pipelined throughput**: ``Client.send_batch`` (command records as a
  NumPy array) and ``Client.poll_batch`` (answers as NumPy columns, events as
  one ``EVENT_DTYPE`` array) with ``--window`` requests in flight, orders per
  second over the whole pass.
- **the floor**: a bare pyzmq DEALER -> ROUTER echo (a Python echo server in
  its own process, the same request and reply sizes, the same paced loop)
  measured in the same run; every latency is also shown as a multiple of it.
- **the two-hop floor** (``benchmarks.twohop``): the sync path's shape in bare pyzmq.
- **one fdatasync**: a journal-sized record appended to a small file on the
  filesystem the group's journals are on, then ``os.fdatasync``, paced; its
  p50 joins the floors in the latency targets (each node syncs its journal
  before it acknowledges).

Commands are the standard mix (:mod:`benchmarks.workload`), sent as
pre-built command records after 2,000 untimed setup orders. Percentiles come
from HdrHistogram. Each pass also records whether the group changed epoch
during it (an unplanned fail-over on an overloaded machine), since that
would dominate its tail.

Not a fail-over or catch-up benchmark (``bench failover``, ``bench catchup``)
and not a profile.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sized
from pathlib import Path
from typing import Any

import numpy as np

from . import common, groups, twohop

SUMMARY = "replicated end-to-end latency (paced, sync/async) and pipelined throughput vs a pyzmq floor"

FULL_PACED = 100_000
QUICK_PACED = 10_000
FULL_THROUGHPUT = 100_000
QUICK_THROUGHPUT = 10_000

TARGET_SYNC_X_FLOOR = 2.5  # sync p50 at the paced rate, as a multiple of the floor's p50
TARGET_ASYNC_X_FLOOR = 1.3
TARGET_SYNC_THROUGHPUT = 300_000  # orders/s, pipelined, sync
# Issue 18, p50 against floors of the same run. At 1,000/s: sync <= 1.25 x (two-hop floor + one
# fdatasync), async <= 1.25 x (one-hop floor + one fdatasync); at 10,000/s: sync <= 2.5 x two-hop.
TARGET_X_FLOORS_PLUS_SYNC = 1.25
TARGET_SYNC_X_TWO_HOP = 2.5
FDATASYNC_SAMPLES = 1000
RECORD_NOTE = "journal record (100 bytes)"

MODES = ("sync", "async")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of this harness (besides the common ones)."""
    parser.add_argument("--rate", type=float, default=10_000, help="paced orders per second (default 10000)")
    parser.add_argument(
        "--paced",
        type=int,
        default=None,
        metavar="N",
        help=f"orders per paced pass (default {FULL_PACED:,}, quick {QUICK_PACED:,}; --commands too)",
    )
    parser.add_argument(
        "--throughput",
        type=int,
        default=None,
        metavar="N",
        help=f"orders per pipelined pass (default {FULL_THROUGHPUT:,}, quick {QUICK_THROUGHPUT:,})",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=1024,
        help="requests in flight when pipelined, and at most in flight when paced (default 1024)",
    )
    parser.add_argument("--modes", default="sync,async", help="comma-separated subset of sync,async")
    parser.add_argument("--engine", choices=("auto", "native", "reference"), default="auto")
    parser.add_argument(
        "--no-reports",
        action="store_true",
        help="the client does not fetch execution reports (the group still builds them)",
    )
    parser.add_argument(
        "--busy-poll",
        default="",
        metavar="NODES",
        help="comma-separated nodes (a, b) whose group-file table sets busy_poll = true (default none)",
    )
    groups.add_timing_arguments(parser, timeout_ms=100)


# ----- the two load shapes ---------------------------------------------------------------


def paced(
    n: int,
    rate: float,
    send: Callable[[int], None],
    poll: Callable[[float], list[int]],
    timeout: float,
    max_in_flight: int = 1 << 62,
    at_end: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Open-loop pacing: request ``i`` is due at ``t0 + i / rate``; latency from that due time.

    Parameters
    ----------
    n : int
        Requests.
    rate : float
        Requests per second.
    send : callable
        ``send(i)`` sends request ``i`` without waiting.
    poll : callable
        ``poll(wait)`` returns the indices answered since the last call, waiting
        up to ``wait`` seconds (until the next send is due) for the first.
    timeout : float
        Seconds beyond the schedule before giving up (``TimeoutError``).
    max_in_flight : int
        A due request waits while this many are unanswered (a client's window);
        its wait counts in its latency, since that is measured from the due time.
    at_end : callable, optional
        Called once the last answer is in, before the statistics are computed.

    Returns
    -------
    dict
        ``latency_ns`` summary, ``curve``, ``send_lag_ns`` summary, achieved rate.
    """
    pc = time.perf_counter_ns
    period = 1e9 / rate
    done_at = np.zeros(n, dtype=np.int64)
    sent_at = np.zeros(n, dtype=np.int64)
    got = np.zeros(n, dtype=bool)
    i = done = 0
    t0 = pc() + 1_000_000
    give_up = t0 + int((n / rate + timeout) * 1e9)
    while done < n:
        now = pc()
        while i < n and t0 + int(i * period) <= now and i - done < max_in_flight:
            send(i)
            sent_at[i] = pc()
            i += 1
        # Wait for answers until the next send is due, instead of spinning: a
        # spinning client takes a core the nodes need on a small machine.
        due = t0 + int(i * period) if i < n and i - done < max_in_flight else now + 1_000_000
        answered = poll(max(0, min(due - pc(), 1_000_000)) / 1e9)
        if answered:
            t = pc()
            for k in answered:
                if 0 <= k < n and not got[k]:
                    got[k] = True
                    done_at[k] = t
                    done += 1
        elif now > give_up:
            raise TimeoutError(f"paced pass: {done}/{n} answered {timeout:.0f} s after the schedule ended")
    if at_end is not None:
        at_end()
    intended = t0 + (np.arange(n, dtype=np.float64) * period).astype(np.int64)
    lat = done_at - intended
    h = common.histogram(lat)
    wall = (int(done_at.max()) - t0) / 1e9
    return {
        "orders": n,
        "rate_target": rate,
        "rate_achieved": round(n / wall, 1) if wall > 0 else None,
        "latency_ns": common.latency_summary(h),
        "curve": common.percentile_curve(h),
        "send_lag_ns": common.latency_summary(common.histogram(sent_at - intended)),
    }


def pipelined(
    n: int,
    window: int,
    send: Callable[[int], None],
    poll: Callable[[float], Sized],
    timeout: float,
    send_many: Callable[[range], None] | None = None,
) -> dict[str, Any]:
    """At most ``window`` requests in flight; return orders per second over the whole pass.

    With ``send_many``, whatever room the window has is filled with one call
    (the client library bundles it into one frame), else one ``send`` per request.
    ``poll(wait)`` returns the requests answered since the last call (only their
    number counts).
    """
    i = done = 0
    t0 = time.perf_counter()
    last = t0
    while done < n:
        if send_many is not None and i < n and i - done < window:
            j = min(n, done + window)
            send_many(range(i, j))
            i = j
        while i < n and i - done < window:
            send(i)
            i += 1
        k = len(poll(0.001))
        done += k
        now = time.perf_counter()
        if k:
            last = now
        elif now - last > timeout:
            raise TimeoutError(f"pipelined pass: answers stopped at {done}/{n}")
    wall = time.perf_counter() - t0
    return {"orders": n, "window": window, "wall_s": round(wall, 4), "throughput": round(n / wall, 1)}


# ----- floor and group passes ------------------------------------------------------------------


def run_floor(n_paced: int, n_tput: int, args: argparse.Namespace) -> dict[str, Any]:
    """The bare pyzmq echo: paced latency and pipelined throughput."""
    req, rep = groups.message_sizes()
    echo = groups.Echo(req, rep)

    def cpu() -> dict[str, float | None]:
        return {"echo": groups.cpu_seconds(echo.proc.pid), "client": groups.cpu_seconds()}

    try:
        pipelined(2_000, 64, echo.send, echo.poll, 10)  # warm-up
        cpu0, cpu1 = cpu(), {}
        lat = paced(n_paced, args.rate, echo.send, echo.poll, 30, args.window, lambda: cpu1.update(cpu()))
        lat["cpu_us_per_order"] = groups.cpu_per_order(cpu0, cpu1, n_paced)
        cpu0 = cpu()
        tput = pipelined(n_tput, args.window, echo.send, echo.poll, 10)
        tput["cpu_us_per_order"] = groups.cpu_per_order(cpu0, cpu(), n_tput)
    finally:
        echo.close()
    return {"request_bytes": req, "reply_bytes": rep, "paced": lat, "pipelined": tput}


def run_two_hop_floor(n_paced: int, args: argparse.Namespace) -> dict[str, Any]:
    """The bare pyzmq shape of a sync round trip (``benchmarks.twohop``): paced latency only."""
    req, rep = groups.message_sizes()
    chain = twohop.TwoHop(req, rep)

    def cpu() -> dict[str, float | None]:
        return {
            "echo": groups.cpu_seconds(chain.upstream_proc.pid),
            "relay": groups.cpu_seconds(chain.proc.pid),
            "client": groups.cpu_seconds(),
        }

    try:
        pipelined(2_000, 64, chain.send, chain.poll, 10)  # warm-up
        cpu0, cpu1 = cpu(), {}
        lat = paced(n_paced, args.rate, chain.send, chain.poll, 30, args.window, lambda: cpu1.update(cpu()))
        lat["cpu_us_per_order"] = groups.cpu_per_order(cpu0, cpu1, n_paced)
    finally:
        chain.close()
    forward, ack = twohop.frame_sizes()
    return {
        "request_bytes": req,
        "forward_bytes": forward,
        "ack_bytes": ack,
        "reply_bytes": rep,
        "paced": lat,
    }


def run_fdatasync_floor(n: int = FDATASYNC_SAMPLES, period: float = 0.001) -> dict[str, Any]:
    """One fdatasync's latency where the journals live: a record appended, then synced, ``n`` times.

    The file is a fresh one in ``tempfile``'s directory, where ``groups.group`` puts the
    group's journals; each sync follows one journal-sized record (``RECORD`` bytes) written at
    the end of the file, as a one-order batch is; one every ``period`` seconds, as the paced
    orders come.
    """
    import os
    import tempfile

    from replication.storage.journal import RECORD

    pc = time.perf_counter_ns
    took = np.zeros(n, dtype=np.int64)
    with tempfile.TemporaryDirectory(prefix="matchcore-fdatasync-") as d:
        fd = os.open(os.path.join(d, "probe.log"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            record = b"\x01" * RECORD
            for i in range(n):
                os.pwrite(fd, record, i * RECORD)
                t = pc()
                os.fdatasync(fd)
                took[i] = pc() - t
                time.sleep(period)
        finally:
            os.close(fd)
        where = os.path.dirname(d)
    return {"samples": n, "dir": where, "latency_ns": common.latency_summary(common.histogram(took))}


def _epoch(g: Any) -> dict[str, Any]:
    st = g.status(0.5)
    return {n: (s.get("role"), s.get("epoch")) for n, s in st.items() if n in g.names}


def run_mode(mode: str, n_paced: int, n_tput: int, args: argparse.Namespace) -> dict[str, Any]:
    """One group in ``mode``: setup, the paced pass, then the pipelined pass on the same book."""
    from matching import COMMAND_DTYPE, events_from_bytes
    from replication.protocol import wire

    setup, ops = groups.mix_records(n_paced + n_tput, args.seed)
    ops_array = np.array(ops, dtype=COMMAND_DTYPE)  # the pipelined pass sends records as they are
    out: dict[str, Any] = {"mode": mode}
    busy = {n.strip(): {"busy_poll": True} for n in getattr(args, "busy_poll", "").split(",") if n.strip()}
    with groups.group(("a", "b"), mode, groups.timing_extra(args), args.engine, node_keys=busy) as g:
        g.start_all()
        g.wait_ready()
        # No fail-over is expected here: a roomy re-send timeout keeps an overloaded
        # client from re-sending to the standby, yet recovers if one happens anyway.
        c = g.client(7, timeout=30.0, retry_timeout=2.0)
        if args.no_reports:
            c.core.wants_reports = c.core.feed.running = False  # (the open's answer starts no feed)
        statuses: dict[str, int] = {}
        reports = [0]  # execution reports taken (records, as the pipelined API takes replies)

        def take_reports() -> None:
            # Both sides of every trade of client 7's orders, its accepts and cancels: taken
            # as records, as poll_batch takes replies (a dict each would be the client's choice).
            recs, outs = c.core.feed.take(time.monotonic())
            reports[0] += len(recs)
            c._perform(outs)

        try:
            c.submit_many(setup, window=256)  # untimed: books filled, sockets and caches warm
            by_rid: dict[int, int] = {}

            def send(i: int, base: int = 0) -> None:
                by_rid[c.send(ops[base + i])] = i

            # The pipelined pass sends only whole windows of consecutive indices, and
            # request ids are consecutive too: request id - index is one number.
            rid_minus_index: list[int] = []

            def send_batch(idx: range, base: int = 0) -> None:
                rids = c.send_batch(ops_array[base + idx.start : base + idx.stop])
                if not rid_minus_index:
                    rid_minus_index.append(rids.start - idx.start)
                elif rids.start - idx.start != rid_minus_index[0]:
                    raise RuntimeError("pipelined pass: request ids not consecutive with indices")

            def poll_batch(wait: float, n: int) -> np.ndarray:
                # Columns, as the column-wise API gives them: the events arrive decoded
                # (an EVENT_DTYPE array), so the client's decoding cost is in the figure.
                b = c.poll_batch(wait)
                if c.core.feed.ready:
                    take_reports()
                if not len(b):
                    return b.request_id
                for code, k in enumerate(np.bincount(b.status).tolist()):
                    if k:
                        name = wire.STATUS_NAMES.get(code, str(code))
                        statuses[name] = statuses.get(name, 0) + k
                if not rid_minus_index:
                    return b.request_id[:0]
                idx = b.request_id.astype(np.int64) - rid_minus_index[0]
                return idx[(idx >= 0) & (idx < n)]  # else a late answer to a request of the previous pass

            def poll(wait: float = 0.0) -> list[int]:
                # Raw replies, so that an EXPIRED answer is counted rather than raised;
                # events are decoded as Client.poll would, so the client's cost is in the figure.
                out = []
                for r in c.poll_replies(wait):
                    name = wire.STATUS_NAMES.get(r.status, str(r.status))
                    statuses[name] = statuses.get(name, 0) + 1
                    if r.status == wire.OK:
                        events_from_bytes(r.events)
                    i = by_rid.pop(r.request_id, None)
                    if i is not None:  # None: a late answer to a request of the previous pass
                        out.append(i)
                return out

            before = _epoch(g)
            cpu1: dict[str, float | None] = {}

            def mark() -> None:
                cpu1.update(groups.cpu_snapshot(g))

            passes = (
                ("paced", lambda: paced(n_paced, args.rate, send, poll, 60, args.window, mark)),
                (
                    "pipelined",
                    lambda: pipelined(
                        n_tput,
                        args.window,
                        lambda i: send(i, n_paced),
                        lambda wait: poll_batch(wait, n_tput),
                        30,
                        lambda idx: send_batch(idx, n_paced),
                    ),
                ),
            )
            epochs = [before]
            for name, fn in passes:
                by_rid.clear()
                try:
                    cpu0 = groups.cpu_snapshot(g)
                    cpu1.clear()
                    reports[0] = 0
                    out[name] = fn()
                    if name == "pipelined" and not args.no_reports:
                        # Reports still in flight when the last reply came: drain them, timed apart.
                        t0, book = time.perf_counter(), c.core.feed
                        while time.perf_counter() - t0 < 10:
                            before_n = book.after
                            c.poll_batch(0.05)
                            take_reports()
                            if book.after == before_n and not book.ready:
                                break
                        out[name]["reports_taken"] = reports[0]
                        out[name]["reports_per_order"] = round(reports[0] / max(out[name]["orders"], 1), 3)
                        out[name]["report_drain_s"] = round(time.perf_counter() - t0, 4)
                    # Up to the last answer: the paced pass's percentile work is not the client's cost.
                    out[name]["cpu_us_per_order"] = groups.cpu_per_order(
                        cpu0, cpu1 or groups.cpu_snapshot(g), out[name]["orders"]
                    )
                except TimeoutError as exc:  # keep what the other pass measured; say why this one failed
                    out[name] = {"error": str(exc), "log_tail": g.tail_logs(8)[-3000:]}
                    break
                finally:
                    epochs.append(_epoch(g))
            out["roles_epochs"] = epochs
            out["unplanned_failover"] = any(e != before for e in epochs)
            out["reply_statuses"] = statuses
            out["client_counters"] = dict(sorted(c.core.counters.items()))  # timeouts, switches, redirects
            st = g.status(0.5)
            out["final_status"] = {
                n: {k: st[n].get(k) for k in ("role", "epoch", "last_seq", "lag", "digest")} for n in g.names
            }
        finally:
            c.close()
    return out


# ----- output --------------------------------------------------------------------------------------


def _x(v: float | None, floor: float | None) -> str:
    return "-" if not v or not floor else f"{v / floor:.2f}x"


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The three stated targets from a result."""
    floor = result.get("floor", {}).get("paced", {}).get("latency_ns", {}).get("p50")
    rows = []
    for mode, goal in (("sync", TARGET_SYNC_X_FLOOR), ("async", TARGET_ASYNC_X_FLOOR)):
        p50 = result.get("modes", {}).get(mode, {}).get("paced", {}).get("latency_ns", {}).get("p50")
        ratio = round(p50 / floor, 3) if p50 and floor else None
        rows.append(
            groups.target(f"{mode} p50 at {result['rate']:,.0f}/s, x floor p50", ratio, goal, "<=", "x")
        )
    tp = result.get("modes", {}).get("sync", {}).get("pipelined", {}).get("throughput")
    rows.append(groups.target("sync pipelined throughput", tp, TARGET_SYNC_THROUGHPUT, ">=", "orders/s"))
    return rows


def _p50(part: dict[str, Any] | None) -> float | None:
    return ((part or {}).get("paced") or part or {}).get("latency_ns", {}).get("p50")


def floor_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 18's latency targets, each p50 over its floors measured in the same run.

    Every row names its formula with the floors' values; ``measured`` is the p50 over the
    formula's bound (so the goal is ``<= 1``). At 1,000/s: sync <= 1.25 x (two-hop + one
    fdatasync), async <= 1.25 x (one-hop + one fdatasync); at 10,000/s: sync <= 2.5 x two-hop.
    Other rates show the formulas of the nearer rate, named as such.
    """
    one, two = _p50(result.get("floor")), _p50(result.get("floor_two_hop"))
    fsync = _p50(result.get("fdatasync"))
    modes = result.get("modes", {})
    rate = result["rate"]
    at = "" if rate in (1_000, 10_000) else f" (the {'1k' if rate < 3_000 else '10k'}/s formula)"
    ms = common.fmt_ns
    rows = []
    wanted = []  # (mode, formula, bound)
    if rate < 3_000:
        for mode, hop, hop_name in (("sync", two, "two-hop"), ("async", one, "one-hop")):
            formula = f"{TARGET_X_FLOORS_PLUS_SYNC:g} x ({hop_name} {ms(hop)} + fdatasync {ms(fsync)})"
            wanted.append(
                (mode, formula, TARGET_X_FLOORS_PLUS_SYNC * (hop + fsync) if hop and fsync else None)
            )
    else:
        formula = f"{TARGET_SYNC_X_TWO_HOP:g} x two-hop {ms(two)}"
        wanted.append(("sync", formula, TARGET_SYNC_X_TWO_HOP * two if two else None))
    for mode, formula, bound in wanted:
        p50 = _p50(modes.get(mode))
        row = groups.target(
            f"{mode} p50 at {rate:,.0f}/s{at}",
            round(p50 / bound, 3) if p50 and bound else None,
            1,
            "<=",
            "x bound",
        )
        rows.append(dict(row, formula=formula, bound_ns=bound, p50_ns=p50))
    return rows


def print_result(result: dict[str, Any], machine: str) -> None:
    floor = result.get("floor", {})
    f = floor.get("paced", {}).get("latency_ns", {})
    rows, trows = [], []
    two_hop = result.get("floor_two_hop", {})
    entries = [("floor (pyzmq echo)", floor), ("two-hop floor (relay)", two_hop)] + [
        (m, r) for m, r in result.get("modes", {}).items()
    ]
    for name, r in entries:
        p = r.get("paced")
        if p and "error" not in p:
            lat, lag = p["latency_ns"], p["send_lag_ns"]
            rows.append(
                [
                    name,
                    common.fmt_int(p["orders"]),
                    common.fmt_int(p["rate_achieved"]),
                    common.fmt_ns(lat["p50"]),
                    common.fmt_ns(lat["p99"]),
                    common.fmt_ns(lat["p99.9"]),
                    common.fmt_ns(lat["max"]),
                    f"{_x(lat['p50'], f.get('p50'))} / {_x(lat['p99'], f.get('p99'))}"
                    f" / {_x(lat['p99.9'], f.get('p99.9'))}",
                    common.fmt_ns(lag["p99"]),
                ]
            )
        elif "error" in r or "error" in (p or {}):
            rows.append([name, "failed", "", "", "", "", "", "", (r.get("error") or p["error"])[:60]])
        t = r.get("pipelined")
        if t and "error" in t:
            trows.append([name, "failed", "", "", "", t["error"][:60]])
        elif t:
            ftp = floor.get("pipelined", {}).get("throughput")
            trows.append(
                [
                    name,
                    common.fmt_int(t["orders"]),
                    t["window"],
                    common.fmt_int(t["throughput"]),
                    "-" if not ftp or r is floor else f"{t['throughput'] / ftp:.3f}",
                    "yes" if r.get("unplanned_failover") else ("" if r is floor else "no"),
                ]
            )
    common.print_table(
        f"replicated latency at {result['rate']:,.0f} orders/s, open loop ({machine})",
        [
            "path",
            "orders",
            "achieved/s",
            "p50",
            "p99",
            "p99.9",
            "max",
            "x floor p50/p99/p99.9",
            "send lag p99",
        ],
        rows,
        note="latency from each order's intended send time (no coordinated omission); one standby, loopback; "
        "floor = bare pyzmq DEALER/ROUTER echo, same sizes, same loop; two-hop floor = the sync path's shape "
        "in bare pyzmq (client -> relay -> echo -> relay -> client, no replication logic)",
    )
    common.print_table(
        f"pipelined throughput, window {result['window']} ({machine})",
        ["path", "orders", "window", "orders/s", "/ floor", "unplanned fail-over"],
        trows,
    )
    crows = []
    for mode, r in [("floor", floor), ("two-hop floor", two_hop)] + list(result.get("modes", {}).items()):
        for name in ("paced", "pipelined"):
            cpu = (r.get(name) or {}).get("cpu_us_per_order")
            if cpu:
                procs = [p for p in cpu if p != "client"] + ["client"]
                crows.append([f"{mode} {name}"] + [f"{p} {cpu[p]:.1f}" for p in procs if p in cpu])
    if crows:
        width = max(len(row) for row in crows)
        common.print_table(
            f"CPU per order, microseconds, by process ({machine})",
            ["pass"] + [""] * (width - 1),
            [row + [""] * (width - len(row)) for row in crows],
            note="user + system CPU time over the pass / orders: independent of what else the machine runs; "
            "the client includes decoding every reply's events",
        )
    groups.print_targets("replication targets", result["targets"])
    fs = result.get("fdatasync", {}).get("latency_ns", {})
    if fs:
        common.print_table(
            f"one fdatasync where the journals live ({machine})",
            ["samples", "p50", "p99", "max"],
            [
                [
                    result["fdatasync"]["samples"],
                    common.fmt_ns(fs["p50"]),
                    common.fmt_ns(fs["p99"]),
                    common.fmt_ns(fs["max"]),
                ]
            ],
            note=f"a {RECORD_NOTE} appended to a file in {result['fdatasync']['dir']}, then os.fdatasync, one a millisecond",
        )
    verdicts = {None: "not measured", True: "PASS", False: "MISSED"}
    common.print_table(
        f"latency targets against this run's floors ({machine})",
        ["target", "bound", "", "p50", "p50 / bound", ""],
        [
            [
                t["target"],
                t["formula"],
                common.fmt_ns(t["bound_ns"]),
                common.fmt_ns(t["p50_ns"]),
                "-" if t["measured"] is None else f"{t['measured']:.3f}",
                verdicts[t["met"]],
            ]
            for t in result.get("floor_targets", [])
        ],
        note="bounds from the one-hop, two-hop and fdatasync floors measured in this run (p50 each)",
    )
    th = two_hop.get("paced", {}).get("latency_ns", {}).get("p50")
    if th and f.get("p50"):
        rows = [["two-hop floor", common.fmt_ns(th), f"{th / f['p50']:.2f}x", "1.00x"]]
        for mode, r in result.get("modes", {}).items():
            p50 = (r.get("paced") or {}).get("latency_ns", {}).get("p50")
            if p50:
                rows.append([mode, common.fmt_ns(p50), f"{p50 / f['p50']:.2f}x", f"{p50 / th:.2f}x"])
        common.print_table(
            f"p50 at {result['rate']:,.0f}/s against both floors ({machine})",
            ["path", "p50", "x one-hop floor (the targets' unit)", "x two-hop floor"],
            rows,
            note="what the machine charges for the sync path's two round trips before any replication code runs",
        )


def plot(result: dict[str, Any], out_dir: str, machine: str) -> list[str]:
    files = []
    curves = {}
    floor = result.get("floor", {})
    if floor.get("paced"):
        curves["floor (pyzmq echo)"] = floor["paced"]["curve"]
    two_hop = result.get("floor_two_hop", {})
    if two_hop.get("paced"):
        curves["two-hop floor (relay)"] = two_hop["paced"]["curve"]
    for mode in ("async", "sync"):
        p = result.get("modes", {}).get(mode, {}).get("paced")
        if p:
            curves[mode] = p["curve"]
    lat = Path(out_dir) / "replication-latency.png"
    if curves and common.percentile_chart(
        lat,
        f"End-to-end latency at {result['rate']:,.0f} orders/s (open loop, HdrHistogram)\n{machine}",
        curves,
    ):
        files.append(str(lat))
    labels, values = [], []
    for name, r in [("floor (pyzmq echo)", floor)] + list(result.get("modes", {}).items()):
        labels.append(name)
        values.append(r.get("pipelined", {}).get("throughput"))
    tp = Path(out_dir) / "replication-throughput.png"
    if common.bar_chart(
        tp,
        f"Pipelined throughput, window {result['window']}\n{machine}",
        labels,
        values,
        "orders per second (log scale)",
        target=("sync target 300k orders/s", TARGET_SYNC_THROUGHPUT),
    ):
        files.append(str(tp))
    return files


# ----- entry points -------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the harness with parsed arguments; print tables, write JSON (and PNGs); return the result."""
    n_paced = args.paced or args.commands or (QUICK_PACED if args.quick else FULL_PACED)
    n_tput = args.throughput or args.commands or (QUICK_THROUGHPUT if args.quick else FULL_THROUGHPUT)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if set(modes) - set(MODES):
        raise SystemExit(f"--modes: choose from {', '.join(MODES)}")
    result = common.result_skeleton("replication", args)
    result.update(
        {
            "rate": args.rate,
            "window": args.window,
            "paced_orders": n_paced,
            "pipelined_orders": n_tput,
            "modes": {},
            "charts": [],
            "method": "open-loop pacing (at most --window in flight), latency from intended send time; Client.send/poll; "
            "Client.send_batch/poll_batch (NumPy records and columns) for throughput; floor = pyzmq echo in its "
            "own process",
        }
    )
    machine = common.machine_line(result["machine"])
    Path(args.out).mkdir(parents=True, exist_ok=True)
    try:
        with groups.sigterm_interrupts():
            common.say(f"replication: floor, {n_paced:,} paced + {n_tput:,} pipelined")
            result["floor"] = run_floor(n_paced, n_tput, args)
            common.say(f"replication: two-hop floor, {n_paced:,} paced")
            result["floor_two_hop"] = run_two_hop_floor(n_paced, args)
            common.say(f"replication: one fdatasync, {FDATASYNC_SAMPLES:,} paced")
            result["fdatasync"] = run_fdatasync_floor()
            for mode in modes:
                common.say(f"replication: {mode} group, {n_paced:,} paced + {n_tput:,} pipelined")
                try:
                    result["modes"][mode] = run_mode(mode, n_paced, n_tput, args)
                except (TimeoutError, RuntimeError) as exc:
                    result["modes"][mode] = {
                        "mode": mode,
                        "error": f"{type(exc).__name__}: {str(exc)[:2000]}",
                    }
    except KeyboardInterrupt:
        result["interrupted"] = True
    result.setdefault("floor", {})
    result["targets"] = targets(result)
    result["floor_targets"] = floor_targets(result)
    return common.finish("replication", result, args, machine, print_result, plot)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.replication [flags]``."""
    return common.harness_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
