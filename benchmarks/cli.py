"""``matchcore bench``: the registry of harnesses and their command line.

Each harness is a module in this package with

- ``SUMMARY``: one line for ``--help``;
- ``add_arguments(parser)``: its own flags (the common ones — ``--quick``,
  ``--commands``, ``--seed``, ``--out``, ``--no-plot`` — are added here);
- ``run(args) -> dict``: measure, print the tables, write
  ``<out>/<name>.json`` (and charts), return the result (with
  ``"interrupted": True`` when Ctrl-C cut it short).

To add one (the replication, fail-over and catch-up harnesses), write the
module and add a line to :data:`HARNESSES`; ``bench all`` then runs it too.
This module only wires arguments; it measures nothing.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType
from typing import Any

from . import common

#: name -> module within this package; ``bench all`` runs them in this order. Relative, because
#: the package is ``benchmarks`` in a checkout and ``matchcore_benchmarks`` once installed.
HARNESSES: dict[str, str] = {
    "engine": ".engine",
    "memory": ".memory",
    "replication": ".replication",
    "failover": ".failover",
    "catchup": ".catchup",
    "flood": ".flood",
    "idle": ".idle",
    "market_data": ".market_data",
}


def _load(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(HARNESSES[name], __package__)
    except ImportError as exc:
        common.say(f"bench {name}: unavailable ({exc})")
        return None


def harness_parser(
    name: str, module: ModuleType, parser: argparse.ArgumentParser | None = None
) -> argparse.ArgumentParser:
    """A parser with the common flags and the harness's own (new, or filling ``parser``)."""
    if parser is None:
        parser = argparse.ArgumentParser(prog=f"matchcore bench {name}", description=module.SUMMARY)
    common.add_common_arguments(parser)
    module.add_arguments(parser)
    return parser


def run_one(name: str, args: argparse.Namespace) -> dict[str, Any] | None:
    """Run one registered harness with parsed arguments; None if it cannot be imported."""
    module = _load(name)
    if module is None:
        return None
    return module.run(args)


def _cmd_one(name: str):
    def cmd(args: argparse.Namespace) -> int:
        try:
            result = run_one(name, args)
        except KeyboardInterrupt:
            return 130
        if result is None:
            return 1
        return 130 if result.get("interrupted") else 0

    return cmd


def _cmd_all(args: argparse.Namespace) -> int:
    """Every registered harness in turn, each with its defaults plus the common flags given."""
    status = 0
    for name in HARNESSES:
        module = _load(name)
        if module is None:
            status = 1
            continue
        sub_args = harness_parser(name, module).parse_args([])
        for key in ("quick", "commands", "seed", "out", "no_plot"):
            setattr(sub_args, key, getattr(args, key))
        common.say(f"== bench {name}")
        try:
            result = module.run(sub_args)
        except KeyboardInterrupt:
            return 130
        if result.get("interrupted"):
            return 130
    return status


def add_subcommands(subparsers: Any) -> None:
    """Register ``bench`` and its harnesses on the ``matchcore`` parser's subparsers."""
    bench = subparsers.add_parser(
        "bench",
        help="run benchmark harnesses (tables, JSON, PNG charts)",
        description="Benchmark harnesses; results go to --out "
        "(default ./benchmarks/results in a checkout, else ./bench-results).",
    )
    sub = bench.add_subparsers(dest="bench", required=True, metavar="HARNESS")
    for name in HARNESSES:
        module = _load(name)
        if module is None:
            continue
        p = sub.add_parser(name, help=module.SUMMARY, description=module.SUMMARY)
        harness_parser(name, module, p)
        p.set_defaults(func=_cmd_one(name))
    p = sub.add_parser("all", help="every harness above, in turn (common flags only)")
    common.add_common_arguments(p)
    p.set_defaults(func=_cmd_all)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.cli HARNESS [flags]`` (the same as ``matchcore bench``)."""
    parser = argparse.ArgumentParser(prog=f"python -m {__package__}.cli")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
