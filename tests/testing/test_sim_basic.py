"""The fault simulator on fixed seeds and targeted scenarios, and the checker shown to bite.

Everything here runs on virtual time (``replication.testing.sim``): nothing sleeps,
nothing asserts a duration. A failure prints the seed and fault log; replay
it with ``python -m replication.testing.sim --seed S``.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from replication.protocol import wire
from replication.protocol.queues import PendingQueue
from replication.testing.sim import (
    NODE_FAULTS,
    Fault,
    Schedule,
    Sim,
    SimFailure,
    check_sim,
    random_schedule,
    run_schedule,
)
from replication.testing.sim.schedule import without_switchover_steps

logging.getLogger("replication").setLevel(logging.CRITICAL)


@pytest.mark.parametrize("seed", range(1, 13))
def test_random_schedules(seed):
    run_schedule(random_schedule(seed))


@pytest.mark.parametrize("kind", NODE_FAULTS)
@pytest.mark.parametrize("restart_as", ["standby", "primary"])
def test_each_fault_alone_loses_nothing(kind, restart_as):
    faults = (Fault(kind, 0.01, 0.15, restart_as), Fault(kind, 0.03, 0.02, restart_as))
    rep = run_schedule(Schedule(seed=7, standbys=2, requests=30, drop=0.02, reorder=0.1, faults=faults))
    assert rep.acked == 2 * (30 + 5) and rep.lost == rep.duplicates == rep.split_brain == 0
    assert rep.faults[kind] == 2


def test_primary_crash_fails_over_to_a_new_epoch():
    # The crash picks its node from the seeded history: the first seed whose crash hits the primary.
    for seed in range(1, 20):
        sim = Sim(Schedule(seed=seed, requests=40, faults=(Fault("crash", 0.01, 0.3),))).run()
        if any("crash a (primary)" in line for line in sim.fault_log):
            break
    assert any("crash a (primary)" in line for line in sim.fault_log)
    rep = check_sim(sim)
    assert not rep.violations and rep.converged
    assert max(sim.primaries) >= 2 and all(len(v) == 1 for v in sim.primaries.values())


def test_torn_tail_crash_mid_step_recovers_and_loses_nothing_acknowledged():
    for seed in range(20, 28):
        sched = Schedule(seed=seed, requests=40, window=32, faults=(Fault("crash_mid_step", 0.0, 0.1),) * 3)
        sim = Sim(sched).run()
        rep = check_sim(sim)
        assert not rep.violations, rep.violations
    assert any("torn journal" in line or "outputs lost" in line for line in sim.fault_log)


def test_corrupted_standby_is_caught_at_its_first_bad_entry_and_never_promotes():
    faults = (Fault("crash", 0.01, 0.3), Fault("isolate_primary", 0.01, 0.2), Fault("switchover", 0.01, 0.1))
    for bad in (1, 4, 9):
        sim = Sim(
            Schedule(seed=bad, standbys=1, corrupt=True, corrupt_seq=bad, requests=30, faults=faults)
        ).run()
        rep = check_sim(sim)
        assert not rep.violations, rep.violations
        assert sim.diverged == {"c": bad} and rep.divergences == 1 and not sim.corrupt_was_primary
        c = sim.nodes["c"]
        assert c.machine.role == wire.ROLE_DIVERGED and c.journal.last_seq == bad - 1


def test_runs_are_reproducible_from_the_seed():
    sched = random_schedule(11)
    one, two = Sim(sched).run(), Sim(sched).run()
    assert one.fault_log == two.fault_log and one.steps == two.steps and one.now == two.now
    assert check_sim(one).as_dict() == check_sim(two).as_dict()
    assert one.registry.entries == two.registry.entries


def test_reference_engine_runs_the_same_history():
    sched = replace(random_schedule(5), engine="reference")
    native = Sim(random_schedule(5)).run()
    ref = Sim(sched).run()
    assert not check_sim(ref).violations
    assert ref.registry.entries == native.registry.entries


def test_async_mode_keeps_every_rule_but_may_lose_acknowledged_requests():
    for seed in range(1, 6):
        sched = replace(random_schedule(seed), mode="async")
        rep = run_schedule(sched, check=False)
        assert [v for v in rep.violations if not v.startswith("lost")] == []


def test_failure_names_its_seed_and_fault_log():
    sim = Sim(Schedule(seed=99, requests=10, faults=(Fault("crash", 0.01, 0.1),))).run()
    cl = next(iter(sim.clients.values()))
    cl.done[10**6] = wire.Reply(cl.core.client_id, 10**6, wire.OK, 1, 5, "a", b"")  # an ack nobody executed
    rep = check_sim(sim)
    assert rep.lost == 1 and any(v.startswith("lost") for v in rep.violations)
    err = SimFailure(sim.schedule, rep.violations, sim.fault_log)
    assert (
        "seed=99" in str(err)
        and "python -m replication.testing.sim --seed 99" in str(err)
        and "crash" in str(err)
    )


def test_checker_catches_a_broken_dedupe_table(monkeypatch):
    """With the dedupe table switched off, re-sent requests execute twice: the checker must say so."""
    from replication.protocol.replica import Replica

    monkeypatch.setattr(Replica, "lookup", lambda self, cid, rid: None)
    sched = Schedule(
        seed=4, requests=40, window=16, duplicate=0.2, faults=(Fault("isolate_primary", 0.0, 0.2),)
    )
    rep = run_schedule(sched, check=False)
    assert rep.duplicates > 0 and any(v.startswith("duplicate") for v in rep.violations)


def test_checker_catches_an_undetected_divergence(monkeypatch):
    """A standby that skips the digest comparison keeps a wrong book: the per-seq digest check finds it."""
    from replication.protocol.replica import Replica

    real = Replica.apply_entry

    def blind(self, e):
        events, _ = real(self, e)
        return events, True

    monkeypatch.setattr(Replica, "apply_entry", blind)
    rep = run_schedule(Schedule(seed=8, standbys=1, corrupt=True, corrupt_seq=3, requests=20), check=False)
    assert any("divergence" in v for v in rep.violations)


def _liveness(seed: int) -> list[str]:
    # bundle=1: the history each seed was pinned for (drawn before schedules could send bundles).
    sim = Sim(replace(random_schedule(seed), bundle=1))
    sim.SETTLE_BOUND = sim.LIVENESS_BOUND = 2.0
    rep = check_sim(sim.run())
    assert [v for v in rep.violations if not v.startswith("liveness")] == []  # safety holds regardless
    return [v for v in rep.violations if v.startswith("liveness")]


def test_switchovers_under_message_loss_converge():
    """Seed 29 once left both nodes standby, each following the other, after a lost Handover."""
    assert _liveness(29) == []


def test_fail_over_is_possible_once_traffic_stops_after_solo():
    """Seed 113 once kept the witness's solo flag on after traffic stopped, refusing any fail-over."""
    assert _liveness(113) == []


def test_standby_caught_up_by_snapshot_rejoins_the_isr_without_new_orders():
    """Seed 4510: the new primary had installed a snapshot at its last seq, so it could not check the
    caught-up standby's heartbeat against its journal, and with no more orders no Ack came: the group
    stayed solo. A heartbeat at the primary's own seq with its digest now counts as the ack."""
    assert _liveness(4510) == []


def test_entries_buffered_before_a_snapshot_are_applied_when_it_is_installed():
    """Seed 9777: a standby installed a snapshot that ended right before an entry it had buffered
    (it arrived ahead of a gap); left in the buffer, the standby asked for the empty refill range
    up to it, over and over, and with no new orders never levelled. Installing now applies it."""
    assert _liveness(9777) == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_primary_restarted_before_it_was_missed_runs_again(seed):
    """A primary restarted (as standby) inside the heartbeat timeout once left two standbys forever."""
    sim = Sim(Schedule(seed=seed, requests=20, faults=(Fault("crash", 0.02, 0.005),) * 3))
    sim.RESTART_MIN = 0.0  # restart 5 ms after the kill, inside the 40 ms heartbeat timeout
    sim.SETTLE_BOUND = sim.LIVENESS_BOUND = 2.0
    rep = check_sim(sim.run())
    assert [v for v in rep.violations if not v.startswith("liveness")] == []  # safety holds regardless
    assert rep.violations == []


@pytest.mark.parametrize("seed", [5017, 5020])
def test_async_losses_are_counted_not_reported_as_wrong_replies(seed):
    """Async mode may lose an acknowledged execution at fail-over; the re-sent request then runs once more.

    These seeds lead the checker to "told seq X, history has it at Y" (re-found when the
    switchover_crash fault changed every schedule's draws, and again when the async lease
    made seed 5004 lose nothing); that is the async trade-off, so it counts as a loss, and
    every safety rule still holds, the lease's included. (Seeds found by re-checking
    async runs strictly: ``mode="sync"`` on the finished ``Sim``'s schedule.)
    """
    report = run_schedule(replace(random_schedule(seed), mode="async"), check=False)
    assert report.violations == []
    assert report.duplicates == 0 and report.split_brain == 0
    assert report.lost > 0


@pytest.mark.parametrize("seed", range(1, 13))
def test_bundled_requests_keep_every_rule_under_faults(seed, monkeypatch):
    """Clients sending bundles (``Client.send_many`` / ``send_batch``) reach the primary's packed
    span path (``queues.PendingQueue``); crashes, a crash mid-step, a hang, switchovers (one
    whose old primary crashes after its Handover) and lost, doubled and reordered messages must
    still lose, duplicate and diverge nothing. (Ignoring the dedupe table for a span fails 7 of
    these seeds, ignoring the requests already queued 3: checked by mutating the code.)"""
    spanned: list[int] = []
    add_span = PendingQueue.add_span

    def counting(self, src, run, lo, hi, *rest):
        spanned.append(hi - lo)
        return add_span(self, src, run, lo, hi, *rest)

    monkeypatch.setattr(PendingQueue, "add_span", counting)
    kinds = ("crash", "switchover", "crash_mid_step", "hang", "switchover_crash")
    faults = tuple(Fault(k, 0.01, 0.05, "primary" if seed % 2 else "standby") for k in kinds)
    schedule = Schedule(
        seed=seed,
        standbys=1 + seed % 2,
        clients=2,
        requests=150,
        window=32,
        bundle=24,
        drop=0.02,
        duplicate=0.1,  # whole bundles arrive twice, sometimes while the first copy is queued
        reorder=0.1,
        faults=faults,
    )
    report = run_schedule(schedule)
    assert report.violations == [] and report.acked > 0
    assert sum(spanned) > 0


@pytest.mark.parametrize("seed", range(1, 17))
def test_random_schedules_with_overlapping_faults(seed):
    run_schedule(replace(random_schedule(seed), overlap=True))


@pytest.mark.parametrize(
    "seed",
    [
        344,  # a switchover target restarted during the drain: granted on a shorter journal
        5971,  # a node behind the new primary counted in sync: promoted without acknowledged entries
        1479,  # a Handover to a target that never joined: no primary left
        4743,  # an old primary's unacknowledged suffix made it "ahead": every vote refused
    ],
)
def test_overlapping_fault_seeds_that_once_broke_a_rule(seed):
    run_schedule(replace(random_schedule(seed), overlap=True))


@pytest.mark.parametrize(
    "seed",
    [
        1405,  # a stepped down to an epoch whose primary restarted as a standby: nobody asked
        1176,  # the same, with the standbys' leader set but never followed in the epoch
        3284,  # a joiner from an epoch the primary's line skipped kept a suffix: diverged
        7149,  # the same, seen as one seq holding entries of two epochs
    ],
)
def test_overlapping_fault_seeds_that_once_broke_an_async_group(seed):
    run_schedule(replace(random_schedule(seed), overlap=True, mode="async"))


def test_both_nodes_down_at_once_lose_nothing_and_the_group_comes_back():
    faults = (Fault("crash", 0.02, 0.2, "standby"), Fault("crash", 0.001, 0.15, "primary"))
    for seed in range(1, 7):
        sim = Sim(Schedule(seed=seed, requests=40, overlap=True, faults=faults)).run()
        rep = check_sim(sim)
        assert not rep.violations and rep.converged, rep.violations
        events = [line.split(" ", 1)[1] for line in sim.fault_log]
        assert events[0].startswith("crash ") and events[1].startswith("crash "), events  # both down
        assert rep.faults["restart"] == 2


def test_switchovers_without_other_faults_land_on_their_target():
    # A bounced switchover (the old primary winning the next epoch instead) breaks no safety
    # rule, so the checker counts landings; with no other fault every one must land.
    for seed in range(1, 9):
        sched = Schedule(
            seed=seed, standbys=1 + seed % 2, requests=30, faults=(Fault("switchover", 0.01, 0.05),) * 3
        )
        rep = run_schedule(sched)
        assert rep.switchovers == 3 and rep.switchovers_landed == 3, (seed, rep.as_dict())


@pytest.mark.parametrize(
    "seed",
    [
        4044,  # a node at the candidate's seq in another epoch counted in sync: promoted, lost one
        2074,  # an in-sync node fenced below the primary's snapshot, then promoted without it
        2371,  # no primary after the above
    ],
)
def test_overlapping_fault_seeds_with_up_to_ten_faults_that_once_broke_a_rule(seed):
    run_schedule(replace(random_schedule(seed, max_faults=10), overlap=True))


@pytest.mark.parametrize("seed", [6114, 6877])
def test_a_switchover_target_restarted_on_another_epochs_suffix_is_fenced_before_the_handover(seed):
    """Seeds 6114, 6877 (sync, up to ten overlapping faults): a, epoch 1's primary, crashed holding
    an unreplicated suffix; b took epoch 2 and sequenced the re-sent requests at the same seqs
    (equal digests), then drained into a, down. Restarted, a's heartbeat (b's seq and digest,
    epoch 1's last entry) was taken for an ack: b handed over before a's Join was fenced, and
    followed a's epoch 3 without a Join, keeping epoch 2's entries under epoch 3's (a split
    history). Now a is fenced first, and b's handover is proven on a's journal, b's own."""
    # As found (before the group's time: its idle time commands change the run's course).
    sim = Sim(replace(random_schedule(seed, max_faults=10), overlap=True, reports=False, time=False)).run()
    rep = check_sim(sim)
    assert not rep.violations and rep.split_brain == 0 and rep.converged, rep.violations
    assert any(line.endswith("switchover b -> a") for line in sim.fault_log), sim.fault_log
    a, b = sim.nodes["a"].machine, sim.nodes["b"].machine
    assert a.counters.get("fenced") == 1 and b.counters.get("handover_resumes") == 1  # the shape


def test_seed_1666_with_up_to_ten_faults():
    """A target's request parked before its switchover was granted on the seq it had then."""
    run_schedule(replace(random_schedule(1666, max_faults=10), overlap=True))


def test_async_loss_rerun_at_the_same_seq_is_counted_not_reported_as_a_wrong_reply():
    """Seed 500 (async, ten overlapping faults): a's epoch-3 execution of a re-sent request
    at seq 66 was lost when epoch 4 went to b, whose epoch-2 history ran the same request at
    the same seq 66. The late reply's events are a's: an async loss (the reply's epoch never
    held the history's entry), not a wrong reply."""
    # As found (its switchovers drawn as they were before switchover_step faults existed).
    sched = replace(
        without_switchover_steps(random_schedule(500, 10)), mode="async", overlap=True, reports=False
    )
    report = run_schedule(sched, check=False)
    assert report.violations == [] and report.duplicates == 0 and report.split_brain == 0
    assert report.lost > 0
