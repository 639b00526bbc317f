"""Order ownership and execution reports (``replication.protocol.reports.ReportBook``), rule by rule.

Each test feeds a replica entries from named clients and reads what each client's
reports and the order states say. The book follows the engine's events, so the
same book is built on every node (the snapshot test pins that it travels whole).
"""

from __future__ import annotations

import struct
import zlib

import pytest

from matching.commands import command_record
from replication.protocol import wire
from replication.protocol.replica import SNAP_HEAD, Replica
from replication.protocol.reports import (
    EVENT_WORDS,
    REPORT_SIZE,
    ROLE_MAKER,
    ROLE_TAKER,
    ReportBook,
    ReportsGone,
)
from replication.protocol.session import open_command

MAKER, TAKER, OTHER = 7, 8, 9


def command(**fields) -> bytes:
    fields.setdefault("op", "new")
    fields.setdefault("instrument", 1)
    return wire.pack_command(command_record(fields))


class Flow:
    """A replica fed entry by entry; ``seq`` counts them."""

    def __init__(self, **windows) -> None:
        self.replica = Replica(**windows)
        self.seq = 0

    def run(self, client_id: int, **fields) -> int:
        self.seq += 1
        self.replica.execute(1, self.seq, client_id, self.seq, command(**fields))
        return self.seq

    @property
    def book(self) -> ReportBook:
        return self.replica.reports

    def reports(self, client_id: int) -> list[tuple]:
        """``(seq, kind, id, maker, role)`` of every report the client has, oldest first."""
        _, recs = self.book.reports_after(client_id, 0, self.seq, 10**6)
        return [_brief(recs[i : i + REPORT_SIZE]) for i in range(0, len(recs), REPORT_SIZE)]


def _brief(rec: bytes) -> tuple:
    seq, oid, maker, _, _, _, _, _, kind, _ = EVENT_WORDS.unpack(rec)
    return seq, kind, oid, maker, rec[62]


ACC, REJ, TRADE, CXL, REPL = 1, 2, 3, 4, 5


def test_a_resting_orders_owner_is_told_of_its_fill_and_the_taker_of_its_own():
    f = Flow()
    s1 = f.run(MAKER, id=1, side="sell", price=100, qty=10)
    s2 = f.run(TAKER, id=2, side="buy", price=100, qty=4)
    assert f.reports(MAKER) == [(s1, ACC, 1, 0, 0), (s2, TRADE, 2, 1, ROLE_MAKER)]
    assert f.reports(TAKER) == [(s2, ACC, 2, 0, 0), (s2, TRADE, 2, 1, ROLE_TAKER)]
    assert f.book.order(1).open == 6 and f.book.order(1).filled == 4 and f.book.order(1).status == 0
    assert f.book.order(2).status == 1 and f.book.order(2).filled == 4  # filled


def test_a_trade_between_two_orders_of_one_client_is_reported_twice_once_per_side():
    f = Flow()
    f.run(MAKER, id=1, side="sell", price=100, qty=5)
    s = f.run(MAKER, id=2, side="buy", price=100, qty=5)
    assert f.reports(MAKER)[-2:] == [(s, TRADE, 2, 1, ROLE_TAKER), (s, TRADE, 2, 1, ROLE_MAKER)]


def test_a_mass_cancel_by_another_client_is_reported_to_each_orders_owner_only():
    f = Flow()
    f.run(MAKER, id=1, side="sell", price=100, qty=5, account=3)
    f.run(TAKER, id=2, side="sell", price=101, qty=5, account=4)
    s = f.run(OTHER, op="mass_cancel", account=3)
    assert f.reports(MAKER)[-1] == (s, CXL, 1, 0, 0)
    assert [r for r in f.reports(TAKER) if r[0] == s] == []
    assert f.reports(OTHER) == []  # it owns none of them; a mass cancel has no accepted event
    assert f.book.order(1).status == 2 and f.book.order(2).status == 0


def test_a_self_trade_cancel_goes_to_the_owner_of_the_cancelled_order():
    f = Flow()
    f.run(MAKER, id=1, side="sell", price=100, qty=5, account=3)
    s = f.run(TAKER, id=2, side="buy", price=100, qty=5, account=3, stp="cancel_maker")
    assert f.reports(MAKER)[-1] == (s, CXL, 1, 0, 0)
    assert f.book.order(1).status == 2 and f.book.order(2).status == 0  # the taker rests


def test_a_reject_goes_to_the_sender_even_when_it_names_another_clients_order():
    f = Flow()
    f.run(MAKER, id=1, side="sell", price=100, qty=5)
    s = f.run(TAKER, id=1, side="buy", price=90, qty=5)  # duplicate id
    assert f.reports(TAKER) == [(s, REJ, 1, 0, 0)]
    assert len(f.reports(MAKER)) == 1 and f.book.order(1).owner == MAKER


def test_a_replace_and_a_cancel_by_another_client_are_reported_to_the_owner():
    f = Flow()
    f.run(MAKER, id=1, side="sell", price=100, qty=5)
    s1 = f.run(OTHER, op="replace", id=1, price=102, qty=3)
    s2 = f.run(OTHER, op="cancel", id=1)
    assert f.reports(MAKER)[1:] == [(s1, REPL, 1, 0, 0), (s2, CXL, 1, 0, 0)]
    assert f.reports(OTHER) == []
    o = f.book.order(1)
    assert (o.status, o.price, o.open, o.filled) == (2, 102, 0, 0)


def test_a_session_open_makes_no_report_and_client_zero_gets_none():
    f = Flow()
    f.seq += 1
    f.replica.execute(1, f.seq, MAKER, 1 << 40, open_command(5))
    f.run(0, id=1, side="sell", price=100, qty=5)
    f.run(TAKER, id=2, side="buy", price=100, qty=5)
    assert f.reports(MAKER) == [] and f.reports(0) == []
    assert f.book.order(1).owner == 0 and f.book.order(1).status == 1


def test_open_orders_are_the_clients_live_orders_in_acceptance_order_by_account():
    f = Flow()
    f.run(MAKER, id=5, side="sell", price=105, qty=5, account=1)
    f.run(MAKER, id=3, side="sell", price=103, qty=5, account=2)
    f.run(TAKER, id=4, side="sell", price=104, qty=5, account=1)
    f.run(MAKER, id=6, side="buy", price=90, qty=5, account=1)
    f.run(MAKER, op="cancel", id=6)
    assert [o.id for o in f.book.open_orders(MAKER)] == [5, 3]
    assert [o.id for o in f.book.open_orders(MAKER, account=2)] == [3]
    assert f.book.open_orders(OTHER) == []
    assert f.replica.order_account(4) == 1 and f.replica.order_account(6) is None


def test_ended_orders_are_remembered_for_order_window_then_unknown():
    f = Flow(order_window=2)
    for i in (1, 2, 3):
        f.run(MAKER, id=i, side="sell", price=100, qty=1)
        f.run(TAKER, id=10 + i, side="buy", price=100, qty=1)  # fills both
    # six orders ended; the last two are remembered
    assert f.book.order(1) is None and f.book.order(11) is None
    assert f.book.order(3).status == 1 and f.book.order(13).status == 1


def test_an_order_id_used_again_after_it_ended_is_the_new_order():
    f = Flow()
    f.run(MAKER, id=1, side="sell", price=100, qty=1)
    f.run(MAKER, op="cancel", id=1)
    f.run(TAKER, id=1, side="buy", price=90, qty=2)
    o = f.book.order(1)
    assert (o.owner, o.status, o.open) == (TAKER, 0, 2)


def test_reports_past_the_window_are_gone_and_the_error_says_where_to_go_on():
    f = Flow(report_window=4)
    for i in range(1, 9):
        f.run(MAKER, id=i, side="sell", price=100 + i, qty=1)
    last = f.book.last_report(MAKER)
    with pytest.raises(ReportsGone) as exc:
        f.book.reports_after(MAKER, 0, f.seq, 100)
    oldest = exc.value.oldest
    assert last == 8 and 1 < oldest and last - oldest + 1 >= 4
    first, recs = f.book.reports_after(MAKER, oldest - 1, f.seq, 100)
    assert first == oldest and len(recs) == (last - oldest + 1) * REPORT_SIZE
    assert f.book.seq_of(MAKER, last) == f.seq and f.book.seq_of(MAKER, oldest - 1) is None
    with pytest.raises(ReportsGone):
        f.book.first_after_seq(MAKER, 0)
    assert f.book.first_after_seq(MAKER, 7) == 7  # reports after seq 7: number 8 on


def test_reports_after_stops_at_the_commit():
    f = Flow()
    f.run(MAKER, id=1, side="sell", price=100, qty=1)
    f.run(MAKER, id=2, side="sell", price=101, qty=1)
    first, recs = f.book.reports_after(MAKER, 0, 1, 100)
    assert first == 1 and len(recs) == REPORT_SIZE  # entry 2 is not committed
    assert f.book.reports_after(MAKER, 1, 1, 100) == (2, b"")


def test_the_book_travels_whole_in_the_snapshot_and_an_old_snapshot_still_restores():
    f = Flow(report_window=3, order_window=2)
    for i in range(1, 7):
        f.run(MAKER if i % 2 else TAKER, id=i, side="sell" if i % 2 else "buy", price=100, qty=2)
    blob = f.replica.snapshot()
    again = Replica.restore(blob, report_window=3, order_window=2)
    assert again.reports.pack() == f.book.pack()
    assert again.reports.open_orders(MAKER) == f.book.open_orders(MAKER)
    # Version 2 (before the book): restores, with no owners and no reports.
    body = bytearray(blob[: -4 - len(f.book.pack()) - 8])  # (and version 3's earlier sessions: none)
    struct.pack_into("<B", body, 4, 2)
    old = Replica.restore(bytes(body) + struct.pack("<I", zlib.crc32(bytes(body))))
    assert (
        old.digest == f.replica.digest
        and old.reports.order(1) is None
        and old.reports.last_report(MAKER) == 0
    )
    assert SNAP_HEAD.unpack_from(blob)[1] == 3


def test_batches_and_packed_runs_build_the_same_book_as_one_entry_at_a_time():
    """The replica's three apply paths (execute, execute_batch, apply_entries of a packed run)."""
    cmds = [
        (MAKER, command(id=i, side="sell", price=100 + i % 3, qty=2))
        if i % 2
        else (TAKER, command(id=i, side="buy", price=101, qty=3))
        for i in range(1, 200)
    ]
    one = Replica()
    for i, (cid, c) in enumerate(cmds, 1):
        one.execute(1, i, cid, i, c)
    batch = Replica()
    run, _ = batch.execute_run(
        1, [c for c, _ in cmds], list(range(1, len(cmds) + 1)), b"".join(c for _, c in cmds)
    )
    follower = Replica()
    assert follower.apply_entries(run) == len(cmds)
    assert one.reports.pack() == batch.reports.pack() == follower.reports.pack()
