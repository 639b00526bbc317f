"""The replication subcommands of ``matchcore``: run nodes, operate a group, watch it.

For: ``primary``, ``standby``, ``witness`` (long-running processes),
``status``, ``switchover``, ``promote`` (operator commands), ``subscribe``
(print the live entry stream), ``md`` (the public market-data feed), ``route check`` (a routes file) and
``demo``. ``matching.cli`` calls :func:`add_subcommands`; ``python -m
replication.ops.cli ...`` runs the same commands without the console script.
Not for: protocol logic.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
from typing import Any

if __name__ == "__main__":  # a process of its own: a node, the witness, an operator command
    # A node does no linear algebra: one OpenBLAS thread, not one per core, set before numpy
    # loads (the imports below bring it). Fewer threads and buffers are less for the kernel to
    # tear down when the process is SIGKILLed, the floor under every such fail-over.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from ..client.admin import ask, group_status  # noqa: F401 (the operator calls, re-exported for tools)
from ..protocol.engines import engine_factory

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def _setup_logging(args: argparse.Namespace) -> None:
    from .logs import setup

    setup(args.log_level, getattr(args, "log_format", "text"))


# -- long-running processes ------------------------------------------------------------


def _cmd_node(args: argparse.Namespace) -> int:
    from ..transport.group_file import load
    from ..transport.node_driver import node_driver

    _setup_logging(args)
    cfg = load(args.config)
    if args.node not in cfg.nodes:
        print(
            f"matchcore {args.command}: no node {args.node!r} in {args.config} (nodes: {', '.join(cfg.nodes)})",
            file=sys.stderr,
        )
        return EXIT_BAD_CONFIG
    role = "primary" if args.command == "primary" else "standby"
    driver = node_driver(cfg, args.node, role, engine_factory(args.engine), args.debug_perturb_seq)
    if args.metrics_port:
        driver.enable_metrics(args.metrics_port)
    return driver.run()


def _cmd_witness(args: argparse.Namespace) -> int:
    from ..transport.group_file import load
    from ..transport.witness_driver import witness_driver

    _setup_logging(args)
    driver = witness_driver(load(args.config))
    if args.metrics_port:
        driver.enable_metrics(args.metrics_port)
    return driver.run()


# -- operator commands -------------------------------------------------------------------


def operator_key(cfg: Any, args: argparse.Namespace) -> str:
    """The key an operator command uses: ``--key``, else the group's first operator's."""
    from ..transport.curve import default_operator_key

    return getattr(args, "key", "") or default_operator_key(cfg)


def auth_line(cfg: Any) -> str:
    """``auth: curve`` when every client is known by its key (``keys_dir`` and ``[clients]``
    entries), else ``auth: open`` and why: what each node's status reports as ``auth``."""
    if not cfg.keys_dir:
        return "auth: open (no keys_dir: the group trusts its network)"
    if not cfg.clients:
        return "auth: open (no [clients] entries: any holder of the client key may use any client id and account)"
    return "auth: curve"


def _cmd_status(args: argparse.Namespace) -> int:
    from ..transport.group_file import load
    from .health import EXIT_HEALTHY, EXIT_UNHEALTHY, problems, table

    cfg = load(args.config)
    key = operator_key(cfg, args)
    while True:
        st = group_status(cfg, args.timeout, key)
        if args.json:
            print(json.dumps(st, sort_keys=True), flush=True)
        else:
            if args.watch:
                print("\033[H\033[2J", end="")  # clear the terminal: one screen per refresh
                print(time.strftime("%H:%M:%S"), f"every {args.watch:g} s (Ctrl-C ends)")
            print(auth_line(cfg))
            print("\n".join(table(st, counters=not args.watch)), flush=True)
        if not args.watch:
            return EXIT_UNHEALTHY if problems(st) else EXIT_HEALTHY
        time.sleep(args.watch)


def _cmd_switchover(args: argparse.Namespace) -> int:
    from ..protocol import wire
    from ..transport.group_file import load

    cfg = load(args.config)
    if args.to not in cfg.nodes:
        print(f"switchover: no node {args.to!r}", file=sys.stderr)
        return 2
    key = operator_key(cfg, args)
    st = group_status(cfg, args.timeout, key)
    primary = next((n for n, s in st.items() if s.get("role") == "primary"), None)
    if primary is None:
        silent = [n for n, s in st.items() if s.get("role") == "unreachable"]
        why = f" ({', '.join(silent)} did not answer within {args.timeout:g} s)" if silent else ""
        print(f"switchover: no primary found{why}: nothing to hand over", file=sys.stderr)
        return 1
    if primary == args.to:
        print(f"switchover: {args.to} is already primary")
        return 0
    t0 = time.monotonic()
    wait = args.timeout + cfg.settings.switchover_timeout
    print(
        f"switchover: asking {primary} to hand over to {args.to} (waiting up to {wait:g} s)", file=sys.stderr
    )
    ask(cfg.nodes[primary].endpoint, wire.Switchover(args.to), args.timeout, cfg.keys_dir, primary, key)
    deadline = t0 + wait
    while time.monotonic() < deadline:
        got = ask(cfg.nodes[args.to].endpoint, wire.StatusRequest(), args.timeout, cfg.keys_dir, args.to, key)
        if isinstance(got, wire.Status) and json.loads(got.body).get("role") == "primary":
            body = json.loads(got.body)
            print(
                f"switchover: {primary} -> {args.to} epoch {body['epoch']} at seq {body['last_seq']} "
                f"in {(time.monotonic() - t0) * 1000:.1f} ms"
            )
            return 0
        time.sleep(0.005)
    print(
        f"switchover: {args.to} did not become primary within {wait:g} s "
        "(the primary aborts after its drain timeout, switchover_timeout_ms)",
        file=sys.stderr,
    )
    return 1


def _cmd_promote(args: argparse.Namespace) -> int:
    from ..protocol import wire
    from ..transport.group_file import load

    cfg = load(args.config)
    if args.node not in cfg.nodes:
        print(f"promote: no node {args.node!r} in {args.config}", file=sys.stderr)
        return 2
    key = operator_key(cfg, args)
    risk = promote_risk(group_status(cfg, args.timeout, key), args.node, cfg.settings.mode)
    if risk and not args.force:
        print(f"promote: refused: {risk} (--force promotes anyway, losing that)", file=sys.stderr)
        return 1
    if risk:
        print(f"promote --force: {args.node} promoted although {risk}", file=sys.stderr)
    # With a witness the node answers once the witness decided: up to promote_wait after our ask.
    from ..protocol.node.operator_promote import promote_wait

    wait = args.timeout + (promote_wait(cfg.settings) if cfg.witness else 0.0)
    got = ask(cfg.nodes[args.node].endpoint, wire.Promote(args.force), wait, cfg.keys_dir, args.node, key)
    if not isinstance(got, wire.Status):
        print("promote: no answer", file=sys.stderr)
        return 1
    body = json.loads(got.body)
    if body.get("promote_refused"):
        print(f"promote: {args.node} refused: {body['promote_refused']} (--force overrides)", file=sys.stderr)
    print(got.body.decode())
    return 0 if body.get("role") == "primary" else 1


def promote_risk(st: dict[str, Any], target: str, mode: str) -> str:
    """What promoting ``target`` may lose, by every node's and the witness's report ("" if nothing)."""
    from ..protocol.trust import promote_gap

    me = st.get(target, {})
    if "last_seq" not in me:
        return f"{target} does not answer"
    serving = [n for n, s in st.items() if n != target and s.get("role") in ("primary", "draining")]
    if serving:
        # A live primary keeps acknowledging until it hears of the new epoch: a planned move
        # is a switchover (nothing lost); promote is for a primary that is gone.
        return f"{serving[0]} is primary and answers (use switchover)"
    heard = [
        (s["epoch"], _role_code(s["role"]), s["last_seq"], s.get("commit", 0), tuple(s.get("isr", ())))
        for n, s in st.items()
        if n != target and "last_seq" in s and s.get("role") in ("primary", "draining", "standby")
    ]
    witness = st.get("witness", {})
    for n, (epoch, role, seq, commit, isr) in witness.get("heard", {}).items():
        if n != target:
            heard.append((epoch, role, seq, commit, tuple(isr)))
    # The witness's record is newer than any heartbeat: a primary shrinks its in-sync set there
    # before it acknowledges what the dropped member lacks.
    isr = witness.get("isr")
    if (
        isr is not None
        and witness.get("epoch") == me["epoch"]
        and target not in isr
        and target != witness.get("primary")
    ):
        return f"{target} is not in the in-sync set {','.join(isr) or '(empty: the primary ran solo)'} the witness recorded"
    needed, newer = promote_gap(target, me["last_seq"], me["epoch"], heard, mode)
    if newer:
        return f"epoch {newer} exists and {target} is at epoch {me['epoch']}"
    if needed:
        lost = needed - me["last_seq"]
        return f"the group acknowledged up to seq {needed} and {target} holds {me['last_seq']}: {lost} may be lost"
    return ""


def _role_code(role: str) -> int:
    from ..protocol import wire

    return {v: k for k, v in wire.ROLE_NAMES.items()}.get(role, wire.ROLE_STANDBY)


def _cmd_subscribe(args: argparse.Namespace) -> int:
    from ..transport.group_file import load
    from ..transport.subscriber import subscribe

    cfg = load(args.config)
    if args.node is not None and args.node not in cfg.nodes:
        print(f"subscribe: no node {args.node!r} in {args.config}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    names = [args.node] if args.node else list(cfg.nodes)
    # Say what we wait for, and refuse to wait forever on a group that is not there.
    st = group_status(cfg, 1.0, operator_key(cfg, args))
    answering = [n for n in names if st.get(n, {}).get("role") not in (None, "unreachable")]
    where = ", ".join(f"{n} at {cfg.nodes[n].endpoint}" for n in names)
    if not answering:
        print(f"subscribe: no node answers ({where}, 1 s each): is the group running?", file=sys.stderr)
        return 1
    print(f"subscribe: following the stream of {', '.join(answering)}", file=sys.stderr, flush=True)
    return subscribe(cfg, args.node, args.count, args.timeout)


def _cmd_md(args: argparse.Namespace) -> int:
    from ..transport.group_file import load
    from .md_view import md

    return md(load(args.config), args.instrument, args.node, args.key, args.count, args.timeout, args.view)


def _cmd_keys(args: argparse.Namespace) -> int:
    from ..transport.curve import create_keys, user_ids
    from ..transport.group_file import load

    if args.client or args.operator:
        return _new_key_pair(args)
    cfg = load(args.config)
    if not cfg.keys_dir:
        print(
            f'matchcore keys: {args.config} has no keys_dir: add keys_dir = "keys" (a directory for the '
            "group's key pairs), or make one holder's pair with --client NAME / --operator NAME",
            file=sys.stderr,
        )
        return EXIT_BAD_CONFIG
    made = create_keys(cfg)
    print(f"keys in {cfg.keys_dir}: created {', '.join(made) if made else 'none (all present)'}")
    # Who may connect, as each process will know it (a key file for each, or the group file's key).
    for key, user in sorted(user_ids(cfg).items(), key=lambda kv: kv[1]):
        print(f"  {user:<24} {key.decode()}")
    print(
        "Give each client and operator its own <name>.key_secret only. A holder who keeps its secret "
        "elsewhere makes its pair with `matchcore keys --client NAME` and sends the public_key line."
    )
    return 0


def _new_key_pair(args: argparse.Namespace) -> int:
    """``matchcore keys --client NAME`` (``--operator NAME``): one pair in ``--out``, and the group
    file lines that admit it."""
    import re

    from ..transport.curve import create_pair

    role, name = ("client", args.client) if args.client else ("operator", args.operator)
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        print(f"keys: {name!r} is not a name for [{role}s.NAME] (letters, digits, _ and -)", file=sys.stderr)
        return 2
    stem = os.path.join(args.out, f"{role}-{name}")
    try:
        key = create_pair(args.out, f"{role}-{name}")
    except FileExistsError as exc:
        print(f"keys: {exc}", file=sys.stderr)
        return 1
    print(f"created {stem}.key_secret (the {role}'s identity: keep it to yourself) and {stem}.key")
    print(f'the group file admits it with:\n\n[{role}s.{name}]\npublic_key = "{key.decode()}"')
    if role == "client":
        print("client_id = 0        # the only client id it may use (0: any)")
        print("accounts = []        # the only accounts it may trade ([]: any)")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(json_out=args.json, orders=args.orders, engine=args.engine, keep=args.keep)


# -- registration ----------------------------------------------------------------------


def _parser(subparsers: Any, name: str, help: str, description: str, example: str) -> argparse.ArgumentParser:
    """A subcommand with its one-line help, a description, and an example under ``--help``."""
    return subparsers.add_parser(
        name,
        help=help,
        description=textwrap.fill(description, 78),
        epilog="example:\n  " + example.replace("\n", "\n  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_subcommands(subparsers: Any) -> None:
    """Register the replication subcommands on ``matchcore``'s subparsers (each sets ``func``)."""
    from .logs import FORMATS, LEVELS

    def config_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", default="group.toml", help="the group TOML file (default: group.toml)")

    def node_flag(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("--node", required=True, metavar="NAME", help=what)

    def timeout_flag(p: argparse.ArgumentParser, default: float, what: str) -> None:
        p.add_argument(
            "--timeout", type=float, default=default, metavar="SECONDS", help=f"{what} (default: {default:g})"
        )

    def key_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--key",
            default="",
            metavar="NAME",
            help="CURVE key: a name in keys_dir (operator-NAME) or a .key_secret path (default: first operator)",
        )

    def process_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--log-level", default="info", choices=LEVELS, help="(default: info)")
        p.add_argument(
            "--log-format",
            default="text",
            choices=FORMATS,
            help="text: 'time LEVEL logger event key=value ...'; json: one object per line (default: text)",
        )
        p.add_argument(
            "--metrics-port",
            type=int,
            default=0,
            metavar="PORT",
            help="serve Prometheus metrics on http://127.0.0.1:PORT/metrics (default: 0 = off)",
        )

    for role in ("primary", "standby"):
        p = _parser(
            subparsers,
            role,
            help=f"run a node that starts as {role}",
            description=f"Run node NAME of the group, starting as {role}, until SIGTERM. "
            + (
                "Start the group's first primary this way; a node that comes back after a crash "
                "starts as standby."
                if role == "primary"
                else "It recovers its journal, follows the primary, catches up and stays in sync."
            ),
            example=f"matchcore {role} --config group.toml --node {'a' if role == 'primary' else 'b'}",
        )
        config_flag(p)
        node_flag(p, "this node's name in the group file ([nodes.NAME])")
        p.add_argument(
            "--engine",
            choices=("auto", "native", "reference"),
            default="auto",
            help="matching engine (auto: Cython if built, else the reference; default: auto)",
        )
        process_flags(p)
        # Test only (corrupts the book to exercise divergence): accepted, never shown in --help.
        p.add_argument("--debug-perturb-seq", type=int, default=0, metavar="N", help=argparse.SUPPRESS)
        p.set_defaults(func=_cmd_node)

    p = _parser(
        subparsers,
        "witness",
        help="run the group's witness (tie-breaker for fail-over)",
        description="Run the group's witness ([witness] in the group file) until SIGTERM. It grants "
        "each epoch to one node, keeps the in-sync set, and with a state file survives restarts.",
        example="matchcore witness --config group.toml",
    )
    config_flag(p)
    process_flags(p)
    p.set_defaults(func=_cmd_witness)

    p = _parser(
        subparsers,
        "status",
        help="every node's role, epoch, seq, digest, lag, in-sync set; exit 1 if unhealthy",
        description="Ask every node and the witness for its status and print one row each, then the "
        "group's health. Exit status: 0 healthy; 1 no primary, a node does not answer, the primary "
        "runs solo, or a node diverged or has a failed journal; 2 the group file cannot be used.",
        example="matchcore status --config group.toml\nmatchcore status --config group.toml --watch 1",
    )
    config_flag(p)
    p.add_argument("--json", action="store_true", help="one JSON object keyed by node name")
    p.add_argument(
        "--watch",
        type=float,
        nargs="?",
        const=1.0,
        default=0.0,
        metavar="SECONDS",
        help="refresh every SECONDS until Ctrl-C (default when given: 1)",
    )
    timeout_flag(p, 1.0, "seconds to wait for each node's answer")
    key_flag(p)
    p.set_defaults(func=_cmd_status)

    p = _parser(
        subparsers,
        "switchover",
        help="planned hand-over from the primary to another node",
        description="Ask the primary to drain into node TO and hand over; wait until TO serves. "
        "Nothing acknowledged is lost. Exit status: 0 TO is primary; 1 it did not become primary; "
        "2 no such node or a bad group file.",
        example="matchcore switchover --config group.toml --to b",
    )
    config_flag(p)
    p.add_argument("--to", required=True, metavar="NAME", help="the node that becomes primary")
    timeout_flag(p, 2.0, "seconds to wait for each answer (the drain may add switchover_timeout_ms)")
    key_flag(p)
    p.set_defaults(func=_cmd_switchover)

    p = _parser(
        subparsers,
        "promote",
        help="operator: promote a standby (the witness, if any, grants the epoch)",
        description="Promote node NAME when its primary is gone and no automatic fail-over happened. "
        "Refused if NAME may lack what the group acknowledged, or its primary is alive (use "
        "switchover). Exit status: 0 NAME is primary; 1 refused or no answer; 2 a bad group file.",
        example="matchcore promote --config group.toml --node b",
    )
    config_flag(p)
    node_flag(p, "the node to promote")
    timeout_flag(p, 1.0, "seconds to wait for each answer (plus the witness's decision)")
    p.add_argument(
        "--force",
        action="store_true",
        help="promote even a node behind what the group acknowledged, or whose primary is alive, or (after a bounded wait) without a witness that does not answer (says what may be lost)",
    )
    key_flag(p)
    p.set_defaults(func=_cmd_promote)

    p = _parser(
        subparsers,
        "subscribe",
        help="print the sequenced stream (entries with events) as JSON lines",
        description="Follow the group's drop copy (every entry, with its events, client ids and "
        "accounts: an operator's view) and print it as JSON lines, in seq order, gaps refilled.",
        example="matchcore subscribe --config group.toml --count 100",
    )
    config_flag(p)
    p.add_argument(
        "--node", default=None, metavar="NAME", help="follow only this node's stream (default: every node's)"
    )
    p.add_argument("--count", type=int, default=0, help="exit after this many entries (default: 0 = never)")
    p.add_argument(
        "--timeout",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="exit after this many seconds without an entry (default: 0 = never)",
    )
    p.set_defaults(func=_cmd_subscribe)

    p = _parser(
        subparsers,
        "md",
        help="the public market-data feed: JSON lines, or a live depth view",
        description="Follow the public market-data feed of one or more instruments (L2 level updates, "
        "trades and BBO, checksums verified, resynced by snapshot after a gap), from any node, "
        "following the group through fail-over. No order id, account or client id is in it.",
        example="matchcore md --config group.toml --instrument 1\nmatchcore md --config group.toml --instrument 1 --view",
    )
    config_flag(p)
    p.add_argument(
        "--node",
        default=None,
        metavar="NAME",
        help="start from this node's feed (default: the first that answers)",
    )
    p.add_argument(
        "--instrument", type=int, action="append", required=True, help="an instrument (repeatable)"
    )
    p.add_argument("--json", action="store_true", help="JSON lines, one per update (the default)")
    p.add_argument("--view", action="store_true", help="a live depth view (rich) instead of JSON lines")
    p.add_argument("--count", type=int, default=0, help="exit after this many updates (default: 0 = never)")
    p.add_argument(
        "--timeout",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="exit after this many seconds without an update (default: 0 = never)",
    )
    p.add_argument(
        "--key", default="", metavar="NAME", help="CURVE key name in keys_dir (default: the client's)"
    )
    p.set_defaults(func=_cmd_md)

    p = _parser(
        subparsers,
        "keys",
        help="create the CURVE key pairs the group file names in keys_dir, or one client's or operator's",
        description="Create every key pair the group file needs in its keys_dir (existing ones are "
        "kept), or with --client/--operator one pair for a holder who keeps its own secret.",
        example="matchcore keys --config group.toml\nmatchcore keys --client desk1 --out ./keys",
    )
    config_flag(p)
    who = p.add_mutually_exclusive_group()
    who.add_argument(
        "--client",
        default="",
        metavar="NAME",
        help="only make a key pair for [clients.NAME] (no group file read)",
    )
    who.add_argument(
        "--operator",
        default="",
        metavar="NAME",
        help="only make a key pair for [operators.NAME] (no group file read)",
    )
    p.add_argument(
        "--out", default=".", metavar="DIR", help="where --client/--operator writes its pair (default: .)"
    )
    p.set_defaults(func=_cmd_keys)

    p = _parser(
        subparsers,
        "demo",
        help="start a group, SIGKILL the primary mid-flow, show nothing was lost",
        description="Start a primary, a standby and a witness on loopback in a temporary directory, "
        "send a flow of orders, SIGKILL the primary mid-flow, and check every acknowledged order "
        "against the new primary's journal and a local replay. Exit status: 0 nothing lost.",
        example="matchcore demo --orders 2000",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--orders", type=int, default=2000, help="orders in the flow (default: 2000)")
    p.add_argument(
        "--engine", choices=("auto", "native", "reference"), default="auto", help="(default: auto)"
    )
    p.add_argument("--keep", action="store_true", help="keep the temp directory (journals, logs)")
    p.set_defaults(func=_cmd_demo)

    _add_chaos(subparsers)
    _add_route(subparsers)
    for p in subparsers.choices.values():
        func = p.get_default("func")
        if func is not None:
            p.set_defaults(func=_config_errors_as_one_line(func))


# Exit status of any subcommand given a group file it cannot use (see config.ConfigError), and
# of one the system refused (a file or directory it cannot open, a port already in use).
EXIT_BAD_CONFIG = 2
EXIT_SYSTEM = 3


def _config_errors_as_one_line(func: Any) -> Any:
    """Wrap a subcommand so a bad group file ends in one clear line and exit 2, not a traceback."""

    def run(args: argparse.Namespace) -> int:
        import zmq

        from ..transport.group_file import ConfigError

        try:
            return func(args)
        except ConfigError as exc:
            print(f"matchcore {args.command}: {exc}", file=sys.stderr)
            return EXIT_BAD_CONFIG
        except (OSError, zmq.ZMQError) as exc:
            # The system refused something the command needs: a file, a directory, a port.
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            print(f"matchcore {args.command}: {exc.strerror or exc}{where}", file=sys.stderr)
            return EXIT_SYSTEM

    return run


def _add_chaos(subparsers: Any) -> None:
    from ..testing import chaos

    p = subparsers.add_parser(
        "chaos", help="SIGKILL/switch over a real group for N cycles; check nothing was lost"
    )
    chaos.add_arguments(p)
    p.set_defaults(func=chaos.run)


def _add_route(subparsers: Any) -> None:
    """``matchcore route check ROUTES``: validate a routes file (see ``replication.client.router``), print its table."""

    def check(args: argparse.Namespace) -> int:
        from ..client.router import format_ranges, load_groups, load_routes

        try:
            routes = load_routes(args.routes, check_groups=False)
            cfgs = load_groups(routes)
        except (OSError, ValueError) as exc:
            print(f"route check: {exc}", file=sys.stderr)
            return 2
        print(f"{'group':<10}{'instruments':<24}{'config':<40}nodes")
        for name, g in routes.groups.items():
            served = format_ranges(g.instruments) + (" + the rest" if name == routes.default else "")
            nodes = " ".join(f"{n}={s.endpoint}" for n, s in cfgs[name].nodes.items())
            print(f"{name:<10}{served:<24}{g.config:<40}{nodes}")
        return 0

    p = subparsers.add_parser("route", help="client routing across groups by instrument")
    sub = p.add_subparsers(dest="route_command", required=True, metavar="ACTION")
    c = sub.add_parser("check", help="validate a routes file and its group files; print the routing table")
    c.add_argument("routes", help="the routes TOML file")
    c.set_defaults(func=check)


def main(argv: list[str] | None = None) -> int:
    """``python -m replication.ops.cli SUBCOMMAND ...`` (same as ``matchcore SUBCOMMAND``)."""
    parser = argparse.ArgumentParser(prog="python -m replication.ops.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    add_subcommands(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
