"""Memory harness: bytes per resting order, matchcore next to the reference and the peers.

Rests N non-crossing limit orders (bids at or below a fixed mid, asks above,
over 1,000 price levels a side, one instrument; default N = 1,000,000) in a
fresh engine and reports

- for matchcore, the core's own count, ``Engine.memory_bytes()`` (pools,
  hash tables, level arrays, event buffer: capacity, not just what is used),
  divided by the resting orders: the figure the 64-bytes target is about;
- for every engine, the growth of the process's resident set size (from
  ``/proc/self/statm``) across the loading, divided by the resting orders.
  This includes allocator slack and, for the peers, the Python objects a
  caller must keep to use them (liquibook's ``SimpleOrder`` proxies).

Each engine is measured in its own child process (``python -m
benchmarks.memory --worker NAME``) so that no engine inherits another's heap.
The command tuples are built before the baseline is read and kept alive
to the end, so they are not counted and their memory is not recycled into
the engine's. RSS figures are page-granular and depend on the allocator; compare
orders of magnitude, not the last digit.

Not a leak detector and not a profile of where the bytes go.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import common

SUMMARY = "memory per resting order: core bytes and RSS, matchcore vs reference and peers"

FULL_ORDERS = 1_000_000
QUICK_ORDERS = 100_000
TARGET_CORE_BYTES = 64
SUBJECTS = ("matchcore", "reference", "lightmatchingengine", "liquibook")
BATCH_CHUNK = 65_536


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of this harness (besides the common ones; ``--commands`` is the number of resting orders)."""
    parser.add_argument(
        "--subjects", default=",".join(SUBJECTS), help=f"comma-separated subset of: {', '.join(SUBJECTS)}"
    )
    parser.add_argument(
        "--reference-orders",
        type=int,
        default=None,
        metavar="N",
        help="orders for the (slow) reference engine (default: the same N)",
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds allowed per engine (default 900)"
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)


# ----- the child process -------------------------------------------------------------------


def measure_in_process(subject: str, n: int, seed: int) -> dict[str, Any]:
    """Load ``n`` resting orders into a fresh engine in *this* process and report its growth."""
    from .peers import matchcore_drivers, peer_drivers
    from .workload import command_array, resting_only

    ops = resting_only(n, 1, seed)
    out: dict[str, Any] = {"subject": subject, "orders": n}
    if subject == "matchcore":
        percall, _ = matchcore_drivers()
        if percall.factory is None:
            return out | {"missing": percall.missing}
        arr = command_array(ops)
        gc.collect()
        rss0 = common.rss_bytes()
        engine = percall.factory()
        empty = int(engine.memory_bytes())
        for start in range(0, n, BATCH_CHUNK):
            engine.apply_batch(arr[start : start + BATCH_CHUNK])
        gc.collect()
        rss1 = common.rss_bytes()
        live = int(engine.live_orders)
        core = int(engine.memory_bytes())
        out.update(
            core_bytes=core, core_bytes_empty=empty, core_bytes_per_order=core / live if live else None
        )
        out["method"] = "apply_batch in chunks of 65,536; core = Engine.memory_bytes()"
    else:
        if subject == "reference":
            driver = matchcore_drivers()[1]
        else:
            driver = {d.name: d for d in peer_drivers()}[subject]
        if driver.missing:
            return out | {"missing": driver.missing}
        engine = driver.start()
        calls = driver.calls(engine, ops)
        gc.collect()
        rss0 = common.rss_bytes()
        for fn, args in calls:
            fn(*args)
        gc.collect()
        rss1 = common.rss_bytes()
        live = driver.live_orders(engine)
        out["method"] = "per-call API, one call per order; " + driver.notes
    out.update(
        live_orders=live,
        rss_before=rss0,
        rss_after=rss1,
        rss_delta=rss1 - rss0,
        rss_bytes_per_order=(rss1 - rss0) / live if live else None,
    )
    return out


def _worker_main(args: argparse.Namespace) -> int:
    n = args.commands or (QUICK_ORDERS if args.quick else FULL_ORDERS)
    res = measure_in_process(args.worker, n, args.seed)
    print(json.dumps(res))
    return 0


def _spawn(subject: str, n: int, seed: int, timeout: float) -> dict[str, Any]:
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [
        sys.executable,
        "-m",
        f"{__package__}.memory",
        "--worker",
        subject,
        "--commands",
        str(n),
        "--seed",
        str(seed),
    ]
    try:
        res = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=root, check=False
        )
    except subprocess.TimeoutExpired:
        return {"subject": subject, "orders": n, "missing": f"timed out after {timeout:.0f} s"}
    if res.returncode != 0:
        tail = (res.stderr.strip().splitlines() or ["no output"])[-1]
        return {"subject": subject, "orders": n, "missing": f"worker failed ({res.returncode}): {tail}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


# ----- the harness -----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every subject in its own process; print the table, write JSON (and a PNG)."""
    if args.worker:
        raise SystemExit("--worker is for the harness's own child processes")
    n = args.commands or (QUICK_ORDERS if args.quick else FULL_ORDERS)
    subjects = [s.strip() for s in args.subjects.split(",") if s.strip()]
    unknown = set(subjects) - set(SUBJECTS)
    if unknown:
        raise SystemExit(
            f"unknown subject(s): {', '.join(sorted(unknown))}; choose from {', '.join(SUBJECTS)}"
        )
    result = common.result_skeleton("memory", args)
    result.update({"orders": n, "subjects": {}, "charts": []})
    machine = common.machine_line(result["machine"])
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with common.progress() as prog:
        task = prog.add_task("memory", total=len(subjects))
        for subject in subjects:
            count = (args.reference_orders or n) if subject == "reference" else n
            prog.update(task, description=f"memory: {subject} ({count:,} resting orders)")
            try:
                result["subjects"][subject] = _spawn(subject, count, args.seed, args.timeout)
            except KeyboardInterrupt:
                result["subjects"][subject] = {"missing": "interrupted (Ctrl-C)"}
                result["interrupted"] = True
                break
            prog.advance(task)
    core = result["subjects"].get("matchcore", {}).get("core_bytes_per_order")
    result["target"] = {
        "goal": f"<= {TARGET_CORE_BYTES} bytes per resting order (core)",
        "measured": core,
        "met": None if core is None else core <= TARGET_CORE_BYTES,
    }
    _print(result, machine)
    if not args.no_plot:
        names = [s for s in result["subjects"]]
        png = Path(args.out) / "memory.png"
        values = [result["subjects"][s].get("rss_bytes_per_order") for s in names]
        labels = [("matchcore" if s == "matchcore" else s) + " (RSS)" for s in names]
        if core is not None:
            labels.insert(0, "matchcore (core)")
            values.insert(0, core)
        if common.bar_chart(
            png,
            f"Memory per resting order, {n:,} resting orders\n{machine}",
            labels,
            values,
            "bytes per resting order",
            log=False,
            target=(f"core target {TARGET_CORE_BYTES} B", TARGET_CORE_BYTES),
        ):
            result["charts"].append(str(png))
    path = common.write_result("memory", result, args.out)
    common.say(f"wrote {path}" + (" (interrupted: partial results)" if result["interrupted"] else ""))
    return result


def _print(result: dict[str, Any], machine: str) -> None:
    rows = []
    for subject, res in result["subjects"].items():
        if "missing" in res:
            rows.append([subject, f"missing: {res['missing']}", "", "", "", ""])
            continue
        rows.append(
            [
                subject,
                common.fmt_int(res["live_orders"]),
                common.fmt_int(res.get("core_bytes_per_order")) if "core_bytes" in res else "-",
                common.fmt_int(res.get("core_bytes")) if "core_bytes" in res else "-",
                common.fmt_int(res["rss_bytes_per_order"]),
                common.fmt_int(res["rss_delta"]),
            ]
        )
    t = result["target"]
    note = f"target: core {t['goal']}: " + {None: "not measured", True: "met", False: "missed"}[t["met"]]
    if t["met"] is False:
        note += f" ({t['measured'] / TARGET_CORE_BYTES:.2f}x the goal)"
    note += "; RSS = growth of this engine's own child process while loading (page-granular)"
    common.print_table(
        f"memory per resting order ({machine})",
        ["engine", "resting", "core B/order", "core bytes", "RSS B/order", "RSS delta"],
        rows,
        note=note,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.memory [flags]``."""
    parser = argparse.ArgumentParser(prog=f"python -m {__package__}.memory", description=SUMMARY)
    common.add_common_arguments(parser)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker_main(args)
    return 130 if run(args).get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
