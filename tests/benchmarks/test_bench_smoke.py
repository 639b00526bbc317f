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
        if tmp in cmd and "replication.ops.cli" in cmd:
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
    two_hop = r["floor_two_hop"]
    assert two_hop["paced"]["latency_ns"]["count"] == 300
    assert {"request_bytes", "forward_bytes", "ack_bytes", "reply_bytes"} <= set(two_hop)
    assert {"relay", "echo", "client"} <= set(two_hop["paced"]["cpu_us_per_order"])
    for mode in ("sync", "async"):
        m = r["modes"][mode]
        assert "error" not in m, m
        for key in ("paced", "pipelined", "unplanned_failover", "reply_statuses", "final_status"):
            assert key in m, (mode, key)
        assert {"p50", "p99", "p99.9", "max"} <= set(m["paced"]["latency_ns"])
        assert "throughput" in m["pipelined"]
        # What the passes did, not only that they reported: every order answered OK (a late
        # duplicate answer may add to the count, never another status), no fail-over, and
        # the group left as one primary and one standby on one history.
        assert m["paced"]["orders"] == 300 and m["pipelined"]["orders"] == 300
        assert set(m["reply_statuses"]) == {"ok"} and m["reply_statuses"]["ok"] >= 600, m["reply_statuses"]
        assert m["unplanned_failover"] is False
        final = m["final_status"]
        assert sorted(final[n]["role"] for n in ("a", "b")) == ["primary", "standby"], final
        assert final["a"]["epoch"] == final["b"]["epoch"], final
        if mode == "sync":  # every acknowledged entry is on the standby: the same seq, the same book
            assert final["a"]["last_seq"] == final["b"]["last_seq"] > 0, final
            assert final["a"]["digest"] == final["b"]["digest"], final


def _alive_floor_child(pid: int) -> bool:
    """Whether ``pid`` is still a teardown-floor child (its ``-c`` script is on its command line)."""
    try:
        return b"add_subcommands" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_bench_failover_smoke(tmp_path):
    r = run_harness("failover", tmp_path, "--rounds", "1", "--floor-children", "2")
    assert set(r["summary"]) == {"sigkill", "sigstop", "switchover"}
    for s in r["summary"].values():
        assert {"first_accepted_ms", "first_reply_ms", "promotion_ms", "lost", "duplicated"} <= set(s)
        assert s["rounds"] == 1 and s["failed"] == 0, s
        assert s["lost"] == 0 and s["duplicated"] == 0, s  # sync mode: a fail-over loses nothing
    j = r["journal_check"]
    assert {"acked", "lost", "duplicated"} <= set(j)
    assert j["lost"] == 0 and j["duplicated"] == 0 and not j["duplicated_seqs"], j
    assert 0 < j["acked"] <= j["entries"] + j["unchecked_below_base"], j
    assert len(r["rounds"]) == 3
    assert sum(rnd["lost"] for rnd in r["rounds"]) == j["lost"]
    assert sum(rnd["duplicated"] for rnd in r["rounds"]) == j["duplicated"]
    # The teardown floor: two passes of two children, every one killed, timed, reaped.
    for key in ("teardown_floor_before", "teardown_floor_after"):
        f = r[key]
        assert "error" not in f, f
        assert f["children"] == 2 and len(f["samples"]) == 2
        assert "replication.transport.node_driver" in f["imports"]
        for x in f["samples"]:
            assert isinstance(x["disconnect_ms"], float)
            assert x["rss_kb"] > 0
            assert not _alive_floor_child(x["pid"])
    tf = r["teardown_floor"]
    assert tf["children"] == 4 and tf["disconnect_ms"]["count"] == 4
    assert {"p50", "p99", "max"} <= set(tf["disconnect_ms"]) and tf["rss_mb"]["p50"] > 0
    assert r["node_rss_mb"]["count"] == 2 and r["node_rss_mb"]["p50"] > 0  # the sigkill and sigstop rounds
    assert all(rnd["old_rss_kb"] > 0 for rnd in r["rounds"] if rnd["kind"] != "switchover")
    s = r["summary"]["sigkill"]
    assert s["floor_ms"] == tf["disconnect_ms"]["p50"]
    assert s["above_floor_ms"] == pytest.approx(s["first_accepted_ms"]["p50"] - s["floor_ms"], abs=1e-3)
    assert s["x_floor"] == pytest.approx(s["first_accepted_ms"]["p50"] / s["floor_ms"], abs=0.01)
    sigkill_target = r["targets"][0]
    assert (
        sigkill_target["target"] == "SIGKILL -> first accepted, p50" and sigkill_target["goal"] == "<= 5 ms"
    )
    assert sigkill_target["floor_ms"] == s["floor_ms"]


def test_bench_catchup_smoke(tmp_path):
    r = run_harness("catchup", tmp_path, "--entries", "3000")
    assert set(r["variants"]) == {"journal", "snapshot"}
    for v in r["variants"].values():
        assert "error" not in v, v
        for key in ("target_seq", "catchup_s", "rate", "digest_equal", "curve_ms_seq", "standby_up_s"):
            assert key in v, key
        # The standby caught up to the primary's whole journal, and holds the same book.
        assert v["entries"] == 3000 and v["target_seq"] >= 3000, v
        assert v["digest_equal"] is True, v
        assert v["curve_ms_seq"][-1][1] >= v["target_seq"], v["curve_ms_seq"][-3:]


def test_bench_idle_smoke(tmp_path):
    r = run_harness("idle", tmp_path, "--seconds", "0.5", "--modes", "sync")
    processes = r["modes"]["sync"]["processes"]
    assert set(processes) == {"a", "b", "witness"}
    assert [processes[n]["role"] for n in ("a", "b", "witness")] == ["primary", "standby", "witness"]
    for p in processes.values():
        assert {"core_percent", "wakeups_per_s", "threads", "rss_kb"} <= set(p), p
        assert p["threads"] >= 1 and p["rss_kb"] > 0 and p["core_percent"] >= 0
        assert p["modules"] > 50  # counted from the process's PYTHONPROFILEIMPORTTIME lines
    assert set(r["floor"]["processes"]) == {"pinger0", "pinger1"}
    assert [t["target"] for t in r["targets"]] == ["sync a at rest", "sync b at rest", "sync witness at rest"]
