"""ReportFeed: where a session's report numbers begin, and the feed's invariants.

A fetch by seq (a new session's first fetch, or a resume after a restart)
does not know the client's report numbers: the answer's first number is where
they begin. Before that rule, a client id that had reports before its session
(a restart, a second session) refused every answer as a gap and fetched again
at once, forever (the simulator's seed 4 with reports).
"""

from __future__ import annotations

import struct

import pytest

from replication.protocol import wire
from replication.protocol.client_core import ClientCore
from replication.protocol.session import opened_id

NODES = ["a", "b"]


def report(seq: int, order_id: int) -> bytes:
    """A 64-byte report at ``seq`` (an accepted event of ``order_id``)."""
    return struct.pack("<QQQqqqqIBBxx", seq, order_id, 0, 100, 1, 1, 0, 1, 1, 0)


def opened_core(resume_from: int | None, open_seq: int = 10) -> tuple[ClientCore, list]:
    """A core with reports on whose session 3 opened at ``open_seq``; the fetch it sent."""
    core = ClientCore(7, NODES, reports=True, resume_from=resume_from)
    core.open(99, 0.0)
    out = core.handle("a", wire.Reply(7, opened_id(3), wire.OK, 1, open_seq, "a"), 0.0)
    return core, [o.msg for o in out if isinstance(o, wire.Send)]


@pytest.mark.parametrize("resume_from", [None, 4])
def test_the_answer_to_a_fetch_by_seq_sets_where_the_numbers_begin(resume_from):
    core, sent = opened_core(resume_from)
    fetch = sent[-1]
    assert isinstance(fetch, wire.ReportFetch) and fetch.by_seq
    assert fetch.after_seq == (10 if resume_from is None else 4)
    # The client id had 6 reports before: the group answers from number 7.
    out = core.handle("a", wire.Reports(7, 3, wire.OK, 7, records=report(11, 1) + report(12, 2)), 0.001)
    records, _ = core.feed.take(0.001)
    assert records == [report(11, 1), report(12, 2)]
    assert core.feed.after == 8
    # From now on by number, past what it took.
    nxt = [o.msg for o in out if isinstance(o, wire.Send)][-1]
    assert isinstance(nxt, wire.ReportFetch) and not nxt.by_seq and nxt.after == 8


def test_once_numbered_a_duplicate_is_dropped_and_a_gap_refused():
    core, _ = opened_core(None)
    core.handle("a", wire.Reports(7, 3, wire.OK, 7, records=report(11, 1)), 0.001)
    core.handle("a", wire.Reports(7, 3, wire.OK, 7, records=report(11, 1)), 0.002)  # a duplicate
    core.handle("a", wire.Reports(7, 3, wire.OK, 9, records=report(13, 3)), 0.003)  # 8 missing
    records, _ = core.feed.take(0.003)
    assert records == [report(11, 1)]
    assert core.counters["duplicate_reports"] == 1
    assert core.counters["report_gaps_refused"] == 1


def test_the_feed_invariants_catch_a_number_going_back_and_reports_out_of_seq_order():
    core, _ = opened_core(None)
    core.handle("a", wire.Reports(7, 3, wire.OK, 1, records=report(11, 1) + report(12, 2)), 0.001)
    core.feed.invariants()
    core.feed.take(0.001)
    core.feed.ready.append(report(5, 9))  # older than what it saw ready before
    with pytest.raises(AssertionError, match="seq 5 after one at seq 12"):
        core.feed.invariants()
    core.feed.invariants(ordered_seqs=False)  # async: a fail-over may take reports back
    core.feed.after = 1
    with pytest.raises(AssertionError, match="went back from report 2"):
        core.feed.invariants(ordered_seqs=False)


def test_a_fetch_refused_by_a_switchover_target_does_not_send_the_client_back():
    """A paced client over a planned switchover a -> b (seen on real processes, issue 18).

    At the Handover a refuses the held requests naming b: the client moves there. b, a standby
    until the witness's grant, refuses the report fetch naming its leader a. Followed, that hint
    moved every request back to a (which only refuses them again) and the client bounced between
    the two until b served. It stays on b and fetches again shortly; once the window has passed
    (a real redirect back), the hint is followed again.
    """
    core, _ = opened_core(None)
    rid, _ = core.submit(b"x" * wire.COMMAND_SIZE, 0.001)
    core.handle("a", wire.Reports(7, 3, wire.OK, 7, records=report(11, 1)), 0.001)  # fetch now at a
    moved = core.handle("a", wire.Reply(7, rid, wire.NOT_PRIMARY, 1, 0, "b"), 0.002)
    assert core.primary == "b" and [(o.dest, o.msg.request_id) for o in moved] == [("b", rid)]
    # The fetch outstanding at a is refused too (a parked it); it follows to b.
    core.handle("a", wire.Reports(7, 3, wire.NOT_PRIMARY, 0, leader="b"), 0.0021)
    fetch = [o for o in core.tick(0.0032) if isinstance(o.msg, wire.ReportFetch)]
    assert [o.dest for o in fetch] == ["b"]
    # b, not serving yet, names a: the client stays on b, nothing is re-sent to a.
    out = core.handle("b", wire.Reports(7, 3, wire.NOT_PRIMARY, 0, leader="a"), 0.0033)
    assert core.primary == "b" and out == []
    assert core.counters["redirects_back_ignored"] == 1
    again = [o for o in core.tick(0.0054) if isinstance(o.msg, wire.ReportFetch)]
    assert [o.dest for o in again] == ["b"]
    # Past the window, b's word is taken (a serves after all): everything moves back to a.
    late = core.handle("b", wire.Reports(7, 3, wire.NOT_PRIMARY, 0, leader="a"), 0.002 + core.retry_timeout)
    assert core.primary == "a" and ("a", rid) in [(o.dest, getattr(o.msg, "request_id", None)) for o in late]
