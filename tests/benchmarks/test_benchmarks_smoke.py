"""Smoke tests of the benchmark harnesses: they run end to end and write the expected JSON.

Tiny N and no charts; no assertion is about a timing.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("hdrh")

from benchmarks import cli, engine, memory, workload  # noqa: E402
from matching import ReferenceEngine, codes  # noqa: E402

PATH_KEYS = {
    "commands",
    "runs_ns",
    "throughput",
    "latency_ns",
    "latency_method",
    "curve",
    "live_orders_after",
}
LATENCY_KEYS = {"count", "p50", "p99", "p99.9", "max", "mean"}


def test_workload_is_deterministic_and_drives_the_reference_without_rejects():
    a = workload.generate(2_000, instruments=8, seed=7, setup_per_instrument=50)
    b = workload.generate(2_000, instruments=8, seed=7, setup_per_instrument=50)
    assert a.ops == b.ops and a.setup == b.setup
    shares = a.describe()["shares"]
    assert 0.5 < shares["new_resting"] + shares["new_marketable"] < 0.7
    e = ReferenceEngine()
    for rec in workload.command_array(a.setup + a.ops).tolist():
        for ev in e.apply_record(rec):
            assert type(ev).__name__ != "Rejected", ev
    assert e.live_orders == a.live_after
    # The per-call form is the same commands.
    e2 = ReferenceEngine()
    fns = (e2.submit, e2.cancel, e2.replace)
    for k, args in workload.call_args(a.setup + a.ops):
        fns[k](*args)
    assert e2.digest == e.digest


def test_engine_harness_writes_expected_json(tmp_path):
    argv = [
        "--commands",
        "300",
        "--reference-commands",
        "100",
        "--repeat",
        "1",
        "--instruments",
        "1",
        "--no-plot",
        "--out",
        str(tmp_path),
        "--seed",
        "3",
    ]
    assert engine.main(argv) == 0
    data = json.loads((tmp_path / "engine.json").read_text())
    assert {"harness", "command", "options", "machine", "interrupted", "variants", "commands"} <= set(data)
    assert {"cpu", "cores", "python", "platform", "packages", "git"} <= set(data["machine"])
    assert data["harness"] == "engine" and data["interrupted"] is False
    variant = data["variants"]["1-instrument"]
    assert {"workload", "paths", "checks", "ratios", "targets"} <= set(variant)
    assert set(variant["paths"]) == set(engine.PATHS)
    for name, res in variant["paths"].items():
        if "missing" in res:  # a peer or the unbuilt extension: reported with a reason, never faked
            assert isinstance(res["missing"], str) and res["missing"], name
            continue
        assert PATH_KEYS <= set(res), name
        assert LATENCY_KEYS <= set(res["latency_ns"]), name
        assert res["throughput"] > 0
        # Every command ran and was timed once; a full-length run ends with the workload's book.
        n = 100 if name == "reference" else 300
        assert res["commands"] == n and res["latency_ns"]["count"] == n, (name, res["commands"])
        if n == 300:
            assert res["live_orders_after"] == variant["workload"]["live_orders_after"], name
    # The checks themselves (all() of nothing would pass): the built paths agree with each other.
    checks = variant["checks"]
    assert {"batch_equals_per_call", "reference_equals_batch_on_prefix"} <= set(checks), checks
    assert all(checks.values()), checks
    assert not list(tmp_path.glob("*.png"))


def test_memory_harness_writes_expected_json(tmp_path):
    argv = ["--commands", "2000", "--subjects", "matchcore,reference", "--no-plot", "--out", str(tmp_path)]
    assert memory.main(argv) == 0
    data = json.loads((tmp_path / "memory.json").read_text())
    assert {"harness", "command", "machine", "orders", "subjects", "target"} <= set(data)
    ref = data["subjects"]["reference"]
    assert ref["live_orders"] == 2000 and ref["rss_delta"] >= 0


def test_bench_subcommands_are_registered():
    import argparse

    parser = argparse.ArgumentParser()
    cli.add_subcommands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "all", "--quick", "--no-plot"])
    assert args.quick and args.no_plot and callable(args.func)
    for name in cli.HARNESSES:
        assert callable(parser.parse_args(["bench", name]).func)


def test_command_array_matches_the_records():
    ops = [
        (workload.NEW, 1, 5, codes.SIDE_SELL, 100_010, 7, True),
        (workload.CANCEL, 1, 5, codes.SIDE_SELL, 100_010),
        (workload.REPLACE, 1, 6, codes.SIDE_BUY, 99_990, 4, 99_980, None),
    ]
    arr = workload.command_array(ops)
    assert arr.dtype == codes.COMMAND_DTYPE
    assert arr["tif"][0] == codes.TIF_IOC and arr["op"][1] == codes.OP_CANCEL
    assert arr["flags"][2] == codes.HAS_PRICE and arr["price"][2] == 99_980


# ----- the fail-over harness's teardown floor (no group needed) ---------------------------------


def _is_floor_child(pid: int) -> bool:
    """Whether ``pid`` is still alive as a teardown-floor child (its ``-c`` script on its command line)."""
    from pathlib import Path

    try:
        return b"add_subcommands" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_teardown_floor_kills_times_and_reaps_every_child():
    pytest.importorskip("zmq")
    from benchmarks import teardown

    samples = teardown.measure(2)
    assert len(samples) == 2
    for x in samples:
        assert {"disconnect_ms", "exit_ms", "rss_kb", "pid"} <= set(x)
        assert isinstance(x["disconnect_ms"], float) and x["rss_kb"] > 0
        assert not _is_floor_child(x["pid"])


def test_teardown_floor_child_that_cannot_start_is_reported_and_nothing_is_left(monkeypatch):
    pytest.importorskip("zmq")
    import subprocess

    from benchmarks import teardown

    started: list[subprocess.Popen] = []

    class Recorded(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(teardown, "FLOOR_IMPORTS", ("no_such_module_for_the_floor",))
    monkeypatch.setattr(subprocess, "Popen", Recorded)
    with pytest.raises(RuntimeError, match="no_such_module_for_the_floor"):
        teardown.measure(3, start_timeout=30)
    assert len(started) == 3 and all(p.returncode is not None for p in started)


def _floor_pass(drops, rss_kb=30_000):
    from benchmarks import failover

    samples = [{"disconnect_ms": d, "exit_ms": d + 0.5, "rss_kb": rss_kb, "pid": 1} for d in drops]
    return {"children": len(samples), "samples": samples} | failover.floor_summary(samples)


def test_failover_reports_sigkill_against_the_floor(capsys):
    from benchmarks import failover

    rounds = [
        {"kind": "sigkill", "round": 0, "old_rss_kb": 36_000, "first_accepted_ms": 12.0},
        {"kind": "sigstop", "round": 1, "old_rss_kb": 37_000, "first_accepted_ms": 45.0},
        {"kind": "sigkill", "round": 2, "old_rss_kb": 36_500, "first_accepted_ms": 12.0},
    ]
    for r in rounds:
        r |= {"first_reply_ms": r["first_accepted_ms"], "promotion_ms": 1.0, "candidacy_ms": 1.0}
    result = {
        "rounds": rounds,
        "summary": failover.summarize(rounds, ["sigkill", "sigstop"]),
        "teardown_floor_before": _floor_pass([4.0, 4.0]),
        "teardown_floor_after": _floor_pass([4.0, 4.0]),
    }
    failover.against_floor(result)
    assert result["teardown_floor"]["children"] == 4
    assert result["teardown_floor"]["rss_mb"]["p50"] == pytest.approx(30_000 / 1024, abs=0.1)
    assert result["node_rss_mb"]["count"] == 3
    s = result["summary"]["sigkill"]
    floor = result["teardown_floor"]["disconnect_ms"]["p50"]
    assert s["floor_ms"] == floor
    assert s["above_floor_ms"] == pytest.approx(s["first_accepted_ms"]["p50"] - floor, abs=1e-3)
    assert s["x_floor"] == pytest.approx(s["first_accepted_ms"]["p50"] / floor, abs=0.01)
    assert "floor_ms" not in result["summary"]["sigstop"]
    t = failover.targets(result["summary"])[0]
    assert t["goal"] == "<= 5 ms" and t["floor_ms"] == floor and t["x_floor"] == s["x_floor"]
    failover.print_floor(result)
    out = capsys.readouterr().out
    assert "kernel floor: SIGKILL -> peer sees the connection drop" in out and "above the floor" in out


def test_failover_without_a_floor_says_so(capsys):
    from benchmarks import failover

    rounds = [{"kind": "sigkill", "round": 0, "error": "boom"}]
    result = {
        "rounds": rounds,
        "summary": failover.summarize(rounds, ["sigkill"]),
        "teardown_floor_before": {"children": 8, "error": "8 of 8 floor processes did not connect"},
    }
    failover.against_floor(result)
    s = result["summary"]["sigkill"]
    assert s["floor_ms"] is None and s["above_floor_ms"] is None and s["x_floor"] is None
    assert result["teardown_floor"]["children"] == 0 and result["node_rss_mb"]["count"] == 0
    failover.print_floor(result)
    assert "teardown floor not measured" in capsys.readouterr().out
