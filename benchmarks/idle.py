"""Idle harness: what a group at rest costs, and how big each of its processes is.

Starts a group (primary, standby, witness) with the demo's defaults, waits
until the standby has joined, lets it idle ``--seconds`` without any client
or status request, and reads from ``/proc`` for every process, before and
after the idle span:

- CPU time: the sum of ``/proc/PID/task/*/schedstat``'s first field (ns on a
  CPU, every thread) — ``/proc/PID/stat``'s utime+stime counts only whole
  clock ticks (10 ms), too coarse for a process that should use < 2 % of a core;
- wakeups: voluntary + involuntary context switches over every thread
  (``/proc/PID/task/*/status``): each is one sleep ended;
- threads, resident set size (``VmRSS``) and the modules the process
  imported (each node and the witness run with ``PYTHONPROFILEIMPORTTIME=1``:
  their logs list every import, counted here).

The floor, measured in the same run: two bare pyzmq processes (``python -m
benchmarks.idle pinger``), each a ROUTER in and a DEALER out as a node has,
sending the other one 60-byte frame per heartbeat interval and sleeping in
``poll`` until its next send: what one heartbeat each way costs on this
machine with no protocol at all (a node sends one per peer and to the
witness, and receives one from each peer).

The issue's target: each process below 2 % of a core at rest (heartbeats and
timers). Run as ``python -m benchmarks.idle``; ``--code DIR`` runs the
group's processes from another checkout (an A/B against an older tree: this
harness's own code is unchanged).

Not for: latency or throughput (``benchmarks.replication``), fail-over times
(``benchmarks.failover``).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import common, groups

SUMMARY = "a group at rest: % of a core, wakeups/s, threads, RSS and imported modules per process"

FULL_SECONDS = 10.0
QUICK_SECONDS = 3.0
SETTLE_SECONDS = 1.0  # after the group is ready, before the idle span (the join's catch-up ends)
TARGET_CORE_PERCENT = 2.0
PROCESSES = ("a", "b", "witness")  # a starts as primary, b as standby


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of this harness (besides the common ones)."""
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help=f"idle span (default {FULL_SECONDS:g}, --quick {QUICK_SECONDS:g})",
    )
    parser.add_argument("--modes", default="sync", help="comma-separated: sync, async (default sync)")
    parser.add_argument(
        "--code",
        default="",
        metavar="DIR",
        help="run the group's processes with PYTHONPATH=DIR (another checkout, for an A/B)",
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the bare pyzmq floor")
    groups.add_timing_arguments(parser, timeout_ms=100)


# ----- reading /proc ------------------------------------------------------------------------------


def _tasks(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []


def process_sample(pid: int) -> dict[str, int] | None:
    """CPU ns and context switches (summed over threads), thread count and RSS (KiB) of ``pid``."""
    cpu_ns = switches = 0
    tasks = _tasks(pid)
    if not tasks:
        return None
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f:
                cpu_ns += int(f.read().split()[0])
            with open(f"/proc/{pid}/task/{tid}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                        switches += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    rss = 0
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
    except OSError:
        return None
    return {"cpu_ns": cpu_ns, "switches": switches, "threads": len(tasks), "rss_kb": rss}


_IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|")


def imported_modules(log_path: str) -> int | None:
    """How many modules a process imported, from its ``PYTHONPROFILEIMPORTTIME`` lines (None: none logged)."""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            n = sum(1 for line in f if _IMPORT_LINE.match(line))
    except OSError:
        return None
    return n or None


# ----- the floor: two bare pyzmq processes pinging each other ------------------------------------


def pinger(port_in: int, port_out: int, interval: float) -> int:
    """ROUTER on ``port_in``, DEALER to ``port_out``: one 60-byte frame out per ``interval``,
    drain what arrives, sleep in ``poll`` until the next send (rounded up to whole ms, as the
    node's wait). Runs until SIGTERM."""
    import zmq

    running = groups.until_sigterm()
    ctx = zmq.Context()
    inbound = groups.bare_socket(ctx, zmq.ROUTER)
    inbound.bind(f"tcp://127.0.0.1:{port_in}")
    out = groups.bare_socket(ctx, zmq.DEALER)
    out.setsockopt(zmq.IMMEDIATE, 1)
    out.connect(f"tcp://127.0.0.1:{port_out}")
    poller = zmq.Poller()
    poller.register(inbound, zmq.POLLIN)
    frame = bytes(60)
    due = time.monotonic()
    while running[0]:
        now = time.monotonic()
        if now >= due:
            try:
                out.send(frame, zmq.NOBLOCK)
            except zmq.Again:
                pass
            due = now + interval
        if poller.poll(max(0, math.ceil((due - time.monotonic()) * 1000.0))):
            while inbound.poll(0):
                inbound.recv_multipart()
    inbound.close(0)
    out.close(0)
    ctx.term()
    return 0


def idle_floor(seconds: float, interval: float) -> dict[str, Any]:
    """Two :func:`pinger` processes at rest ``seconds``: their % of a core and wakeups/s."""
    from replication.testing.harness import free_ports

    p, q = free_ports(2)
    argv = [sys.executable, "-m", __spec__.name if __spec__ else "benchmarks.idle", "pinger"]
    procs = [
        subprocess.Popen(
            [*argv, str(p), str(q), str(interval)], stdin=subprocess.DEVNULL, start_new_session=True
        ),
        subprocess.Popen(
            [*argv, str(q), str(p), str(interval)], stdin=subprocess.DEVNULL, start_new_session=True
        ),
    ]
    try:
        time.sleep(SETTLE_SECONDS + 1.0)  # the interpreter's start and the connections
        before = [process_sample(pr.pid) for pr in procs]
        t0 = time.monotonic()
        time.sleep(seconds)
        after = [process_sample(pr.pid) for pr in procs]
        span = time.monotonic() - t0
    finally:
        for pr in procs:
            groups.stop(pr)
    out: dict[str, Any] = {"seconds": round(span, 3), "processes": {}}
    for i, (b, a) in enumerate(zip(before, after, strict=True)):
        if b is None or a is None:
            out["processes"][f"pinger{i}"] = {"error": "process gone"}
            continue
        out["processes"][f"pinger{i}"] = _figures(b, a, span) | {"role": "bare pyzmq", "modules": None}
    return out


def _figures(b: dict[str, int], a: dict[str, int], span: float) -> dict[str, Any]:
    return {
        "core_percent": round((a["cpu_ns"] - b["cpu_ns"]) / 1e9 / span * 100, 3),
        "wakeups_per_s": round((a["switches"] - b["switches"]) / span, 1),
        "threads": a["threads"],
        "rss_kb": a["rss_kb"],
    }


# ----- one group at rest ------------------------------------------------------------------------------


def idle_group(mode: str, seconds: float, args: argparse.Namespace) -> dict[str, Any]:
    """Start a group, let it rest ``seconds``, and return each process's figures."""
    saved = {k: os.environ.get(k) for k in ("PYTHONPROFILEIMPORTTIME", "PYTHONPATH")}
    os.environ["PYTHONPROFILEIMPORTTIME"] = "1"  # read by each child at its start only
    if args.code:
        os.environ["PYTHONPATH"] = os.path.abspath(args.code)
    try:
        with groups.group(("a", "b"), mode, groups.timing_extra(args)) as g:
            g.start_all()
            for k, v in saved.items():  # the children have it: this process's later ones need not
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            status = g.wait_ready(30.0)
            roles = {n: status[n].get("role", "?") for n in g.names}
            time.sleep(SETTLE_SECONDS)
            pids = {name: p.pid for name, p in g.procs.items()}
            before = {name: process_sample(pid) for name, pid in pids.items()}
            t0 = time.monotonic()
            time.sleep(seconds)
            after = {name: process_sample(pid) for name, pid in pids.items()}
            span = time.monotonic() - t0
            out: dict[str, Any] = {"mode": mode, "seconds": round(span, 3), "processes": {}}
            for name in PROCESSES:
                b, a = before.get(name), after.get(name)
                if b is None or a is None:
                    out["processes"][name] = {"error": "process gone"}
                    continue
                out["processes"][name] = {
                    "role": roles.get(name, "witness"),
                    **_figures(b, a, span),
                    "modules": imported_modules(os.path.join(g.dir, f"{name}.log")),
                }
            return out
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ----- reporting ----------------------------------------------------------------------------------


def print_result(result: dict[str, Any], machine: str) -> None:
    runs = dict(result["modes"])
    if result.get("floor"):
        runs["floor"] = result["floor"]
    floor = floor_percent(result)
    for mode, r in runs.items():
        rows = []
        for name, p in r.get("processes", {}).items():
            if "error" in p:
                rows.append([name, p["error"], "", "", "", "", "", ""])
                continue
            rows.append(
                [
                    name,
                    p["role"],
                    f"{p['core_percent']:.2f} %",
                    "-" if not floor else f"{p['core_percent'] / floor:.2f}x",
                    f"{p['wakeups_per_s']:,.0f}",
                    p["threads"],
                    f"{p['rss_kb'] / 1024:.1f} MiB",
                    "-" if p["modules"] is None else p["modules"],
                ]
            )
        title = (
            f"The floor: two bare pyzmq processes, one frame each way per heartbeat, {r.get('seconds', 0):g} s"
            if mode == "floor"
            else f"A {mode} group at rest for {r.get('seconds', 0):g} s"
        )
        common.print_table(
            title,
            ["process", "role", "CPU (% of a core)", "x floor", "wakeups/s", "threads", "RSS", "modules"],
            rows,
            note=f"{machine}; target < {TARGET_CORE_PERCENT:g} % of a core per process; "
            f"heartbeat_ms={result['options'].get('heartbeat_ms')}",
        )
    if result.get("targets"):
        groups.print_targets("Targets (issue 18)", result["targets"])


def floor_percent(result: dict[str, Any]) -> float | None:
    """The floor's % of a core, the mean of its two processes (None: not measured)."""
    vals = [
        p["core_percent"]
        for p in result.get("floor", {}).get("processes", {}).values()
        if "core_percent" in p
    ]
    return sum(vals) / len(vals) if vals else None


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for mode, r in result["modes"].items():
        for name, p in r.get("processes", {}).items():
            if "core_percent" in p:
                rows.append(
                    groups.target(f"{mode} {name} at rest", p["core_percent"], TARGET_CORE_PERCENT, "<=", "%")
                )
    return rows


def plot(result: dict[str, Any], out_dir: str, machine: str) -> list[str]:  # noqa: ARG001
    return []  # a table of a few numbers: nothing to draw


# ----- entry points -------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the harness with parsed arguments; print the table, write JSON; return the result."""
    seconds = args.seconds or (QUICK_SECONDS if args.quick else FULL_SECONDS)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    result = common.result_skeleton("idle", args)
    result.update({"seconds": seconds, "code": args.code or None, "modes": {}})
    machine = common.machine_line(result["machine"])
    Path(args.out).mkdir(parents=True, exist_ok=True)
    try:
        with groups.sigterm_interrupts():
            if not args.no_floor:
                common.say(f"idle: the floor, two bare pyzmq processes for {seconds:g} s")
                result["floor"] = idle_floor(seconds, args.heartbeat_ms / 1000.0)
            for mode in modes:
                common.say(f"idle: a {mode} group at rest for {seconds:g} s")
                try:
                    result["modes"][mode] = idle_group(mode, seconds, args)
                except (TimeoutError, RuntimeError) as exc:
                    result["modes"][mode] = {
                        "mode": mode,
                        "error": f"{type(exc).__name__}: {str(exc)[:2000]}",
                    }
    except KeyboardInterrupt:
        result["interrupted"] = True
    result["targets"] = targets(result)
    result["floor_core_percent"] = floor_percent(result)
    return common.finish("idle", result, args, machine, print_result, plot)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.idle [flags]`` (or ``pinger PORT_IN PORT_OUT INTERVAL_S``: the floor's process)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["pinger"]:
        return pinger(int(argv[1]), int(argv[2]), float(argv[3]))
    return common.harness_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
