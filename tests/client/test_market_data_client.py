"""``replication.MarketData`` against in-process fake nodes: snapshot, updates, gaps, mismatches, silence.

Each fake node is a real ``BookFeed`` over a real ``Engine`` behind the two
sockets a node binds (an XPUB at port + 200, a ROUTER at port + 201) on
loopback, so what the subscriber reads is exactly the node's wire form; the
test decides what reaches it (a dropped frame, a forged checksum, garbage, a
lost tail, silence) and checks the subscriber ends with the engine's depth,
its counters saying what happened.
"""

from __future__ import annotations

import time

import pytest

zmq = pytest.importorskip("zmq")

from matching import BookFeed, Engine  # noqa: E402
from replication import MarketData  # noqa: E402
from replication.protocol import market_data as md_wire  # noqa: E402
from replication.testing.harness import free_ports  # noqa: E402
from replication.transport.market_data_pub import md_endpoint, md_snapshot_endpoint  # noqa: E402

pytestmark = [pytest.mark.timeout(60), pytest.mark.skipif(Engine is None, reason="native engine not built")]


class FakeNode:
    """A node's feed sockets over a local engine; the test calls ``run`` and chooses what is sent."""

    def __init__(self, ctx, endpoint: str) -> None:
        self.engine, self.feed, self.seq = Engine(), BookFeed(), 0
        self.pub = ctx.socket(zmq.XPUB)
        self.snap = ctx.socket(zmq.ROUTER)
        for s in (self.pub, self.snap):
            s.setsockopt(zmq.LINGER, 0)
        self.pub.bind(md_endpoint(endpoint))
        self.snap.bind(md_snapshot_endpoint(endpoint))
        self.subscribed: set[bytes] = set()
        self.unavailable = False

    def run(self, cmd: dict) -> list:
        self.seq += 1
        return self.feed.apply(self.seq, cmd, self.engine.apply(cmd))

    def publish(self, updates: list) -> None:
        if updates:
            self.pub.send_multipart(
                [md_wire.update_topic(updates[0].instrument), md_wire.encode_updates(updates)]
            )

    def heartbeat(self) -> None:
        self.pub.send_multipart(
            [md_wire.TOPIC_HEARTBEAT, md_wire.encode_heartbeat(self.seq, self.feed.instrument_seqs())]
        )

    def serve(self) -> int:
        """Answer every waiting snapshot request; how many. Also reads subscriptions."""
        n = 0
        while True:
            try:
                ev = self.pub.recv(zmq.NOBLOCK)
                if ev[:1] == b"\x01":
                    self.subscribed.add(ev[1:])
            except zmq.Again:
                break
        while True:
            try:
                ident, frame = self.snap.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return n
            ins = md_wire.decode_snapshot_ask(frame)
            snap = None if self.unavailable else self.feed.snapshot(ins)
            self.snap.send_multipart([ident, md_wire.encode_snapshot_reply(snap)])
            n += 1

    def close(self) -> None:
        self.pub.close(0)
        self.snap.close(0)


def _order(i: int) -> dict:
    side = "buy" if i % 2 else "sell"
    return {
        "op": "new",
        "instrument": 1,
        "id": i,
        "side": side,
        "price": 100 + (i % 5) - (2 if i % 2 else -2),
        "qty": 3,
    }


@pytest.fixture
def net():
    ctx = zmq.Context()
    ports = free_ports(2)
    nodes = [FakeNode(ctx, f"tcp://127.0.0.1:{p}") for p in ports]
    yield ctx, ports, nodes
    for n in nodes:
        n.close()
    ctx.term()


def _md(ctx, ports, **kw) -> MarketData:
    return MarketData(
        [(n, f"tcp://127.0.0.1:{p}") for n, p in zip("ab", ports, strict=True)], [1], ctx=ctx, **kw
    )


def _until(md: MarketData, nodes, cond, what: str, seen: list | None = None) -> None:
    deadline = time.monotonic() + 10
    while not cond():
        assert time.monotonic() < deadline, f"{what}: {md.counters()}"
        for n in nodes:
            n.serve()
        got = md.poll(0.01)
        if seen is not None:
            seen += got


def _started(md, nodes, node):
    _until(md, nodes, lambda: md.synced(1) and md_wire.update_topic(1) in node.subscribed, "synced")


def test_snapshot_then_updates_with_callbacks(net):
    ctx, ports, (a, b) = net
    for i in range(1, 6):
        a.run(_order(i))  # before the subscriber: in its snapshot
    trades: list = []
    md = _md(ctx, ports, on_trade=trades.append)
    try:
        _started(md, [a], a)
        assert md.book(1) == a.engine.depth(1)
        seen: list = []
        for i in range(6, 30):
            a.publish(a.run(_order(i)))
        _until(md, [a], lambda: md.book(1) == a.engine.depth(1), "followed", seen)
        assert seen and trades and all(t["kind"] == "trade" for t in trades)
        assert md.counters() | {"snapshots": 0} == {
            "gaps": 0,
            "checksum_failures": 0,
            "resyncs": 0,
            "snapshots": 0,
            "switches": 0,
            "decode_errors": 0,
        }
    finally:
        md.close()


def test_a_dropped_frame_is_a_gap_and_a_new_snapshot(net):
    ctx, ports, (a, b) = net
    md = _md(ctx, ports)
    try:
        _started(md, [a], a)
        a.publish(a.run(_order(1)))
        a.run(_order(2))  # lost on the way
        a.publish(a.run(_order(3)))
        _until(md, [a], lambda: md.resyncs == 1 and md.synced(1), "resynced")
        assert md.gaps == 1 and md.book(1) == a.engine.depth(1)
    finally:
        md.close()


def test_a_forged_checksum_is_a_mismatch_and_a_new_snapshot(net):
    ctx, ports, (a, b) = net
    md = _md(ctx, ports)
    try:
        _started(md, [a], a)
        ups = a.run(_order(1))
        ups[0] = ups[0]._replace(checksum=ups[0].checksum ^ 1)
        a.publish(ups)
        _until(md, [a], lambda: md.resyncs == 1 and md.synced(1), "resynced")
        assert md.checksum_failures == 1 and md.book(1) == a.engine.depth(1)
    finally:
        md.close()


def test_garbage_is_counted_and_skipped(net):
    ctx, ports, (a, b) = net
    md = _md(ctx, ports)
    try:
        _started(md, [a], a)
        a.pub.send_multipart([md_wire.update_topic(1), b"\x07" * 64])
        a.pub.send_multipart([md_wire.update_topic(1), b"short"])
        a.publish(a.run(_order(1)))
        _until(md, [a], lambda: md.book(1) == a.engine.depth(1) and md.decode_errors == 2, "skipped garbage")
        assert md.gaps == 0 and md.checksum_failures == 0
    finally:
        md.close()


def test_a_lost_tail_is_found_by_the_heartbeat(net):
    ctx, ports, (a, b) = net
    md = _md(ctx, ports)
    try:
        _started(md, [a], a)
        a.run(_order(1))  # its updates never arrive, and nothing follows them but a heartbeat
        a.heartbeat()
        _until(md, [a], lambda: md.resyncs == 1 and md.synced(1), "resynced")
        assert md.gaps == 1 and md.book(1) == a.engine.depth(1)
    finally:
        md.close()


def test_a_silent_node_is_left_for_the_next_and_an_unavailable_one_too(net):
    ctx, ports, (a, b) = net
    for i in range(1, 4):
        for n in (a, b):
            n.run(_order(i))
    md = _md(ctx, ports, silence=0.3)
    try:
        _started(md, [a, b], a)
        assert md.node == "a"
        # a says nothing: b, from its snapshot
        _until(md, [a, b], lambda: md.node == "b" and md.synced(1), "moved to b")
        assert md.switches == 1 and md.book(1) == b.engine.depth(1)
        b.publish(b.run(_order(4)))
        _until(md, [b], lambda: md.book(1) == b.engine.depth(1), "follows b")
        a.unavailable = True  # b falls silent; a answers that it cannot serve: back to b
        _until(md, [a, b], lambda: md.switches >= 3, "left a, which cannot serve")
    finally:
        md.close()


def test_a_heartbeat_behind_the_book_resyncs_and_one_older_than_the_snapshot_is_ignored(net):
    ctx, ports, (a, b) = net
    for i in range(1, 5):
        a.run(_order(i))
    md = _md(ctx, ports)
    try:
        _started(md, [a], a)
        iseq = md.local.instrument_seq(1)
        assert iseq > 0
        # Sent before the snapshot it was loaded from (seq below it): says nothing.
        a.pub.send_multipart([md_wire.TOPIC_HEARTBEAT, md_wire.encode_heartbeat(a.seq - 1, [(1, iseq - 1)])])
        a.heartbeat()  # the true one, after it on the same connection
        _until(md, [a], lambda: md.heard_seq == a.seq, "heard")
        assert md.resyncs == 0 and md.synced(1)
        # The node's history was cut back: its feed is behind the book.
        a.pub.send_multipart([md_wire.TOPIC_HEARTBEAT, md_wire.encode_heartbeat(a.seq + 1, [(1, iseq - 1)])])
        _until(md, [a], lambda: md.resyncs == 1 and md.synced(1), "resynced")
    finally:
        md.close()


def test_the_depth_view_shows_the_verified_book(net):
    from rich.console import Console

    from replication.ops.md_view import _render

    ctx, ports, (a, b) = net
    for i in range(1, 7):
        a.run(_order(i))
    md = _md(ctx, ports)
    try:
        _started(md, [a], a)
        console = Console(record=True, width=120)
        console.print(_render(md, [1], {1: {"qty": 3, "price": 101, "aggressor": "buy"}}))
        text = console.export_text()
    finally:
        md.close()
    bids, asks = a.engine.depth(1)
    assert "instrument 1 (synced" in text and "last trade 3 @ 101" in text
    assert all(str(price) in text for price, _, _ in bids + asks)
