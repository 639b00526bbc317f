"""Execution reports and queries between the sans-IO machines: the primary's ``ClientService``
and the client's ``ReportFeed`` / ``PendingQueries``, on the tiny in-process network.

What each test pins: reports reach only their owner, each exactly once and in number
order; nothing uncommitted is told (a fetch or query waits for the standby's ack);
fail-over and a restart with ``resume_from`` lose and repeat nothing; a fenced
session is refused; reports past the window are ``GONE`` and the feed goes on.
"""

from __future__ import annotations

import pytest
from _net import cmd, group

from replication.protocol import wire
from replication.protocol.client_core import ClientCore
from replication.protocol.reports import EVENT_WORDS, REPORT_SIZE, ReportsGone
from replication.protocol.session import open_command

MAKER, TAKER = 7, 8


def client(net, addr: bytes, cid: int, resume_from: int | None = None, nonce: int = 0) -> ClientCore:
    c = ClientCore(cid, ["a", "b"], 1, retry_timeout=0.02, reports=True, resume_from=resume_from)
    net.machines[addr] = c
    net.emit(addr, c.open(nonce or cid, net.now))
    net.run_until(lambda: c.session and not c.opening)
    return c


def send(net, addr: bytes, c: ClientCore, command: bytes) -> int:
    rid, out = c.submit(command, net.now)
    net.emit(addr, out)
    return rid


def taken(c: ClientCore, net) -> list[tuple]:
    recs, out = c.feed.take(net.now)
    net.emit(next(a for a, m in net.machines.items() if m is c), out)
    return [
        EVENT_WORDS.unpack(r)[:2] + (EVENT_WORDS.unpack(r)[8], r[62]) for r in recs
    ]  # seq, id, kind, role


def flow(net, maker: ClientCore, taker: ClientCore, n: int, base: int = 0) -> None:
    """``n`` resting sells by the maker, each hit by a taker's buy."""
    for i in range(1, n + 1):
        send(net, b"m", maker, cmd(base + 2 * i, "sell", 100, 5))
        net.run(0.003)
        send(net, b"t", taker, cmd(base + 2 * i + 1, "buy", 100, 5))
        net.run(0.003)


def test_each_client_gets_its_own_reports_once_in_order_including_the_makers_fills():
    net = group()
    net.run(0.05)
    maker, taker = client(net, b"m", MAKER), client(net, b"t", TAKER)
    flow(net, maker, taker, 5)
    net.run(0.05)
    mine, theirs = taken(maker, net), taken(taker, net)
    assert [k for _, _, k, _ in mine] == [1, 3] * 5 and all(r == 2 for _, _, k, r in mine if k == 3)
    assert [k for _, _, k, _ in theirs] == [1, 3] * 5 and all(r == 1 for _, _, k, r in theirs if k == 3)
    assert [s for s, *_ in mine] == sorted(s for s, *_ in mine)
    assert {i for _, i, k, _ in mine if k == 1} == {2, 4, 6, 8, 10}
    assert maker.feed.after == 10 and taker.feed.after == 10
    assert net.machines["a"].replica.reports.last_report(MAKER) == 10


def test_a_fetch_and_a_query_wait_for_the_standbys_ack():
    net = group()
    net.run(0.05)
    maker = client(net, b"m", MAKER)
    net.drop = lambda src, dest, msg: src == "b" and type(msg) in (wire.Ack, wire.Heartbeat)
    send(net, b"m", maker, cmd(1, "sell", 100, 5))
    net.step()  # sequenced (a query read before that would rightly answer "unknown")
    qid, out = maker.queries.ask(wire.QUERY_ORDER, net.now, instrument=1, order_id=1)
    net.emit(b"m", out)
    for _ in range(10):
        net.step()
    a = net.machines["a"]
    assert a.replica.seq > a.current_role.commit  # applied, not committed
    assert maker.feed.ready == [] and qid not in maker.queries.done
    net.drop = None
    net.run(0.02)
    assert len(maker.feed.ready) == 1
    assert maker.queries.done[qid]["status"] == "open"


def test_queries_answer_order_states_and_open_orders_from_replicated_state():
    net = group()
    net.run(0.05)
    maker, taker = client(net, b"m", MAKER), client(net, b"t", TAKER)
    send(net, b"m", maker, cmd(1, "sell", 100, 5))
    send(net, b"m", maker, cmd(2, "sell", 101, 5))
    net.run(0.01)
    send(net, b"t", taker, cmd(3, "buy", 100, 2))
    net.run(0.01)

    def ask(c, addr, kind, **kw):
        qid, out = c.queries.ask(kind, net.now, **kw)
        net.emit(addr, out)
        net.run_until(lambda: qid in c.queries.done, 1.0)
        return c.queries.done.pop(qid)

    one = ask(maker, b"m", wire.QUERY_ORDER, instrument=1, order_id=1)
    assert (one["status"], one["open"], one["filled"]) == ("open", 3, 2)
    assert ask(taker, b"t", wire.QUERY_ORDER, instrument=1, order_id=3)["status"] == "filled"
    assert ask(maker, b"m", wire.QUERY_ORDER, instrument=2, order_id=1)["status"] == "unknown"
    assert [o["id"] for o in ask(maker, b"m", wire.QUERY_OPEN_ORDERS)] == [1, 2]
    assert ask(maker, b"m", wire.QUERY_OPEN_ORDERS, account=5) == []
    assert ask(taker, b"t", wire.QUERY_OPEN_ORDERS) == []


def test_a_standby_redirects_and_an_idle_fetch_is_answered_empty_after_report_poll():
    net = group(report_poll=0.05)
    net.run(0.05)
    b = net.machines["b"]
    out = b.handle(b"x", wire.ReportFetch(MAKER, 0, 0), net.now)
    assert out[0].msg.status == wire.NOT_PRIMARY and out[0].msg.leader == "a"
    out = b.handle(b"x", wire.Query(MAKER, 0, 1, wire.QUERY_OPEN_ORDERS), net.now)
    assert out[0].msg.status == wire.NOT_PRIMARY
    maker = client(net, b"m", MAKER)
    fetches = maker.counters["report_fetches"]
    net.run(0.2)  # idle: every parked fetch is answered empty and asked again
    assert 3 <= maker.counters["report_fetches"] - fetches <= 5
    assert maker.counters.get("report_fetch_timeouts", 0) == 0 and maker.primary == "a"


def test_reports_survive_fail_over_exactly_once():
    net = group()
    net.run(0.05)
    maker, taker = client(net, b"m", MAKER), client(net, b"t", TAKER)
    flow(net, maker, taker, 4)
    net.down.add("a")
    send(net, b"t", taker, cmd(100, "buy", 100, 5))  # re-sent to b once it serves
    net.run_until(lambda: net.machines["b"].role == wire.ROLE_PRIMARY, 2.0)
    flow(net, maker, taker, 4, base=200)
    net.run(3.0)  # the maker's fetch to a times out; it follows the group to b
    mine = taken(maker, net)
    seqs = [s for s, *_ in mine]
    assert seqs == sorted(seqs) and len(mine) == len(set(mine)) == 16
    assert maker.feed.after == net.machines["b"].replica.reports.last_report(MAKER) == 16


def test_a_restarted_client_resumes_after_the_last_seq_it_saw():
    net = group()
    net.run(0.05)
    maker, taker = client(net, b"m", MAKER), client(net, b"t", TAKER)
    flow(net, maker, taker, 3)
    net.run(0.02)
    first = taken(maker, net)
    last_seq = first[3][0]  # it read four reports, then crashed
    del net.machines[b"m"]
    flow(net, client(net, b"m2", 99), taker, 0)
    again = client(net, b"m", MAKER, resume_from=last_seq, nonce=77)
    net.run(0.05)
    rest = taken(again, net)
    assert rest == [r for r in first if r[0] > last_seq]
    assert maker.session < again.session


def test_a_fenced_session_is_refused_its_reports_and_queries():
    net = group()
    net.run(0.05)
    old = client(net, b"m", MAKER)
    new = client(net, b"n", MAKER, nonce=99)
    assert new.session > old.session
    out = net.machines["a"].handle(b"m", wire.ReportFetch(MAKER, old.session, 0), net.now)
    assert out[0].msg.status == wire.FENCED
    qid, out = old.queries.ask(wire.QUERY_OPEN_ORDERS, net.now)
    net.emit(b"m", out)
    net.run(0.01)
    assert old.fenced and qid not in old.queries.done


def test_reports_past_the_window_are_gone_once_then_the_feed_goes_on_from_the_oldest_kept():
    net = group(report_window=4)
    net.run(0.05)
    maker = client(net, b"m", MAKER)
    maker.feed.running = False  # it stops reading: the group trims its reports
    for i in range(1, 13):
        send(net, b"m", maker, cmd(i, "sell", 100 + i, 1))
    net.run(0.05)
    maker.feed.running = False
    maker.feed.out = None
    net.emit(b"m", maker.feed.start(net.now, 0))
    net.run(0.02)
    assert maker.feed.gone and maker.counters["report_fetches"] >= 1
    detail, out = maker.feed.take_gone(net.now)
    assert "retention window" in detail
    net.emit(b"m", out)
    net.run(0.02)
    book = net.machines["a"].replica.reports
    with pytest.raises(ReportsGone) as exc:
        book.reports_after(MAKER, 0, 10**6, 10)
    first, last = exc.value.oldest, book.last_report(MAKER)
    recs, _ = maker.feed.take(net.now)
    assert len(recs) == last - first + 1 and maker.feed.after == last == 12
    assert [EVENT_WORDS.unpack(r)[1] for r in recs] == list(range(first, 13))


def test_reports_for_another_client_id_or_past_a_missing_one_are_never_taken():
    net = group()
    net.run(0.05)
    maker = client(net, b"m", MAKER)
    send(net, b"m", maker, cmd(1, "sell", 100, 5))
    net.run(0.02)
    assert len(maker.feed.ready) == 1 and maker.feed.after == 1
    rec = bytes(REPORT_SIZE)
    out = maker.handle("a", wire.Reports(TAKER, maker.session, wire.OK, 2, "", "", rec), net.now)
    assert out == [] and maker.counters["stale_reports"] == 1
    maker.handle("a", wire.Reports(MAKER, maker.session - 1, wire.OK, 2, "", "", rec), net.now)
    assert maker.counters["stale_reports"] == 2
    maker.handle("a", wire.Reports(MAKER, maker.session, wire.OK, 5, "", "", rec), net.now)
    assert maker.counters["report_gaps_refused"] == 1
    maker.handle("a", wire.Reports(MAKER, maker.session, wire.OK, 1, "", "", rec), net.now)
    assert maker.counters["duplicate_reports"] == 1
    assert len(maker.feed.ready) == 1 and maker.feed.after == 1


def test_an_open_entry_reports_nothing_to_its_client():
    net = group()
    net.run(0.05)
    c = client(net, b"m", MAKER)
    net.run(0.02)
    assert c.feed.ready == [] and net.machines["a"].replica.reports.last_report(MAKER) == 0
    assert open_command(1)  # the open's command is an engine record the book skips


def test_a_primary_that_steps_down_sends_its_parked_fetches_to_the_new_leader_at_once():
    net = group()
    net.run(0.05)
    client(net, b"m", MAKER)
    net.run(0.01)
    a = net.machines["a"]
    assert MAKER in a.current_role.service.parked
    out = a.step_down("b", a.epoch + 1, net.now)
    refusals = [o.msg for o in out if type(o.msg) is wire.Reports]
    assert [(r.client_id, r.status, r.leader) for r in refusals] == [(MAKER, wire.NOT_PRIMARY, "b")]


def test_a_client_holding_reports_the_primary_does_not_have_is_told_and_goes_on_from_its_last_seq():
    """After an async fail-over the new primary may lack entries whose reports the client took;
    its numbers then name other reports. The fetch carries the seq of the client's last report."""
    net = group()
    net.run(0.05)
    maker = client(net, b"m", MAKER)
    for i in range(1, 4):
        send(net, b"m", maker, cmd(i, "sell", 100 + i, 1))
    net.run(0.02)
    took = taken(maker, net)
    assert [s for s, *_ in took] == [2, 3, 4] and maker.feed.last_seq == 4
    a = net.machines["a"]
    # A client whose report 3 was of entry 3 (here: our report 3 is of entry 4): not our history.
    out = a.handle(b"m", wire.ReportFetch(MAKER, maker.session, 3, 3), net.now)
    gone = out[0].msg
    assert gone.status == wire.GONE and "lost" in gone.detail and gone.first == 3  # ours after seq 3: from 3
    out = a.handle(b"m", wire.ReportFetch(MAKER, maker.session, 9, 9), net.now)  # more than we have
    assert out[0].msg.status == wire.GONE
    out = a.handle(b"m", wire.ReportFetch(MAKER, maker.session, 3, 4), net.now)
    assert out == []  # the same history: parked until there is more


def test_a_re_sent_open_of_a_session_fenced_since_is_answered_fenced_not_opened_again():
    """An open whose answer was lost, re-sent after a newer session of its client id opened,
    must not open again (that would fence the newer, live client): it is answered FENCED."""
    net = group()
    net.run(0.05)
    a = net.machines["a"]
    old = client(net, b"m", MAKER, nonce=11)
    new = client(net, b"n", MAKER, nonce=22)
    assert new.session > old.session and a.replica.fenced_open(MAKER, 11)
    out = a.handle(b"m", wire.Request(MAKER, 0, open_command(11)), net.now)
    assert [(o.msg.status, o.msg.request_id) for o in out] == [(wire.FENCED, 0)]
    net.run(0.02)
    assert a.replica.sessions[MAKER].session == new.session  # the newer session still holds the id
    again = type(a.replica).restore(a.replica.snapshot(), a.engine_factory)
    assert again.old_sessions == a.replica.old_sessions and again.fenced_open(MAKER, 11)


def test_an_isolated_primary_does_not_tell_gone_from_reports_it_has_not_committed():
    """GONE tells the client to go on from the oldest report kept: only once that report is
    committed, else a fail-over could take the numbering back (sim seed 84, window 3)."""
    net = group(report_window=3)
    net.run(0.05)
    maker = client(net, b"m", MAKER)
    net.drop = lambda src, dest, msg: src == "b" and type(msg) in (wire.Ack, wire.Heartbeat)
    for i in range(1, 9):
        send(net, b"m", maker, cmd(i, "sell", 100 + i, 1))
        net.step()
    a = net.machines["a"]
    assert a.current_role.commit < a.replica.seq
    out = a.handle(b"m", wire.ReportFetch(MAKER, maker.session, 0, 0), net.now)
    assert out == [] and a.counters["reports_gone_deferred"] >= 1


def test_a_client_whose_re_sent_open_is_answered_fenced_stops_opening_and_is_fenced():
    net = group()
    net.run(0.05)
    old = ClientCore(MAKER, ["a", "b"], 1, retry_timeout=0.02)
    out = old.open(11, net.now)  # its answer will be lost
    net.machines[b"m"] = old
    net.drop = lambda src, dest, msg: dest == b"m"
    net.emit(b"m", out)
    net.run(0.01)
    net.drop = None
    client(net, b"n", MAKER, nonce=22)  # a newer session of the id
    net.run(1.0)  # the old core re-sends its open (to a, once no longer suspected): answered FENCED
    assert old.fenced and not old.opening and not old.pending
