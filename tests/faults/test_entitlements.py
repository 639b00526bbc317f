"""Entitlements on real processes under CURVE (docs/operations.md "Entitlements"), and ``auth: open`` without ``[clients]``.

A group of two nodes and a witness, with keys: client key ``desk`` is bound to
client id 7 and account 1; key ``anyid`` may use any client id and account.
``desk`` is refused, ``not_entitled``, every command for account 2 (a new
order, a mass cancel, a cancel and a replace of an account-2 order) and a
mass cancel of every account; none of them is sequenced (the primary's
``last_seq`` does not move, the journals hold none of them); so are its
queries of account 2's open orders and of an account-2 order. Its account-1
commands are served as usual, and its peer and operator messages (an ack, a
heartbeat, a promote, a switchover) are refused like any client key's.
"""

from __future__ import annotations

import signal

import pytest

zmq = pytest.importorskip("zmq")
pytest.importorskip("zmq.auth.thread")

from matching.events import Accepted, Cancelled, Rejected, Replaced  # noqa: E402
from replication.protocol import wire  # noqa: E402
from tests.faults.test_forged_messages import forge, wait_refused  # noqa: E402

pytestmark = pytest.mark.timeout(180)

TABLES = {
    "operators": {"ops": {}},
    "clients": {"desk": {"client_id": 7, "accounts": [1]}, "anyid": {}},
}


def last_seq(g) -> int:
    """The primary's last seq, once the standby has it too (nothing is in flight)."""
    st = g.wait_for(lambda s: s["b"].get("last_seq") == s["a"].get("last_seq"), what="b replicated")
    return st["a"]["last_seq"]


def test_a_client_key_may_trade_its_accounts_only(group):
    # (time_interval_ms = 0: no idle time commands, the test counts seqs)
    g = group(("a", "b"), "sync", curve=True, tables=TABLES, extra={"time_interval_ms": 0})
    g.start_all()
    st = g.wait_ready()
    assert st["a"]["auth"] == "curve" and st["witness"]["auth"] == "curve"
    desk = g.client(7)  # the [clients.desk] key: client id 7, account 1
    other = g.client(8)  # the [clients.anyid] key
    try:
        assert other.submit(instrument=1, id=50, side="sell", price=105, qty=5, account=2) == [
            Accepted(1, 50)
        ]
        before = last_seq(g)
        assert desk.submit(instrument=1, id=1, side="buy", price=100, qty=3, account=2) == [
            Rejected(1, 1, "not_entitled")
        ]
        assert desk.submit(instrument=1, id=2, side="buy", price=100, qty=3) == [
            Rejected(1, 2, "not_entitled")
        ]
        assert desk.cancel(instrument=1, id=50) == [Rejected(1, 50, "not_entitled")]
        assert desk.replace(instrument=1, id=50, price=104) == [Rejected(1, 50, "not_entitled")]
        assert desk.mass_cancel(account=2) == [Rejected(0, 0, "not_entitled")]
        assert desk.mass_cancel() == [Rejected(0, 0, "not_entitled")]
        # A pipelined window mixing both: the refused ones answered, the others executed, in order.
        rids = desk.send_many(
            [
                {"op": "new", "instrument": 1, "id": 3, "side": "buy", "price": 99, "qty": 1, "account": 2},
                {"op": "new", "instrument": 1, "id": 4, "side": "buy", "price": 99, "qty": 1, "account": 1},
            ]
        )
        assert [desk.wait(r) for r in rids] == [[Rejected(1, 3, "not_entitled")], [Accepted(1, 4)]]
        assert last_seq(g) == before + 1  # only order 4 was sequenced
        st = g.status()
        assert st["a"]["driver"]["refused_not_entitled"] == 7, st["a"]["driver"]
        # Account 1 is the desk's: served, including cancels and replaces of its own orders.
        assert desk.submit(instrument=1, id=5, side="buy", price=100, qty=3, account=1) == [Accepted(1, 5)]
        assert desk.replace(instrument=1, id=5, price=101) == [Replaced(1, 5, 101, 3)]
        assert desk.cancel(instrument=1, id=5) == [Cancelled(1, 5, 3, "user")]
        assert desk.mass_cancel(account=1) == [Cancelled(1, 4, 1, "mass_cancel")]
        assert last_seq(g) == before + 5
        # Queries: its own orders and accounts only (an order nobody placed is "unknown" to all).
        assert desk.open_orders() == [] and desk.open_orders(account=1) == []
        assert desk.order(instrument=1, id=5)["status"] == "cancelled"
        assert desk.order(instrument=1, id=77)["status"] == "unknown"
        with pytest.raises(PermissionError, match="not_entitled"):
            desk.open_orders(account=2)
        with pytest.raises(PermissionError, match="not_entitled"):
            desk.order(instrument=1, id=50)
        assert other.order(instrument=1, id=50)["status"] == "open"
        assert g.status()["a"]["driver"]["refused_not_entitled"] == 9
        # The other key is not restricted: account 2's order is still there for it to cancel.
        assert other.cancel(instrument=1, id=50) == [Cancelled(1, 50, 5, "user")]
        # A restricted client key is still a client key: peer and operator messages are refused.
        epoch = st["a"]["epoch"]
        forge(g, "a", [wire.Ack(epoch, 10**6, "b"), wire.Switchover("b")], key="client-desk")
        forge(
            g,
            "b",
            [wire.Promote(), wire.Heartbeat(epoch + 9, 10**6, "a", wire.ROLE_PRIMARY)],
            key="client-desk",
        )
        st = wait_refused(g, {("a", "role"): 2, ("b", "role"): 2})
        assert (st["a"]["role"], st["a"]["epoch"], st["b"]["role"]) == ("primary", epoch, "standby"), st
    finally:
        desk.close()
        other.close()
    for n in ("a", "b"):
        g.kill(n, signal.SIGTERM)
    journal = g.journal_entries("a")
    assert [e.command for e in journal] == [e.command for e in g.journal_entries("b")]
    desk_ids = [
        int.from_bytes(e.command[:8], "little")
        for e in journal
        if e.client_id == 7 and e.request_id & 0xFFFFFFFFFF
    ]
    assert desk_ids == [4, 5, 5, 5, 0], desk_ids  # new 4, new/replace/cancel 5, mass cancel of account 1


def test_a_group_with_keys_but_no_clients_runs_open_and_says_so(group):
    g = group(("a", "b"), "sync", curve=True)
    g.start_all()
    st = g.wait_ready()
    assert {st[n]["auth"] for n in ("a", "b", "witness")} == {"open"}
    log = (g.tail_logs(200)).splitlines()
    opened = [line for line in log if "auth=open" in line]
    assert opened and all("no [clients] entries" in line for line in opened), opened
    c = g.client(7)  # the implicit client key: any client id, any account
    try:
        assert c.submit(instrument=1, id=1, side="buy", price=100, qty=1, account=9) == [Accepted(1, 1)]
    finally:
        c.close()


def _read_stream(g, key: str, node: str = "a", wait: float = 1.5) -> list:
    """Entries seen on ``node``'s drop-copy stream by a SUB connected with key ``key``."""
    import time

    from replication.transport.curve import make_client
    from replication.transport.group_file import pub_endpoint

    s = zmq.Context.instance().socket(zmq.SUB)
    s.setsockopt(zmq.LINGER, 0)
    make_client(s, g.cfg.keys_dir, server=node, me=key)
    s.setsockopt(zmq.SUBSCRIBE, b"")
    s.connect(pub_endpoint(g.endpoints[node]))
    got: list = []
    deadline = time.monotonic() + wait
    try:
        time.sleep(0.3)  # the subscription reaches the node first
        c = g.client(8)
        c.submit(instrument=1, id=900, side="sell", price=120, qty=1, account=2)
        c.close()
        while time.monotonic() < deadline:
            if s.poll(100):
                got.append(wire.decode(s.recv_multipart()[1]))
    finally:
        s.close(0)
    return got


def test_the_drop_copy_stream_is_for_operator_keys_not_client_keys(group):
    """Every order's client id and account travel on the raw stream: under CURVE a client key
    is not admitted to it (it reads its own execution reports), an operator key is."""
    from replication.transport.curve import key_name

    g = group(("a", "b"), "sync", curve=True, tables=TABLES)
    g.start_all()
    g.wait_ready()
    assert _read_stream(g, key_name("client", "desk", g.cfg)) == []
    seen = _read_stream(g, key_name("operator", "ops", g.cfg))
    assert any(isinstance(m, wire.Entries) for m in seen)
