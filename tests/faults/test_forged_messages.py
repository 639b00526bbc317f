"""Forged peer, witness and operator messages against real processes (issue 13, findings 1-4).

Each test starts a group on loopback (``replication.testing.harness.Group``), acknowledges
orders, then sends forged messages through sockets of its own: from an
outsider (a routing id ``peer:evil``, or none), from a client key, and
(CURVE) from a peer key claiming another peer's name. It then checks that
every forgery was refused and counted (``status``' driver counters), that
the group still serves with the same primary and epoch, that the witness
kept its record, and that nothing acknowledged was lost or executed twice
(the journals, read after the processes stop).

``MATCHCORE_FAULT_SCALE`` (default 1) multiplies the order counts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

zmq = pytest.importorskip("zmq")

from matching.commands import command_record  # noqa: E402
from replication.protocol import wire  # noqa: E402
from replication.testing.harness import order  # noqa: E402

pytestmark = pytest.mark.timeout(180)

SCALE = int(os.environ.get("MATCHCORE_FAULT_SCALE", "1"))


def flow(c, first, n, window=16):
    """Send orders first..first+n-1 pipelined; return the request ids answered OK."""
    acked, sent = set(), 0
    deadline = time.monotonic() + 60
    while len(acked) < n:
        assert time.monotonic() < deadline, f"flow stalled at {len(acked)}/{n}"
        while sent < n and c.in_flight < window:
            c.send(order(first + sent))
            sent += 1
        for r in c.poll_replies(0.002):
            if r.status == wire.OK:
                acked.add(r.request_id)
    return acked


def forge(g, target, msgs, routing_id=b"", key="", wait=0.2):
    """Send ``msgs`` to ``target``'s ROUTER from a socket of our own; return what came back.

    ``routing_id``: the ZeroMQ identity to claim (``peer:NAME`` poses as a peer);
    ``key``: under CURVE, the key pair to connect with (a name in the group's keys_dir).
    """
    from replication.transport.curve import make_client

    endpoint = g.witness_endpoint if target == "witness" else g.endpoints[target]
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if routing_id:
        s.setsockopt(zmq.IDENTITY, routing_id)
    try:
        if key:
            make_client(s, g.cfg.keys_dir, server=target, me=key)
        s.connect(endpoint)
        for m in msgs:
            s.send(wire.encode(m))
        answers = []
        while s.poll(int(wait * 1000)):
            answers.append(wire.decode(s.recv()))
        return answers
    finally:
        s.close(0)


def cli(g, *args):
    """``matchcore ARGS --config <the group file>`` as a process; its CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "replication.ops.cli", *args, "--config", g.path],
        capture_output=True,
        text=True,
        timeout=30,
    )


def refused(st, name, code):
    return st[name].get("driver", {}).get(f"refused_{code}", 0)


def wait_refused(g, want):
    """Until every ``(node, code): n`` of ``want`` has at least n refusals counted."""
    return g.wait_for(
        lambda st: all(refused(st, n, code) >= k for (n, code), k in want.items()),
        what=f"refusals {want}",
    )


def check_nothing_lost(g, client_id, acked, nodes=("a", "b")):
    """Stop the nodes; every acknowledged request is in each journal exactly once, and they agree."""
    for n in nodes:
        g.kill(n, signal.SIGTERM)
    journals = {n: g.journal_entries(n) for n in nodes}
    first = journals[nodes[0]]
    keys = [(e.client_id, e.request_id) for e in first if e.client_id]  # (client id 0: time commands)
    assert len(keys) == len(set(keys)), "an entry executed twice"
    assert {(client_id, rid) for rid in acked} <= set(keys), "an acknowledged order was lost"
    for n, entries in journals.items():
        assert [(e.epoch, e.seq, e.digest) for e in entries] == [(e.epoch, e.seq, e.digest) for e in first], n


def test_open_group_refuses_forged_peer_witness_and_operator_messages(group):
    """Findings 1-3 in open mode: an outsider (peer:evil), a plain client socket, and Promote
    from a plain client to a standby that lags."""
    g = group(("a", "b"), "sync")
    g.start_all()
    st = g.wait_ready()
    assert st["a"]["auth"] == "open" and st["witness"]["auth"] == "open"
    epoch = st["a"]["epoch"]
    c = g.client(21, retry_timeout=0.05)
    try:
        n = 200 * SCALE
        acked = flow(c, 0, n)
        evil = b"peer:evil"
        # Finding 1: a Fence of the next epoch to both nodes, from a name that is not in the group file.
        forge(
            g,
            "a",
            [wire.Fence(epoch + 1, 0, "a"), wire.Heartbeat(epoch + 999, 0, "evil", wire.ROLE_PRIMARY)],
            evil,
        )
        forge(g, "b", [wire.Fence(epoch + 1, 0, "b")], evil)
        # Finding 3: a higher-epoch heartbeat to the primary and the witness, from a plain client socket.
        forge(g, "a", [wire.Heartbeat(epoch + 999, 0, "b", wire.ROLE_PRIMARY), wire.Ack(epoch, 10**9, "b")])
        forge(g, "b", [wire.Fence(epoch + 1, 0, "b")])
        forge(g, "witness", [wire.Heartbeat(epoch + 999, 0, "a", wire.ROLE_PRIMARY)])
        forge(g, "witness", [wire.Heartbeat(epoch + 999, 0, "evil", wire.ROLE_PRIMARY)], evil)
        # ... and in-sync sets that do not fit the witness's record (5 KB of names).
        forge(g, "witness", [wire.IsrUpdate(epoch, 0, "a", ("b",) * 1000, 99)])
        forge(g, "witness", [wire.IsrUpdate(epoch, 0, "evil", ("x" * 5000,), 99)], evil)
        acked |= flow(c, n, n)
        st = g.status()
        assert st["a"]["role"] == "primary" and st["a"]["epoch"] == epoch, st["a"]
        assert (st["witness"]["epoch"], st["witness"]["primary"]) == (epoch, "a"), st["witness"]
        assert st["b"]["role"] == "standby" and st["b"]["epoch"] == epoch, st["b"]
        wait_refused(
            g,
            {
                ("a", "unknown_sender"): 2,
                ("a", "role"): 2,
                ("b", "unknown_sender"): 1,
                ("b", "role"): 1,
                ("witness", "unknown_sender"): 2,
                ("witness", "role"): 2,
            },
        )

        # Finding 2: b is down while a acknowledges orders solo; a Promote from a plain client is
        # queued for b before it starts, so b reads it first: it must not promote a shorter history.
        g.kill("b")
        acked |= flow(c, 2 * n, 3 * n)
        s = zmq.Context.instance().socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RECONNECT_IVL, 1)  # connected the moment b binds: before b can catch up
        try:
            s.connect(g.endpoints["b"])
            s.send(wire.encode(wire.Promote()))
            g.start("b", "standby")
            assert s.poll(15_000), "b never answered the Promote"
            answer = wire.decode(s.recv())
        finally:
            s.close(0)
        assert isinstance(answer, wire.Status)
        body = json.loads(answer.body)
        assert body["role"] == "standby" and body["promote_refused"], body
        st = g.wait_for(
            lambda s: s["b"].get("joined") and s["b"].get("last_seq") == s["a"].get("last_seq"),
            what="b caught up",
        )
        assert st["a"]["role"] == "primary" and st["a"]["epoch"] == epoch, st
        acked |= flow(c, 5 * n, n)
        g.wait_for(lambda s: s["b"].get("last_seq") == s["a"].get("last_seq"), what="b replicated")
    finally:
        c.close()
    assert len(acked) == 6 * n
    check_nothing_lost(g, 21, acked)


CURVE_TABLES = {
    "operators": {"ops": {}},
    "clients": {"desk": {"client_id": 7}, "anyid": {}},
}


def test_curve_group_refuses_forgeries_from_client_keys_and_peer_keys_claiming_other_names(group):
    """Finding 4: under CURVE every identity has its own key. A client key may not send peer or
    operator messages, nor claim a peer's routing id; a peer key may not claim another peer's
    name; a client bound to client id 7 may not use 8."""
    pytest.importorskip("zmq.auth.thread")
    g = group(("a", "b", "c"), "sync", curve=True, tables=CURVE_TABLES)
    g.start("witness")
    g.start("a")
    g.start("b")  # c stays down: its name is free for forgers to claim
    st = g.wait_ready()
    assert st["a"]["auth"] == "curve"
    epoch = st["a"]["epoch"]
    c = g.client(17, retry_timeout=0.05)  # the [clients.anyid] key: any client id
    try:
        n = 200 * SCALE
        acked = flow(c, 0, n)
        # A client key: peer and operator messages, with its own routing id.
        forge(g, "b", [wire.Promote(), wire.Fence(epoch + 1, 0, "b")], key="client-anyid")
        forge(
            g,
            "a",
            [wire.Heartbeat(epoch + 999, 0, "b", wire.ROLE_PRIMARY), wire.Switchover("b")],
            key="client-desk",
        )
        forge(g, "witness", [wire.Heartbeat(epoch + 999, 0, "a", wire.ROLE_PRIMARY)], key="client-desk")
        forge(g, "witness", [wire.IsrUpdate(epoch, 0, "a", ("b",) * 1000, 99)], key="client-desk")
        # A client key claiming a peer's routing id, and node a's key claiming to be c.
        forge(g, "a", [wire.Fence(epoch + 1, 0, "a")], b"peer:c", key="client-anyid")
        forge(g, "witness", [wire.VoteRequest(epoch + 1, 10**9, "c", epoch)], b"peer:c", key="client-anyid")
        forge(g, "b", [wire.Fence(epoch + 1, 0, "b")], b"peer:c", key="a")
        forge(g, "witness", [wire.Heartbeat(epoch + 999, 0, "c", wire.ROLE_PRIMARY)], b"peer:c", key="a")
        # A client bound to client id 7: its own id is served, another is refused.
        cmd = wire.pack_command(command_record(order(10**6)))
        answers = forge(
            g, "a", [wire.Request(8, 1, cmd), wire.Request(7, 1, cmd)], key="client-desk", wait=2.0
        )
        assert [type(m) for m in answers] == [wire.Reply] and answers[0].client_id == 7, answers
        acked |= flow(c, n, n)
        st = g.status()
        assert st["a"]["role"] == "primary" and st["a"]["epoch"] == epoch, st["a"]
        assert st["b"]["role"] == "standby" and st["b"]["epoch"] == epoch, st["b"]
        assert (st["witness"]["epoch"], st["witness"]["primary"]) == (epoch, "a"), st["witness"]
        wait_refused(
            g,
            {
                ("b", "role"): 2,
                ("a", "role"): 2,
                ("witness", "role"): 2,
                ("a", "unknown_sender"): 1,
                ("b", "unknown_sender"): 1,
                ("witness", "unknown_sender"): 2,
                ("a", "client_id"): 1,
            },
        )
        g.wait_for(lambda s: s["b"].get("last_seq") == s["a"].get("last_seq"), what="b replicated")
        # The operator CLI with a client's key: status is anyone's, promote (even --force) is not.
        out = cli(g, "status", "--json", "--key", "client-desk")
        assert json.loads(out.stdout)["a"]["auth"] == "curve", out.stderr
        out = cli(g, "promote", "--node", "b", "--force", "--key", "client-desk")
        assert out.returncode == 1 and "no answer" in out.stderr, out.stdout + out.stderr
        out = cli(g, "status", "--key", "operator-ops")
        assert out.stdout.startswith("auth: curve"), out.stdout + out.stderr
        st = g.wait_for(lambda s: refused(s, "b", "role") >= 3, what="b refused the client's Promote")
        assert st["b"]["role"] == "standby" and st["a"]["role"] == "primary"
    finally:
        c.close()
    assert len(acked) == 2 * n
    check_nothing_lost(g, 17, acked)


def test_a_key_outside_the_group_cannot_connect(group, tmp_path):
    """A CURVE key pair the group file does not name gets no answer at all, not even to status."""
    pytest.importorskip("zmq.auth.thread")
    import zmq.auth

    g = group(("a", "b"), "sync", curve=True)
    g.start_all()
    g.wait_ready()
    zmq.auth.create_certificates(str(tmp_path), "stranger")
    assert forge(g, "a", [wire.StatusRequest()], key=str(tmp_path / "stranger.key_secret"), wait=0.5) == []
    (st,) = forge(g, "a", [wire.StatusRequest()], key="operator")
    assert isinstance(st, wire.Status)
