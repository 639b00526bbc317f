"""The machines' ``invariants()``: each catches a broken rule, and the simulator reports one as a violation.

The simulator calls ``invariants()`` on a node's machine after each of its
steps, on the witness after each message and on a client core after each
call (``replication.testing.sim.participants``). A broken one is a violation
in the checker's report, like a lost request: the run goes on, and a sweep
of many schedules names the seed instead of stopping.
"""

from __future__ import annotations

import json
import logging

import pytest

import replication.testing.sim.participants as sim_participants
from replication.protocol import wire
from replication.protocol.client_core import ClientCore
from replication.protocol.node.machine import NodeMachine
from replication.protocol.settings import Settings
from replication.protocol.witness import WitnessMachine
from replication.testing.sim import Schedule, Sim, SimFailure, check_sim, pack, random_commands, run_schedule
from replication.testing.sim.__main__ import main as sim_main

logging.getLogger("replication").setLevel(logging.CRITICAL)


# --- each machine's own check ----------------------------------------------------------------


def _primary_with_entries() -> NodeMachine:
    """The primary of a short fault-free run: its book and journal at the same seq."""
    sim = Sim(Schedule(seed=1, requests=5, tail_requests=0)).run()
    return sim.nodes[sim.primary()].machine


def test_a_node_whose_book_runs_ahead_of_its_journal_breaks_its_invariant():
    m = _primary_with_entries()
    n = m.replica.seq
    assert n == m.journal.last_seq >= 3
    m.invariants()
    m.journal.truncate_after(1)  # the book holds entries no journal holds
    with pytest.raises(AssertionError, match=f"replica at seq {n}, journal at 1"):
        m.invariants()


def test_a_witness_whose_primary_is_no_node_breaks_its_invariant():
    w = WitnessMachine(["a", "b"], Settings())
    w.invariants()
    w.primary = "z"
    with pytest.raises(AssertionError, match="primary 'z' is not a node"):
        w.invariants()


def test_a_client_core_with_requests_out_of_order_breaks_its_invariant():
    core = ClientCore(1, ["a", "b"], 1, retry_timeout=0.05)
    for cmd in random_commands(__import__("random").Random(2), 1, 3):
        core.submit(pack(cmd), 0.0)
    core.invariants()
    first, *rest = core.pending.items()
    core.pending = dict([*rest, first])  # insertion order no longer the id order
    with pytest.raises(AssertionError, match="pending ids"):
        core.invariants()


# --- the simulator reports them -----------------------------------------------------------------


class LosesAnEntry(NodeMachine):
    """A standby whose journal loses its newest entry for one step once it holds 5 (its book keeps it)."""

    lost: wire.Entry | None = None
    done = False

    def handle(self, src, msg, now):
        if self.lost is not None:  # the entry comes back before the next message: the run goes on
            self.journal.append([self.lost])
            self.lost = None
        out = super().handle(src, msg, now)
        if self.role == wire.ROLE_STANDBY and self.journal.last_seq == 5 and not self.done:
            self.done = True
            self.lost = self.journal.entry(5)
            self.journal.truncate_after(4)
        return out


def test_a_broken_node_invariant_is_a_violation_not_a_crash(monkeypatch):
    monkeypatch.setattr(sim_participants, "NodeMachine", LosesAnEntry)
    sim = Sim(Schedule(seed=3, requests=20)).run()
    rep = check_sim(sim)
    broken = [v for v in rep.violations if v.startswith("invariant: node b")]
    assert broken and "replica at seq 5, journal at 4" in broken[0], rep.violations
    with pytest.raises(SimFailure, match="invariant: node b"):
        run_schedule(Schedule(seed=3, requests=20))


class ForgetsItsPrimary(WitnessMachine):
    """A witness whose primary reads as a name outside the group after each grant, until its next message."""

    real_primary = ""

    def handle(self, src, msg, now):
        if self.real_primary:
            self.primary, self.real_primary = self.real_primary, ""
        out = super().handle(src, msg, now)
        if any(isinstance(o.msg, wire.Vote) and o.msg.granted for o in out):
            self.primary, self.real_primary = "nobody", self.primary
        return out


def test_a_broken_witness_invariant_is_reported_in_a_sweep(monkeypatch, capsys):
    monkeypatch.setattr(sim_participants, "WitnessMachine", ForgetsItsPrimary)
    # Seeds whose faults make the witness grant an epoch: the sweep names them, and runs every seed.
    code = sim_main(["--schedules", "6", "--seed", "1", "--json"])
    total = json.loads(capsys.readouterr().out)
    assert code == 1 and total["schedules"] == 6
    reported = [f for f in total["failed_seeds"] if any("invariant: witness" in v for v in f["violations"])]
    assert reported, total["failed_seeds"]
    assert all("exception" not in v for f in total["failed_seeds"] for v in f["violations"])
