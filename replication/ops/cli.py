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
import logging
import os
import sys
import time
from typing import Any

from ..client.admin import ask, group_status  # noqa: F401 (the operator calls, re-exported for tools)
from ..protocol.engines import engine_factory

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def _setup_logging(args: argparse.Namespace) -> None:
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.INFO), format=LOG_FORMAT, stream=sys.stderr
    )


# -- long-running processes ------------------------------------------------------------


def _cmd_node(args: argparse.Namespace) -> int:
    from ..transport.group_file import load
    from ..transport.node_driver import node_driver

    _setup_logging(args)
    cfg = load(args.config)
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

    cfg = load(args.config)
    st = group_status(cfg, args.timeout, operator_key(cfg, args))
    if args.node:
        st = {args.node: st.get(args.node, {"role": "unknown node"})}
    if args.json:
        print(json.dumps(st, sort_keys=True))
        return 0
    print(auth_line(cfg))
    print(f"{'node':<10}{'role':<12}{'epoch':>6}{'last_seq':>10}  {'digest':<17}{'lag':>6}  counters")
    for name, s in st.items():
        counters = " ".join(f"{k}={v}" for k, v in s.get("counters", {}).items())
        print(
            f"{name:<10}{s.get('role', '?'):<12}{s.get('epoch', ''):>6}{s.get('last_seq', ''):>10}  "
            f"{s.get('digest', ''):<17}{s.get('lag', ''):>6}  {counters}"
        )
        for key in ("error", "damaged"):  # a failed or damaged journal: why this node does not serve
            if s.get(key):
                print(f"{'':<10}{key}: {s[key]}")
    return 0


def _cmd_switchover(args: argparse.Namespace) -> int:
    from ..protocol import wire
    from ..transport.group_file import load

    cfg = load(args.config)
    if args.to not in cfg.nodes:
        print(f"switchover: no node {args.to!r}", file=sys.stderr)
        return 2
    key = operator_key(cfg, args)
    st = group_status(cfg, args.timeout, key)
    primary = args.node or next((n for n, s in st.items() if s.get("role") == "primary"), None)
    if primary is None:
        print("switchover: no primary found", file=sys.stderr)
        return 1
    if primary == args.to:
        print(f"switchover: {args.to} is already primary")
        return 0
    t0 = time.monotonic()
    ask(cfg.nodes[primary].endpoint, wire.Switchover(args.to), args.timeout, cfg.keys_dir, primary, key)
    deadline = t0 + args.timeout + cfg.settings.switchover_timeout
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
        f"switchover: {args.to} did not become primary (the primary aborts after its drain timeout)",
        file=sys.stderr,
    )
    return 1


def _cmd_promote(args: argparse.Namespace) -> int:
    from ..protocol import wire
    from ..transport.group_file import load

    cfg = load(args.config)
    if args.node not in cfg.nodes:
        print("promote: --node NAME is required", file=sys.stderr)
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

    return subscribe(load(args.config), args.node, args.count, args.timeout)


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


def add_subcommands(subparsers: Any) -> None:
    """Register the replication subcommands on ``matchcore``'s subparsers (each sets ``func``)."""

    def common(p: argparse.ArgumentParser, node_required: bool = False) -> None:
        p.add_argument("--config", default="group.toml", help="the group TOML file (default: group.toml)")
        p.add_argument("--node", required=node_required, default=None, help="node name in the group file")

    def key_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--key",
            default="",
            metavar="NAME",
            help="CURVE key: a name in keys_dir (operator-NAME) or a .key_secret path (default: first operator)",
        )

    def metrics_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--metrics-port",
            type=int,
            default=0,
            metavar="PORT",
            help="serve Prometheus metrics on http://127.0.0.1:PORT/metrics (0 = off)",
        )

    for role in ("primary", "standby"):
        p = subparsers.add_parser(
            role,
            help=f"run a node that starts as {role}",
            description=f"Run node NODE of the group, starting as {role}.",
        )
        common(p, node_required=True)
        p.add_argument(
            "--engine",
            choices=("auto", "native", "reference"),
            default="auto",
            help="matching engine (auto: Cython if built, else the reference)",
        )
        p.add_argument("--log-level", default="info")
        p.add_argument(
            "--debug-perturb-seq",
            type=int,
            default=0,
            metavar="N",
            help="TEST ONLY: corrupt this node's book before seq N (to exercise divergence)",
        )
        metrics_flag(p)
        p.set_defaults(func=_cmd_node)

    p = subparsers.add_parser("witness", help="run the group's witness (tie-breaker for fail-over)")
    common(p)
    p.add_argument("--log-level", default="info")
    metrics_flag(p)
    p.set_defaults(func=_cmd_witness)

    p = subparsers.add_parser("status", help="role, epoch, last_seq, digest and lag of every node")
    common(p)
    p.add_argument("--json", action="store_true", help="one JSON object keyed by node name")
    p.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for each node")
    key_flag(p)
    p.set_defaults(func=_cmd_status)

    p = subparsers.add_parser("switchover", help="planned hand-over from the primary to another node")
    common(p)
    p.add_argument("--to", required=True, help="the node that becomes primary")
    p.add_argument("--timeout", type=float, default=2.0)
    key_flag(p)
    p.set_defaults(func=_cmd_switchover)

    p = subparsers.add_parser(
        "promote", help="operator: promote a standby (the witness, if any, grants the epoch)"
    )
    common(p, node_required=False)
    p.add_argument("--timeout", type=float, default=1.0)
    p.add_argument(
        "--force",
        action="store_true",
        help="promote even a node behind what the group acknowledged, or whose primary is alive, or (after a bounded wait) without a witness that does not answer (says what may be lost)",
    )
    key_flag(p)
    p.set_defaults(func=_cmd_promote)

    p = subparsers.add_parser(
        "subscribe", help="print the sequenced stream (entries with events) as JSON lines"
    )
    common(p)
    p.add_argument("--count", type=int, default=0, help="exit after this many entries (0 = never)")
    p.add_argument("--timeout", type=float, default=0.0, help="exit after this many idle seconds (0 = never)")
    p.set_defaults(func=_cmd_subscribe)

    p = subparsers.add_parser("md", help="the public market-data feed: JSON lines, or a live depth view")
    common(p)
    p.add_argument(
        "--instrument", type=int, action="append", required=True, help="an instrument (repeatable)"
    )
    p.add_argument("--json", action="store_true", help="JSON lines, one per update (the default)")
    p.add_argument("--view", action="store_true", help="a live depth view (rich) instead of JSON lines")
    p.add_argument("--count", type=int, default=0, help="exit after this many updates (0 = never)")
    p.add_argument("--timeout", type=float, default=0.0, help="exit after this many idle seconds (0 = never)")
    p.add_argument(
        "--key", default="", metavar="NAME", help="CURVE key name in keys_dir (default: the client's)"
    )
    p.set_defaults(func=_cmd_md)

    p = subparsers.add_parser(
        "keys",
        help="create the CURVE key pairs the group file names in keys_dir, or one client's or operator's",
    )
    common(p)
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

    p = subparsers.add_parser(
        "demo", help="start a group, SIGKILL the primary mid-flow, show nothing was lost"
    )
    common(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--orders", type=int, default=2000, help="orders in the flow")
    p.add_argument("--engine", choices=("auto", "native", "reference"), default="auto")
    p.add_argument("--keep", action="store_true", help="keep the temp directory (journals, logs)")
    p.set_defaults(func=_cmd_demo)

    _add_chaos(subparsers)
    _add_route(subparsers)
    for p in subparsers.choices.values():
        func = p.get_default("func")
        if func is not None:
            p.set_defaults(func=_config_errors_as_one_line(func))


# Exit status of any subcommand given a group file it cannot use (see config.ConfigError).
EXIT_BAD_CONFIG = 2


def _config_errors_as_one_line(func: Any) -> Any:
    """Wrap a subcommand so a bad group file ends in one clear line and exit 2, not a traceback."""

    def run(args: argparse.Namespace) -> int:
        from ..transport.group_file import ConfigError

        try:
            return func(args)
        except ConfigError as exc:
            print(f"matchcore {args.command}: {exc}", file=sys.stderr)
            return EXIT_BAD_CONFIG

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
