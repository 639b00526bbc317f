"""``matchcore demo``: a real group on loopback, a SIGKILLed primary, and the proof nothing was lost.

For: showing the fail-over contract end to end with real OS processes —
primary, standby and witness — an order flow through ``replication.Client``,
a SIGKILL of the primary in the middle of it, and a table of what clients
saw: orders acknowledged, orders lost, requests executed twice, digest
agreement at the old primary's last acknowledged seq, time from the kill to
the first order the new primary accepted, and the new primary's own
decision-to-serving time. Also a helper used by the process tests
(:class:`Group`). Not for: benchmarking (see ``benchmarks/``).

Every process and the temp directory are removed on exit, whatever happens,
within bounded timeouts.
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

from . import config, wire

# Ports this process has handed out. A group's nodes bind theirs only once their
# processes start, so without this a second group made right after the first could be
# given a port the first is about to bind (the kernel sees both free).
_ISSUED: set[int] = set()


def free_ports(n: int, spacing: int = 100) -> list[int]:
    """``n`` loopback ports p such that p and p + ``spacing`` (the PUB port) are free right now.

    Never the same port twice in one process (nor one another call's PUB port).
    """
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p + spacing > 65535 or {p, p + spacing} & (_ISSUED | set(ports)):
            continue
        try:
            with socket.socket() as s2:
                s2.bind(("127.0.0.1", p + spacing))
        except OSError:
            continue
        ports.append(p)
    _ISSUED.update(ports)
    _ISSUED.update(p + spacing for p in ports)
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
        )
        self.cfg = config.load(self.path)
        if curve:
            from .security import create_keys

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
            [sys.executable, "-m", "replication.cli", *args],
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
        from .cli import group_status

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
        from .client import Client

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
        from .journal import FileJournal

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
    from .replica import Replica

    r = Replica()
    for e in entries:
        r.execute(e.epoch, e.seq, 0, 0, e.command)
    return r.digest


def run_flow(
    orders: int = 2000, engine: str = "auto", keep: bool = False, window: int = 16
) -> dict[str, Any]:
    """Run the demo scenario; return the figures (see module docstring)."""
    with Group(("a", "b"), "sync", engine, keep=keep) as g:
        g.start_all()
        g.wait_ready()
        c = g.client(7, timeout=10.0, retry_timeout=0.02)
        try:
            acked: dict[int, wire.Reply] = {}
            sent = 0
            kill_at = orders // 2
            t_kill = None
            old, new, old_epoch = "a", "b", 0
            after_kill: list[tuple[float, int]] = []  # (receive time, seq) of replies from b
            deadline = time.monotonic() + 60
            while len(acked) < orders:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"flow stalled at {len(acked)}/{orders}\n{g.tail_logs()}")
                while sent < orders and c.in_flight < window:
                    c.send(order(sent))
                    sent += 1
                if t_kill is None and sent >= kill_at:
                    # SIGKILL whoever serves right now (normally a), mid-flow, requests in flight.
                    old = c.last_reply.leader if c.last_reply is not None and c.last_reply.leader else "a"
                    new = "b" if old == "a" else "a"
                    old_epoch = c.last_reply.epoch if c.last_reply is not None else 1
                    # The clock starts before the signal: kill() returns only once the process
                    # is reaped, after the kernel has torn it down (milliseconds for a node).
                    t_kill = time.monotonic()
                    g.kill(old)
                for r in c.poll_replies(0.002):
                    now = time.monotonic()
                    if r.status == wire.OK:
                        acked[r.request_id] = r
                        if t_kill is not None and r.leader == new:
                            after_kill.append((now, r.seq))
            st = g.status()
        finally:
            c.close()
        g.kill(new, signal.SIGTERM)
        g.kill("witness", signal.SIGTERM)
        a_entries = g.journal_entries(old)
        b_entries = g.journal_entries(new)
    keys = [(e.client_id, e.request_id) for e in b_entries]
    in_b = set(keys)
    lost = sum(1 for rid in acked if (7, rid) not in in_b)
    duplicates = len(keys) - len(in_b)
    old_acked = [r.seq for r in acked.values() if r.leader == old and r.epoch == old_epoch]
    last_old = max(old_acked) if old_acked else 0
    a_by_seq = {e.seq: e for e in a_entries}
    b_by_seq = {e.seq: e for e in b_entries}
    digest_equal = (
        bool(last_old)
        and last_old in a_by_seq
        and last_old in b_by_seq
        and a_by_seq[last_old].digest == b_by_seq[last_old].digest
    )
    replayed = replay_digest(b_entries)
    b_status = st.get(new, {})
    # A re-sent request b already held is answered from its dedupe table; the
    # fail-over figure is the first *new* order b sequenced as primary.
    first_new = b_status.get("epoch_start_seq", 1)
    t_first = next((t for t, seq in after_kill if seq >= first_new), None)
    t_reply = after_kill[0][0] if after_kill else None
    return {
        "acked": len(acked),
        "lost": lost,
        "duplicates": duplicates,
        "digest_equal": digest_equal,
        "failover_ms": round((t_first - t_kill) * 1000, 3) if t_first and t_kill else None,
        "first_reply_ms": round((t_reply - t_kill) * 1000, 3) if t_reply and t_kill else None,
        "switchover_ms": round(b_status["promotion_ms"], 3)
        if b_status.get("promotion_ms") is not None
        else None,
        "orders": orders,
        "old_primary_last_acked_seq": last_old,
        "old_primary_digest": f"{a_by_seq[last_old].digest:016x}" if last_old in a_by_seq else None,
        "new_primary_digest_at_that_seq": f"{b_by_seq[last_old].digest:016x}"
        if last_old in b_by_seq
        else None,
        "new_primary_last_seq": b_entries[-1].seq if b_entries else 0,
        "replay_digest_matches": f"{replayed:016x}" == b_status.get("digest"),
        "new_epoch": b_status.get("epoch"),
    }


def run_demo(json_out: bool = False, orders: int = 2000, engine: str = "auto", keep: bool = False) -> int:
    """``matchcore demo``: print the table (or one JSON object); exit 0 only if nothing was lost."""
    res = run_flow(orders, engine, keep)
    good = res["lost"] == 0 and res["duplicates"] == 0 and res["digest_equal"]
    if json_out:
        print(json.dumps(res, sort_keys=True))
        return 0 if good else 1
    rows = [
        ("orders acknowledged", res["acked"], f"of {res['orders']} sent"),
        ("orders lost", res["lost"], "must be 0"),
        ("requests executed twice", res["duplicates"], "must be 0"),
        (
            "digest at old primary's last acked seq",
            "equal" if res["digest_equal"] else "DIFFERENT",
            f"seq {res['old_primary_last_acked_seq']}: {res['old_primary_digest']} vs "
            f"{res['new_primary_digest_at_that_seq']}",
        ),
        (
            "new primary matches a local replay",
            "yes" if res["replay_digest_matches"] else "NO",
            f"{res['new_primary_last_seq']} entries, epoch {res['new_epoch']}",
        ),
        (
            "SIGKILL -> first order accepted by new primary",
            f"{res['failover_ms']} ms",
            "as the client saw it",
        ),
        (
            "SIGKILL -> first reply from new primary",
            f"{res['first_reply_ms']} ms",
            "a re-sent request it held",
        ),
        ("promotion decision -> serving", f"{res['switchover_ms']} ms", "measured by the new primary"),
    ]
    print("matchcore demo: primary a, standby b, witness; sync mode; SIGKILL a mid-flow")
    for name, value, note in rows:
        print(f"  {name:<48} {value!s:>10}   {note}")
    print("OK: nothing acknowledged was lost" if good else "FAILED")
    return 0 if good else 1
