"""Process-level fault: an async primary cut off from its standby and the witness (network namespaces).

Each node and the witness run in a network namespace of their own, linked by
veth pairs to a bridge in the test's namespace (where the clients run, so they
reach every node). Blackhole routes then cut the primary ``a`` from ``b`` and
from the witness, while a client still reaches it and keeps sending to it.
Before the async lease, an old primary in this position acknowledged
everything it was sent for the whole partition, all of it lost; now it must
stop acknowledging once its lease runs out (``unavailable``), never resume
while cut off, and lose at most what it acknowledged before that, while
``b`` takes over. Nothing is executed twice. Nothing here asserts a time.

Needs root and ``ip netns``/veth/bridge; skips cleanly otherwise. Every
namespace, link and process it makes is removed, whatever happens.
``MATCHCORE_FAULT_SCALE`` (default 1) lengthens the partition.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

zmq = pytest.importorskip("zmq")

from replication.client.group_client import pack_commands  # noqa: E402
from replication.protocol import wire  # noqa: E402
from replication.testing.harness import Group, order  # noqa: E402
from replication.transport import group_file as config  # noqa: E402

pytestmark = pytest.mark.timeout(180)

SCALE = int(os.environ.get("MATCHCORE_FAULT_SCALE", "1"))
PARTITION_S = 1.5 * SCALE
PEERS = {"a": 1, "b": 2, "witness": 3}  # host part of each namespace's address
CLIENT_ID = 31


def ip(*args: str, ns: str = "") -> None:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + ["ip", *args]
    subprocess.run(cmd, check=True, capture_output=True, timeout=10)


class Netns:
    """One namespace per member, each with a veth into a bridge here; ``cut``/``heal`` a member."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.bridge = f"mcbr{tag}"
        self.ns = {m: f"mc{tag}{m[0]}" for m in PEERS}
        self.net = f"10.{200 + int(tag[:2], 16) % 50}.{int(tag[2:4], 16)}"
        self.made: list[tuple[str, str]] = []  # ("ns" | "link", name), for cleanup
        try:
            self._make(tag)
        except BaseException:
            self.remove()  # refused half-way (say, veth not allowed): leave nothing behind
            raise

    def _make(self, tag: str) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        self.made.append(("link", self.bridge))
        ip("addr", "add", f"{self.net}.254/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for m, host in PEERS.items():
            ns, outside, inside = self.ns[m], f"mc{tag}{m[0]}h", f"mc{tag}{m[0]}n"
            subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=10)
            self.made.append(("ns", ns))
            ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            self.made.append(("link", outside))
            ip("link", "set", inside, "netns", ns)
            ip("link", "set", outside, "master", self.bridge)
            ip("link", "set", outside, "up")
            ip("addr", "add", f"{self.net}.{host}/24", "dev", inside, ns=ns)
            ip("link", "set", inside, "up", ns=ns)
            ip("link", "set", "lo", "up", ns=ns)

    def addr(self, member: str) -> str:
        return f"{self.net}.{PEERS[member]}"

    def _routes(self, verb: str, member: str) -> None:
        others = [m for m in PEERS if m != member]
        for o in others:  # both ways: nothing from member reaches o, nothing from o reaches member
            ip("route", verb, "blackhole", f"{self.addr(o)}/32", ns=self.ns[member])
            ip("route", verb, "blackhole", f"{self.addr(member)}/32", ns=self.ns[o])

    def cut(self, member: str) -> None:
        self._routes("add", member)

    def heal(self, member: str) -> None:
        self._routes("del", member)

    def remove(self) -> None:
        for kind, name in reversed(self.made):
            if kind == "ns":
                subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
            else:
                subprocess.run(["ip", "link", "del", name], capture_output=True, timeout=10)


@pytest.fixture
def netns():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 (ip netns, veth, bridge)")
    try:
        n = Netns()
    except (subprocess.CalledProcessError, OSError) as exc:
        msg = (
            exc.stderr.decode(errors="replace").strip()
            if isinstance(exc, subprocess.CalledProcessError)
            else exc
        )
        pytest.skip(f"network namespaces refused here: {msg}")
        return
    try:
        yield n
    finally:
        n.remove()


class NetnsGroup(Group):
    """``demo.Group`` whose members listen on their namespace's address and run inside it."""

    def __init__(self, net: Netns) -> None:
        super().__init__(("a", "b"), "async", extra={"snapshot_every": 0})
        self.net = net
        self.endpoints = {n: f"tcp://{net.addr(n)}:5601" for n in self.names}
        self.witness_endpoint = f"tcp://{net.addr('witness')}:5609"
        extra = {"heartbeat_ms": 5, "timeout_ms": 100, "suspect_ms": 0, "fsync": "batch", "snapshot_every": 0}
        config.write(
            self.path,
            "async",
            {n: (ep, os.path.join(self.dir, n)) for n, ep in self.endpoints.items()},
            self.witness_endpoint,
            extra,
            witness_state=os.path.join(self.dir, "witness.state"),
        )
        self.cfg = config.load(self.path)

    def start(self, name: str, role: str | None = None, *extra_args: str) -> subprocess.Popen:
        if name == "witness":
            args = ["witness", "--config", self.path]
        else:
            role = role or ("primary" if name == self.names[0] else "standby")
            args = [role, "--config", self.path, "--node", name, "--engine", self.engine, *extra_args]
        log = open(os.path.join(self.dir, f"{name}.log"), "ab")  # noqa: SIM115 - closed in stop()
        self.logs[name] = log
        env = dict(os.environ, PYTHONUNBUFFERED="1", OPENBLAS_NUM_THREADS="1")
        # ``ip netns exec`` enters the namespace and execs: the pid is the node's own.
        cmd = ["ip", "netns", "exec", self.net.ns[name], sys.executable, "-m", "replication.ops.cli", *args]
        p = subprocess.Popen(
            cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
        self.procs[name] = p
        return p


class Stubborn:
    """A client that sends only to ``a``, one request at a time, whoever is primary; every reply in order."""

    def __init__(self, endpoint: str) -> None:
        self.ctx = zmq.Context()
        self.s = self.ctx.socket(zmq.DEALER)
        self.s.setsockopt(zmq.LINGER, 0)
        self.s.connect(endpoint)
        self.rid = 0
        self.replies: list[wire.Reply] = []  # in arrival order

    def step(self, wait_s: float = 0.002) -> None:
        """Send the next order; collect what came back within ``wait_s``."""
        self.rid += 1
        (rec,) = pack_commands([order(10_000 + self.rid)])
        try:
            self.s.send(wire.encode(wire.Request(CLIENT_ID, self.rid, rec)), zmq.NOBLOCK)
        except zmq.Again:
            pass
        if self.s.poll(wait_s * 1000):
            while True:
                try:
                    frame = self.s.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                msg = wire.decode(frame)
                self.replies += list(msg.replies) if isinstance(msg, wire.Replies) else [msg]

    def close(self) -> None:
        self.s.close(0)
        self.ctx.term()


def test_a_cut_off_async_primary_stops_acknowledging_once_its_lease_runs_out(netns):
    g = NetnsGroup(netns)
    stubborn = None
    try:
        g.start_all()
        g.wait_ready(30)
        # Ready is not yet serving: an async primary acknowledges once a supporter renewed its
        # lease. Asked before, it answers unavailable (on a loaded machine the first renewal can
        # come after the first requests), which is not what "before the cut" is about.
        g.wait_for(lambda s: s["a"].get("lease") == "held", what="a's async lease held")
        stubborn = Stubborn(g.endpoints["a"])
        for _ in range(200):
            stubborn.step()
        before_cut = len(stubborn.replies)
        netns.cut("a")
        end = time.monotonic() + PARTITION_S
        while time.monotonic() < end:
            stubborn.step()
        cut_st = g.wait_for(lambda s: s["b"].get("role") == "primary", what="b primary")
        netns.heal("a")
        g.wait_for(
            lambda s: (
                s["a"].get("role") == "standby"
                and s["a"].get("joined")
                and s["a"].get("last_seq") == s["b"].get("last_seq")
            ),
            timeout=30,
            what="a fenced, back as b's standby",
        )
        for _ in range(50):  # the group serves again (a answers not_primary now: it follows b)
            stubborn.step()
        with g.client(CLIENT_ID + 1) as c:
            c.submit(instrument=3, id=77, side="buy", price=10, qty=1)
        g.wait_for(lambda s: s["a"].get("last_seq") == s["b"].get("last_seq"), what="a level with b")
        for name in ("a", "b", "witness"):
            g.kill(name, 15)
        history = [e for e in g.journal_entries("b") if e.client_id]  # (client id 0: time commands)
        logs = g.tail_logs(10)
    finally:
        if stubborn is not None:
            stubborn.close()
        g.stop()

    replies = stubborn.replies
    early = [(r.request_id, wire.STATUS_NAMES.get(r.status, r.status), r.epoch) for r in replies[:before_cut]]
    assert before_cut and all(r.status == wire.OK and r.epoch == 1 for r in replies[:before_cut]), [
        x for x in early if x[1:] != ("ok", 1)
    ][:5]
    refused = [i for i, r in enumerate(replies) if r.status == wire.UNAVAILABLE and r.epoch == 1]
    assert refused, f"the cut-off primary never stopped acknowledging\n{logs}"
    stop = refused[0]
    # Once it stopped, it never acknowledged again while in epoch 1 (cut off, then fenced).
    assert not [r for r in replies[stop:] if r.status == wire.OK and r.epoch == 1]
    # Meanwhile b had taken over, and a said why it stopped.
    assert cut_st["b"]["epoch"] == 2 and cut_st["a"].get("lease") == "expired", cut_st
    # What it acknowledged that b lacks was acknowledged before its lease ran out, nothing after.
    at = {(e.client_id, e.request_id): e.seq for e in history}
    assert len(at) == len(history), "a request executed twice"
    lost = [r for r in replies if r.status == wire.OK and (CLIENT_ID, r.request_id) not in at]
    assert all(replies.index(r) < stop for r in lost)
    # Everything else acknowledged is in the history at the seq its reply named.
    for r in replies:
        if r.status == wire.OK and r not in lost:
            assert at[(CLIENT_ID, r.request_id)] == r.seq, r
    print(
        f"cut-off primary: {len(lost)} acknowledged orders lost (within its lease), {len(replies) - stop} refused or redirected after"
    )
