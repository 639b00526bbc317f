"""Shared machinery for the benchmark harnesses.

What every harness needs and none should re-implement: a description of the
machine and software a figure was measured on, latency percentiles through
HdrHistogram (never hand-rolled), JSON result files that record the command
line that produced them, console tables (``rich`` when installed, plain text
otherwise), progress bars for long runs, PNG charts, process memory readings
and the common command-line flags.

Not for measuring anything itself: the harnesses decide what to time and how.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

#: Where results go unless ``--out`` says otherwise, relative to the current directory:
#: a checkout's ``benchmarks/results`` when run from its root, else ``bench-results``.
#: Never beside this file: once installed, that is site-packages.
CHECKOUT_OUT = Path("benchmarks", "results")
PLAIN_OUT = Path("bench-results")


def default_out() -> Path:
    """The results directory for a run started in the current directory (see :data:`CHECKOUT_OUT`)."""
    here = Path.cwd()
    return here / CHECKOUT_OUT if (here / CHECKOUT_OUT).is_dir() else here / PLAIN_OUT


#: Packages whose versions are recorded with every result (ours and the peers').
PACKAGES = (
    "matchcore",
    "numpy",
    "pyzmq",
    "Cython",
    "sortedcontainers",
    "hdrhistogram",
    "lightmatchingengine",
    "liquibook",
    "matplotlib",
    "rich",
)

#: HdrHistogram range: 1 ns .. 100 s at 3 significant figures.
HDR_LOWEST_NS = 1
HDR_HIGHEST_NS = 100 * 10**9
HDR_SIGFIGS = 3

#: The percentiles every latency summary reports, by name.
SUMMARY_PERCENTILES = {"p50": 50.0, "p99": 99.0, "p99.9": 99.9}


# ----- machine and software ----------------------------------------------------


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """Installed distribution versions, ``None`` for a package that is not installed."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_revision() -> str | None:
    """``git describe --always --dirty`` of the source tree, or None outside a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        res = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None


def machine_info() -> dict[str, Any]:
    """Everything needed to say where a figure came from.

    Returns
    -------
    dict
        CPU model, logical cores (and how many this process may use), memory,
        Python implementation and version, platform string, package versions,
        git revision, the load average at the start and a UTC timestamp.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    mem_total = None
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_total = int(line.split()[1]) * 1024
                    break
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_bytes": mem_total,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "packages": package_versions(),
        "git": git_revision(),
        # Load from other processes when the run started: the first thing to check when figures look off.
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def machine_line(info: dict[str, Any]) -> str:
    """A one-line machine description for titles: ``AMD EPYC, 2 cores, CPython 3.11.9``."""
    return f"{info['cpu']}, {info['cores']} cores, {info['python']}"


# ----- latency percentiles ------------------------------------------------------


def histogram(values_ns: Sequence[int] | np.ndarray, weights: Sequence[int] | np.ndarray | None = None):
    """An HdrHistogram of nanosecond values (optionally each with a count). O(n + distinct log n).

    Values are clamped into the histogram's range (1 ns .. 100 s). Equal
    values are counted with NumPy first, so a million samples cost one
    ``record_value`` call per distinct value.

    Parameters
    ----------
    values_ns : sequence of int
        Latencies in nanoseconds.
    weights : sequence of int, optional
        How many samples each value stands for (default one each).

    Returns
    -------
    hdrh.histogram.HdrHistogram
    """
    from hdrh.histogram import HdrHistogram

    h = HdrHistogram(HDR_LOWEST_NS, HDR_HIGHEST_NS, HDR_SIGFIGS)
    values = np.clip(np.asarray(values_ns, dtype=np.int64), HDR_LOWEST_NS, HDR_HIGHEST_NS)
    if values.size == 0:
        return h
    if weights is None:
        distinct, counts = np.unique(values, return_counts=True)
    else:
        w = np.asarray(weights, dtype=np.int64)
        distinct, inverse = np.unique(values, return_inverse=True)
        counts = np.bincount(inverse.ravel(), weights=w).astype(np.int64)
    for v, c in zip(distinct.tolist(), counts.tolist(), strict=True):
        if c:
            h.record_value(v, c)
    return h


def latency_summary(h) -> dict[str, Any]:
    """p50 / p99 / p99.9 / max (and count, mean) of a histogram, in nanoseconds."""
    out: dict[str, Any] = {"count": h.get_total_count()}
    if not out["count"]:
        return out | {name: None for name in SUMMARY_PERCENTILES} | {"max": None, "mean": None}
    for name, p in SUMMARY_PERCENTILES.items():
        out[name] = h.get_value_at_percentile(p)
    out["max"] = h.get_max_value()
    out["mean"] = round(h.get_mean_value(), 1)
    return out


def percentile_curve(h, nines: int = 6) -> list[tuple[float, int]]:
    """(percentile, value ns) points from 0 up to ``1 - 10**-nines``, for the latency chart."""
    points: list[tuple[float, int]] = []
    if not h.get_total_count():
        return points
    for step in range(0, nines * 10 + 1):
        # Evenly spaced on the "number of nines" axis: 0, ..., 90, ..., 99, ... 99.9999.
        p = 100.0 * (1.0 - 10.0 ** (-step / 10.0))
        points.append((round(p, 6), h.get_value_at_percentile(p)))
    points.append((100.0, h.get_max_value()))
    return points


# ----- results -------------------------------------------------------------------


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command line that is running, quoted so it can be pasted back into a shell."""
    args = list(sys.argv if argv is None else argv)
    if args and args[0].endswith(".py"):  # run as `python -m benchmarks.<module>` (or matchcore_benchmarks.)
        args = [Path(sys.executable).name, "-m", f"{__package__}.{Path(args[0]).stem}"] + args[1:]
    elif args:
        args[0] = Path(args[0]).name
    return " ".join(shlex.quote(a) for a in args)


def result_skeleton(harness: str, args: argparse.Namespace) -> dict[str, Any]:
    """The fields every result file starts with: harness, command, options, machine."""
    options = {
        k: v
        for k, v in vars(args).items()
        if k not in ("func", "command", "bench") and isinstance(v, (int, float, str, bool, list, type(None)))
    }
    return {
        "harness": harness,
        "command": command_line(),
        "options": options,
        "machine": machine_info(),
        "interrupted": False,
    }


def write_result(harness: str, data: dict[str, Any], out_dir: str | os.PathLike | None = None) -> Path:
    """Write ``data`` as ``<out_dir>/<harness>.json`` (pretty-printed) and return the path."""
    out = Path(out_dir) if out_dir else default_out()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{harness}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# ----- console output ------------------------------------------------------------------


def _console():
    try:
        from rich.console import Console
    except ImportError:
        return None
    # Off a terminal rich assumes 80 columns, too narrow for these tables.
    return Console() if sys.stdout.isatty() else Console(width=120)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], note: str = "") -> None:
    """Print a table: a ``rich`` table when available, aligned plain text otherwise."""
    cells = [["" if c is None else str(c) for c in row] for row in rows]
    console = _console()
    if console is not None:
        from rich.table import Table

        table = Table(title=title, caption=note or None, caption_justify="left")
        for i, col in enumerate(columns):
            table.add_column(col, justify="left" if i == 0 else "right")
        for row in cells:
            table.add_row(*row)
        console.print(table)
        return
    widths = [
        max(len(str(col)), *(len(r[i]) for r in cells)) if cells else len(str(col))
        for i, col in enumerate(columns)
    ]
    print(title)
    print(
        "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(columns, widths, strict=True))
        )
    )
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    if note:
        print(note)
    print()


def say(message: str) -> None:
    """One status line on stderr (kept off stdout, which carries the tables)."""
    print(message, file=sys.stderr, flush=True)


class _PlainProgress:
    def __init__(self) -> None:
        self.tasks: dict[int, list] = {}

    def add_task(self, description: str, total: float | None = None) -> int:
        self.tasks[len(self.tasks)] = [description, total]
        say(f"... {description}")
        return len(self.tasks) - 1

    def advance(self, task: int, advance: float = 1) -> None:
        pass

    def update(self, task: int, **kwargs: Any) -> None:
        pass


@contextlib.contextmanager
def progress() -> Iterator[Any]:
    """A progress display for long runs: ``rich.progress`` on a terminal, status lines otherwise.

    Yields an object with ``add_task(description, total=...)``,
    ``advance(task, n)`` and ``update(task, ...)`` (the ``rich`` API).
    """
    if not sys.stderr.isatty():
        yield _PlainProgress()
        return
    try:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    except ImportError:
        yield _PlainProgress()
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as p:
        yield p


# ----- memory ----------------------------------------------------------------------------


def rss_bytes() -> int:
    """Current resident set size of this process (``/proc/self/statm``; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        # ru_maxrss is in KiB on Linux and bytes on macOS; only the peak is available.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


# ----- charts ------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_chart(
    path: Path,
    title: str,
    labels: Sequence[str],
    values: Sequence[float | None],
    ylabel: str,
    log: bool = True,
    target: tuple[str, float] | None = None,
) -> Path | None:
    """A PNG bar chart (missing values drawn as an empty slot labelled "missing")."""
    try:
        plt = _pyplot()
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    heights = [v if v else 0 for v in values]
    bars = ax.bar(range(len(labels)), heights, color="#4878a8")
    for bar, v in zip(bars, values, strict=True):
        text = "missing" if not v else f"{v:,.0f}"
        y = bar.get_height() if v else (min(h for h in heights if h) if any(heights) else 1)
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, y), ha="center", va="bottom", fontsize=8)
    if target is not None:
        ax.axhline(target[1], color="#c44e52", linestyle="--", linewidth=1, label=target[0])
        ax.legend(loc="best", fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=15, fontsize=8)
    ax.set_ylabel(ylabel)
    if log and any(heights):
        ax.set_yscale("log")
    elif any(heights):
        ax.set_ylim(0, max(heights) * 1.12)  # room for the value labels
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def percentile_chart(
    path: Path,
    title: str,
    curves: dict[str, list[tuple[float, int]]],
    target_ns: tuple[str, float] | None = None,
) -> Path | None:
    """A PNG of HdrHistogram percentile distributions: latency (log) against "nines" of percentile."""
    try:
        plt = _pyplot()
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    ticks = [0.0, 90.0, 99.0, 99.9, 99.99, 99.999, 99.9999]
    for name, points in curves.items():
        pts = [(p, v) for p, v in points if p < 100.0]
        if not pts:
            continue
        xs = [1.0 / (1.0 - p / 100.0) for p, _ in pts]
        ax.plot(xs, [max(v, 1) for _, v in pts], label=name, linewidth=1.4)
    if target_ns is not None:
        ax.axhline(target_ns[1], color="#c44e52", linestyle="--", linewidth=1, label=target_ns[0])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks([1.0 / (1.0 - t / 100.0) for t in ticks], [f"{t:g}%" for t in ticks], fontsize=8)
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency per command (ns)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ----- command-line flags ---------------------------------------------------------------------


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every harness takes: ``--quick --commands --seed --out --no-plot``."""
    parser.add_argument("--quick", action="store_true", help="a short pass (smaller N, one repetition)")
    parser.add_argument(
        "--commands",
        type=int,
        default=None,
        metavar="N",
        help="commands (or orders) per run; default depends on the harness and --quick",
    )
    parser.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    parser.add_argument(
        "--out",
        default=str(default_out()),
        metavar="DIR",
        help="directory for JSON results and PNG charts (default ./benchmarks/results in a checkout, "
        "else ./bench-results)",
    )
    parser.add_argument("--no-plot", action="store_true", help="do not draw PNG charts")


def fmt_int(v: float | None) -> str:
    """``12,345,678`` or ``-``."""
    return "-" if v is None else f"{v:,.0f}"


def fmt_ns(v: float | None) -> str:
    """A latency in ns as ``850 ns`` / ``1.25 µs`` / ``3.2 ms``, or ``-``."""
    if v is None:
        return "-"
    if v < 1_000:
        return f"{v:.0f} ns"
    if v < 1_000_000:
        return f"{v / 1e3:.2f} µs"
    if v < 1_000_000_000:
        return f"{v / 1e6:.2f} ms"
    return f"{v / 1e9:.2f} s"


def finish(
    harness: str,
    result: dict[str, Any],
    args: argparse.Namespace,
    machine: str,
    print_result: Any,
    plot: Any,
) -> dict[str, Any]:
    """Close a harness run: write the JSON first (nothing measured is lost), print, plot, write again.

    ``print_result(result, machine)`` prints the tables; ``plot(result, out, machine)``
    returns the chart paths (skipped with ``--no-plot``).
    """
    path = write_result(harness, result, args.out)
    print_result(result, machine)
    if not args.no_plot:
        result["charts"] = plot(result, args.out, machine)
        path = write_result(harness, result, args.out)
    say(f"wrote {path}" + (" (interrupted: partial results)" if result.get("interrupted") else ""))
    return result


def harness_main(module: Any, argv: list[str] | None = None) -> int:
    """``python -m benchmarks.<harness> [flags]``: the common and the harness's flags, then ``run``."""
    # Run as `python -m`, the module's __name__ is "__main__"; its spec has the dotted name.
    name = module.__spec__.name if module.__spec__ is not None else module.__name__
    parser = argparse.ArgumentParser(prog=f"python -m {name}", description=module.SUMMARY)
    add_common_arguments(parser)
    module.add_arguments(parser)
    result = module.run(parser.parse_args(argv))
    return 130 if result.get("interrupted") else 0
