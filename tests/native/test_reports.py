"""The C report book (``replication.native._reports``) against its plain-Python specification
(``replication.protocol.reports.ReportBookPy``): the same entries, from the real engine, into both;
after every entry the same snapshot bytes and the same answer to every query."""

from __future__ import annotations

import random

import numpy as np
import pytest

from matching import codes
from matching.codes import COMMAND_DTYPE
from matching.commands import cancel_dict, command_record, mass_cancel_dict, new_order_dict, replace_dict
from replication.protocol import reports, session
from replication.protocol.replica import Replica
from replication.protocol.reports import ReportBookPy, ReportsGone

pytestmark = pytest.mark.skipif(not reports.NATIVE, reason="replication.native._reports is not built")

CLIENTS = [0, 1, 2, 3, 1 << 63]  # client 0: entries of no client (owns orders, gets no reports)
ACCOUNTS = [1, 2]


def _native():
    from replication.native import _reports

    return _reports


def _command(rnd: random.Random, next_id: list[int]) -> bytes:
    """A random command: mostly new orders around one price (so they cross), sometimes the rest."""
    roll = rnd.random()
    ids = max(next_id[0], 2)
    recent = rnd.randrange(max(1, ids - 12), ids + 1)  # cancels and replaces mostly find live orders
    if roll < 0.03:
        return session.open_command(rnd.randrange(1, 1 << 64))
    if roll < 0.55:
        next_id[0] += 1
        oid = next_id[0] if rnd.random() < 0.9 else recent  # sometimes a duplicate
        kind = rnd.random()
        d = new_order_dict(
            1 + (rnd.random() < 0.2),
            oid,
            rnd.choice(["buy", "sell"]),
            price=None if kind < 0.1 else rnd.randint(98, 102),
            qty=rnd.randint(1, 8),
            type="market" if kind < 0.1 else "limit",
            tif="IOC" if 0.1 <= kind < 0.2 else ("FOK" if 0.2 <= kind < 0.25 else "GTC"),
            account=rnd.choice(ACCOUNTS),
            stp=rnd.choice(["none", "none", "cancel_taker", "cancel_maker", "cancel_both"]),
        )
    elif roll < 0.75:
        d = cancel_dict(1, recent)
    elif roll < 0.92:
        d = replace_dict(1, recent, price=rnd.randint(98, 102), qty=rnd.randint(1, 8))
    else:
        d = mass_cancel_dict(account=rnd.choice([None, *ACCOUNTS]), instrument=rnd.choice([None, 1]))
    return np.array([tuple(command_record(d))], dtype=COMMAND_DTYPE).tobytes()


def _answers(book, max_id: int, seq: int, full: bool) -> list:
    """Every query's answer (or the exception it raised), over all clients, orders and bounds
    (``full``: every combination of bounds, else a sample)."""
    out: list = [book.report_window, book.order_window]

    def ask(f, *args):
        try:
            out.append(f(*args))
        except ReportsGone as exc:
            out.append(("gone", str(exc), exc.oldest))

    for cid in [*CLIENTS, 99, -1, 1 << 64]:
        ask(book.last_report, cid)
        ask(book.open_orders, cid)
        for account in [*ACCOUNTS, 7, "x"]:
            ask(book.open_orders, cid, account)
        last = book.last_report(cid) if cid in CLIENTS else 3
        for after in {-2, -1, 0, 1, last - 4, last - 3, last - 1, last, last + 2}:
            for max_seq in (-1, 0, seq // 2, seq - 1, seq, 1 << 64) if full else (seq - 1, seq):
                for limit in (-100, -3, -1, 0, 1, 2, 1000) if full else (-1, 2, 1000):
                    ask(book.reports_after, cid, after, max_seq, limit)
        for s in {-1, 0, 1, seq // 3, seq - 2, seq - 1, seq, seq + 1, 1 << 64}:
            ask(book.first_after_seq, cid, s)
        for n in {-1, 0, 1, last - 3, last - 1, last, last + 1}:
            ask(book.seq_of, cid, n)
    for oid in [*range(0, max_id + 2), -1, 1 << 64]:
        ask(book.order, oid)
        ask(book.account_of, oid)
    return out


def _check_same(py, c, max_id: int, seq: int, full: bool = True) -> None:
    assert c.pack() == py.pack()
    assert _answers(c, max_id, seq, full) == _answers(py, max_id, seq, full)


def _flow(seed: int, entries: int, report_window: int, order_window: int, batch: bool) -> None:
    rnd = random.Random(seed)
    native = _native().ReportBook
    replica = Replica()
    py, c = ReportBookPy(report_window, order_window), native(report_window, order_window)
    next_id = [0]
    seq = 0
    while seq < entries:
        if batch:
            n = rnd.randint(1, 40)
            cids = [rnd.choice(CLIENTS) for _ in range(n)]
            commands = [_command(rnd, next_id) for _ in range(n)]
            first = replica.seq + 1
            rids = [first + i for i in range(n)]
            _, raw, ends = replica.execute_batch(1, cids, rids, b"".join(commands))
            py.absorb_batch(first, cids, b"".join(commands), raw, ends)
            if rnd.random() < 0.4:
                c.absorb_batch(first, cids, b"".join(commands), raw, ends)
            elif rnd.random() < 0.2:  # lists of NumPy integers, as a caller may build them
                c.absorb_batch(
                    first,
                    list(np.array(cids, np.uint64)),
                    b"".join(commands),
                    raw,
                    list(np.array(ends, np.int64)),
                )
            else:  # the packed-run path's types: uint64 ids, a view of the commands, int64 byte offsets
                c.absorb_batch(
                    first,
                    np.array(cids, dtype=np.uint64),
                    memoryview(b"".join(commands)),
                    bytearray(raw),
                    np.array(ends, dtype=np.int64),
                )
            seq = first + n - 1
        else:
            seq = replica.seq + 1
            cid, command = rnd.choice(CLIENTS), _command(rnd, next_id)
            events, _ = replica.execute(1, seq, cid, seq, command)
            py.absorb(seq, cid, command, events)
            if rnd.random() < 0.8:
                c.absorb(seq, cid, command, events)
            else:  # any buffer does, not only bytes
                c.absorb(seq, cid, memoryview(command), bytearray(events))
        _check_same(py, c, next_id[0], seq, full=rnd.random() < 0.1)
        if rnd.random() < 0.2:
            assert c.take_touched() == py.take_touched()
        if rnd.random() < 0.05:  # restore each from the other's snapshot, and go on from there
            blob = b"\x00" * 3 + py.pack()
            py, end_py = ReportBookPy.unpack(c.pack(), 0)
            c, end_c = native.unpack(blob, 3)
            assert (end_py, end_c) == (len(blob) - 3, len(blob))
            _check_same(py, c, next_id[0], seq)
        if rnd.random() < 0.03:  # the replica sets the windows after a restore
            py.report_window = c.report_window = rnd.randint(0, 6)
            py.order_window = c.order_window = rnd.randint(0, 4)
    assert c.take_touched() == py.take_touched()
    assert py.last_report(1) > 0  # the flow did report


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("windows", [(3, 2), (1, 0), (0, 1), (8, 50)])
def test_entry_by_entry_same_as_the_specification(seed, windows):
    _flow(seed, 300, *windows, batch=False)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("windows", [(3, 2), (5, 7), (65536, 65536)])
def test_batches_same_as_the_specification(seed, windows):
    _flow(100 + seed, 400, *windows, batch=True)


def test_trades_report_both_sides_and_a_session_open_reports_nothing():
    """A hand-made case the flows above compare: the maker's owner gets the trade too."""
    replica = Replica()
    books = [ReportBookPy(), _native().ReportBook()]

    def feed(seq, cid, d):
        command = d if isinstance(d, bytes) else np.array([tuple(command_record(d))], COMMAND_DTYPE).tobytes()
        events, _ = replica.execute(1, seq, cid, seq, command)
        for book in books:
            book.absorb(seq, cid, command, events)

    feed(1, 5, new_order_dict(1, 10, "sell", price=100, qty=3, account=1))
    feed(2, 6, new_order_dict(1, 11, "buy", price=100, qty=2, account=2))
    feed(3, 6, session.open_command(77))
    for book in books:
        assert book.last_report(5) == 2 and book.last_report(6) == 2
        n, recs = book.reports_after(5, 1, 10, 10)
        assert n == 2 and len(recs) == reports.REPORT_SIZE
        assert recs[reports._ROLE_OFFSET] == reports.ROLE_MAKER and recs[:8] == (2).to_bytes(8, "little")
        assert book.order(10) == reports.OrderState(10, 5, 1, 1, 1, 100, 1, 2, reports.OPEN)
        assert book.order(11).status == reports.FILLED
        assert book.take_touched() == {5, 6}
        assert book.take_touched() == set()
    assert books[0].pack() == books[1].pack()


def test_reports_gone_past_the_window():
    books = [ReportBookPy(2, 2), _native().ReportBook(2, 2)]
    replica = Replica()
    for seq in range(1, 8):
        d = new_order_dict(1, seq, "buy", price=90 + seq, qty=1, account=1)
        command = np.array([tuple(command_record(d))], COMMAND_DTYPE).tobytes()
        events, _ = replica.execute(1, seq, 4, seq, command)
        for book in books:
            book.absorb(seq, 4, command, events)
    for book in books:
        assert book.last_report(4) == 7
        with pytest.raises(ReportsGone):
            book.reports_after(4, 0, 100, 10)
        with pytest.raises(ReportsGone):
            book.first_after_seq(4, 1)
        assert book.reports_after(4, 6, 100, 10)[0] == 7


def test_malformed_batches_change_nothing():
    """Bounds are checked before anything is taken (the C loop reads raw memory)."""
    c = _native().ReportBook()
    command = np.array([tuple(new_order_record_tuple())], COMMAND_DTYPE).tobytes()
    before = c.pack()
    with pytest.raises(ValueError):
        c.absorb_batch(1, [1, 2], command, bytes(64), [0, 64, 64])  # one command for two entries
    with pytest.raises(ValueError):
        c.absorb_batch(1, [1], command, bytes(64), [0, 128])  # events past the end
    with pytest.raises(ValueError):
        c.absorb_batch(1, [1], command, bytes(64), [0, 32])  # not whole records
    with pytest.raises(ValueError):
        c.absorb(1, 1, command[:40], bytes(64))
    with pytest.raises(ValueError):
        _native().ReportBook.unpack(before[:-1], 0)
    with pytest.raises(OverflowError):
        c.report_window = -1
    assert c.pack() == before


def new_order_record_tuple():
    return command_record(new_order_dict(1, 1, "buy", price=100, qty=1, account=1))


def test_constants_match_the_specification():
    assert _native().OP_SESSION == session.OP_SESSION
    assert (reports.EV_ACCEPTED, reports.EV_REJECTED, reports.EV_TRADE) == (
        codes.EV_ACCEPTED,
        codes.EV_REJECTED,
        codes.EV_TRADE,
    )
    assert (reports.EV_CANCELLED, reports.EV_REPLACED) == (codes.EV_CANCELLED, codes.EV_REPLACED)
    assert reports.ReportBook is _native().ReportBook
