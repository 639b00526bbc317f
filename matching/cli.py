"""The ``matchcore`` command line: one entry point, subcommands from each package.

``replay`` lives here (it needs only the engine). The node commands
(``primary``, ``standby``, ``witness``, ``switchover``, ``status``, ``demo``, ...)
come from ``replication.ops.cli`` and the ``bench`` family from the harnesses'
``cli`` (``matchcore_benchmarks.cli`` once installed, ``benchmarks.cli`` in a
checkout); each registers itself through ``add_subcommands`` so this module
stays a thin dispatcher.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Iterable
from typing import TextIO

from . import codes
from .commands import unknown_keys
from .events import Rejected, event_dict

# Reasons that mean the line itself was malformed, as opposed to a well-formed
# command the book refused (unknown order, FOK unfilled, ...).
MALFORMED_REASONS = frozenset(
    [
        "invalid_op",
        "invalid_side",
        "invalid_type",
        "invalid_tif",
        "invalid_stp",
        "bad_field",
        "out_of_range",
        "invalid_id",
        "invalid_qty",
        "invalid_price",
        "price_on_market",
        "invalid_display",
        "invalid_combination",
    ]
)


# The packages that add subcommands, each as the module names it may be found under, first
# importable wins. The benchmark harnesses install as matchcore_benchmarks (never a top-level
# "benchmarks" in site-packages); a checkout used without installing (PYTHONPATH=.) has them
# under their directory's name.
SUBCOMMAND_MODULES: tuple[tuple[str, ...], ...] = (
    ("replication.ops.cli",),
    ("matchcore_benchmarks.cli", "benchmarks.cli"),
)


def _subcommand_module(names: tuple[str, ...]):
    """The first of ``names`` that imports, or None.

    A package that is not there at all is skipped quietly; one that is there but
    misses a dependency is reported on stderr, and then its commands are left out.
    """
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            if exc.name not in (name, name.split(".")[0]):
                print(f"matchcore: {name} unavailable: {exc}", file=sys.stderr)
                return None
    return None


def _make_engine(use_reference: bool):
    import matching

    if use_reference or matching.Engine is None:
        return matching.ReferenceEngine()
    return matching.Engine()


def replay(
    lines: Iterable[str], out: TextIO, err: TextIO, depth: bool = False, use_reference: bool = False
) -> int:
    """Apply command-log lines to a fresh engine, writing one JSON event per line.

    Returns the number of lines that were not valid commands (reported on ``err``).
    Replay never stops on bad input.
    """
    engine = _make_engine(use_reference)
    bad = skipped = 0
    for n, line in enumerate(lines):
        text = line.strip()
        if not text:
            continue
        try:
            cmd = json.loads(text)
        except ValueError as exc:
            bad += 1
            skipped += 1
            print(f"line {n + 1}: not valid JSON ({exc.msg}); skipped", file=err)
            continue
        for ev in engine.apply(cmd):
            if isinstance(ev, Rejected) and ev.reason in MALFORMED_REASONS:
                bad += 1
                unknown = unknown_keys(cmd) if isinstance(cmd, dict) else []
                why = f"{ev.reason}: unknown key(s) {', '.join(unknown)}" if unknown else ev.reason
                print(f"line {n + 1}: invalid command ({why}): {text[:200]}", file=err)
            out.write(json.dumps({"cmd": n, **event_dict(ev)}) + "\n")
    if depth:
        for instrument in engine.instruments():
            bids, asks = engine.depth(instrument)
            out.write(
                json.dumps(
                    {
                        "instrument": instrument,
                        "bids": [list(r) for r in bids],
                        "asks": [list(r) for r in asks],
                    }
                )
                + "\n"
            )
        out.write(json.dumps({"digest": codes.digest_hex(engine.digest)}) + "\n")
    if skipped:
        print(f"{skipped} line(s) skipped", file=err)
    return bad


# Exit codes of ``replay``: every line was a valid command; some were not (each is
# reported on stderr, and replay went on); the file could not be read at all.
EXIT_OK, EXIT_INVALID_LINES, EXIT_NO_INPUT = 0, 1, 2


def _cmd_replay(args: argparse.Namespace) -> int:
    if args.file == "-":
        bad = replay(sys.stdin, sys.stdout, sys.stderr, args.depth, args.reference)
    else:
        try:
            f = open(args.file, encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as exc:
            print(f"matchcore replay: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
            return EXIT_NO_INPUT
        with f:
            bad = replay(f, sys.stdout, sys.stderr, args.depth, args.reference)
    return EXIT_INVALID_LINES if bad else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="matchcore",
        description="matchcore: a replicated price-time order-matching core. "
        "Run a subcommand with --help for its options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"matchcore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "replay",
        help="apply a JSON-lines command log and print the events",
        description="Apply a JSON-lines command log to a fresh engine and print one JSON event per line. "
        "Exit status: 0 all lines valid, 1 some lines invalid (reported on stderr), 2 file unreadable.",
    )
    p.add_argument("file", help="command log, one JSON command per line ('-' for stdin)")
    p.add_argument("--depth", action="store_true", help="then print every book and the digest")
    p.add_argument("--reference", action="store_true", help="use the plain-Python reference engine")
    p.set_defaults(func=_cmd_replay)
    # The other packages register their own subcommands; a missing optional
    # dependency only removes its commands, never `replay`.
    for names in SUBCOMMAND_MODULES:
        module = _subcommand_module(names)
        if module is not None:
            module.add_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
