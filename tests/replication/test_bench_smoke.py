"""Smoke tests of the replication benchmark harnesses: they run, end, clean up and write their JSON.

Each harness runs as ``python -m benchmarks.<name>`` at a tiny size with
``--no-plot`` into a temp dir. Nothing here asserts a duration or a rate;
the checks are that it exits, that the result file has the keys the docs
promise, and that no node process outlives it. A harness that overruns its
bound gets SIGTERM (which it turns into a clean stop), then SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("zmq")
pytest.importorskip("hdrh")

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]


def _node_pids(tmp: str) -> set[int]:
    """Processes whose command line names a group file under ``tmp`` (none should survive)."""
    pids = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().decode("utf-8", "replace")
        except OSError:
            continue
        if tmp in cmd and "replication.cli" in cmd:
            pids.add(int(d.name))
    return pids


def run_harness(name: str, out: Path, *flags: str, bound: float = 180.0) -> dict:
    env = dict(os.environ, TMPDIR=str(out), PYTHONPATH=str(ROOT))
    p = subprocess.Popen(
        [sys.executable, "-m", f"benchmarks.{name}", "--no-plot", "--out", str(out), *flags],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = p.communicate(timeout=bound)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGTERM)  # the harness stops its groups on SIGTERM
        try:
            output, _ = p.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            output, _ = p.communicate(timeout=15)
        pytest.fail(f"bench {name} overran {bound} s:\n{output.decode(errors='replace')[-3000:]}")
    text = output.decode(errors="replace")
    assert p.returncode == 0, text[-3000:]
    assert not _node_pids(str(out)), f"node processes left behind by bench {name}"
    path = out / f"{name}.json"
    assert path.exists(), text[-3000:]
    result = json.loads(path.read_text())
    for key in ("harness", "command", "options", "machine", "interrupted", "targets"):
        assert key in result, key
    assert result["harness"] == name and result["interrupted"] is False
    for t in result["targets"]:
        assert {"target", "goal", "measured", "met"} <= set(t)
    return result


def test_bench_replication_smoke(tmp_path):
    r = run_harness(
        "replication", tmp_path, "--paced", "300", "--throughput", "300", "--rate", "2000", "--window", "64"
    )
    assert r["floor"]["paced"]["latency_ns"]["count"] == 300
    assert {"request_bytes", "reply_bytes", "pipelined"} <= set(r["floor"])
    for mode in ("sync", "async"):
        m = r["modes"][mode]
        assert "error" not in m, m
        for key in ("paced", "pipelined", "unplanned_failover", "reply_statuses", "final_status"):
            assert key in m, (mode, key)
        assert {"p50", "p99", "p99.9", "max"} <= set(m["paced"]["latency_ns"])
        assert "throughput" in m["pipelined"]


def test_bench_failover_smoke(tmp_path):
    r = run_harness("failover", tmp_path, "--rounds", "1")
    assert set(r["summary"]) == {"sigkill", "sigstop", "switchover"}
    for s in r["summary"].values():
        assert {"first_accepted_ms", "first_reply_ms", "promotion_ms", "lost", "duplicated"} <= set(s)
    assert {"acked", "lost", "duplicated"} <= set(r["journal_check"])
    assert len(r["rounds"]) == 3


def test_bench_catchup_smoke(tmp_path):
    r = run_harness("catchup", tmp_path, "--entries", "3000")
    assert set(r["variants"]) == {"journal", "snapshot"}
    for v in r["variants"].values():
        assert "error" not in v, v
        for key in ("target_seq", "catchup_s", "rate", "digest_equal", "curve_ms_seq", "standby_up_s"):
            assert key in v, key
