"""The driver's reply bundling (``Driver.perform``/``_send_replies``), without sockets."""

from __future__ import annotations

from replication import node, wire


class _Sock:
    def __init__(self) -> None:
        self.sent: list = []

    def send(self, frame, flags=0) -> None:
        self.sent.append(frame)

    def send_multipart(self, parts, flags=0) -> None:
        self.sent.append(tuple(parts))


def _driver() -> node.Driver:
    d = object.__new__(node.Driver)  # no sockets, no machine: only what perform() reads
    d.counters, d.reply_timer, d.pub, d.pub_topics, d.journal = {}, None, None, set(), None
    d.router, d.dealers = _Sock(), {"b": _Sock()}
    return d


def _reply(cid: int, rid: int, n_events: int = 1) -> wire.Reply:
    return wire.Reply(cid, rid, wire.OK, 3, rid, "a", bytes(wire.EVENT_SIZE * n_events))


def test_replies_bundle_per_client_after_other_outputs():
    d = _driver()
    hb = wire.Heartbeat(3, 9, "a", wire.ROLE_PRIMARY)
    outs = [
        wire.Send(b"c1", _reply(1, 1)),
        wire.Send(b"c1", _reply(1, 2)),
        wire.Send(b"c2", _reply(2, 1)),
        wire.Send("b", hb),
        wire.Send(b"c1", _reply(1, 3)),
        wire.Send(b"c3", wire.Status(b"{}")),
    ]
    d.perform(outs)
    assert d.dealers["b"].sent == [wire.encode(hb)]
    assert d.router.sent == [
        (b"c3", wire.encode(wire.Status(b"{}"))),
        (b"c1", wire.encode(wire.Replies((_reply(1, 1), _reply(1, 2), _reply(1, 3))))),
        (b"c2", wire.encode(_reply(2, 1))),
    ]


def test_a_bundle_past_bundle_bytes_is_split_where_the_running_size_passes_it():
    d = _driver()
    per = node.BUNDLE_BYTES // 5  # events of each reply: the sixth pushes a frame past the limit
    msgs = [_reply(1, i, per // wire.EVENT_SIZE) for i in range(12)]
    d._send_replies(b"c1", msgs)
    bundles = [wire.decode(frame).replies for _, frame in d.router.sent]
    assert [len(b) for b in bundles] == [4, 4, 4] and sum(bundles, ()) == tuple(msgs)
    d.router.sent.clear()
    d._send_replies(b"c1", msgs[:3])  # under the limit: one frame
    assert [wire.decode(f) for _, f in d.router.sent] == [wire.Replies(tuple(msgs[:3]))]
