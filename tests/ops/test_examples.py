"""The examples run as they are (smoke tests: they exit 0 and print what they promise)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_embedded_example():
    out = run_example("embedded.py")
    assert "'event': 'trade'" in out and "digest" in out


def test_batch_example():
    out = run_example("batch.py")
    assert "100000 commands ->" in out and "traded volume" in out


@pytest.mark.parametrize("log", sorted(p.name for p in EXAMPLES.glob("*.jsonl")))
def test_command_logs_replay(log):
    proc = subprocess.run(
        [sys.executable, "-m", "matching.cli", "replay", str(EXAMPLES / log), "--depth"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # bad_input.jsonl is all invalid lines on purpose: replay goes on, then exits 1.
    assert proc.returncode == (1 if log == "bad_input.jsonl" else 0), proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith('{"digest": "')


@pytest.mark.timeout(120)
def test_replicated_pair_example_survives_the_kill():
    out = run_example("replicated_pair.py")
    assert "Trade(instrument=1, taker=3, maker=1, price=1251, qty=60" in out
    assert "b is primary in epoch" in out


@pytest.mark.timeout(120)
def test_subscriber_example_prints_the_stream():
    lines = [json.loads(line) for line in run_example("subscriber.py").splitlines()]
    assert [e["seq"] for e in lines] == [1, 2, 3, 4]
    assert lines[0]["command"] == {"op": "session_open", "session": 1}  # the client's session
    assert [e["command"]["op"] for e in lines[1:]] == ["new", "new", "cancel"]


@pytest.mark.timeout(120)
def test_routed_example_sends_each_instrument_to_its_group():
    out = run_example("routed.py")
    assert "g2 [Accepted(instrument=3, id=31)]" in out
    assert "refused: instrument 4 is served by no group" in out
    mass = next(line for line in out.splitlines() if line.startswith("mass cancel"))
    assert [f"instrument={i}" in mass for i in (1, 2, 3)] == [True] * 3
    # Each group's seqs: the router's session open there, then its orders.
    assert "g1: primary at seq 6" in out and "g2: primary at seq 4" in out


@pytest.mark.timeout(120)
def test_maker_taker_example_tells_the_maker_of_its_fill():
    out = run_example("maker_taker.py")
    assert "maker's fill: 4 at 100 (side maker" in out
    assert "'status': 'open'" in out and "'filled': 4" in out
    assert "maker's open orders: [10]" in out
    assert "after the restart: [('trade', 'maker'," in out
