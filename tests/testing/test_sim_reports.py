"""The simulator's execution reports: a clean run passes, and each broken rule is caught.

The run (seed 18, sync: a twin, a restart, report window 3 so that clients
are told GONE) is checked once as it ran, then with what one client took or
was told altered the way a broken delivery would alter it: another client's
report, a duplicate, two reports swapped, a report skipped without a GONE, a
GONE it was never told, a changed byte, an executed request answered FENCED.
Each must be a violation naming the rule.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from replication.protocol import wire
from replication.testing.sim import Sim, check_sim, random_schedule
from replication.testing.sim.sessions import last_seq

SEED = 18


@pytest.fixture(scope="module")
def sim():
    logging.disable(logging.CRITICAL)
    try:
        schedule = random_schedule(SEED)
        assert schedule.reports and schedule.twins and schedule.restarts and schedule.report_window == 3
        return Sim(schedule).run()
    finally:
        logging.disable(logging.NOTSET)


@pytest.fixture
def restore(sim):
    """Put back every client's reports and answers after a test altered them."""
    saved = {a: (list(cl.took), dict(cl.done)) for a, cl in sim.clients.items()}
    yield
    for a, (took, done) in saved.items():
        sim.clients[a].took, sim.clients[a].done = took, done


def violations(sim) -> list[str]:
    return [v for v in check_sim(sim).violations if v.startswith(("reports:", "fencing:"))]


def runs(took: list) -> list[int]:
    """Indexes i where took[i] and took[i + 1] are two reports (no GONE between)."""
    return [i for i in range(len(took) - 1) if isinstance(took[i], bytes) and isinstance(took[i + 1], bytes)]


def busiest(sim):
    return max(sim.clients.values(), key=lambda cl: len(runs(cl.took)))


def test_the_run_keeps_every_rule_and_exercises_what_it_should(sim):
    rep = check_sim(sim)
    assert rep.violations == []
    figures = rep.reports
    assert figures["taken"] > 100 and figures["gone"] > 0 and figures["skipped"] > 0
    assert figures["restarts"] == 1 and figures["twins"] == 1
    assert figures["fenced"] >= 1 and figures["fenced_replies"] >= 1
    assert "reports" in rep.as_dict()


def test_another_clients_report_is_misattribution(sim, restore):
    a = busiest(sim)
    b = next(cl for cl in sim.clients.values() if cl.core.client_id != a.core.client_id and runs(cl.took))
    i = runs(a.took)[3]
    a.took[i + 1] = b.took[runs(b.took)[0]]
    assert any("misattributed" in v for v in violations(sim))


def test_a_report_taken_twice_is_caught(sim, restore):
    a = busiest(sim)
    i = runs(a.took)[3]
    a.took.insert(i + 1, a.took[i])
    assert any("again, or out of order" in v for v in violations(sim))


def test_two_reports_swapped_are_caught(sim, restore):
    a = busiest(sim)
    i = next(i for i in runs(a.took) if a.took[i] != a.took[i + 1])
    a.took[i], a.took[i + 1] = a.took[i + 1], a.took[i]
    assert violations(sim)


def test_a_report_skipped_without_a_gone_is_caught(sim, restore):
    a = busiest(sim)
    i = next(i for i in runs(a.took)[2:] if i + 2 < len(a.took) and isinstance(a.took[i + 2], bytes))
    del a.took[i + 1]
    assert any("without a GONE" in v for v in violations(sim))


def test_a_skip_past_a_gone_the_client_was_not_told_is_caught(sim, restore):
    # Find a GONE after which the client did skip (the next report is not the one after the
    # last before it), and remove the GONE: the skip has no reason any more.
    for cl in sim.clients.values():
        for i, item in enumerate(cl.took):
            if isinstance(item, str) and last_seq(cl.took[:i]) and i + 1 < len(cl.took):
                del cl.took[i]
                got = violations(sim)
                if got:
                    assert any("without a GONE" in v for v in got)
                    return
                cl.took.insert(i, item)
    pytest.fail("no GONE with a skip after it in this run")


def test_a_report_the_history_does_not_hold_is_caught(sim, restore):
    a = busiest(sim)
    i = runs(a.took)[3]
    rec = bytearray(a.took[i + 1])
    rec[32] ^= 0x40  # the qty word
    a.took[i + 1] = bytes(rec)
    assert any("the history does not give it" in v for v in violations(sim))


def test_an_executed_request_answered_fenced_is_caught(sim, restore):
    cl = busiest(sim)
    rid, reply = next((r, x) for r, x in cl.done.items() if x.status == wire.OK)
    cl.done[rid] = replace(reply, status=wire.FENCED)
    assert any("answered FENCED, executed" in v for v in violations(sim))


def test_a_client_fenced_with_no_newer_session_is_caught(sim, restore):
    live = [cl for cl in sim.clients.values() if not cl.core.fenced and cl.core.session]
    newest = max(live, key=lambda cl: cl.core.session)
    newest.core.fenced = True
    try:
        assert any("no newer session in the history" in v for v in violations(sim))
    finally:
        newest.core.fenced = False
