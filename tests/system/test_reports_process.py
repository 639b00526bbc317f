"""Execution reports, queries and sessions on real processes (loopback, bounded timeouts).

Every test checks what the clients got against what a local replay of the
surviving journal attributes to each client id (a fresh ``ReportBook`` fed with
the journal's entries): each report reaches its owner only, exactly once, in
seq order, byte for byte.
"""

from __future__ import annotations

import time

import pytest

from matching import ReferenceEngine
from replication import SessionFenced
from replication.client.reports import report_dict
from replication.protocol.replica import Replica
from replication.protocol.reports import REPORT_SIZE

MAKER, TAKER = 7, 8


def expected(entries, client_id: int, after_seq: int = 0) -> list[dict]:
    """The reports a replay of ``entries`` gives ``client_id`` for entries after ``after_seq``."""
    r = Replica(ReferenceEngine)
    for e in entries:
        r.apply_entry(e)
    _, recs = r.reports.reports_after(client_id, 0, r.seq, 10**9)
    out = [report_dict(recs[i : i + REPORT_SIZE]) for i in range(0, len(recs), REPORT_SIZE)]
    return [d for d in out if d["seq"] > after_seq]


def collect(client, until: int, timeout: float = 20.0) -> list[dict]:
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(got) < until and time.monotonic() < deadline:
        got += client.executions(timeout=0.2)
    return got


def quiet(client, seconds: float = 0.5) -> list[dict]:
    """Whatever else arrives in ``seconds`` (nothing, if every report came once)."""
    got: list[dict] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got += client.executions(timeout=0.05)
    return got


def test_a_maker_receives_its_fill_and_queries_answer_from_the_group(group):
    g = group()
    g.start_all()
    g.wait_ready()
    with g.client(MAKER) as maker, g.client(TAKER) as taker:
        maker.submit(instrument=1, id=1, side="sell", price=100, qty=10, account=3)
        taker.submit(instrument=1, id=2, side="buy", price=100, qty=4, account=4)
        fills = [d for d in collect(maker, 2) if d["event"] == "trade"]
        assert fills and fills[0]["side"] == "maker" and fills[0]["maker"] == 1 and fills[0]["qty"] == 4
        assert [d["side"] for d in collect(taker, 2) if d["event"] == "trade"] == ["taker"]
        assert maker.order(instrument=1, id=1)["open"] == 6
        assert maker.order(instrument=1, id=1)["filled"] == 4
        assert taker.order(instrument=1, id=2)["status"] == "filled"
        assert [o["id"] for o in maker.open_orders()] == [1]
        assert maker.open_orders(account=4) == [] and taker.open_orders() == []


def test_every_report_arrives_exactly_once_across_a_sigkill_fail_over(group):
    g = group()
    g.start_all()
    g.wait_ready()
    got = {MAKER: [], TAKER: []}
    with g.client(MAKER, timeout=20) as maker, g.client(TAKER, timeout=20) as taker:
        for i in range(1, 301):
            maker.send({"op": "new", "instrument": 1, "id": 2 * i, "side": "sell", "price": 100, "qty": 2})
            taker.send({"op": "new", "instrument": 1, "id": 2 * i + 1, "side": "buy", "price": 100, "qty": 2})
            if i == 150:
                g.kill("a")
            if i % 25 == 0:
                for c in (maker, taker):
                    c.poll(timeout=0.01)
                    got[c.core.client_id] += c.executions()
        for c in (maker, taker):
            while c.in_flight:
                c.poll(timeout=0.1)
        g.wait_for(lambda st: st.get("b", {}).get("role") == "primary", what="b primary")
        for c in (maker, taker):
            got[c.core.client_id] += collect(c, 600 - len(got[c.core.client_id]))
            got[c.core.client_id] += quiet(c)
    g.kill("b")
    entries = g.journal_entries("b")
    for cid in (MAKER, TAKER):
        want = expected(entries, cid)
        assert len(want) == 600  # 300 accepted + 300 trades each
        assert got[cid] == want, f"client {cid}: {len(got[cid])} reports against {len(want)}"


def test_a_restarted_client_resumes_from_the_last_seq_it_saw(group):
    g = group()
    g.start_all()
    g.wait_ready()
    with g.client(TAKER) as taker:
        maker = g.client(MAKER)
        for i in range(1, 11):
            maker.submit(instrument=1, id=i, side="sell", price=100 + i, qty=1)
        seen = collect(maker, 4)[:4]
        maker.close()  # "crashes" after reading four reports
        for i in range(1, 11):
            taker.submit(instrument=1, id=100 + i, side="buy", price=100 + i, qty=1)
        again = g.client(MAKER, resume_from=seen[-1]["seq"])
        rest = collect(again, 16)
        rest += quiet(again, 0.3)
        again.close()
    g.kill("a")
    want = expected(g.journal_entries("a"), MAKER)
    assert seen + rest == want


def test_two_clients_with_one_id_the_older_is_fenced_and_nothing_is_misattributed(group):
    g = group()
    g.start_all()
    g.wait_ready()
    old = g.client(MAKER)
    old.submit(instrument=1, id=1, side="sell", price=100, qty=1)
    new = g.client(MAKER)
    new.submit(instrument=1, id=2, side="sell", price=101, qty=1)
    with pytest.raises(SessionFenced, match=str(MAKER)):
        old.submit(instrument=1, id=3, side="sell", price=102, qty=1)
    with pytest.raises(SessionFenced):
        old.executions(timeout=1.0)
    got = collect(new, 1)
    assert [d["id"] for d in got] == [2]  # the new session's reports start at its open
    assert new.order(instrument=1, id=3)["status"] == "unknown"  # never executed
    old.close()
    new.close()
