"""Golden traces: the simulator's schedules still show exactly what they showed when recorded.

A subset here (the first seeds of each configuration); ``make golden`` runs
all of them. A difference means the protocol's observable behaviour changed:
intended changes re-record (``python -m replication.testing.golden --record``)
and say so in the commit.
"""

from __future__ import annotations

import pytest

import matching
from replication.testing import golden as sim_golden

pytestmark = pytest.mark.skipif(matching.Engine is None, reason="extension not built")

SUBSET = [(config, seed) for config in sim_golden.CONFIGS for seed in range(1, 26)]


def test_every_recorded_configuration_and_seed_is_in_the_file():
    recorded = sim_golden.load()
    assert set(recorded) == {f"{c}/{s}" for c, s in sim_golden.all_keys()}


def test_the_first_seeds_of_each_configuration_reproduce_their_traces():
    got = sim_golden.run_traces(SUBSET, jobs=1)
    assert sim_golden.compare(sim_golden.load(), got) == []


def test_a_changed_frame_is_a_difference():
    # The comparison is not vacuous: a trace that differs in one part is named, part and all.
    key = f"{SUBSET[0][0]}/{SUBSET[0][1]}"
    want = sim_golden.load()[key]
    changed = {**want, "frames": "0" * len(want["frames"])}
    assert sim_golden.compare({key: want}, {key: changed}) == [f"{key}: frames differ"]
