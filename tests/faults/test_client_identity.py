"""Two live processes with one client id, on real node processes (issue 13, finding 8).

Before sessions, request ids started from the wall clock, so two processes
with one ``client_id`` reused each other's ids and 1,311 of 3,000 replies
carried the other process's events. Here two client processes share the id
7: the first sends until the second's session fences it. Checked against
the primary's journal and a local replay: no reply carries another
request's events, the older process raises ``SessionFenced`` naming the
id, every request it sent ends either executed exactly once or ``FENCED``
and never executed, and no request of the older session runs after the
newer session opened.

Sizes scale with ``MATCHCORE_FAULT_SCALE`` (default 1).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

zmq = pytest.importorskip("zmq")

from replication.protocol import wire  # noqa: E402
from replication.protocol.session import is_open_entry, opened_id, session_of  # noqa: E402
from replication.testing.harness import Group, replay_digest  # noqa: E402

pytestmark = pytest.mark.timeout(180)

SCALE = max(1, int(os.environ.get("MATCHCORE_FAULT_SCALE", "1")))
N = 400 * SCALE  # orders the newer process sends
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# One client process: send new orders with ids base + i (pipelined, a window of 16), keep every
# reply's fate, and stop when fenced (then learn the fate of what was still in flight).
CHILD = r"""
import json, sys, time
from replication import Client, SessionFenced

from replication.protocol import wire

path, out, base, limit, progress = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
rec = {"session": 0, "sent": {}, "ok": {}, "fenced": [], "error": "", "other": []}
c = Client.from_config(path, client_id=7, timeout=20.0, retry_timeout=0.05)
deadline = time.monotonic() + 60
i = 0

def collect(timeout):
    for r in c.poll_replies(timeout):
        rid = str(r.request_id)
        if r.status == wire.OK:
            first = int.from_bytes(r.events[8:16], "little") if len(r.events) >= 64 else -1
            rec["ok"][rid] = [r.seq, first]
        elif r.status == wire.FENCED:
            rec["fenced"].append(rid)
        else:
            rec["other"].append([rid, r.status])

try:
    while i < limit and time.monotonic() < deadline:
        while i < limit and c.in_flight < 16:
            oid = base + i
            side = "buy" if i % 2 else "sell"
            rid = c.send({"op": "new", "instrument": 1, "id": oid, "side": side, "price": 100 + i % 3, "qty": 5})
            rec["session"] = c.session
            rec["sent"][str(rid)] = oid
            i += 1
        collect(0.002)
        if progress and len(rec["ok"]) >= 50:
            open(progress, "w").close()
            progress = ""
except SessionFenced as exc:
    rec["error"] = str(exc)
    # Re-sends still run: each request in flight learns its fate (first result or FENCED).
    end = time.monotonic() + 10
    while c.in_flight and time.monotonic() < end:
        collect(0.01)
collect(0.05)
end = time.monotonic() + 10
while c.in_flight and time.monotonic() < end:
    collect(0.01)
rec["in_flight"] = c.in_flight
rec["counters"] = dict(c.core.counters)
c.close()
with open(out, "w") as f:
    json.dump(rec, f)
"""


def _child(g: Group, name: str, base: int, limit: int, progress: str = "") -> tuple[subprocess.Popen, str]:
    out = os.path.join(g.dir, f"{name}.json")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.Popen(
        [sys.executable, "-c", CHILD, g.path, out, str(base), str(limit), progress],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(g.dir, f"{name}.err"), "wb"),  # noqa: SIM115 - closed with the process
        start_new_session=True,
    )
    return p, out


def _reap(p: subprocess.Popen, timeout: float) -> None:
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(5)


def _load(g: Group, name: str, out: str) -> dict:
    if not os.path.exists(out):
        with open(os.path.join(g.dir, f"{name}.err"), "rb") as f:
            pytest.fail(f"client {name} wrote no result:\n{f.read().decode('utf-8', 'replace')[-3000:]}")
    with open(out, encoding="utf-8") as f:
        return json.load(f)


def _wait_file(path: str, p: subprocess.Popen, g: Group) -> None:
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        assert p.poll() is None, f"a client exited before 50 of its orders were acknowledged\n{g.tail_logs()}"
        assert time.monotonic() < deadline, g.tail_logs()
        time.sleep(0.01)


def _run_two_processes(g: Group, kill_primary: bool = False) -> tuple[dict, dict, list[wire.Entry]]:
    progress = os.path.join(g.dir, "older.progress")
    newer_progress = os.path.join(g.dir, "newer.progress")
    older = newer = None
    try:
        # The older process sends until fenced (at most 50 N orders); the newer starts once
        # the older has had 50 orders acknowledged, and sends N.
        older, older_out = _child(g, "older", 1_000_000, 50 * N, progress)
        _wait_file(progress, older, g)
        newer, newer_out = _child(g, "newer", 2_000_000, N, newer_progress)
        if kill_primary:
            # Both clients mid-flow, requests in flight: the primary dies, b takes over with
            # the session table it replicated.
            _wait_file(newer_progress, newer, g)
            g.kill("a")
        _reap(newer, 90)
        _reap(older, 60)
    finally:
        for p in (older, newer):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(5)
    a, b = _load(g, "older", older_out), _load(g, "newer", newer_out)
    st = g.status()
    primary = next(n for n in g.names if st.get(n, {}).get("role") == "primary")
    for n in g.names:
        g.kill(n, signal.SIGTERM)
    entries = g.journal_entries(primary)
    assert replay_digest(entries) == entries[-1].digest  # the journal replays to its own digest
    return a, b, entries


def _check(older: dict, newer: dict, entries: list[wire.Entry]) -> None:
    mine = [e for e in entries if e.client_id == 7]
    keys = [e.request_id for e in mine]
    assert len(keys) == len(set(keys)), "a request executed twice"
    command_id = {e.request_id: int.from_bytes(e.command[:8], "little") for e in mine}
    # No reply carries another request's events: each names the order its request sent.
    wrong = {
        name: sum(1 for rid, (_, first) in rec["ok"].items() if first != rec["sent"][rid])
        for name, rec in (("older", older), ("newer", newer))
    }
    assert wrong == {"older": 0, "newer": 0}, f"replies that carried other events: {wrong}"
    for rec in (older, newer):
        sent = {int(k): v for k, v in rec["sent"].items()}
        ok = {int(k): v for k, v in rec["ok"].items()}
        fenced = {int(k) for k in rec["fenced"]}
        assert rec["in_flight"] == 0 and rec["other"] == []
        assert set(ok) | fenced == set(sent) and not set(ok) & fenced  # every request's fate known
        # Every acknowledged request is in the journal once, with its own command; no
        # fenced one was executed.
        assert all(command_id.get(rid) == sent[rid] for rid in ok), "an acknowledged request is missing"
        assert not fenced & set(command_id)
        assert {session_of(rid) for rid in sent} == {rec["session"]} != {0}
        assert rec["counters"].get("foreign_replies", 0) == 0
    # The older process was fenced, by name, and the newer one never was. It may learn it from
    # a request answered FENCED or from its report feed's fetch answered FENCED (then every
    # request it had in flight was sequenced before the newer open, and answered OK): both
    # are right, so its list of FENCED requests may be empty.
    assert "client id 7" in older["error"], older["error"]
    assert len(older["sent"]) < 50 * N  # fenced mid-flow, not at the end of its orders
    assert newer["error"] == "" and not newer["fenced"]
    assert older["session"] < newer["session"]
    # Nothing of the older session ran after the newer one opened.
    opened_at = next(i for i, e in enumerate(mine) if e.request_id == opened_id(newer["session"]))
    assert all(session_of(e.request_id) == newer["session"] for e in mine[opened_at:])
    assert sum(1 for e in mine if is_open_entry(e.request_id)) == 2


def test_two_processes_with_one_client_id():
    g = Group(nodes=("a", "b"), mode="sync")
    try:
        g.start_all()
        g.wait_ready()
        older, newer, entries = _run_two_processes(g)
        _check(older, newer, entries)
    finally:
        g.stop()


def test_two_processes_with_one_client_id_across_a_primary_sigkill():
    """The primary is SIGKILLed while both run: b, from its replicated session table, keeps
    fencing the older session and answers the newer's re-sent requests with their first results."""
    g = Group(nodes=("a", "b"), mode="sync")
    try:
        g.start_all()
        g.wait_ready()
        older, newer, entries = _run_two_processes(g, kill_primary=True)
        assert entries[-1].epoch >= 2  # b sequenced after the kill
        _check(older, newer, entries)
    finally:
        g.stop()
