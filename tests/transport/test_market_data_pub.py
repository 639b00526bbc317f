"""The feed's publisher: a taken port stops the feed, never the node, and is bound again later."""

from __future__ import annotations

import socket

import pytest

zmq = pytest.importorskip("zmq")

from matching import Engine, command_array  # noqa: E402
from replication.testing.harness import free_ports  # noqa: E402
from replication.transport.market_data_pub import REBIND_S, MarketDataPublisher  # noqa: E402
from replication.transport.md_engine import feed_engine_factory  # noqa: E402

pytestmark = pytest.mark.skipif(Engine is None, reason="the native engine is not built")


def test_a_taken_port_waits_and_is_bound_again():
    (port,) = free_ports(1)
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", port + 201))
    blocker.listen()
    ctx = zmq.Context()
    counters: dict = {}
    pub = MarketDataPublisher(ctx, "a", f"tcp://127.0.0.1:{port}", "", counters)
    try:
        assert not pub.bound and counters["md_bind_failed"] == 1
        engine = feed_engine_factory(Engine)()
        pub.after_pass(engine, {}, 0.0)
        engine.apply_batch(
            command_array([{"op": "new", "instrument": 1, "id": 1, "side": "buy", "price": 5, "qty": 1}])
        )
        pub.after_pass(engine, {}, 0.5 * REBIND_S)  # not yet: and what it computed is not kept
        assert engine.pending == [] and not pub.bound
        blocker.close()
        pub.after_pass(engine, {}, 1.5 * REBIND_S)
        assert pub.bound and counters["md_bind_failed"] == 1
    finally:
        blocker.close()
        pub.close()
        ctx.term()
