"""The chaos harness on real processes, briefly: three kill/switchover cycles, nothing lost.

Each cycle SIGKILLs a node (or switches over) with requests in flight and
restarts it as a standby; ``demo.Group`` kills every process and removes the
temp dir on exit. Bounded by the harness's own stall timeouts and the
pytest timeout; nothing here asserts a duration.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("zmq")

from replication.testing.chaos import run_chaos  # noqa: E402

pytestmark = pytest.mark.timeout(180)


def test_three_cycles_lose_nothing():
    res = run_chaos(3, seed=3, per_cycle=20)
    assert res["cycles"] == 3 and res["stalled"] == ""
    assert res["acked"] >= 3 * 20
    assert (
        res["lost"]
        == res["duplicates"]
        == res["divergences"]
        == res["split_brain"]
        == res["wrong_replies"]
        == 0
    )
    assert res["kills_primary"] + res["kills_standby"] + res["switchovers"] == 3


def test_cli_emits_json():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "replication.ops.cli",
            "chaos",
            "--cycles",
            "2",
            "--seed",
            "5",
            "--per-cycle",
            "10",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    res = json.loads(out.stdout)
    for key in ("cycles", "acked", "lost", "duplicates", "divergences", "split_brain", "max_failover_ms"):
        assert key in res
    assert res["cycles"] == 2 and res["acked"] >= 2 * 10
    assert res["lost"] == res["duplicates"] == res["divergences"] == res["split_brain"] == 0, res
