"""Shared pytest set-up: hypothesis profiles, and the ``group`` fixture of the process tests.

``ci`` (the default) is bounded and deterministic so ``make test`` is
repeatable and fast; ``long`` (``HYPOTHESIS_PROFILE=long``, used by
``make test-long``) explores thousands of examples per property.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long",
    max_examples=1000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def group():
    """``group(*args, **kw)`` starts a ``replication.testing.harness.Group`` of real processes; every group
    made is stopped (its processes killed, its directory removed) when the test ends."""
    from replication.testing.harness import Group

    groups = []

    def make(*args, **kw):
        g = Group(*args, **kw)
        groups.append(g)
        return g

    yield make
    for g in groups:
        g.stop()
