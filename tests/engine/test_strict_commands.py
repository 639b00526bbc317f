"""A command dict with a key its op does not know is rejected with ``bad_field``.

Everywhere commands enter: both engines' ``apply``, ``command_array`` and the
batch API, and ``matchcore replay`` (which also names the key on stderr and
exits non-zero). A typo such as ``dispaly_qty`` must never rest a fully
visible order that was meant to be an iceberg.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import matching
from matching import codes
from matching.commands import COMMAND_KEYS, command_record, unknown_keys

NEW = {"op": "new", "instrument": 1, "id": 1, "side": "buy", "price": 100, "qty": 10}
VALID = [
    {**NEW, "type": "limit", "tif": "GTC", "account": 3, "post_only": False, "display_qty": 2, "stp": "none"},
    {"op": "cancel", "instrument": 1, "id": 1},
    {"op": "replace", "instrument": 1, "id": 1, "price": 101, "qty": 5},
    {"op": "mass_cancel", "account": 3, "instrument": 1},
]
TYPOS = [
    {**NEW, "dispaly_qty": 2},
    {"op": "cancel", "instrument": 1, "id": 1, "qty": 3},  # a key of another op
    {"op": "replace", "instrument": 1, "id": 1, "prce": 101},
    {"op": "mass_cancel", "acount": 3},
]


def engines():
    return [matching.Engine(), matching.ReferenceEngine()]


@pytest.mark.parametrize("cmd", VALID)
def test_every_documented_key_is_known(cmd):
    assert unknown_keys(cmd) == []
    assert not command_record(cmd).flags & codes.BAD_FIELD


@pytest.mark.parametrize("cmd", TYPOS)
def test_an_unknown_key_is_named_and_flagged(cmd):
    assert len(unknown_keys(cmd)) == 1
    assert command_record(cmd).flags & codes.BAD_FIELD


def test_an_unknown_op_is_invalid_op_not_bad_field():
    assert unknown_keys({"op": "teleport", "whatever": 1}) == []
    for e in engines():
        (ev,) = e.apply({"op": "teleport", "id": 9, "whatever": 1})
        assert ev.reason == "invalid_op"


def test_a_misspelt_iceberg_never_rests():
    for e in engines():
        (ev,) = e.apply({**NEW, "dispaly_qty": 2})
        assert (type(ev).__name__, ev.reason) == ("Rejected", "bad_field")
        assert e.depth(1) == ([], [])


@pytest.mark.parametrize("cmd", TYPOS)
def test_no_state_changes_on_a_typo(cmd):
    for e in engines():
        e.apply(NEW)
        before = e.depth(1)
        (ev,) = e.apply(cmd)
        assert ev.reason == "bad_field"
        assert e.depth(1) == before == ([(100, 10, 1)], [])


def test_batch_api_rejects_the_same_way():
    cmds = matching.command_array([NEW, {**NEW, "id": 2, "dispaly_qty": 2}])
    for e in engines():
        events = e.apply_batch(cmds)
        reasons = [codes.REASON_NAMES[r] for r in events["reason"][events["cmd"] == 1]]
        assert reasons == ["bad_field"]


def test_the_key_sets_cover_every_op():
    assert set(COMMAND_KEYS) == set(codes.OP_NAMES.values())


def test_replay_names_the_key_and_exits_non_zero():
    line = '{"op": "new", "instrument": 1, "id": 1, "side": "buy", "price": 1, "qty": 1, "dispaly_qty": 2}\n'
    proc = subprocess.run(
        [sys.executable, "-m", "matching.cli", "replay", "-"],
        input=line,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "dispaly_qty" in proc.stderr and "line 1" in proc.stderr
    assert '"reason": "bad_field"' in proc.stdout


def test_replay_of_a_missing_file_is_one_line_and_exit_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "matching.cli", "replay", str(tmp_path / "nope.jsonl")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "cannot read" in proc.stderr and "Traceback" not in proc.stderr
