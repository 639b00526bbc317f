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
    assert all(variant["checks"].values()), variant["checks"]
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
