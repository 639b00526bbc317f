"""Engine harness: throughput and per-command latency of matchcore next to its peers.

Runs the standard mix (:mod:`benchmarks.workload`) through

- matchcore's batch API (``Engine.apply_batch`` on one ``COMMAND_DTYPE`` array),
- matchcore's per-call API (``Engine.submit / cancel / replace``),
- the plain-Python reference engine (on a shorter prefix of the same mix),
- ``lightmatchingengine`` and ``liquibook`` (see :mod:`benchmarks.peers`),

in one process, one after the other, each on a fresh engine after the same
untimed setup. Throughput is commands divided by the wall time of one
untimed-per-command pass (median over ``--repeat`` passes, taken round-robin
over the paths so that load on a shared machine hits them all alike), and
also divided by the process CPU time of the pass. Latency comes from a
separate pass: per-call paths time every call with ``time.perf_counter_ns``
(so the figure includes the timer's own ~50-100 ns); the batch path times
chunks of ``--chunk`` commands and counts each command at chunk time / chunk
size. Percentiles are read from an HdrHistogram.

It also checks, untimed, that the batch and per-call paths end with the same
digest and that the reference agrees with the batch API on its prefix, and
that every engine ends with the number of resting orders the workload
predicts.

Not a correctness test and not a profile: use ``tests/`` for the first and
``perf`` / ``py-spy`` for the second.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

from . import common
from .peers import Driver, matchcore_drivers, peer_drivers
from .workload import command_array, generate

SUMMARY = "engine throughput and latency: batch, per-call, reference and peers"

FULL_COMMANDS = 1_000_000
QUICK_COMMANDS = 50_000
FULL_REFERENCE = 100_000
QUICK_REFERENCE = 10_000

TARGET_BATCH = 10_000_000  # commands/s
TARGET_VS_LME = 3.0  # per-call throughput / lightmatchingengine
TARGET_VS_LIQUIBOOK = 1.0  # per-call throughput / liquibook
TARGET_P99_NS = 2_000  # per-call p99


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of this harness (besides the common ones)."""
    parser.add_argument(
        "--instruments",
        default="1,8",
        help="comma-separated instrument counts, one variant each (default 1,8)",
    )
    parser.add_argument(
        "--reference-commands",
        type=int,
        default=None,
        metavar="N",
        help=f"prefix run through the reference (default {FULL_REFERENCE:,}, quick {QUICK_REFERENCE:,})",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="throughput passes per path, median reported (default 3, quick 1)",
    )
    parser.add_argument("--chunk", type=int, default=1_000, help="batch latency chunk size (default 1000)")
    parser.add_argument(
        "--paths",
        default=None,
        help="comma-separated subset of: batch, per-call, reference, lightmatchingengine, liquibook",
    )


# ----- timing ---------------------------------------------------------------------


def _time_calls(calls: list) -> tuple[int, int]:
    """Wall ns and process CPU ns of one pass over ``calls`` (no per-call timing)."""
    gc.collect()
    c0, t0 = time.process_time_ns(), time.perf_counter_ns()
    for fn, args in calls:
        fn(*args)
    return time.perf_counter_ns() - t0, time.process_time_ns() - c0


def _throughput(commands: int, walls: list[int], cpus: list[int]) -> dict[str, Any]:
    """Throughput from the median wall time (the headline) and from the median CPU time.

    On a busy shared machine the wall figure also counts time this process
    spent waiting for a core; the CPU-time figure does not.
    """
    return {
        "runs_ns": walls,
        "cpu_runs_ns": cpus,
        "throughput": commands / (median(walls) / 1e9),
        "throughput_cpu": commands / (median(cpus) / 1e9) if cpus and median(cpus) else None,
    }


def _latency_calls(calls: list) -> np.ndarray:
    """ns of each call, timed one by one."""
    lat = [0] * len(calls)
    pc = time.perf_counter_ns
    gc.collect()
    for i, (fn, args) in enumerate(calls):
        t = pc()
        fn(*args)
        lat[i] = pc() - t
    return np.asarray(lat, dtype=np.int64)


KINDS = ("new resting", "new IOC", "cancel", "replace")


def _kind(op: tuple) -> int:
    if op[0] == "new":
        return 1 if op[6] else 0
    return 2 if op[0] == "cancel" else 3


def _fresh(driver: Driver, setup_ops: list) -> Any:
    engine = driver.start()
    driver.setup(engine, setup_ops)
    return engine


class PerCallPath:
    """One engine driven call by call (matchcore per-call, the reference, a peer)."""

    def __init__(self, driver: Driver, setup_ops: list, ops: list) -> None:
        self.driver, self.setup_ops, self.ops = driver, setup_ops, ops
        self.commands = len(ops)

    def throughput_pass(self) -> tuple[tuple[int, int], dict[str, Any]]:
        """Wall and CPU ns of one untimed-per-call pass on a fresh engine, and the end state."""
        engine = _fresh(self.driver, self.setup_ops)
        ns = _time_calls(self.driver.calls(engine, self.ops))
        end: dict[str, Any] = {"live_orders_after": self.driver.live_orders(engine)}
        if getattr(engine, "digest", None) is not None:
            end["digest"] = common_digest(engine.digest)
        return ns, end

    def latency_pass(self) -> dict[str, Any]:
        """Every call timed on a fresh engine: summary, curve and a breakdown by command kind."""
        engine = _fresh(self.driver, self.setup_ops)
        lat = _latency_calls(self.driver.calls(engine, self.ops))
        h = common.histogram(lat)
        kinds = np.fromiter((_kind(o) for o in self.ops), dtype=np.int8, count=len(self.ops))
        by_kind = {}
        for code, name in enumerate(KINDS):
            sel = lat[kinds == code]
            if sel.size:
                by_kind[name] = common.latency_summary(common.histogram(sel))
        out = {
            "latency_ns": common.latency_summary(h),
            "latency_method": "each call timed with time.perf_counter_ns (includes the timer, ~50-100 ns)",
            "curve": common.percentile_curve(h),
            "latency_by_kind_ns": by_kind,
            "notes": self.driver.notes,
        }
        if getattr(engine, "digest", None) is not None:
            out["digest_latency_pass"] = common_digest(engine.digest)
        return out


class BatchPath:
    """``Engine.apply_batch``: the whole array per call for throughput, chunks for latency."""

    def __init__(self, engine_cls: Any, setup: np.ndarray, cmds: np.ndarray, chunk: int) -> None:
        self.engine_cls, self.setup, self.cmds, self.chunk = engine_cls, setup, cmds, chunk
        self.commands = len(cmds)

    def throughput_pass(self) -> tuple[tuple[int, int], dict[str, Any]]:
        engine = self.engine_cls()
        engine.apply_batch(self.setup)
        gc.collect()
        c0, t0 = time.process_time_ns(), time.perf_counter_ns()
        engine.apply_batch(self.cmds)
        ns = time.perf_counter_ns() - t0, time.process_time_ns() - c0
        return ns, {"live_orders_after": int(engine.live_orders), "digest": common_digest(engine.digest)}

    def latency_pass(self) -> dict[str, Any]:
        engine = self.engine_cls()
        engine.apply_batch(self.setup)
        n, chunk, cmds = self.commands, self.chunk, self.cmds
        per_cmd, sizes = [], []
        total_ns = 0
        apply = engine.apply_batch
        pc = time.perf_counter_ns
        gc.collect()
        for start in range(0, n, chunk):
            part = cmds[start : start + chunk]
            t = pc()
            apply(part)
            dt = pc() - t
            total_ns += dt
            per_cmd.append(dt // len(part))
            sizes.append(len(part))
        h = common.histogram(per_cmd, sizes)
        return {
            "throughput_chunked": n / (total_ns / 1e9) if total_ns else None,
            "chunk": chunk,
            "latency_ns": common.latency_summary(h),
            "latency_method": f"apply_batch on chunks of {chunk}: each command counted at chunk time / chunk size",
            "curve": common.percentile_curve(h),
            "digest_latency_pass": common_digest(engine.digest),
        }


def common_digest(d: int) -> str:
    from matching.codes import digest_hex

    return digest_hex(int(d))


# ----- one variant -------------------------------------------------------------------------

PATHS = ("batch", "per-call", "reference", "lightmatchingengine", "liquibook")
LABELS = {"batch": "matchcore batch", "per-call": "matchcore per-call", "reference": "matchcore reference"}


def run_variant(
    instruments: int, n: int, n_ref: int, args: argparse.Namespace, paths: list[str], prog: Any
) -> dict[str, Any]:
    """Every path on one workload variant. Ctrl-C stops early; what was measured is kept."""
    task = prog.add_task(f"{instruments}-instrument: generating {n:,} commands", total=n)
    wl = generate(n, instruments, args.seed, on_progress=lambda k: prog.advance(task, k))
    prog.update(task, completed=n)
    setup_arr, cmds = command_array(wl.setup), command_array(wl.ops)
    percall, reference = matchcore_drivers()
    drivers = {"per-call": percall, "reference": reference}
    drivers.update({d.name: d for d in peer_drivers()})
    variant: dict[str, Any] = {"workload": wl.describe(), "paths": {}, "checks": {}}
    results = variant["paths"]
    runners: dict[str, PerCallPath | BatchPath] = {}
    for path in paths:
        driver = drivers.get(path, percall)
        if driver.missing:
            results[path] = {"missing": driver.missing}
        elif path == "batch":
            runners[path] = BatchPath(percall.factory, setup_arr, cmds, args.chunk)
        else:
            runners[path] = PerCallPath(driver, wl.setup, wl.ops[:n_ref] if path == "reference" else wl.ops)
    # Throughput passes go round-robin over the paths, so that a burst of load on
    # a shared machine hits every path rather than skewing one ratio.
    runs: dict[str, list[int]] = {p: [] for p in runners}
    cpu_runs: dict[str, list[int]] = {p: [] for p in runners}
    ends: dict[str, dict[str, Any]] = {}
    try:
        for r in range(args.repeat):
            for path, runner in list(runners.items()):
                if path == "reference" and r:
                    continue  # the reference is slow: one pass on its prefix
                prog.update(task, description=f"{instruments}-instrument: {path}, pass {r + 1}/{args.repeat}")
                try:
                    (wall, cpu), ends[path] = runner.throughput_pass()
                    runs[path].append(wall)
                    cpu_runs[path].append(cpu)
                except Exception as exc:  # a peer that breaks is reported, not fatal for the others
                    results[path] = {"missing": f"failed: {type(exc).__name__}: {exc}"}
                    del runners[path]
        for path, runner in list(runners.items()):
            prog.update(task, description=f"{instruments}-instrument: {path}, latency pass")
            res = {"commands": runner.commands, **_throughput(runner.commands, runs[path], cpu_runs[path])}
            res.update(ends[path])
            if path == "reference":
                res["prefix_only"] = True
            results[path] = res
            try:
                res.update(runner.latency_pass())
            except Exception as exc:
                results[path] = {"missing": f"failed: {type(exc).__name__}: {exc}"}
    except KeyboardInterrupt:
        variant["interrupted"] = True
        for path, runner in runners.items():
            if path not in results and runs.get(path):
                results[path] = {
                    "commands": runner.commands,
                    **_throughput(runner.commands, runs[path], cpu_runs[path]),
                    **ends[path],
                }
            if path not in results:
                results[path] = {"missing": "interrupted (Ctrl-C) before it was measured"}
            elif "latency_ns" not in results[path]:
                results[path]["latency_ns"] = common.latency_summary(common.histogram([]))
                results[path]["latency_method"] = "interrupted (Ctrl-C) before the latency pass"
    results = variant["paths"] = {p: results[p] for p in paths if p in results}
    # ----- checks (untimed) -----
    checks = variant["checks"]
    b, p = results.get("batch", {}), results.get("per-call", {})
    if "digest" in b and "digest" in p:
        checks["batch_equals_per_call"] = (
            b["digest"] == p["digest"] == b.get("digest_latency_pass") == p.get("digest_latency_pass")
        )
    ref = results.get("reference", {})
    if "digest" in ref and percall.factory is not None and not variant.get("interrupted"):
        e = percall.factory()
        e.apply_batch(setup_arr)
        e.apply_batch(cmds[:n_ref])
        checks["reference_equals_batch_on_prefix"] = common_digest(e.digest) == ref["digest"]
    for path, res in results.items():
        if path != "reference" and res.get("live_orders_after") is not None:
            checks[f"{path}_live_orders_as_predicted"] = res["live_orders_after"] == wl.live_after
    variant["ratios"] = ratios(results)
    return variant


def _tp(results: dict, path: str) -> float | None:
    return results.get(path, {}).get("throughput")


def ratios(results: dict[str, Any]) -> dict[str, float | None]:
    """Throughput ratios: per-call over each other path, batch over per-call."""
    out: dict[str, float | None] = {}
    pc = _tp(results, "per-call")
    for other in ("reference", "lightmatchingengine", "liquibook"):
        o = _tp(results, other)
        out[f"per-call/{other}"] = round(pc / o, 2) if pc and o else None
    b = _tp(results, "batch")
    out["batch/per-call"] = round(b / pc, 2) if b and pc else None
    return out


def targets(variant: dict[str, Any]) -> list[dict[str, Any]]:
    """The stated targets, the measured value and whether it is met (None = not measured)."""
    results, r = variant["paths"], variant["ratios"]
    p99 = results.get("per-call", {}).get("latency_ns", {}).get("p99")
    rows = [
        ("batch throughput", _tp(results, "batch"), TARGET_BATCH, ">=", "cmd/s"),
        ("per-call / lightmatchingengine", r.get("per-call/lightmatchingengine"), TARGET_VS_LME, ">=", "x"),
        ("per-call / liquibook", r.get("per-call/liquibook"), TARGET_VS_LIQUIBOOK, ">=", "x"),
        ("per-call p99", p99, TARGET_P99_NS, "<=", "ns"),
    ]
    out = []
    for name, value, target, op, unit in rows:
        met = None if value is None else (value >= target if op == ">=" else value <= target)
        out.append(
            {
                "target": name,
                "goal": f"{op} {target:,} {unit}",
                "measured": value,
                "met": met,
                "measured_over_goal": None if value is None else round(value / target, 3),
            }
        )
    return out


# ----- output -------------------------------------------------------------------------------


def print_variant(name: str, variant: dict[str, Any], machine: str) -> None:
    rows = []
    for path, res in variant["paths"].items():
        if "missing" in res:
            rows.append([LABELS.get(path, path), f"missing: {res['missing']}", "", "", "", "", "", ""])
            continue
        lat = res["latency_ns"]
        label = LABELS.get(path, path) + (" (prefix)" if res.get("prefix_only") else "")
        rows.append(
            [
                label,
                common.fmt_int(res["commands"]),
                common.fmt_int(res["throughput"]),
                common.fmt_int(res.get("throughput_cpu")),
                common.fmt_ns(lat["p50"]),
                common.fmt_ns(lat["p99"]),
                common.fmt_ns(lat["p99.9"]),
                common.fmt_ns(lat["max"]),
            ]
        )
    common.print_table(
        f"engine, {name} mix ({machine})",
        ["path", "commands", "cmd/s", "cmd/s CPU", "p50", "p99", "p99.9", "max"],
        rows,
        note="cmd/s: median wall time of passes (cmd/s CPU: median process CPU time, which leaves out "
        "waiting for a core on a busy machine); batch latency = chunk time / chunk size; "
        "per-call latency: each call timed (includes ~50-100 ns of timer)",
    )
    krows = []
    for path, res in variant["paths"].items():
        by_kind = res.get("latency_by_kind_ns")
        if by_kind:
            krows.append(
                [LABELS.get(path, path)]
                + [
                    f"{common.fmt_ns(by_kind[k]['p50'])} / {common.fmt_ns(by_kind[k]['p99'])}"
                    if k in by_kind
                    else "-"
                    for k in KINDS
                ]
            )
    if krows:
        common.print_table(
            f"per-call latency by command kind, p50 / p99, {name} mix", ["path", *KINDS], krows
        )
    trows = []
    for t in targets(variant):
        measured = t["measured"]
        shown = (
            "-"
            if measured is None
            else common.fmt_ns(measured)
            if t["goal"].endswith("ns")
            else f"{measured:,.2f}"
            if measured < 1000
            else common.fmt_int(measured)
        )
        met = {None: "not measured", True: "met"}.get(
            t["met"]
        ) or f"missed ({t['measured_over_goal']:.2f} of goal)"
        trows.append([t["target"], t["goal"], shown, met])
    chunked = variant["paths"].get("batch", {}).get("throughput_chunked")
    if chunked:
        chunk = variant["paths"]["batch"]["chunk"]
        trows.append([f"batch in chunks of {chunk:,} (latency pass)", "", common.fmt_int(chunked), "cmd/s"])
    for k, v in variant["ratios"].items():
        trows.append([f"ratio {k}", "", "-" if v is None else f"{v:,.2f}x", ""])
    for k, v in variant["checks"].items():
        trows.append([f"check {k}", "", "yes" if v else "NO", ""])
    common.print_table(f"targets and checks, {name} mix", ["", "goal", "measured", ""], trows)


def plot_variant(out_dir: str, name: str, variant: dict[str, Any], machine: str) -> list[str]:
    paths = list(variant["paths"])
    res = variant["paths"]
    files = []
    tp = Path(out_dir) / f"engine-{name}-throughput.png"
    labels = [LABELS.get(p, p) + (" (prefix)" if res[p].get("prefix_only") else "") for p in paths]
    if common.bar_chart(
        tp,
        f"Engine throughput, {name} standard mix\n{machine}",
        labels,
        [res[p].get("throughput") for p in paths],
        "commands per second (log scale)",
        target=("batch target 10M cmd/s", TARGET_BATCH),
    ):
        files.append(str(tp))
    lat = Path(out_dir) / f"engine-{name}-latency.png"
    curves = {LABELS.get(p, p): res[p]["curve"] for p in paths if res[p].get("curve")}
    if curves and common.percentile_chart(
        lat,
        f"Latency per command, {name} standard mix (HdrHistogram)\n{machine}",
        curves,
        ("per-call p99 target 2 µs", TARGET_P99_NS),
    ):
        files.append(str(lat))
    return files


# ----- entry points -------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the harness with parsed arguments; print tables, write JSON (and PNGs); return the result."""
    n = args.commands or (QUICK_COMMANDS if args.quick else FULL_COMMANDS)
    n_ref = min(n, args.reference_commands or (QUICK_REFERENCE if args.quick else FULL_REFERENCE))
    args.repeat = args.repeat or (1 if args.quick else 3)
    paths = [p.strip() for p in (args.paths or ",".join(PATHS)).split(",") if p.strip()]
    unknown = set(paths) - set(PATHS)
    if unknown:
        raise SystemExit(f"unknown path(s): {', '.join(sorted(unknown))}; choose from {', '.join(PATHS)}")
    result = common.result_skeleton("engine", args)
    result.update({"commands": n, "reference_commands": n_ref, "variants": {}, "charts": []})
    machine = common.machine_line(result["machine"])
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with common.progress() as prog:
        for k in [int(x) for x in str(args.instruments).split(",") if x.strip()]:
            name = f"{k}-instrument"
            try:
                variant = run_variant(k, n, n_ref, args, paths, prog)
            except KeyboardInterrupt:
                result["interrupted"] = True
                break
            variant["targets"] = targets(variant)
            result["variants"][name] = variant
            if variant.get("interrupted"):
                result["interrupted"] = True
                break
    path = common.write_result("engine", result, args.out)  # first, so nothing measured is lost
    for name, variant in result["variants"].items():
        print_variant(name, variant, machine)
        if not args.no_plot:
            result["charts"] += plot_variant(args.out, name, variant, machine)
    path = common.write_result("engine", result, args.out)
    common.say(f"wrote {path}" + (" (interrupted: partial results)" if result["interrupted"] else ""))
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.engine [flags]``."""
    return common.harness_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
