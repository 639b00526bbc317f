"""Client.poll with an expired request among finished ones: it raises once, the others are kept."""

from __future__ import annotations

import pytest

pytest.importorskip("zmq")

from replication.client.group_client import Client, RequestExpired  # noqa: E402
from replication.protocol import wire  # noqa: E402
from replication.testing.harness import free_ports  # noqa: E402


def test_an_expired_reply_raises_once_and_keeps_the_other_results():
    (port,) = free_ports(1)
    c = Client({"a": f"tcp://127.0.0.1:{port}"}, client_id=7, first_request_id=1)
    try:
        c.results[1] = wire.Reply(7, 1, wire.OK, 1, 5, "a", b"")
        c.results[2] = wire.Reply(7, 2, wire.EXPIRED, 1, 0, "a")
        c.results[3] = wire.Reply(7, 3, wire.OK, 1, 6, "a", b"")
        with pytest.raises(RequestExpired):
            c.poll()
        assert sorted(rid for rid, _ in c.poll()) == [1, 3]
        assert c.poll() == []
    finally:
        c.close()


def test_free_ports_never_hands_out_a_port_twice():
    """Groups pick ports when made and bind them later: one process never gets a port (or its
    PUB port at +spacing) twice, so groups made back to back cannot collide."""
    seen: set[int] = set()
    for _ in range(50):
        ports = free_ports(3)
        mine = set(ports) | {p + 100 for p in ports}
        assert len(mine) == 6 and not mine & seen
        seen |= mine
