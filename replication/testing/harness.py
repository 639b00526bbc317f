"""A group of real node processes on loopback, for tests, benchmarks, the chaos harness and the demo.

For: :func:`free_ports` (loopback ports no other group of this process was
given), :class:`Group` (writes a group file, starts, kills, pauses and
restarts ``matchcore primary|standby|witness`` processes, opens clients and
reads status; every process and the temp directory are removed on exit,
within bounded timeouts), the demo's order flow (:func:`order`) and
:func:`replay_digest` (a local replay to compare a group against). Not for:
faults inside one process (the simulator) or figures (``benchmarks/``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

# Ports this process has handed out. A group's nodes bind theirs only once their
from ..protocol import wire
from ..transport import group_file as config

# Ports this process has handed out. A group's nodes bind theirs only once their
# processes start, so without this a second group made right after the first could be
# given a port the first is about to bind (the kernel sees both free).
_ISSUED: set[int] = set()


# A node's derived ports, as offsets from its own: the entry stream's PUB (+100) and the public
# market-data feed's PUB and snapshot service (+200, +201; transport.market_data_pub).
DERIVED_OFFSETS = (200, 201)


def free_ports(n: int, spacing: int = 100) -> list[int]:
    """``n`` loopback ports p such that p, p + ``spacing`` (the PUB port) and the market-data
    ports (``DERIVED_OFFSETS``) are free right now.

    Never the same port twice in one process (nor one another call's derived port).
    """
    ports: list[int] = []
    taken: set[int] = set()
    while len(ports) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        derived = {p + spacing, *(p + d for d in DERIVED_OFFSETS)}
        if max(derived) > 65535 or ({p} | derived) & (_ISSUED | taken):
            continue
        try:
            for q in sorted(derived):
                with socket.socket() as s2:
                    s2.bind(("127.0.0.1", q))
        except OSError:
            continue
        ports.append(p)
        taken |= {p} | derived
    _ISSUED.update(taken)
    return ports


class Group:
    """A group of node processes on loopback in a temp dir (demo and tests).

    Parameters
    ----------
    nodes : list of str
        Node names; the first starts as primary.
    mode : str
        ``sync`` or ``async``.
    engine : str
        ``auto`` | ``native`` | ``reference``.
    extra : dict
        Extra top-level keys of the group file.
    tables : dict
        Further ``[KIND.NAME]`` tables (``operators``, ``clients``), as ``config.write`` takes them.
    node_keys : dict
        Further keys of a node's table (``{"a": {"busy_poll": True}}``), as ``config.write`` takes them.
    """

    def __init__(
        self,
        nodes: tuple[str, ...] = ("a", "b"),
        mode: str = "sync",
        engine: str = "auto",
        extra: dict[str, Any] | None = None,
        witness: bool = True,
        keep: bool = False,
        curve: bool = False,
        tables: dict[str, dict[str, dict[str, Any]]] | None = None,
        node_keys: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.dir = tempfile.mkdtemp(prefix="matchcore-group-")
        self.keep = keep
        self.engine = engine
        self.names = list(nodes)
        ports = free_ports(len(nodes) + 1)
        self.endpoints = {n: f"tcp://127.0.0.1:{p}" for n, p in zip(nodes, ports[: len(nodes)], strict=True)}
        self.witness_endpoint = f"tcp://127.0.0.1:{ports[-1]}" if witness else None
        self.path = os.path.join(self.dir, "group.toml")
        # A SIGKILL is found through the connection drop (suspect_ms), so a roomier
        # silence timeout costs the demo nothing and keeps a loaded 2-core box from
        # mistaking a descheduled process for a dead one.
        defaults = {"heartbeat_ms": 5, "timeout_ms": 100, "suspect_ms": 0, "fsync": "batch"}
        if curve:
            defaults["keys_dir"] = "keys"
        defaults.update(extra or {})
        config.write(
            self.path,
            mode,
            {n: (ep, os.path.join(self.dir, n)) for n, ep in self.endpoints.items()},
            self.witness_endpoint,
            defaults,
            witness_state=os.path.join(self.dir, "witness.state"),
            tables=tables,
            node_keys=node_keys,
        )
        self.cfg = config.load(self.path)
        if curve:
            from ..transport.curve import create_keys

            create_keys(self.cfg)
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Any] = {}

    def start(self, name: str, role: str | None = None, *extra_args: str) -> subprocess.Popen:
        """Start node ``name`` (or ``"witness"``) as a real process."""
        if name == "witness":
            args = ["witness", "--config", self.path]
        else:
            role = role or ("primary" if name == self.names[0] else "standby")
            args = [role, "--config", self.path, "--node", name, "--engine", self.engine, *extra_args]
        log = open(os.path.join(self.dir, f"{name}.log"), "ab")  # noqa: SIM115 - closed in stop()
        self.logs[name] = log
        # A node does no linear algebra: one OpenBLAS thread instead of one per core means
        # less for the kernel to tear down when the process is killed (a faster fail-over).
        env = dict(os.environ, PYTHONUNBUFFERED="1", OPENBLAS_NUM_THREADS="1")
        p = subprocess.Popen(
            [sys.executable, "-m", "replication.ops.cli", *args],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        self.procs[name] = p
        return p

    def start_all(self) -> None:
        if self.witness_endpoint:
            self.start("witness")
        for n in self.names:
            self.start(n)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        p = self.procs.get(name)
        if p is not None and p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def status(self, timeout: float = 0.5) -> dict[str, Any]:
        from ..client.admin import group_status

        return group_status(self.cfg, timeout)

    def wait_for(self, cond: Any, timeout: float = 20.0, what: str = "condition") -> dict[str, Any]:
        """Poll ``status()`` until ``cond(status)``; ``TimeoutError`` (with logs) if it never holds."""
        deadline = time.monotonic() + timeout
        st: dict[str, Any] = {}
        while time.monotonic() < deadline:
            st = self.status(0.3)
            if cond(st):
                return st
            time.sleep(0.02)
        raise TimeoutError(f"timed out waiting for {what}; last status {json.dumps(st)}\n{self.tail_logs()}")

    def wait_ready(self, timeout: float = 20.0) -> dict[str, Any]:
        """Until one primary exists and every other started node follows it."""

        def ready(st: dict[str, Any]) -> bool:
            roles = [st[n].get("role") for n in self.names if n in self.procs]
            return roles.count("primary") == 1 and all(
                st[n].get("role") == "primary" or st[n].get("joined") for n in self.names if n in self.procs
            )

        return self.wait_for(ready, timeout, "a primary with joined standbys")

    def tail_logs(self, lines: int = 15) -> str:
        out = []
        for n in self.logs:
            try:
                with open(os.path.join(self.dir, f"{n}.log"), "rb") as f:
                    text = f.read().decode("utf-8", "replace").splitlines()[-lines:]
            except OSError:
                continue
            out.append(f"--- {n}.log\n" + "\n".join(text))
        return "\n".join(out)

    def client(self, client_id: int, **kw: Any) -> Any:
        from ..client.group_client import Client

        return Client.from_config(self.path, client_id, **kw)

    def stop(self) -> None:
        """Terminate every process (SIGTERM, then SIGKILL), close logs, remove the temp dir."""
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 3
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for f in self.logs.values():
            f.close()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def journal_entries(self, name: str) -> list[wire.Entry]:
        """Every entry in a (stopped) node's journal, read with a throwaway in-memory copy."""
        from ..storage.journal import FileJournal

        src = os.path.join(self.dir, name)
        copy = os.path.join(self.dir, f".{name}-copy-{time.monotonic_ns()}")
        shutil.copytree(src, copy)  # opening truncates a torn tail: never touch the live journal
        try:
            j = FileJournal(copy, "none")
            try:
                return j.read(j.base_seq + 1)
            finally:
                j.close()
        finally:
            shutil.rmtree(copy, ignore_errors=True)

    def __enter__(self) -> Group:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def order(i: int) -> dict[str, Any]:
    """The i-th order of the demo flow: two instruments, crossing prices, some cancels."""
    if i % 7 == 6:
        return {"op": "cancel", "instrument": 1 + (i - 3) % 2, "id": i - 2}
    side = "buy" if (i // 3) % 2 == 0 else "sell"
    return {
        "op": "new",
        "instrument": 1 + i % 2,
        "id": i + 1,
        "side": side,
        "price": 1000 + (i * 37) % 11 - 5,
        "qty": 1 + i % 9,
        "account": 1 + i % 4,
    }


def replay_digest(entries: list[wire.Entry]) -> int:
    """Chained digest of a fresh engine after the entries' commands (a local replay)."""
    from ..protocol.replica import Replica

    r = Replica()
    for e in entries:
        r.execute(e.epoch, e.seq, 0, 0, e.command)
    return r.digest
