"""Twenty planned switchovers under a paced order flow, on real processes (issue 18).

One client sends orders at a steady pace (sync mode, fsync ``batch``, the
witness with its state file) while ``Switchover`` alternates the primary
a -> b -> a ... twenty times. Checked against the final primary's journal and
a local replay of it: every order sent was answered ``OK`` exactly once, is in
the journal exactly once with its own command, and every reply carries the
very events a fresh replica computes for that entry. The switchovers all
landed (each in a new epoch, led by its target).

Sizes scale with ``MATCHCORE_FAULT_SCALE`` (default 1).
"""

from __future__ import annotations

import os
import signal
import time

import pytest

zmq = pytest.importorskip("zmq")

from replication.client.admin import ask  # noqa: E402
from replication.protocol import wire  # noqa: E402
from replication.protocol.group_time import stamp_commands, stamp_of  # noqa: E402
from replication.protocol.replica import Replica  # noqa: E402
from replication.testing.harness import Group, order  # noqa: E402

pytestmark = pytest.mark.timeout(120)

SCALE = max(1, int(os.environ.get("MATCHCORE_FAULT_SCALE", "1")))
SWITCHOVERS = 20 * SCALE
RATE = 1000.0  # orders per second: paced, as a trading client sends
CLIENT_ID = 7


class PacedFlow:
    """One order every ``1 / RATE`` s; every reply kept (request id -> Reply)."""

    def __init__(self, client) -> None:
        self.c = client
        self.sent: dict[int, int] = {}  # request id -> index of the order (harness.order)
        self.replies: dict[int, list[wire.Reply]] = {}
        self.next_at = time.monotonic()
        self.sending = True

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            now = time.monotonic()
            if self.sending and now >= self.next_at:
                i = len(self.sent)
                self.sent[self.c.send(order(i))] = i
                self.next_at = max(self.next_at + 1.0 / RATE, now)
            for r in self.c.poll_replies(max(0.0, min(0.001, self.next_at - time.monotonic()))):
                self.replies.setdefault(r.request_id, []).append(r)
            if time.monotonic() >= end:
                return


def _primary_ready(g: Group, flow: PacedFlow, timeout: float = 20.0) -> tuple[str, int]:
    """Pump until one primary serves with the other node joined and in its in-sync set."""
    deadline = time.monotonic() + timeout
    while True:
        flow.pump(0.02)
        st = g.status(0.3)
        primaries = [n for n in g.names if st.get(n, {}).get("role") == "primary"]
        if len(primaries) == 1:
            p = primaries[0]
            other = next(n for n in g.names if n != p)
            if st[other].get("joined") and other in (st[p].get("isr") or ()):
                return p, st[p]["epoch"]
        assert time.monotonic() < deadline, f"no ready primary: {st}\n{g.tail_logs()}"


def test_twenty_switchovers_under_a_paced_flow_lose_and_repeat_nothing():
    with Group(("a", "b"), "sync") as g:
        g.start_all()
        g.wait_ready()
        c = g.client(CLIENT_ID, timeout=10.0, retry_timeout=0.05)
        flow = PacedFlow(c)
        leaders: list[tuple[int, str]] = []  # (epoch, primary) after each switchover
        try:
            for _ in range(SWITCHOVERS):
                old, epoch = _primary_ready(g, flow)
                new = next(n for n in g.names if n != old)
                got = ask(g.endpoints[old], wire.Switchover(new), 2.0)
                assert isinstance(got, wire.Status), f"no answer to the switchover: {got}"
                # Wait for a reply of a newer epoch (the target serves), pumping all along.
                deadline = time.monotonic() + 10
                while not any(r.epoch > epoch for rs in flow.replies.values() for r in rs):
                    flow.pump(0.005)
                    assert time.monotonic() < deadline, (
                        f"switchover {old}->{new} never served\n{g.tail_logs()}"
                    )
                newest = max(r.epoch for rs in flow.replies.values() for r in rs)
                served = {r.leader for rs in flow.replies.values() for r in rs if r.epoch == newest}
                leaders.append((newest, ",".join(sorted(served))))
                assert leaders[-1] == (epoch + 1, new), (
                    f"switchover {old}->{new} from epoch {epoch}: {leaders[-1]}"
                )
            flow.sending = False
            deadline = time.monotonic() + 10
            while c.in_flight and time.monotonic() < deadline:
                flow.pump(0.01)
            assert c.in_flight == 0, f"{c.in_flight} orders never answered\n{g.tail_logs()}"
            st = g.status(0.5)
            primary = next(n for n in g.names if st.get(n, {}).get("role") == "primary")
        finally:
            c.close()
        for n in g.names:
            g.kill(n, signal.SIGTERM)
        entries = g.journal_entries(primary)

    # Every order answered OK, once per reply received (re-sent requests may be answered
    # twice, both with the first result), and nothing but OK.
    assert set(flow.replies) == set(flow.sent)
    assert all(r.status == wire.OK for rs in flow.replies.values() for r in rs)
    mine = [e for e in entries if e.client_id == CLIENT_ID and e.request_id in flow.sent]
    keys = [e.request_id for e in mine]
    assert len(keys) == len(set(keys)), "a request executed twice"
    assert set(keys) == set(flow.sent), "an acknowledged order is missing from the journal"
    # A local replay of the whole journal: each entry's events, by seq.
    replica, events = Replica(), {}
    assert entries[0].seq == 1  # the whole history (no snapshot at this size)
    for e in entries:
        events[e.seq], _ = replica.execute(e.epoch, e.seq, e.client_id, e.request_id, e.command)
    assert replica.digest == entries[-1].digest
    by_key = {e.request_id: e for e in mine}
    expected_command = {rid: order(i) for rid, i in flow.sent.items()}
    for rid, rs in flow.replies.items():
        e = by_key[rid]
        # (the journaled command carries the primary's stamp in its ts: group_time)
        sent = stamp_commands(_packed(expected_command[rid]), stamp_of(e.command))
        assert e.command == sent, f"request {rid} ran another command"
        for r in rs:
            assert r.seq == e.seq and bytes(r.events) == events[e.seq], (
                f"reply to {rid} differs from the replay"
            )
    # Every switchover landed: one epoch each, alternating.
    assert [lead for _, lead in leaders] == ["b", "a"] * (SWITCHOVERS // 2) + ["b"] * (SWITCHOVERS % 2)


def _packed(command: dict) -> bytes:
    from matching.commands import command_record

    return wire.pack_command(command_record(command))
