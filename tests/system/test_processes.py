"""Process-level fail-over: real node processes on loopback, killed and restarted.

Few and quick: each test starts a small group (``replication.testing.harness.Group``),
whose ``stop()`` kills every process and removes the temp dir, always.
Nothing here asserts a duration or a rate.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

zmq = pytest.importorskip("zmq")

from replication.client.admin import ask  # noqa: E402
from replication.ops.demo import run_flow  # noqa: E402
from replication.protocol import wire  # noqa: E402
from replication.testing.harness import order  # noqa: E402

pytestmark = pytest.mark.timeout(120)

OPEN = 1  # each Client's session open is one sequenced entry (replication.protocol.session)


def flow(c, first, n, window=16):
    """Send orders first..first+n-1 pipelined; return {request_id: Reply} of the OK ones."""
    acked, sent = {}, 0
    deadline = time.monotonic() + 30
    while len(acked) < n:
        assert time.monotonic() < deadline, f"flow stalled at {len(acked)}/{n}"
        while sent < n and c.in_flight < window:
            c.send(order(first + sent))
            sent += 1
        for r in c.poll_replies(0.002):
            if r.status == wire.OK:
                acked[r.request_id] = r
    return acked


@pytest.fixture
def group(group):
    """The conftest's ``group``, without idle time commands (``time_interval_ms = 0``): these
    tests count seqs, and every wall-clock second a group idles would add one."""

    def make(*args, extra=None, **kw):
        return group(*args, extra={"time_interval_ms": 0, **(extra or {})}, **kw)

    return make


def test_sigkill_of_primary_loses_nothing_and_executes_nothing_twice():
    res = run_flow(orders=300)
    assert res["acked"] == 300, res
    assert res["lost"] == 0 and res["duplicates"] == 0, res
    assert res["digest_equal"] and res["replay_digest_matches"], res
    assert res["new_epoch"] >= 2 and res["failover_ms"] is not None, res


def test_fenced_old_primary_rejoins_as_standby(group):
    g = group(("a", "b"), "sync")
    g.start_all()
    g.wait_ready()
    c = g.client(11, retry_timeout=0.02)
    try:
        flow(c, 0, 50)
        g.kill("a")
        flow(c, 50, 50)
        st = g.wait_for(lambda s: s["b"].get("role") == "primary", what="b primary")
        assert st["b"]["epoch"] == 2
        g.start("a", "primary")  # comes back believing it is primary
        st = g.wait_for(
            lambda s: (
                s["a"].get("role") == "standby"
                and s["a"].get("joined")
                and s["a"].get("last_seq") == s["b"].get("last_seq")
            ),
            what="a rejoined",
        )
        assert st["a"]["epoch"] == 2 and st["a"]["digest"] == st["b"]["digest"]
        flow(c, 100, 20)
        st = g.wait_for(
            lambda s: s["a"].get("last_seq") == s["b"].get("last_seq") == 120 + OPEN, what="a follows"
        )
        assert st["a"]["digest"] == st["b"]["digest"]
    finally:
        c.close()


def test_whole_group_restart_comes_back_with_every_acked_order(group):
    """Every process stopped, then restarted with the last primary as a standby: it serves again by itself."""
    g = group(("a", "b"), "sync")
    g.start_all()
    g.wait_ready()
    c = g.client(13, retry_timeout=0.02)
    try:
        acked = flow(c, 0, 40)
        g.kill("a")  # b takes over: the last primary is b, at epoch 2
        acked.update(flow(c, 40, 20))
        g.wait_for(
            lambda s: s["b"].get("role") == "primary" and s["b"].get("last_seq") == 60 + OPEN, what="b serves"
        )
    finally:
        c.close()
    for name in ("b", "witness"):
        g.kill(name, signal.SIGTERM)
    g.start("witness")  # from its state file
    g.start("a", "primary")  # the operator's guess is wrong: a was not the last primary
    g.start("b", "standby")
    st = g.wait_ready()
    assert st["b"]["role"] == "primary" and st["b"]["epoch"] == 3, st
    assert st["a"]["last_seq"] == st["b"]["last_seq"] == 60 + OPEN and st["a"]["digest"] == st["b"]["digest"]
    assert len(acked) == 60
    c = g.client(14, retry_timeout=0.02)
    try:
        flow(c, 60, 20)
        st = g.wait_for(
            lambda s: s["a"].get("last_seq") == s["b"].get("last_seq") == 80 + 2 * OPEN, what="a follows"
        )
        assert st["a"]["digest"] == st["b"]["digest"]
    finally:
        c.close()


def test_two_primaries_killed_in_turn_lose_nothing_and_the_group_comes_back_whole(group):
    """Three nodes: the primary is SIGKILLed, then the node that took over; the last standby
    serves, and both dead nodes come back as standbys of the newest epoch with its journal."""
    g = group(("a", "b", "c"), "sync")
    g.start_all()
    g.wait_ready()
    c = g.client(15, retry_timeout=0.02)
    try:
        acked = flow(c, 0, 40)
        g.kill("a")
        acked.update(flow(c, 40, 30))
        st = g.wait_for(
            lambda s: (
                {s["b"].get("role"), s["c"].get("role")} == {"primary", "standby"}
                and (s["b"].get("joined") or s["c"].get("joined"))
            ),
            what="b or c serves, the other follows it",
        )
        second = next(n for n in ("b", "c") if st[n]["role"] == "primary")
        last = "c" if second == "b" else "b"
        g.kill(second)
        acked.update(flow(c, 70, 30))
        st = g.wait_for(lambda s: s[last].get("role") == "primary", what=f"{last} serves")
        assert st[last]["epoch"] >= 3, st
        g.start("a", "standby")
        g.start(second, "standby")
        st = g.wait_for(
            lambda s: (
                all(s[n].get("last_seq") == s[last].get("last_seq") == 100 + OPEN for n in ("a", "b", "c"))
                and s["a"].get("joined")
                and s[second].get("joined")
            ),
            what="both restarted nodes caught up",
        )
        assert st["a"]["digest"] == st["b"]["digest"] == st["c"]["digest"]
    finally:
        c.close()
    for name in ("a", "b", "c", "witness"):
        g.kill(name, signal.SIGTERM)
    entries = g.journal_entries(last)
    keys = [(e.client_id, e.request_id) for e in entries]
    assert len(acked) == 100 and len(keys) == len(set(keys)) == 100 + OPEN  # nothing executed twice
    assert all((15, rid) in set(keys) for rid in acked)  # nothing acknowledged lost


def test_late_standby_catches_up_by_snapshot_and_tail(group):
    g = group(("a", "b"), "sync", extra={"catchup_snapshot_lag": 20})
    g.start("witness")
    g.start("a")
    g.wait_for(lambda s: s["a"].get("role") == "primary", what="a primary")
    c = g.client(12, retry_timeout=0.02)
    try:
        flow(c, 0, 100)  # no standby: the primary runs solo with the witness's consent
        g.start("b")
        st = g.wait_for(
            lambda s: s["b"].get("joined") and s["b"].get("last_seq") == 100 + OPEN, what="b caught up"
        )
        assert st["b"]["digest"] == st["a"]["digest"]
        assert st["b"]["counters"].get("snapshots_installed", 0) >= 1
        flow(c, 100, 30)
        st = g.wait_for(
            lambda s: s["b"].get("last_seq") == 130 + OPEN and s["a"].get("solo") is False, what="b live"
        )
        assert st["b"]["digest"] == st["a"]["digest"]
    finally:
        c.close()


def test_planned_switchover_loses_nothing(group):
    g = group(("a", "b"), "sync")
    g.start_all()
    g.wait_ready()
    c = g.client(13, retry_timeout=0.02)
    try:
        acked = flow(c, 0, 50)
        sw = subprocess.Popen(
            [sys.executable, "-m", "replication.ops.cli", "switchover", "--config", g.path, "--to", "b"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            acked.update(flow(c, 50, 150, window=4))
            out, _ = sw.communicate(timeout=30)
        finally:
            if sw.poll() is None:
                sw.kill()
                sw.wait(5)
        assert sw.returncode == 0, out
        st = g.wait_for(
            lambda s: (
                s["b"].get("role") == "primary"
                and s["a"].get("role") == "standby"
                and s["a"].get("last_seq") == s["b"].get("last_seq")
            ),
            what="switched",
        )
        assert len(acked) == 200 and st["b"]["last_seq"] == 200 + OPEN and st["b"]["epoch"] == 2
        assert st["a"]["digest"] == st["b"]["digest"]
    finally:
        c.close()
    g.kill("a", signal.SIGTERM)
    g.kill("b", signal.SIGTERM)
    keys = [(e.client_id, e.request_id) for e in g.journal_entries("b")]
    assert len(keys) == len(set(keys)) == 200 + OPEN


def test_resent_request_is_not_executed_twice(group):
    g = group(("a", "b"), "sync")
    g.start_all()
    g.wait_ready()
    c = g.client(14)
    try:
        first = c.submit(instrument=1, id=1, side="buy", price=100, qty=5)
        rid = c.last_reply.request_id
        seq = c.last_reply.seq
    finally:
        c.close()
    cmd = wire.pack_command(
        __import__("matching").command_record(
            {"op": "new", "instrument": 1, "id": 1, "side": "buy", "price": 100, "qty": 5}
        )
    )
    again = ask(g.endpoints["a"], wire.Request(14, rid, cmd), 2.0)
    assert again.status == wire.OK and again.seq == seq
    import numpy as np

    from matching import EVENT_DTYPE, events_from_array

    assert events_from_array(np.frombuffer(again.events, dtype=EVENT_DTYPE)) == first
    # ... and they are the very events the embedded engine returns.
    from matching import ReferenceEngine

    assert first == ReferenceEngine().submit(instrument=1, id=1, side="buy", price=100, qty=5)
    st = g.status()
    assert st["a"]["last_seq"] == 1 + OPEN and st["a"]["counters"]["requests_deduplicated"] == 1


def test_corrupted_standby_reports_divergence_and_never_promotes(group):
    g = group(("a", "b"), "sync")
    g.start("witness")
    g.start("a")
    g.start("b", "standby", "--debug-perturb-seq", "5")
    g.wait_ready()
    c = g.client(15, retry_timeout=0.02)
    try:
        flow(c, 0, 20)  # b diverges at 5; a runs solo after its ack timeout
        st = g.wait_for(lambda s: s["b"].get("role") == "diverged", what="b diverged")
        assert st["b"]["counters"]["divergences"] == 1 and st["b"]["diverged_at"] == 5
    finally:
        c.close()
    g.kill("a")
    time.sleep(0.5)  # far beyond the heartbeat timeout
    st = g.status()
    assert st["b"]["role"] == "diverged" and st["b"]["epoch"] == 1
    assert "promotions" not in st["b"]["counters"]


def test_published_events_equal_the_replies_of_bundled_orders(group):
    """A client's bundles (``send_batch``) take the primary's packed path, where a batch's events
    reach the PUB stream without being sliced per entry unless read (``wire.EventBlobs``) and the
    replies as columns (``wire.ReplyRun``): every seq's published events equal its reply's."""
    import io
    import json
    import threading

    import numpy as np

    from matching import EVENT_DTYPE, command_array, event_dict, events_from_array
    from replication.transport.subscriber import subscribe

    g = group(("a", "b"), "sync")
    g.start_all()
    g.wait_ready()
    commands = command_array([order(i) for i in range(600)])
    out = io.StringIO()
    sub = threading.Thread(
        target=subscribe,
        args=(g.cfg,),
        kwargs={"count": len(commands) + OPEN, "idle_timeout": 10.0, "out": out},
    )
    sub.start()
    time.sleep(0.3)  # the SUB sockets connect (a late joiner would get refills, which carry no events)
    c = g.client(17)
    replies: dict[int, wire.Reply] = {}
    try:
        for lo in range(0, len(commands), 200):
            ids = c.send_batch(commands[lo : lo + 200])
            deadline = time.monotonic() + 20
            while any(i not in replies for i in ids) and time.monotonic() < deadline:
                replies.update((r.request_id, r) for r in c.poll_replies(0.05))
    finally:
        c.close()
        sub.join(20)
    assert len(replies) == len(commands) and all(r.status == wire.OK for r in replies.values())
    published = {x["seq"]: x for x in map(json.loads, out.getvalue().splitlines())}
    for r in replies.values():
        events = [event_dict(e) for e in events_from_array(np.frombuffer(r.events, dtype=EVENT_DTYPE))]
        assert published[r.seq]["events"] == events, r.seq


def test_subscriber_prints_the_stream_with_events(group):
    import json

    g = group(("a", "b"), "async")
    g.start_all()
    g.wait_ready()
    sub = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "replication.ops.cli",
            "subscribe",
            "--config",
            g.path,
            "--count",
            "10",
            "--timeout",
            "10",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    c = g.client(16)
    try:
        deadline = time.monotonic() + 20
        i = 0
        while sub.poll() is None and time.monotonic() < deadline:  # until the late-joining SUB has seen 10
            c.apply(order(i))
            i += 1
            time.sleep(0.01)
        out, err = sub.communicate(timeout=10)
    finally:
        c.close()
        if sub.poll() is None:
            sub.kill()
            sub.wait(5)
    lines = [json.loads(x) for x in out.decode().splitlines()]
    assert len(lines) == 10, err
    seqs = [x["seq"] for x in lines]
    assert seqs == list(range(seqs[0], seqs[0] + 10))
    assert all("events" in x and x["command"]["op"] in ("new", "cancel", "session_open") for x in lines)


def test_curve_group_serves_keyed_clients_only(group):
    pytest.importorskip("zmq.auth.thread")
    g = group(("a", "b"), "sync", curve=True)
    g.start_all()
    g.wait_ready()  # status itself goes over CURVE with the client key pair
    c = g.client(17)
    try:
        flow(c, 0, 20)
    finally:
        c.close()
    st = g.wait_for(lambda s: s["b"].get("last_seq") == 20 + OPEN, what="b replicated over CURVE")
    assert st["a"]["digest"] == st["b"]["digest"]
    # Without keys, nothing gets through.
    assert ask(g.endpoints["a"], wire.StatusRequest(), 0.5) is None


def test_busy_poll_nodes_serve_and_replicate(group):
    # busy_poll on both nodes: each loop spins instead of sleeping, and the group behaves the
    # same (every order acked, the standby at the primary's seq and digest).
    g = group(("a", "b"), "sync", node_keys={"a": {"busy_poll": True}, "b": {"busy_poll": True}})
    g.start_all()
    g.wait_ready()
    for name in ("a", "b"):
        with open(f"{g.dir}/{name}.log", encoding="utf-8") as f:
            assert f"busy_poll node={name}" in f.read()
    c = g.client(12, retry_timeout=0.05)
    try:
        assert len(flow(c, 0, 40)) == 40
    finally:
        c.close()
    st = g.wait_for(lambda s: s["a"].get("last_seq") == s["b"].get("last_seq"), what="b at a's seq")
    assert st["a"]["role"] == "primary" and st["a"]["digest"] == st["b"]["digest"], st
