"""The group file (TOML) and the timing/behaviour settings the node machines run with.

For: reading the group TOML whose keys are documented in docs/operations.md
(``mode``, ``[nodes.<name>] endpoint journal``, ``[witness] endpoint``) plus
optional keys with defaults, and deriving the extra ports a process uses.
Not for: sockets (``node_driver``) or protocol decisions (the machines).

Every key the file may hold is listed in ``TOP_LEVEL_KEYS``, ``NODE_KEYS`` and
``WITNESS_KEYS`` (with its type, unit and default; docs/operations.md has the
same table). A key or table outside them, a missing required key or a value
of the wrong type is refused with a :class:`ConfigError` naming the key and
the file: a typo such as ``[witnes]`` would otherwise leave the group without
a witness, and so without automatic fail-over.

Identities under CURVE (see ``replication.transport.curve`` and ``replication.protocol.trust``)::

    [operators.ops]          # an operator tool's key (status, switchover, promote, subscribe)
    public_key = "..."       # Z85; optional: else keys_dir/operator-ops.key
    [clients.desk1]          # a client's key, and what it may do (docs/operations.md "Entitlements")
    client_id = 7            # the only client id this key may use (0 or absent: any)
    public_key = "..."       # Z85; optional: else keys_dir/client-desk1.key
    accounts = [1, 2]        # the only accounts it may trade (absent or []: any); see protocol.entitlement

With no ``[operators]`` (``[clients]``) table, one implicit operator
``operator`` (client ``client``, any client id) uses keys_dir/operator.key
(client.key).

In ``[witness]``, besides ``endpoint``: ``state = "var/witness.state"``, the
file that keeps the witness's decisions (epoch, primary, in-sync set) across
its restarts. Without it a restarted witness refuses automatic promotions in
sync mode until the primary has told it the in-sync set.

``lease_ms`` (async mode): an async primary acknowledges only while it has
heard, less than ``lease_ms`` ago, an echo of a lease ask from the witness
or from every standby; each supporter in turn helps no node to a newer
epoch for ``lease_ms`` (plus a heartbeat of margin for clock rates) after
its echo. So no standby is granted the next epoch while the old primary may
still acknowledge. It must be at least two heartbeats (a renewal must get
there in time) and at most ``timeout_ms`` (a fail-over on heartbeat silence
is not slowed; one detected at once by a dropped connection waits up to a
lease). ``max_in_flight``: past it, a client's further requests get a
``busy`` reply and are not sequenced (``replication.protocol.queues``).

``busy_poll`` (under ``[nodes.NAME]``, off by default): the node's loop
polls its sockets without ever sleeping, for a node with a core of its own
(``transport.loop``); on a shared machine it takes a core from the others.

Derived ports: a node whose endpoint is ``tcp://host:P`` publishes its
stream on ``tcp://host:P+100`` (see :func:`pub_endpoint`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, NamedTuple

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib

from ..protocol.settings import FSYNC_POLICIES, MODES, Settings  # noqa: F401 (Settings: part of a GroupConfig)


class ConfigError(ValueError):
    """A group file that cannot be used. The message names the file and the key; the CLI
    prints it as one line (no traceback) and exits 2."""


class _Key(NamedTuple):
    """One key a group-file table may hold: its TOML type, whether it must be there, and
    (for the docs and ``--help``) its unit and default."""

    kind: str  # "str", "int" (an integer), "number" (integer or float), "bool", "table"
    required: bool = False
    default: Any = None
    unit: str = ""


# The top level of a group file. Times are milliseconds.
TOP_LEVEL_KEYS: dict[str, _Key] = {
    "mode": _Key("str", default="sync"),  # sync | async
    "heartbeat_ms": _Key("number", default=5, unit="ms"),  # heartbeat interval
    "timeout_ms": _Key("number", default=40, unit="ms"),  # a peer silent this long is dead
    "suspect_ms": _Key("number", default=0, unit="ms"),  # ... or this long after its connection dropped
    "fsync": _Key("str", default="batch"),  # none | batch | always
    "snapshot_every": _Key("int", default=100_000, unit="entries"),  # between journal snapshots (0 = never)
    "journal_retain": _Key(
        "int", default=100_000, unit="entries"
    ),  # kept behind the latest snapshot (-1 = all)
    "dedupe_window": _Key("int", default=4096, unit="requests"),  # results remembered per client
    "max_batch": _Key("int", default=1024, unit="requests"),  # sequenced per batch
    "report_window": _Key("int", default=65536, unit="reports"),  # execution reports kept per client id
    "order_window": _Key("int", default=65536, unit="orders"),  # ended orders kept for queries
    "report_poll_ms": _Key("number", default=1000, unit="ms"),  # a parked report fetch is answered empty then
    "catchup_snapshot_lag": _Key("int", default=50_000, unit="entries"),  # further behind: snapshot first
    "switchover_timeout_ms": _Key("number", default=3000, unit="ms"),  # a drain that takes longer aborts
    "witness_grace_ms": _Key("number", default=0, unit="ms"),  # witness: no votes this long after start
    "lease_ms": _Key("number", default=30, unit="ms"),  # async: acknowledge only while the lease holds
    "max_in_flight": _Key("int", default=4096, unit="requests"),  # queued per client connection (then busy)
    "time_interval_ms": _Key("number", default=1000, unit="ms"),  # idle this long: a time command (0 = never)
    "market_data": _Key("int", default=1),  # 1: every node publishes the public market-data feed; 0: none
    "keys_dir": _Key("str", default=""),  # CURVE keys (``matchcore keys`` makes them); "" = open mode
    "nodes": _Key("table", required=True),  # [nodes.NAME], one per node
    "witness": _Key("table"),  # [witness]
    "operators": _Key("table"),  # [operators.NAME]: operator keys (CURVE; see replication.transport.curve)
    "clients": _Key(
        "table"
    ),  # [clients.NAME]: client keys, client_id, accounts (docs/operations.md "Entitlements")
}
NODE_KEYS: dict[str, _Key] = {
    "endpoint": _Key("str", required=True),  # where clients and peers reach the node
    "journal": _Key("str", required=True),  # its journal directory (relative to the file)
    "busy_poll": _Key("bool", default=False),  # spin on its sockets, never sleep (a core of its own)
}
WITNESS_KEYS: dict[str, _Key] = {
    "endpoint": _Key("str", required=True),
    "state": _Key("str", default=""),  # the witness's durable decisions (relative to the file)
}
OPERATOR_KEYS: dict[str, _Key] = {
    "public_key": _Key("str", default=""),  # Z85; else keys_dir/operator-NAME.key
}
CLIENT_KEYS: dict[str, _Key] = {
    "public_key": _Key("str", default=""),  # Z85; else keys_dir/client-NAME.key
    "client_id": _Key("int", default=0),  # the only client id this key may use (0: any)
    "accounts": _Key("ints", default=[]),  # the accounts it may use
}


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "table":
        return isinstance(value, dict)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "ints":
        return isinstance(value, list) and all(_type_ok("int", v) for v in value)
    if isinstance(value, bool):  # TOML true/false is not a number here
        return False
    return isinstance(value, int) or (kind == "number" and isinstance(value, float))


def _check_table(doc: dict[str, Any], keys: dict[str, _Key], where: str, path: str) -> None:
    """Refuse an unknown key (suggesting the closest known one), a missing required key, or
    a value of the wrong type, in one table ``where`` of file ``path``."""
    for key in doc:
        if key not in keys:
            import difflib  # only for a refusal: a node that starts never needs it

            near = difflib.get_close_matches(str(key), list(keys), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else f" (known: {', '.join(keys)})"
            raise ConfigError(f"{path}: unknown key {where}{key!r}{hint}")
    for key, spec in keys.items():
        if key not in doc:
            if spec.required:
                raise ConfigError(f"{path}: missing required key {where}{key!r}")
            continue
        if not _type_ok(spec.kind, doc[key]):
            want = {
                "str": "a string",
                "int": "an integer",
                "number": "a number",
                "table": "a table",
                "ints": "a list of integers",
                "bool": "true or false",
            }[spec.kind]
            raise ConfigError(f"{path}: {where}{key!r} must be {want}, not {doc[key]!r}")


def _get(doc: dict[str, Any], key: str) -> Any:
    """A top-level value, or its schema default."""
    return doc.get(key, TOP_LEVEL_KEYS[key].default)


def validate(doc: dict[str, Any], path: str = "group.toml") -> None:
    """Check a parsed group file against the schema above; raise :class:`ConfigError`. O(keys)."""
    _check_table(doc, TOP_LEVEL_KEYS, "", path)
    if not doc["nodes"]:
        raise ConfigError(f"{path}: the group file needs at least one [nodes.<name>] table")
    for name, spec in doc["nodes"].items():
        if not isinstance(spec, dict):
            raise ConfigError(f"{path}: nodes.{name} must be a table [nodes.{name}]")
        _check_table(spec, NODE_KEYS, f"[nodes.{name}] ", path)
    if "witness" in doc:
        _check_table(doc["witness"], WITNESS_KEYS, "[witness] ", path)
    if doc.get("mode", "sync") not in MODES:
        raise ConfigError(f"{path}: mode must be one of {', '.join(MODES)}, not {doc['mode']!r}")
    if doc.get("fsync", "batch") not in FSYNC_POLICIES:
        raise ConfigError(f"{path}: fsync must be one of {', '.join(FSYNC_POLICIES)}, not {doc['fsync']!r}")
    for key in ("heartbeat_ms", "timeout_ms"):
        if doc.get(key, 1) <= 0:
            raise ConfigError(f"{path}: {key} must be positive, not {doc[key]!r}")
    for key in (
        "suspect_ms",
        "switchover_timeout_ms",
        "witness_grace_ms",
        "snapshot_every",
        "dedupe_window",
        "time_interval_ms",
    ):
        if doc.get(key, 0) < 0:
            raise ConfigError(f"{path}: {key} must not be negative, not {doc[key]!r}")
    if doc.get("market_data", 1) not in (0, 1):
        raise ConfigError(f"{path}: market_data must be 1 (on) or 0 (off), not {doc['market_data']!r}")
    for key in ("max_batch", "report_window", "order_window", "report_poll_ms"):
        if doc.get(key, 1) < 1:
            raise ConfigError(f"{path}: {key} must be at least 1, not {doc[key]!r}")


@dataclass
class NodeSpec:
    name: str
    endpoint: str
    journal: str
    busy_poll: bool = False  # the node's loop never sleeps (SocketLoop.busy_poll)


@dataclass
class KeySpec:
    """An ``[operators.NAME]`` or ``[clients.NAME]`` table (``client_id``/``accounts``: clients only)."""

    name: str
    public_key: str = ""  # Z85; "" = read keys_dir/<role>-<name>.key
    client_id: int = 0  # 0 = any
    accounts: tuple[int, ...] = ()


@dataclass
class GroupConfig:
    """A parsed group file."""

    path: str
    mode: str
    nodes: dict[str, NodeSpec]
    witness: str | None
    settings: Settings
    keys_dir: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    witness_state: str = (
        ""  # [witness] state: the witness's durable decisions (see replication.protocol.witness)
    )
    operators: dict[str, KeySpec] = field(default_factory=dict)  # [operators.NAME]
    clients: dict[str, KeySpec] = field(default_factory=dict)  # [clients.NAME]

    @property
    def node_names(self) -> list[str]:
        return list(self.nodes)


def load(path: str) -> GroupConfig:
    """Read and validate a group file.

    Parameters
    ----------
    path : str
        The TOML file. Relative journal paths are taken relative to it.

    Raises
    ------
    ConfigError
        The file cannot be read, is not TOML (the message gives the line), or
        breaks the schema (the message names the key). Always names ``path``.
    """
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the group file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse(doc, path)


def parse(doc: dict[str, Any], path: str = "group.toml") -> GroupConfig:
    """Build a ``GroupConfig`` from an already-parsed TOML document (validated first)."""
    validate(doc, path)
    mode = _get(doc, "mode")
    nodes_doc = doc["nodes"]
    base = os.path.dirname(os.path.abspath(path))
    nodes = {}
    for name, spec in nodes_doc.items():
        journal = spec["journal"]
        if not os.path.isabs(journal):
            journal = os.path.join(base, journal)
        nodes[name] = NodeSpec(
            name, str(spec["endpoint"]), journal, bool(spec.get("busy_poll", NODE_KEYS["busy_poll"].default))
        )
    witness_doc = doc.get("witness") if isinstance(doc.get("witness"), dict) else {}
    witness = witness_doc.get("endpoint")
    witness_state = str(witness_doc.get("state", WITNESS_KEYS["state"].default))
    if witness_state and not os.path.isabs(witness_state):
        witness_state = os.path.join(base, witness_state)
    s = Settings(mode=mode)
    ms = 0.001
    s.heartbeat_interval = float(_get(doc, "heartbeat_ms")) * ms
    s.heartbeat_timeout = float(_get(doc, "timeout_ms")) * ms
    s.suspect_timeout = float(_get(doc, "suspect_ms")) * ms
    s.vote_retry = s.heartbeat_interval
    s.fsync = str(_get(doc, "fsync"))
    s.snapshot_every = int(_get(doc, "snapshot_every"))
    s.journal_retain = int(_get(doc, "journal_retain"))
    s.dedupe_window = int(_get(doc, "dedupe_window"))
    s.max_batch = int(_get(doc, "max_batch"))
    s.report_window = int(_get(doc, "report_window"))
    s.order_window = int(_get(doc, "order_window"))
    s.report_poll = float(_get(doc, "report_poll_ms")) * ms
    s.catchup_snapshot_lag = int(_get(doc, "catchup_snapshot_lag"))
    s.switchover_timeout = float(_get(doc, "switchover_timeout_ms")) * ms
    s.witness_grace = float(_get(doc, "witness_grace_ms")) * ms
    s.lease = float(_get(doc, "lease_ms")) * ms
    s.lease_margin = s.heartbeat_interval
    s.max_in_flight = int(_get(doc, "max_in_flight"))
    s.time_interval = float(_get(doc, "time_interval_ms")) * ms
    if s.heartbeat_timeout <= s.heartbeat_interval:
        raise ConfigError(f"{path}: timeout_ms must be larger than heartbeat_ms")
    check_bounds(s, path)
    keys_dir = str(_get(doc, "keys_dir"))
    if keys_dir and not os.path.isabs(keys_dir):
        keys_dir = os.path.join(base, keys_dir)
    cfg = GroupConfig(path, mode, nodes, witness, s, keys_dir, doc, witness_state)
    cfg.operators = _key_tables(doc, "operators", path)
    cfg.clients = _key_tables(doc, "clients", path)
    return cfg


def _key_tables(doc: dict[str, Any], table: str, path: str) -> dict[str, KeySpec]:
    """``[operators.NAME]`` / ``[clients.NAME]`` tables, checked against ``OPERATOR_KEYS`` /
    ``CLIENT_KEYS`` like every other table (a bad one names itself and the file)."""
    keys = CLIENT_KEYS if table == "clients" else OPERATOR_KEYS
    out: dict[str, KeySpec] = {}
    for name, spec in doc.get(table, {}).items():
        if not isinstance(spec, dict):
            raise ConfigError(f"{path}: {table}.{name} must be a table [{table}.{name}]")
        _check_table(spec, keys, f"[{table}.{name}] ", path)
        key = spec.get("public_key", "")
        if key and len(key) != 40:
            raise ConfigError(
                f"{path}: [{table}.{name}] public_key must be a 40-character Z85 CURVE public key"
            )
        cid = spec.get("client_id", 0)
        if not 0 <= cid < 1 << 64:
            raise ConfigError(f"{path}: [{table}.{name}] client_id must be a non-negative 64-bit integer")
        accounts = spec.get("accounts", [])
        if not all(0 <= a < 1 << 64 for a in accounts):
            raise ConfigError(f"{path}: [{table}.{name}] accounts must be non-negative 64-bit integers")
        out[str(name)] = KeySpec(str(name), key, cid, tuple(accounts))
    return out


def check_bounds(s: Settings, path: str = "group.toml") -> None:
    """Refuse a lease that cannot be renewed in time or that would slow a fail-over on silence,
    and batches whose Entries frames would not fit a node's ``wire.MAX_INBOUND_FRAME``."""
    from ..protocol.wire import MAX_INBOUND_ENTRIES

    if not 2 * s.heartbeat_interval <= s.lease <= s.heartbeat_timeout:
        raise ConfigError(
            f"{path}: lease_ms must lie between two heartbeats ({2 * s.heartbeat_interval * 1000:g}) "
            f"and timeout_ms ({s.heartbeat_timeout * 1000:g}), not {s.lease * 1000:g}"
        )
    if not 1 <= s.max_in_flight <= 1 << 20:
        raise ConfigError(f"{path}: max_in_flight must lie between 1 and {1 << 20}, not {s.max_in_flight}")
    for key, n in (("max_batch", s.max_batch), ("refill_chunk", s.refill_chunk)):
        if not 1 <= n <= MAX_INBOUND_ENTRIES:
            raise ConfigError(f"{path}: {key} must lie between 1 and {MAX_INBOUND_ENTRIES}, not {n}")


def pub_endpoint(endpoint: str, offset: int = 100) -> str:
    """The derived stream (PUB) endpoint of a node: same host, port + ``offset``."""
    head, _, port = endpoint.rpartition(":")
    if not port.isdigit():
        raise ConfigError(f"cannot derive a port from {endpoint!r}")
    return f"{head}:{int(port) + offset}"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return f'"{v}"' if isinstance(v, str) else repr(v)


def write(
    path: str,
    mode: str,
    nodes: dict[str, tuple[str, str]],
    witness: str | None,
    extra: dict[str, Any] | None = None,
    witness_state: str = "",
    tables: dict[str, dict[str, dict[str, Any]]] | None = None,
    node_keys: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Write a group file (used by the demo and tests). ``nodes``: name -> (endpoint, journal).

    ``tables``: further ``[KIND.NAME]`` tables, e.g. ``{"clients": {"desk1": {"client_id": 7}}}``;
    ``node_keys``: further keys of a node's table, e.g. ``{"a": {"busy_poll": True}}``.
    """
    lines = [f'mode = "{mode}"']
    for k, v in (extra or {}).items():
        lines.append(f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"')
    for name, (endpoint, journal) in nodes.items():
        lines += ["", f"[nodes.{name}]", f'endpoint = "{endpoint}"', f'journal = "{journal}"']
        lines += [f"{k} = {_toml_value(v)}" for k, v in (node_keys or {}).get(name, {}).items()]
    if witness:
        lines += ["", "[witness]", f'endpoint = "{witness}"']
        if witness_state:
            lines.append(f'state = "{witness_state}"')
    for kind, named in (tables or {}).items():
        for name, body in named.items():
            lines += ["", f"[{kind}.{name}]"]
            lines += [f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in body.items()]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
