"""The client core, sans-IO, with explicit fake times: ids, redirects, timeouts, re-sends."""

from __future__ import annotations

import pytest

from replication.protocol import wire
from replication.protocol.client_core import ClientCore, Done

CMD = bytes(80)


def sends(outs):
    return [(o.dest, o.msg.request_id) for o in outs if isinstance(o, wire.Send)]


def ok(rid, events=b""):
    return wire.Reply(7, rid, wire.OK, 1, rid, "a", events)


def test_ids_are_monotonic_and_first_send_goes_to_first_node():
    c = ClientCore(7, ["a", "b"], first_request_id=100)
    r1, o1 = c.submit(CMD, 0.0)
    r2, o2 = c.submit(CMD, 0.0)
    assert (r1, r2) == (100, 101) and sends(o1 + o2) == [("a", 100), ("a", 101)]
    with pytest.raises(ValueError):
        ClientCore(0, ["a"])


def test_reply_completes_once():
    c = ClientCore(7, ["a", "b"])
    rid, _ = c.submit(CMD, 0.0)
    (done,) = c.handle("a", ok(rid), 0.001)
    assert isinstance(done, Done) and done.request_id == rid and not c.pending
    assert c.handle("b", ok(rid), 0.002) == []  # a re-send's twin answer is ignored


def test_not_primary_follows_the_hint_and_resends_all():
    c = ClientCore(7, ["a", "b"])
    r1, _ = c.submit(CMD, 0.0)
    r2, _ = c.submit(CMD, 0.0)
    outs = c.handle("a", wire.Reply(7, r1, wire.NOT_PRIMARY, 2, 0, "b"), 0.001)
    assert sends(outs) == [("b", r1), ("b", r2)] and c.primary == "b"


def test_timeout_rotates_and_resends_in_order():
    c = ClientCore(7, ["a", "b", "c"], retry_timeout=0.05)
    rids = [c.submit(CMD, 0.0)[0] for _ in range(3)]
    assert c.tick(0.01) == []
    outs = c.tick(0.06)
    assert sends(outs) == [("b", r) for r in rids] and c.primary == "b"


def test_hint_pointing_at_a_lost_node_is_not_followed():
    c = ClientCore(7, ["a", "b"], retry_timeout=0.05)
    rid, _ = c.submit(CMD, 0.0)
    c.tick(0.06)  # a timed out -> b
    # b has not promoted yet and still names a: stay on b, retry after a short backoff.
    assert c.handle("b", wire.Reply(7, rid, wire.NOT_PRIMARY, 1, 0, "a"), 0.061) == []
    assert c.primary == "b"
    assert sends(c.tick(0.07)) == [("b", rid)]
    (done,) = c.handle("b", ok(rid), 0.071)
    assert done.request_id == rid


def test_connection_loss_hint_switches_at_once():
    c = ClientCore(7, ["a", "b"])
    rid, _ = c.submit(CMD, 0.0)
    outs = c.handle("a", wire.PeerDown("a"), 0.001)
    assert sends(outs) == [("b", rid)]


def test_unavailable_moves_on_and_expired_completes():
    c = ClientCore(7, ["a", "b"])
    rid, _ = c.submit(CMD, 0.0)
    outs = c.handle("a", wire.Reply(7, rid, wire.UNAVAILABLE, 1, 0, ""), 0.001)
    assert sends(outs) == [("b", rid)]
    (done,) = c.handle("b", wire.Reply(7, rid, wire.EXPIRED, 1, 0, "b"), 0.002)
    assert done.reply.status == wire.EXPIRED


def test_wrong_client_id_ignored():
    c = ClientCore(7, ["a"])
    rid, _ = c.submit(CMD, 0.0)
    assert c.handle("a", wire.Reply(8, rid, wire.OK), 0.001) == [] and c.pending


def test_a_slow_request_to_a_live_primary_is_resent_alone():
    c = ClientCore(7, ["a", "b"], retry_timeout=0.05)
    slow, _ = c.submit(CMD, 0.0)
    fast, _ = c.submit(CMD, 0.04)
    c.handle("a", ok(fast), 0.045)  # the primary answers: it is alive
    outs = c.tick(0.06)  # the slow one is past the timeout, but a replied 15 ms ago
    assert sends(outs) == [("a", slow)] and c.primary == "a" and c.counters.get("timeouts") is None
    assert c.tick(0.07) == []  # backed off
    outs = c.tick(0.30)  # then a goes silent for good: fail over, re-send everything
    assert c.primary == "b" and sends(outs) == [("b", slow)]


def test_tick_cost_does_not_scan_pending():
    c = ClientCore(7, ["a", "b"], retry_timeout=0.05)
    for i in range(1000):
        c.submit(CMD, i * 1e-5)
    assert c.tick(0.02) == [] and len(c.timers) == 1000


def test_submit_many_is_submit_one_by_one():
    cmds = [bytes([i]) * wire.COMMAND_SIZE for i in range(5)]
    one, many = ClientCore(7, ["a", "b"], 100), ClientCore(7, ["a", "b"], 100)
    sends = [one.submit(c, 1.0)[1][0] for c in cmds]
    target, reqs = many.submit_many(cmds, 1.0)
    assert target == "a" and reqs == [s.msg for s in sends] and all(s.dest == "a" for s in sends)
    assert many.request_state() == one.request_state() and many.next_id == one.next_id == 105
    # One timer item stands for the window: the re-sends are those of one item per request.
    assert len(many.timers) == 1
    assert many.tick(101.0) == one.tick(101.0) and many.pending == one.pending


def test_not_entitled_is_final_from_any_node_and_never_resent():
    """A request the key may not send is answered NOT_ENTITLED (never sequenced): done, like OK."""
    c = ClientCore(7, ["a", "b"], retry_timeout=0.05)
    r1, _ = c.submit(CMD, 0.0)
    r2, _ = c.submit(CMD, 0.0)
    refusal = wire.Reply(7, r1, wire.NOT_ENTITLED, events=bytes(wire.EVENT_SIZE))
    (done,) = c.handle("a", refusal, 0.001)
    assert done == Done(r1, refusal) and list(c.pending) == [r2]
    assert c.counters.get("redirects", 0) == 0
    assert sends(c.tick(0.06)) == [("b", r2)]  # only the unanswered one is re-sent
    # In a bundle among OK answers: each is done, in order.
    r3, _ = c.submit(CMD, 0.07)
    done_now: dict = {}
    assert c.handle_replies("b", [ok(r2), wire.Reply(7, r3, wire.NOT_ENTITLED)], 0.08, done_now) == []
    assert list(done_now) == [r2, r3] and done_now[r3].status == wire.NOT_ENTITLED and not c.pending


def test_a_query_refused_not_entitled_is_final():
    from replication.protocol.client_service import QueryRefused

    c = ClientCore(7, ["a", "b"])
    qs = c.queries
    qid, outs = qs.ask(wire.QUERY_OPEN_ORDERS, 0.0, account=3)
    assert [o.msg for o in outs] == [wire.Query(7, c.session, qid, wire.QUERY_OPEN_ORDERS, 0, 0, 3, True)]
    refusal = wire.QueryReply(7, qid, wire.NOT_ENTITLED, "", b'{"status": "not_entitled", "account": 3}')
    assert qs.on_reply("a", refusal, 0.001) == []
    assert qs.done == {qid: QueryRefused("not_entitled", {"status": "not_entitled", "account": 3})}
    assert not qs.pending and qs.tick(1.0) == []  # never asked again
