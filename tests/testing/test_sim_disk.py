"""The simulator's disk faults (``replication.testing.sim.disk_faults``): a failed journal append, a damaged journal.

Virtual time only. Each scenario asserts that the fault really happened (the
node's journal failed, or it came back damaged and was repaired) and that the
checker found nothing lost, executed twice or served by two primaries; and
that drawing disk faults left every other seed's schedule as it was.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from replication.testing.sim import Fault, Schedule, Sim, check_sim, random_schedule
from replication.testing.sim import schedule as sim_schedule

logging.getLogger("replication").setLevel(logging.CRITICAL)


def run(schedule: Schedule) -> Sim:
    sim = Sim(schedule).run()
    rep = check_sim(sim)
    assert not rep.violations, "\n".join(rep.violations + sim.fault_log[-20:])
    assert rep.lost == rep.duplicates == rep.split_brain == 0 and rep.converged
    return sim


@pytest.mark.parametrize("seed", range(1, 9))
@pytest.mark.parametrize("standbys", [1, 2])
def test_a_disk_fault_loses_nothing_acknowledged(seed, standbys):
    """The next append of some node fails (nothing, half or all written, the sync failed); the
    operator restarts it on a good disk after a while."""
    fault = Fault("disk_fail", 0.0, 0.2, "standby" if seed % 2 else "primary")
    sim = run(Schedule(seed=seed, standbys=standbys, requests=60, drop=0.01, faults=(fault,)))
    assert any("after its disk fault (journal:" in line for line in sim.fault_log), sim.fault_log


def test_a_primary_restarted_damaged_while_its_standby_is_down_is_never_elected():
    """Finding 6's shape: the primary's journal is damaged, it restarts alone; the standby that holds
    everything comes back later and leads; the damaged node gets its history back."""
    alone = 0
    for seed in range(1, 13):
        fault = Fault("corrupt_restart", 0.0, 0.15, "primary")
        sim = run(Schedule(seed=seed, requests=40, snapshot_every=7 if seed % 2 else 0, faults=(fault,)))
        damaged = [line for line in sim.fault_log if "with its journal damaged" in line and "restart" in line]
        assert damaged, sim.fault_log
        name = damaged[0].split()[2]
        m = sim.nodes[name].machine
        assert not m.damaged and m.replica.seq == sim.nodes[sim.primary()].machine.replica.seq
        alone += any(" too; it restarts after " in line for line in sim.fault_log)
    assert alone >= 3  # the primary's case, with its standby down, came up


def test_disk_faults_are_drawn_last(monkeypatch):
    """A seed that draws no disk fault has the schedule it had before disk faults existed;
    one that draws it differs only in its optional last faults (the disk fault, and the
    two-candidate split drawn after it, which the disk draw's numbers move)."""

    def core(s):
        faults = list(s.faults)
        while faults and (
            faults[-1].kind in sim_schedule.DISK_FAULTS or faults[-1].kind == "isolate_primary_split"
        ):
            faults.pop()
        return replace(s, faults=tuple(faults))

    drawn = 0
    for seed in range(1, 301):
        s = random_schedule(seed)
        with monkeypatch.context() as mp:
            mp.setattr(sim_schedule, "DISK_FAULT_RATE", 0.0)
            before = random_schedule(seed)
        if any(f.kind in sim_schedule.DISK_FAULTS for f in s.faults[len(core(s).faults) :]):
            drawn += 1
            assert core(s) == core(before)
        else:
            assert s == before
    assert 0 < drawn < 300
