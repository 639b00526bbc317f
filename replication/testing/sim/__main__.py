"""``python -m replication.testing.sim``: replay one seed, or run many schedules and print the totals.

For: ``--seed S`` (one schedule: its description, fault log and report;
exit 1 if it broke a rule) and ``--schedules N --seed S`` (seeds S ..
S+N-1, optionally on several processes, then: schedules run, faults
injected by class, acknowledged, lost, executed twice, divergences caught,
split brain, failing seeds). Not for: the simulation itself (``run``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from typing import Any

from .check import check_sim
from .run import Sim, run_schedule
from .schedule import random_schedule


def _schedule(seed: int, mode: str, engine: str, overlap: str, max_faults: int = 5) -> Any:
    """Seed ``seed``'s schedule with the command line's overrides ("" / "drawn": as drawn)."""
    sched = random_schedule(seed, max_faults)
    return replace(
        sched,
        mode=mode or sched.mode,
        engine=engine,
        overlap=sched.overlap if overlap == "drawn" else overlap == "on",
    )


def _one(args: tuple[int, str, str, str, int]) -> dict[str, Any]:
    seed = args[0]
    sched = _schedule(*args)
    try:
        return run_schedule(sched, check=False).as_dict()
    except Exception as exc:  # noqa: BLE001 - a crash in the simulated logic is a finding, not the end
        return {
            "seed": seed,
            "violations": [f"exception: {type(exc).__name__}: {exc}"],
            "acked": 0,
            "lost": 0,
            "duplicates": 0,
            "divergences": 0,
            "split_brain": 0,
            "faults": {},
            "virtual_time": 0.0,
            "steps": 0,
            "expired": 0,
            "history": 0,
            "converged": False,
            "switchovers": 0,
            "switchovers_landed": 0,
            "forged_refused": 0,
            "time_entries": 0,
            "orders_expired": 0,
            "stops_triggered": 0,
        }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m replication.testing.sim", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--seed", type=int, default=1, help="the seed (or the first seed with --schedules)")
    ap.add_argument("--schedules", type=int, default=0, help="run this many consecutive seeds")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes")
    ap.add_argument("--mode", choices=("sync", "async"), default="", help="override the schedules' mode")
    ap.add_argument("--engine", choices=("native", "reference"), default="native")
    ap.add_argument(
        "--overlap",
        choices=("drawn", "on", "off"),
        default="drawn",
        help="faults overlap (on), come one at a time (off), or as each seed draws it (default)",
    )
    ap.add_argument(
        "--max-faults",
        type=int,
        default=5,
        help="node faults per schedule drawn from 0..N (default 5; another N draws other schedules)",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--verbose", action="store_true", help="let the machines' log lines through")
    args = ap.parse_args(argv)
    if not args.verbose:
        import logging

        logging.disable(logging.CRITICAL)

    if not args.schedules:
        sched = _schedule(args.seed, args.mode, args.engine, args.overlap, args.max_faults)
        sim = Sim(sched).run()
        rep = check_sim(sim)
        if args.json:
            print(json.dumps({**rep.as_dict(), "schedule": sched.describe(), "fault_log": sim.fault_log}))
        else:
            print(f"seed {args.seed}: {sched.describe()}")
            for line in sim.fault_log:
                print(f"  {line}")
            print(json.dumps(rep.as_dict(), indent=1))
        return 1 if rep.violations else 0

    t0 = time.monotonic()  # wall time of the whole batch, for the report only
    work = [
        (args.seed + i, args.mode, args.engine, args.overlap, args.max_faults) for i in range(args.schedules)
    ]
    if args.jobs > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            results = list(pool.imap_unordered(_one, work, chunksize=8))
    else:
        results = [_one(w) for w in work]
    total: dict[str, Any] = {
        "schedules": len(results),
        "faults": {},
        "acked": 0,
        "lost": 0,
        "duplicates": 0,
        "divergences_caught": 0,
        "split_brain": 0,
        "expired": 0,
        "history_entries": 0,
        "virtual_seconds": 0.0,
        "not_converged": 0,
        "switchovers": 0,
        "switchovers_landed": 0,
        "forged_refused": 0,
        "time_entries": 0,  # the primaries' idle time commands in the histories (timekeeping)
        "orders_expired": 0,  # GTD orders the histories expired
        "stops_triggered": 0,  # stop orders the histories triggered
        "with_reports": 0,  # schedules whose clients took execution reports (check_reports)
        "reports_taken": 0,
        "reports_gone": 0,
        "client_restarts": 0,
        "client_twins": 0,
        "clients_fenced": 0,
        "reports_lost": 0,  # async: clients whose reports a fail-over took back
        "sessions_reopened": 0,  # a re-sent open that opened a second session (check_sessions)
        "failed_seeds": [],
    }
    for r in sorted(results, key=lambda r: r["seed"]):
        for k, n in r["faults"].items():
            total["faults"][k] = total["faults"].get(k, 0) + n
        total["acked"] += r["acked"]
        total["lost"] += r["lost"]
        total["duplicates"] += r["duplicates"]
        total["divergences_caught"] += r["divergences"]
        total["split_brain"] += r["split_brain"]
        total["expired"] += r["expired"]
        total["history_entries"] += r["history"]
        total["virtual_seconds"] += r["virtual_time"]
        total["not_converged"] += 0 if r["converged"] else 1
        total["switchovers"] += r["switchovers"]
        total["switchovers_landed"] += r["switchovers_landed"]
        total["forged_refused"] += r["forged_refused"]
        total["time_entries"] += r["time_entries"]
        total["orders_expired"] += r["orders_expired"]
        total["stops_triggered"] += r["stops_triggered"]
        figures = r.get("reports")
        if figures is not None:
            total["with_reports"] += 1
            total["reports_taken"] += figures["taken"]
            total["reports_gone"] += figures["gone"]
            total["client_restarts"] += figures["restarts"]
            total["client_twins"] += figures["twins"]
            total["clients_fenced"] += figures["fenced"]
            total["reports_lost"] += figures["lost"]
            total["sessions_reopened"] += figures["reopened"]
        if r["violations"]:
            total["failed_seeds"].append({"seed": r["seed"], "violations": r["violations"][:3]})
    total["faults"] = dict(sorted(total["faults"].items()))
    total["virtual_seconds"] = round(total["virtual_seconds"], 3)
    total["wall_seconds"] = round(time.monotonic() - t0, 1)
    total["command"] = "python -m replication.testing.sim " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.json:
        print(json.dumps(total, sort_keys=True))
    else:
        print(f"schedules run          {total['schedules']}")
        print(f"faults injected        {sum(total['faults'].values())}")
        for k, n in total["faults"].items():
            print(f"  {k:<22}{n}")
        for k in (
            "acked",
            "lost",
            "duplicates",
            "divergences_caught",
            "split_brain",
            "expired",
            "history_entries",
            "not_converged",
            "switchovers",
            "switchovers_landed",
            "forged_refused",
            "time_entries",
            "orders_expired",
            "stops_triggered",
            "with_reports",
            "reports_taken",
            "reports_gone",
            "client_restarts",
            "client_twins",
            "clients_fenced",
            "reports_lost",
            "sessions_reopened",
            "virtual_seconds",
            "wall_seconds",
        ):
            print(f"{k:<23}{total[k]}")
        print(f"failed seeds           {len(total['failed_seeds'])}")
        for f in total["failed_seeds"][:20]:
            print(f"  seed {f['seed']}: {'; '.join(f['violations'])}")
    return 1 if total["failed_seeds"] else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
