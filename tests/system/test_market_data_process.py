"""The public market-data feed on real node processes: fail-over, switchover, and a subscriber that does not read.

A ``replication.MarketData`` follows a three-node group through a SIGKILL of
the node it listens to (it moves to the next node and starts again from its
snapshot) and a planned switchover; at the end its books equal the depth of
a local replay of the new primary's journal, every instrument is synced (no
checksum failure left unrecovered), and no update it saw has a field that
names an order, an account or a client. A subscriber socket that never reads
does not hold the node up; a ``MarketData`` that stops reading loses updates
and recovers by snapshot. Bounded waits; every process is stopped by the
``group`` fixture. Nothing here asserts a duration or a rate.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

zmq = pytest.importorskip("zmq")

from matching import Engine  # noqa: E402
from replication import MarketData  # noqa: E402
from replication.protocol import wire  # noqa: E402
from replication.protocol.replica import Replica  # noqa: E402
from replication.testing.harness import order  # noqa: E402
from replication.transport.market_data_pub import md_endpoint  # noqa: E402
from tests.engine.test_market_data import PUBLIC_FIELDS  # noqa: E402

pytestmark = [pytest.mark.timeout(180), pytest.mark.skipif(Engine is None, reason="native engine not built")]

INSTRUMENTS = (1, 2)  # the harness's order flow trades two instruments


def _flow(c, first: int, n: int, window: int = 16) -> int:
    """Orders first..first+n-1 pipelined, every one answered (fail-over and re-sending are the client's)."""
    got, sent = 0, 0
    deadline = time.monotonic() + 60
    while got < n:
        assert time.monotonic() < deadline, f"flow stalled at {got}/{n}"
        while sent < n and c.in_flight < window:
            c.send(order(first + sent))
            sent += 1
        for r in c.poll_replies(0.002):
            assert r.status == wire.OK, r
            got += 1
    return got


def _batch_flow(c, first: int, n: int, chunk: int = 2000) -> None:
    """Orders first..first+n-1 as bundles of ``chunk`` (the primary's packed path), every one answered."""
    deadline = time.monotonic() + 60
    for start in range(first, first + n, chunk):
        c.send_batch([order(i) for i in range(start, min(start + chunk, first + n))])
        need = min(start + chunk, first + n) - start
        while need:
            assert time.monotonic() < deadline, "flow stalled"
            for r in c.poll_replies(0.01):
                assert r.status == wire.OK, r
                need -= 1


def _replayed_depth(entries) -> dict[int, tuple]:
    r = Replica()
    for e in entries:
        r.execute(e.epoch, e.seq, 0, 0, e.command)
    return {ins: r.engine.depth(ins) for ins in INSTRUMENTS}


def _follow(md: MarketData, seen: list, cond, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"market data: {what} ({md.counters()}, node {md.node})"
        seen += md.poll(0.02)


def _settled(md: MarketData, status: dict, primary: str) -> bool:
    """Synced on every instrument, and at the primary's seq (every update of the flow applied)."""
    return all(md.synced(i) for i in INSTRUMENTS) and md.heard_seq >= status[primary]["last_seq"]


def test_a_subscriber_follows_a_sigkill_fail_over_and_a_switchover(group):
    g = group(("a", "b", "c"), "sync")
    g.start_all()
    g.wait_ready()
    md = MarketData.from_config(g.path, instruments=INSTRUMENTS, node="a", silence=0.5)
    c = g.client(21, retry_timeout=0.02)
    seen: list[dict] = []
    try:
        _flow(c, 0, 150)
        _follow(md, seen, lambda: _settled(md, g.status(), "a"), "caught up with a")
        assert md.node == "a" and md.resyncs == 0
        g.kill("a")  # the node it listens to: silence, then the next node
        st = g.wait_for(lambda s: "primary" in (s["b"].get("role"), s["c"].get("role")), what="new primary")
        first = "b" if st["b"]["role"] == "primary" else "c"
        other = "c" if first == "b" else "b"
        _flow(c, 150, 150)
        _follow(
            md, seen, lambda: md.node != "a" and _settled(md, g.status(), first), "followed the fail-over"
        )
        assert md.switches >= 1
        sw = subprocess.Popen(
            [sys.executable, "-m", "replication.ops.cli", "switchover", "--config", g.path, "--to", other],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            _flow(c, 300, 150, window=4)
            out, _ = sw.communicate(timeout=30)
        finally:
            if sw.poll() is None:
                sw.kill()
                sw.wait(5)
        assert sw.returncode == 0, out
        st = g.wait_for(
            lambda s: (
                s[other].get("role") == "primary" and s[first].get("last_seq") == s[other].get("last_seq")
            ),
            what="switched",
        )
        _flow(c, 450, 100)
        st = g.wait_for(
            lambda s: s[first].get("last_seq") == s[other].get("last_seq"), what="standby in step"
        )
        _follow(md, seen, lambda: _settled(md, g.status(), other), "followed the switchover")
        books = {ins: md.book(ins) for ins in INSTRUMENTS}
        counters = md.counters()
    finally:
        c.close()
        md.close()
    for name in (first, other):
        g.kill(name, signal.SIGTERM)
    depth = _replayed_depth(g.journal_entries(other))
    assert books == depth, counters
    assert seen and all(set(d) <= PUBLIC_FIELDS for d in seen)
    assert {d["instrument"] for d in seen} == set(INSTRUMENTS)


def test_a_subscriber_that_never_reads_does_not_stall_the_node_and_one_that_stops_resyncs(group):
    g = group(("a", "b"), "sync")
    g.start_all()
    g.wait_ready()
    ctx = zmq.Context.instance()
    stuck = ctx.socket(zmq.SUB)  # subscribes to everything, never reads
    stuck.setsockopt(zmq.RCVHWM, 1)
    stuck.setsockopt(zmq.LINGER, 0)
    stuck.setsockopt(zmq.SUBSCRIBE, b"")
    stuck.connect(md_endpoint(g.endpoints["a"]))
    md = MarketData.from_config(g.path, instruments=INSTRUMENTS, node="a", rcvhwm=8, silence=30.0)
    c = g.client(22, retry_timeout=0.05)
    seen: list[dict] = []
    try:
        _flow(c, 0, 20)
        _follow(md, seen, lambda: _settled(md, g.status(), "a"), "started")
        # Neither subscriber reads while bundles of orders run: the node serves every one, and
        # the feed's queues to them fill (bounded: market_data_pub.SNDHWM) and then drop.
        for rnd in range(8):
            _batch_flow(c, 100 + 10_000 * rnd, 10_000)
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline and not md.resyncs:
                seen += md.poll(0.05)
            if md.resyncs:
                break
        _follow(md, seen, lambda: md.resyncs >= 1 and _settled(md, g.status(), "a"), "resynced by snapshot")
        assert md.gaps >= 1 and md.node == "a"
        books = {ins: md.book(ins) for ins in INSTRUMENTS}
    finally:
        c.close()
        md.close()
        stuck.close(0)
    g.kill("a", signal.SIGTERM)
    g.kill("b", signal.SIGTERM)
    assert books == _replayed_depth(g.journal_entries("a"))


def test_matchcore_md_prints_the_feed_as_json_lines(group):
    import json

    g = group(("a", "b"), "sync")
    g.start_all()
    g.wait_ready()
    md = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "replication.ops.cli",
            "md",
            "--config",
            g.path,
            "--instrument",
            "1",
            "--count",
            "6",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    c = g.client(23, retry_timeout=0.02)
    try:
        deadline = time.monotonic() + 60
        first = 0
        while md.poll() is None:  # orders until it has printed its six updates
            assert time.monotonic() < deadline, "md printed nothing"
            _flow(c, first, 10)
            first += 10
            time.sleep(0.1)
        out, err = md.communicate(timeout=10)
    finally:
        c.close()
        if md.poll() is None:
            md.kill()
            md.wait(5)
    assert md.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 7 and lines[-1]["counters"]["checksum_failures"] == 0
    assert all(d["instrument"] == 1 and set(d) <= PUBLIC_FIELDS for d in lines[:6])


def test_a_standby_that_installed_a_snapshot_and_a_restarted_node_publish_the_primarys_feed(group):
    """The feed's state rides in the node snapshot: a late standby caught up by snapshot, and a
    node restarted from its journal's snapshot, number their updates as the primary does."""
    g = group(("a", "b"), "sync", extra={"catchup_snapshot_lag": 20, "snapshot_every": 40})
    g.start("witness")
    g.start("a")
    g.wait_for(lambda s: s["a"].get("role") == "primary", what="a primary")
    c = g.client(24, retry_timeout=0.02)
    books = []
    try:
        _flow(c, 0, 100)  # no standby yet: a runs solo, and snapshots
        g.start("b")
        st = g.wait_for(
            lambda s: s["b"].get("joined") and s["b"]["last_seq"] == s["a"]["last_seq"], what="b in"
        )
        assert st["b"]["counters"].get("snapshots_installed", 0) >= 1
        _flow(c, 100, 30)
        g.kill("a", signal.SIGTERM)  # a restarts from its snapshot and the tail of its journal
        g.wait_for(lambda s: s["b"].get("role") == "primary", what="b primary")
        g.start("a", "standby")
        _flow(c, 130, 30)
        st = g.wait_for(lambda s: s["a"].get("last_seq") == s["b"].get("last_seq"), what="a back in step")
        for node in ("a", "b"):
            md = MarketData.from_config(g.path, instruments=INSTRUMENTS, node=node, silence=5.0)
            try:
                _follow(md, [], lambda md=md: _settled(md, g.status(), "b"), f"synced on {node}")
                assert md.node == node
                books.append(
                    {
                        i: (md.book(i), md.local.instrument_seq(i), md.local._books[i].checksum())
                        for i in INSTRUMENTS
                    }
                )
            finally:
                md.close()
    finally:
        c.close()
    assert books[0] == books[1]
    assert all(books[0][i][1] > 0 for i in INSTRUMENTS)


def test_under_curve_a_client_key_follows_the_feed_and_no_key_gets_nothing(group):
    pytest.importorskip("zmq.auth.thread")
    g = group(("a", "b"), "sync", curve=True)
    g.start_all()
    g.wait_ready()
    md = MarketData.from_config(g.path, instruments=INSTRUMENTS, node="b")  # the client's key
    bare = zmq.Context.instance().socket(zmq.SUB)  # no key: the CURVE handshake never completes
    bare.setsockopt(zmq.LINGER, 0)
    bare.setsockopt(zmq.SUBSCRIBE, b"")
    bare.connect(md_endpoint(g.endpoints["b"]))
    c = g.client(25)
    try:
        _flow(c, 0, 40)
        g.wait_for(lambda s: s["b"].get("last_seq") == s["a"].get("last_seq"), what="b in step")
        _follow(md, [], lambda: _settled(md, g.status(), "a"), "synced over CURVE")
        assert md.node == "b" and md.checksum_failures == 0
        books = {i: md.book(i) for i in INSTRUMENTS}
        assert bare.poll(200) == 0
    finally:
        c.close()
        md.close()
        bare.close(0)
    g.kill("a", signal.SIGTERM)
    g.kill("b", signal.SIGTERM)
    assert books == _replayed_depth(g.journal_entries("a"))
