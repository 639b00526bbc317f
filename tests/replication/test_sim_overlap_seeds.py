"""Pinned seeds of the overlapping-fault async sweep (``--overlap on --mode async``) that once failed.

Virtual time only. Each test replays one seed's schedule and asserts both that the
shape which broke it really came up (from the fault log or the machines' counters)
and that the checker found nothing wrong: no violation, nothing executed twice, no
split brain, converged.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from replication.sim import Sim, random_schedule
from replication.sim_check import check_sim

logging.getLogger("replication").setLevel(logging.CRITICAL)


def run_seed(seed: int) -> Sim:
    sim = Sim(replace(random_schedule(seed), mode="async", overlap=True)).run()
    rep = check_sim(sim)
    assert not rep.violations, "\n".join(rep.violations + sim.fault_log[-20:])
    assert rep.duplicates == rep.split_brain == 0 and rep.converged
    return sim


def test_a_damaged_nodes_partner_restarts_though_an_overlapping_fault_restarted_the_node():
    """Seed 4534: ``corrupt_restart`` crashed the primary and its standby c; an overlapping
    ``switchover_crash`` restarted the primary first, so the disk fault's heal found it up.
    The operator must still bring c back (it stayed down for good: not converged)."""
    sim = run_seed(4534)
    assert any(line.endswith("a is up already") for line in sim.fault_log), sim.fault_log
    assert any(line.endswith("restart c as standby") for line in sim.fault_log), sim.fault_log
    assert sim.nodes["c"].up
