"""Property-based: hypothesis draws fault schedules (and command flows) and the simulator runs them.

Each example is one whole simulated group — primary, standby(s), witness,
clients — under a drawn mix of node faults (crashes, torn tails, hangs,
partitions, switchovers, a witness restart) and message faults (loss,
duplication, reordering), checked by ``replication.testing.sim.check``: nothing
acknowledged lost, nothing executed twice, no split brain, every digest
equal per seq, the planted divergence caught, progress after healing.
Shrinking works on the fault list, so a failure reduces to the few faults
that matter; its ``Schedule`` (with its seed) is printed for replay.

These properties assert safety. Liveness (convergence after healing) is
checked by the same checker and counted by the long run
(``python -m replication.testing.sim --schedules N``: ``not_converged``); it is not
asserted here: shrinking a liveness failure runs its full virtual-time
bound on every step, and the seeds that found liveness bugs are pinned as
fixed-seed tests in ``test_sim_basic.py``.

Sized by the hypothesis profile: ``ci`` (default) runs half of its
``max_examples`` per property, ``long`` (``HYPOTHESIS_PROFILE=long``) the
same fraction of thousands.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from replication.testing.sim import NODE_FAULTS, Fault, Schedule, Sim, check_sim, run_schedule
from tests.strategies import command_lists

logging.getLogger("replication").setLevel(logging.CRITICAL)

EXAMPLES = max(10, settings.default.max_examples // 2)

ms = st.integers(min_value=0, max_value=300).map(lambda n: n / 1000)

faults = st.builds(
    Fault,
    # isolate_primary_split: two candidates for one epoch (random_schedule draws it apart).
    kind=st.sampled_from((*NODE_FAULTS, "isolate_primary_split")),
    gap=st.integers(min_value=0, max_value=100).map(lambda n: n / 1000),
    duration=st.integers(min_value=5, max_value=300).map(lambda n: n / 1000),
    restart_as=st.sampled_from(("standby", "primary")),
)


@st.composite
def schedules(draw, mode: str = "sync") -> Schedule:
    requests = draw(st.integers(min_value=10, max_value=40), label="requests")
    corrupt = draw(st.booleans(), label="corrupt")
    return Schedule(
        seed=draw(st.integers(min_value=0, max_value=2**32 - 1), label="seed"),
        mode=mode,
        standbys=draw(st.integers(min_value=1, max_value=2)),
        corrupt=corrupt,
        corrupt_seq=draw(st.integers(min_value=1, max_value=min(10, requests))),
        clients=draw(st.integers(min_value=1, max_value=3)),
        requests=requests,
        window=draw(st.sampled_from((1, 4, 16))),
        drop=draw(st.sampled_from((0.0, 0.02, 0.1))),
        duplicate=draw(st.sampled_from((0.0, 0.02, 0.1))),
        reorder=draw(st.sampled_from((0.0, 0.1, 0.3))),
        faults=tuple(draw(st.lists(faults, max_size=4), label="faults")),
        catchup_lag=draw(st.sampled_from((50_000, 5))) if not corrupt else 50_000,
        snapshot_every=draw(st.sampled_from((0, 7))),
    )


def safety(rep) -> list[str]:
    """The violations that are not about liveness (see the module docstring)."""
    return [v for v in rep.violations if not v.startswith("liveness")]


@settings(max_examples=EXAMPLES)
@given(schedules())
def test_no_schedule_loses_duplicates_or_diverges(schedule):
    rep = run_schedule(schedule, check=False)
    assert safety(rep) == [], schedule.describe()


@settings(max_examples=EXAMPLES)
@given(schedules(), command_lists(min_size=10, max_size=60))
def test_any_command_flow_replicates_exactly(schedule, commands):
    """The shared engine strategies (every order type, bad input) through the whole replicated path."""
    rep = run_schedule(schedule, commands=commands, check=False)
    assert safety(rep) == [], schedule.describe()


@settings(max_examples=max(5, EXAMPLES // 2))
@given(schedules(mode="async"))
def test_async_mode_never_splits_or_duplicates(schedule):
    """Async may lose acknowledged requests at fail-over (its documented trade); nothing else may break."""
    rep = run_schedule(schedule, check=False)
    assert [v for v in safety(rep) if not v.startswith("lost")] == [], schedule.describe()


@settings(max_examples=max(5, EXAMPLES // 3))
@given(schedules())
def test_a_schedule_replays_identically(schedule):
    schedule = replace(schedule, requests=min(schedule.requests, 20))
    one, two = Sim(schedule).run(), Sim(schedule).run()
    assert one.fault_log == two.fault_log and one.steps == two.steps
    assert check_sim(one).as_dict() == check_sim(two).as_dict()
