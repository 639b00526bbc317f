"""Pinned seeds of the overlapping-fault async sweep (``--overlap on --mode async``) that once failed.

Virtual time only. Each test replays one seed's schedule and asserts both that the
shape which broke it really came up (from the fault log or the machines' counters)
and that the checker found nothing wrong: no violation, nothing executed twice, no
split brain, converged.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from replication.testing.sim import Fault, Schedule, Sim, check_sim, random_schedule
from replication.testing.sim.schedule import without_switchover_steps

logging.getLogger("replication").setLevel(logging.CRITICAL)


def run_seed(seed: int, plain: bool = False) -> Sim:
    # Without execution reports: these seeds' stories were found before them (reports change the run).
    # ``plain``: its switchovers as drawn before switchover_step faults existed.
    sched = random_schedule(seed)
    sched = without_switchover_steps(sched) if plain else sched
    sim = Sim(replace(sched, mode="async", overlap=True, reports=False)).run()
    rep = check_sim(sim)
    assert not rep.violations, "\n".join(rep.violations + sim.fault_log[-20:])
    assert rep.duplicates == rep.split_brain == 0 and rep.converged
    return sim


def test_a_damaged_nodes_partner_restarts_though_an_overlapping_fault_restarted_the_node():
    """Seed 4534: ``corrupt_restart`` crashed the primary and its standby c; an overlapping
    ``switchover_crash`` restarted the primary first, so the disk fault's heal found it up.
    The operator must still bring c back (it stayed down for good: not converged).

    Since the witness grants a switchover's target unasked (issue 18) the handover sends
    other messages, the network draws differ, and this story no longer comes up on 4534
    (its first switchover is a plain one here, as it was drawn then): the run is still
    checked (run_seed), the story's shape is not. It needs a seed found again."""
    sim = run_seed(4534, plain=True)
    assert sim.nodes["c"].up


def test_an_old_primary_renewed_by_its_grantee_acknowledges_only_until_the_grantee_serves():
    """Seed 4221: c asks for epoch 2 as the isolated primary a comes back, drops its candidacy,
    echoes a's lease ask, and only then gets the grant: a acknowledges after the grant (under
    c's echo), and c defers the grant until its promise ends. Safe: the checker's lease rule
    counts from when epoch 2 first serves, and no reply of epoch 1 leaves after that."""
    sim = run_seed(4221)
    assert sim.last_ack_at[1] > sim.granted_at[2]  # the shape: an epoch-1 reply after the grant
    assert sim.nodes["c"].machine.counters.get("votes_deferred_by_lease", 0) > 0


def test_a_deferred_grant_is_taken_once_the_grantees_promise_ends():
    """Seed 8766: b is granted epoch 2 while it echoes a (its candidacy dropped; later it restarts
    and follows a again). Having deferred the grant, it echoes a no more, so its promise ends and it
    takes epoch 2. (It used to echo a on and defer the witness's re-sent grant for good: a served
    epoch 1 on b's echoes alone, while the witness held epoch 2 for b.)"""
    sim = run_seed(8766)
    assert sim.granted_at[2] < sim.last_ack_at[1] < sim.served_at[2]
    p = sim.nodes[sim.primary()].machine
    assert (sim.primary(), p.epoch) == (sim.witness.primary, sim.witness.epoch) == ("b", 2)


def test_the_lease_rule_still_catches_an_old_primary_acknowledging_past_its_lease(monkeypatch):
    """The checker's rule can fail: a primary that ignores its lease, cut off from its peers and
    the witness (not its clients), acknowledges in epoch 1 after epoch 2 began serving."""
    from replication.protocol.node.lease import PrimaryLease

    monkeypatch.setattr(PrimaryLease, "held", lambda self, now: True)
    fault = Fault("isolate_primary", 0.02, 0.3)
    sim = Sim(Schedule(seed=1, mode="async", standbys=2, requests=60, faults=(fault,))).run()
    rep = check_sim(sim)
    assert rep.acked_past_lease > 0
    assert any(v.startswith("lease: epoch 1 acknowledged") for v in rep.violations), rep.violations
