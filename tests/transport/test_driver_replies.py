"""The node driver without sockets: reply bundling (``NodeDriver.perform``/``_send_replies``), durability
order and the pass budget."""

from __future__ import annotations

from replication.protocol import trust, wire
from replication.storage.journal import MemoryJournal
from replication.transport import loop
from replication.transport import node_driver as node


class _Sock:
    def __init__(self) -> None:
        self.sent: list = []

    def send(self, frame, flags=0) -> None:
        self.sent.append(frame)

    def send_multipart(self, parts, flags=0) -> None:
        self.sent.append(tuple(parts))


def _driver() -> node.NodeDriver:
    d = object.__new__(node.NodeDriver)  # no sockets, no machine: only what perform() reads
    d.counters, d.reply_timer, d.pub, d.pub_topics, d.journal = {}, None, None, set(), MemoryJournal()
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


class _Inbound(_Sock):
    """A ROUTER with frames waiting: peer heartbeats."""

    def __init__(self, frames: list) -> None:
        super().__init__()
        self.frames = frames

    def recv_multipart(self, flags=0):
        import zmq

        if not self.frames:
            raise zmq.Again()
        return self.frames.pop(0)


class _Machine:
    is_primary = False
    pending = ()

    def __init__(self) -> None:
        self.handled, self.ticks = 0, 0

    def handle(self, src, msg, now):
        self.handled += 1
        return []

    def tick(self, now):
        self.ticks += 1
        return []


def test_a_pass_stops_draining_when_its_time_budget_is_spent(monkeypatch):
    """Frames left after PASS_BUDGET of handling wait for the next pass, so the pass's
    outputs (acks, heartbeats) are not held behind a whole backlog. The clock is faked:
    each reading advances it by a quarter of the budget."""
    clock = [100.0]

    def monotonic() -> float:
        clock[0] += loop.PASS_BUDGET / 4
        return clock[0]

    monkeypatch.setattr(loop.time, "monotonic", monotonic)
    hb = wire.encode(wire.Heartbeat(3, 9, "a", wire.ROLE_PRIMARY))
    d = _driver()
    d.router = _Inbound([[b"peer:a", hb] for _ in range(100)])
    d.machine, d.monitors = _Machine(), {}
    d.policy = trust.Policy("b", ["a", "b"])  # peer a is a node of this group

    class _Poller:
        def poll(self, timeout):
            return [(d.router, 1)] if d.router.frames else []

    d.poller = _Poller()
    d.run_once(0)
    first = d.machine.handled
    assert 1 <= first < 10 and d.machine.ticks == 1 and d.counters["pass_budget_spent"] == 1
    while d.router.frames:
        d.run_once(0)
    assert d.machine.handled == 100  # nothing dropped: the backlog drains over several passes


def test_only_sends_the_machine_marked_leave_before_the_journal_sync():
    """Durability is the machine's word (``wire.Send.needs_sync``), not the message type's: a Send
    with it cleared goes out while the journal is still dirty, every other output after the sync."""
    from replication.storage.journal import MemoryJournal

    journal = MemoryJournal("batch")
    journal.defer_sync = True
    journal.append([wire.Entry(3, 1, 7, 1, 1, bytes(80))])
    d = _driver()
    d.journal = journal
    seen: list = []

    class _Watching(_Sock):
        def send(self, frame, flags=0) -> None:
            seen.append((wire.decode(frame).seq, journal.dirty))

    d.dealers = {"b": _Watching()}
    early = wire.Send("b", wire.Heartbeat(3, 1, "a", wire.ROLE_PRIMARY), needs_sync=False)
    late = wire.Send("b", wire.Heartbeat(3, 2, "a", wire.ROLE_PRIMARY))
    also_early = wire.Send("b", wire.Heartbeat(3, 3, "a", wire.ROLE_PRIMARY), needs_sync=False)
    d.perform([early, late, also_early])
    assert seen == [(1, True), (2, False), (3, False)] and not journal.dirty
    d.perform([wire.Send("b", wire.Heartbeat(3, 4, "a", wire.ROLE_PRIMARY))])
    assert seen[-1] == (4, False)  # nothing deferred: nothing to wait for
