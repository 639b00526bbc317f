"""Primary logic, sans-IO: sync/async release, batching, dedupe, refusals."""

from __future__ import annotations

from _net import add_client, cmd, group

from replication.protocol import wire
from replication.protocol.replica import EXPIRED, Replica


def started(mode="sync", **kw):
    net = group(mode, **kw)
    c = add_client(net, b"c1", 7, ["a", "b"])
    net.run_until(lambda: net.machines["b"].joined)
    return net, c


def submit(net, c, n, first=1):
    rids = []
    for i in range(first, first + n):
        rid, outs = c.submit(cmd(i, "buy" if i % 2 else "sell", 100 + i % 3), net.now)
        net.emit(b"c1", outs)
        rids.append(rid)
    return rids


def done_ids(net):
    return [d.request_id for d in net.done.get(b"c1", [])]


def test_sync_reply_waits_for_standby_ack():
    net, c = started("sync")
    held = True
    net.drop = lambda s, d, m: held and s == "b" and isinstance(m, (wire.Ack, wire.Heartbeat))
    submit(net, c, 3)
    net.run(0.01)  # less than the solo timeout
    a = net.machines["a"]
    assert a.replica.seq == 3 and done_ids(net) == [] and len(a.waiting) == 3
    held = False
    net.run(0.01)
    assert sorted(done_ids(net)) == [1, 2, 3]
    assert net.machines["b"].replica.digest == a.replica.digest


def test_async_replies_at_once_and_reports_lag():
    net, c = started("async")
    net.down.add("b")
    submit(net, c, 4)
    net.step()
    assert sorted(done_ids(net)) == [1, 2, 3, 4]
    assert net.machines["a"].status()["lag"] == 4


def test_one_batch_one_append_one_entries_message():
    net, c = started("sync")
    appends = []
    j = net.journals["a"]
    orig = j.append
    j.append = lambda es: (appends.append(len(es)), orig(es))
    sent = []
    before = net.emit

    def spy(src, outputs):
        sent.extend(
            o for o in outputs if isinstance(o, wire.Send) and isinstance(o.msg, wire.Entries) and src == "a"
        )
        before(src, outputs)

    net.emit = spy
    submit(net, c, 50)
    net.step()
    assert appends[0] == 50 and len([s for s in sent if s.dest == "b"]) == 1
    net.run(0.005)
    assert len(done_ids(net)) == 50


def test_resent_request_is_not_executed_twice():
    net, c = started("sync")
    submit(net, c, 2)
    net.run(0.01)
    first = {d.request_id: d.reply.events for d in net.done[b"c1"]}
    a = net.machines["a"]
    seq = a.replica.seq
    # The client re-sends request 1 (as after a lost reply): same result, no new seq.
    net.emit(b"c1", [wire.Send("a", wire.Request(7, 1, cmd(1)))])
    replies = []
    net.machines[b"x"] = type(
        "Sink", (), {"handle": lambda self, s, m, now: replies.append(m) or [], "tick": lambda self, now: []}
    )()
    net.emit(b"x", [wire.Send("a", wire.Request(7, 1, cmd(1)))])
    net.run(0.005)
    assert a.replica.seq == seq
    assert replies and replies[0].status == wire.OK and replies[0].events == first[1]
    assert a.counters["requests_deduplicated"] >= 1


def test_duplicate_in_same_batch_is_sequenced_once():
    net, c = started("async")
    req = wire.Request(7, 500, cmd(500))
    net.emit(b"c1", [wire.Send("a", req), wire.Send("a", req)])
    net.step()
    assert net.machines["a"].replica.seq == 1


def test_dedupe_window_expires_old_results():
    r = Replica(dedupe_window=2)
    for seq, rid in enumerate([1, 2, 3], start=1):
        r.execute(1, seq, 9, rid, cmd(rid))
    assert r.lookup(9, 1) is EXPIRED
    assert r.lookup(9, 3)[0] == 3 and r.lookup(9, 4) is None and r.lookup(8, 1) is None
    r2 = Replica.restore(r.snapshot())
    assert r2.results == r.results and r2.digest == r.digest and r2.seq == 3


def test_standby_refuses_with_leader_hint():
    net, c = started("sync")
    replies = []
    net.machines[b"x"] = type(
        "Sink", (), {"handle": lambda self, s, m, now: replies.append(m) or [], "tick": lambda self, now: []}
    )()
    net.emit(b"x", [wire.Send("b", wire.Request(7, 1, cmd(1)))])
    net.deliver_all()
    assert replies[0].status == wire.NOT_PRIMARY and replies[0].leader == "a"


def test_garbage_command_is_a_reject_not_a_crash():
    net, c = started("async")
    rid, outs = c.submit(bytes(range(80)), net.now)
    net.emit(b"c1", outs)
    net.step()
    import numpy as np

    from matching import EVENT_DTYPE, Rejected, events_from_array

    evs = events_from_array(np.frombuffer(net.done[b"c1"][0].reply.events, dtype=EVENT_DTYPE))
    assert net.machines["a"].replica.seq == 1 and isinstance(evs[0], Rejected)
    assert [d.request_id for d in net.done[b"c1"]] == [rid]  # the reply is to that request


def test_published_stream_carries_events():
    net, c = started("async")
    submit(net, c, 3)
    net.step()
    pub = [m for m in net.published if isinstance(m, wire.Entries)]
    assert pub and len(pub[0].events) == len(pub[0].entries) == 3


def test_sync_primary_runs_solo_without_standby_then_pairs_again():
    net, c = started("sync")
    net.down.add("b")
    net.run(0.1)  # b is silent past the timeout
    submit(net, c, 3)
    net.run(0.02)
    a, w = net.machines["a"], net.machines["witness"]
    assert sorted(done_ids(net)) == [1, 2, 3] and a.solo and w.isr == ()
    net.down.discard("b")
    submit(net, c, 2, first=4)
    net.run(0.05)
    b = net.machines["b"]
    assert b.replica.seq == 5 and not a.solo and a.isr == ["b"] and w.isr == ("b",)
    assert sorted(done_ids(net)) == [1, 2, 3, 4, 5]


def test_solo_ends_under_continuous_load():
    net, c = started("sync")
    net.down.add("b")
    net.run(0.1)
    submit(net, c, 2)
    net.run(0.01)
    assert net.machines["a"].solo
    net.down.discard("b")
    for i in range(30):  # new requests every step: the standby is never exactly at last_seq
        submit(net, c, 1, first=10 + i)
        net.step()
    net.run(0.01)
    assert net.machines["witness"].isr == ("b",)


def test_commit_needs_every_isr_member():
    net = group("sync", n_standbys=2)
    c = add_client(net, b"c1", 7, ["a", "b", "c"])
    net.run_until(lambda: net.machines["b"].joined and net.machines["c"].joined)
    held = True
    net.drop = lambda s, d, m: held and s == "c" and isinstance(m, (wire.Ack, wire.Heartbeat))
    submit(net, c, 2)
    net.run(0.01)  # b acked, c did not (yet): nothing is released
    assert done_ids(net) == []
    net.run(0.1)  # c stays silent past the timeout: the witness drops it from the ISR, then replies go
    a, w = net.machines["a"], net.machines["witness"]
    assert sorted(done_ids(net)) == [1, 2] and w.isr == ("b",) and a.isr == ["b"]
    held = False
    net.run(0.05)
    assert w.isr == ("b", "c")
