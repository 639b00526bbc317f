"""The group file (TOML) and the timing/behaviour settings the node machines run with.

For: reading the group TOML whose contract keys are fixed by DESIGN.md
(``mode``, ``[nodes.<name>] endpoint journal``, ``[witness] endpoint``) plus
optional keys with defaults, and deriving the extra ports a process uses.
Not for: sockets (``node``) or protocol decisions (the machines).

Optional keys (top level; all have defaults)::

    heartbeat_ms = 5          # heartbeat interval
    timeout_ms = 40           # a peer silent this long is dead
    suspect_ms = 0            # ... or this long after its connection dropped (the witness still must agree)
    fsync = "batch"           # none | batch | always
    snapshot_every = 100000   # entries between journal snapshots (0 = never)
    journal_retain = 100000   # after a snapshot, entries older than it by more are deleted (-1 = keep all)
    dedupe_window = 4096      # results remembered per client
    max_batch = 1024          # requests sequenced per batch
    catchup_snapshot_lag = 50000  # a joiner further behind gets a snapshot, then the tail
    switchover_timeout_ms = 3000
    keys_dir = ""             # CURVE keys (see replication.security; `matchcore keys` makes them)

Identities under CURVE (see ``replication.security`` and ``replication.trust``)::

    [operators.ops]          # an operator tool's key (status, switchover, promote, subscribe)
    public_key = "..."       # Z85; optional: else keys_dir/operator-ops.key
    [clients.desk1]          # a client's key, and what it may do (DESIGN.md "Entitlements")
    client_id = 7            # the only client id this key may use (0 or absent: any)
    public_key = "..."       # Z85; optional: else keys_dir/client-desk1.key
    accounts = [1, 2]        # recorded; enforcement is the sequencer's

With no ``[operators]`` (``[clients]``) table, one implicit operator
``operator`` (client ``client``, any client id) uses keys_dir/operator.key
(client.key).

In ``[witness]``, besides ``endpoint``: ``state = "var/witness.state"``, the
file that keeps the witness's decisions (epoch, primary, in-sync set) across
its restarts. Without it a restarted witness refuses automatic promotions in
sync mode until the primary has told it the in-sync set.

Derived ports: a node whose endpoint is ``tcp://host:P`` publishes its
stream on ``tcp://host:P+100`` (see :func:`pub_endpoint`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib

MODES = ("sync", "async")


@dataclass
class Settings:
    """What a node machine needs besides its peers; times in seconds."""

    mode: str = "sync"
    heartbeat_interval: float = 0.005
    heartbeat_timeout: float = 0.040
    # A dropped connection (pyzmq EVENT_DISCONNECTED) arrives as soon as the peer's
    # process is gone, so any wait after it only delays the fail-over. No grace by
    # default: the witness must agree (it parks the vote until it sees the primary
    # gone too), so a false alarm costs a refused vote, and a heartbeat that still
    # arrives drops the candidacy. (A 1 ms grace cost ~1.5 ms per fail-over.)
    suspect_timeout: float = 0.0
    fsync: str = "batch"
    snapshot_every: int = 100_000
    journal_retain: int = 100_000  # entries kept behind the latest snapshot (-1: never compact)
    dedupe_window: int = 4096
    max_batch: int = 1024
    refill_chunk: int = 2048
    catchup_snapshot_lag: int = 50_000  # a joiner further behind than this gets a snapshot
    switchover_timeout: float = 3.0
    vote_retry: float = 0.005
    # After a refused vote, the first few re-asks come this soon: the witness usually
    # refuses only because its own evidence (the same connection drop, or the same
    # heartbeat silence) reaches it a little later than ours.
    vote_retry_refused: float = 0.001
    join_retry: float = 0.05
    witness_grace: float = 0.0  # witness: refuse votes this long after start (learn from heartbeats)


@dataclass
class NodeSpec:
    name: str
    endpoint: str
    journal: str


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
    witness_state: str = ""  # [witness] state: the witness's durable decisions (see replication.witness)
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
    ValueError
        On a missing or malformed contract key.
    """
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    return parse(doc, path)


def parse(doc: dict[str, Any], path: str = "group.toml") -> GroupConfig:
    """Build a ``GroupConfig`` from an already-parsed TOML document."""
    mode = doc.get("mode", "sync")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    nodes_doc = doc.get("nodes")
    if not isinstance(nodes_doc, dict) or not nodes_doc:
        raise ValueError("the group file needs at least one [nodes.<name>] table")
    base = os.path.dirname(os.path.abspath(path))
    nodes = {}
    for name, spec in nodes_doc.items():
        if not isinstance(spec, dict) or "endpoint" not in spec or "journal" not in spec:
            raise ValueError(f"[nodes.{name}] needs endpoint and journal")
        journal = spec["journal"]
        if not os.path.isabs(journal):
            journal = os.path.join(base, journal)
        nodes[name] = NodeSpec(name, str(spec["endpoint"]), journal)
    witness_doc = doc.get("witness") if isinstance(doc.get("witness"), dict) else {}
    witness = witness_doc.get("endpoint")
    witness_state = str(witness_doc.get("state", ""))
    if witness_state and not os.path.isabs(witness_state):
        witness_state = os.path.join(base, witness_state)
    s = Settings(mode=mode)
    ms = 0.001
    s.heartbeat_interval = float(doc.get("heartbeat_ms", 5)) * ms
    s.heartbeat_timeout = float(doc.get("timeout_ms", 40)) * ms
    s.suspect_timeout = float(doc.get("suspect_ms", 0)) * ms
    s.vote_retry = s.heartbeat_interval
    s.fsync = str(doc.get("fsync", "batch"))
    s.snapshot_every = int(doc.get("snapshot_every", 100_000))
    s.journal_retain = int(doc.get("journal_retain", 100_000))
    s.dedupe_window = int(doc.get("dedupe_window", 4096))
    s.max_batch = int(doc.get("max_batch", 1024))
    s.catchup_snapshot_lag = int(doc.get("catchup_snapshot_lag", 50_000))
    s.switchover_timeout = float(doc.get("switchover_timeout_ms", 3000)) * ms
    s.witness_grace = float(doc.get("witness_grace_ms", 0)) * ms
    if s.fsync not in ("none", "batch", "always"):
        raise ValueError(f"fsync must be none, batch or always, not {s.fsync!r}")
    if s.heartbeat_timeout <= s.heartbeat_interval:
        raise ValueError("timeout_ms must be larger than heartbeat_ms")
    keys_dir = str(doc.get("keys_dir", ""))
    if keys_dir and not os.path.isabs(keys_dir):
        keys_dir = os.path.join(base, keys_dir)
    cfg = GroupConfig(path, mode, nodes, witness, s, keys_dir, doc, witness_state)
    cfg.operators = _key_tables(doc, "operators", path)
    cfg.clients = _key_tables(doc, "clients", path)
    return cfg


def _key_tables(doc: dict[str, Any], table: str, path: str) -> dict[str, KeySpec]:
    """``[operators.NAME]`` / ``[clients.NAME]`` tables, checked (a bad one names itself and the file)."""
    known = {"public_key"} | ({"client_id", "accounts"} if table == "clients" else set())
    out: dict[str, KeySpec] = {}
    tables = doc.get(table, {})
    if not isinstance(tables, dict):
        raise ValueError(f"{path}: [{table}] must hold [{table}.NAME] tables")
    for name, spec in tables.items():
        where = f"{path}: [{table}.{name}]"
        if not isinstance(spec, dict):
            raise ValueError(f"{where} must be a table")
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {', '.join(unknown)} (expected {', '.join(sorted(known))})"
            )
        key = spec.get("public_key", "")
        if not isinstance(key, str) or (key and len(key) != 40):
            raise ValueError(f"{where}: public_key must be a 40-character Z85 CURVE public key")
        cid = spec.get("client_id", 0)
        accounts = spec.get("accounts", [])
        if not isinstance(cid, int) or isinstance(cid, bool) or not 0 <= cid < 1 << 64:
            raise ValueError(f"{where}: client_id must be a non-negative integer")
        if not isinstance(accounts, list) or not all(isinstance(a, int) for a in accounts):
            raise ValueError(f"{where}: accounts must be a list of integers")
        out[str(name)] = KeySpec(str(name), key, cid, tuple(accounts))
    return out


def pub_endpoint(endpoint: str, offset: int = 100) -> str:
    """The derived stream (PUB) endpoint of a node: same host, port + ``offset``."""
    head, _, port = endpoint.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"cannot derive a port from {endpoint!r}")
    return f"{head}:{int(port) + offset}"


def write(
    path: str,
    mode: str,
    nodes: dict[str, tuple[str, str]],
    witness: str | None,
    extra: dict[str, Any] | None = None,
    witness_state: str = "",
    tables: dict[str, dict[str, dict[str, Any]]] | None = None,
) -> None:
    """Write a group file (used by the demo and tests). ``nodes``: name -> (endpoint, journal).

    ``tables``: further ``[KIND.NAME]`` tables, e.g. ``{"clients": {"desk1": {"client_id": 7}}}``.
    """
    lines = [f'mode = "{mode}"']
    for k, v in (extra or {}).items():
        lines.append(f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"')
    for name, (endpoint, journal) in nodes.items():
        lines += ["", f"[nodes.{name}]", f'endpoint = "{endpoint}"', f'journal = "{journal}"']
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
