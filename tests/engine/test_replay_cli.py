"""The command-log tool: `matchcore replay FILE [--depth]` and the record codec."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from matching import Engine, ReferenceEngine, Rejected, command_array, command_dict, command_record
from matching.cli import replay

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(text: str, depth: bool = True) -> tuple[list[dict], str]:
    out, err = io.StringIO(), io.StringIO()
    replay(io.StringIO(text), out, err, depth=depth)
    return [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


def test_replay_writes_events_with_their_command_line():
    lines, err = run(
        '{"op": "new", "instrument": 1, "id": 2, "side": "sell", "price": 1251, "qty": 100}\n'
        '{"op": "new", "instrument": 1, "id": 4, "side": "buy", "price": 1251, "qty": 100}\n'
    )
    assert err == ""
    assert lines[0] == {"cmd": 0, "event": "accepted", "id": 2, "instrument": 1}
    assert lines[2] == {
        "cmd": 1,
        "event": "trade",
        "taker": 4,
        "maker": 2,
        "price": 1251,
        "qty": 100,
        "taker_open": 0,
        "maker_open": 0,
        "instrument": 1,
    }
    assert lines[3] == {"instrument": 1, "bids": [], "asks": []}
    assert set(lines[4]) == {"digest"} and len(lines[4]["digest"]) == 16


def test_replay_reports_bad_lines_and_keeps_going():
    lines, err = run(
        'not json\n{"op": "cancel", "instrument": 1, "id": 0}\n'
        '{"op": "new", "instrument": 1, "id": 3, "side": "buy", "price": 5, "qty": 1}\n'
    )
    assert "line 1" in err and "line 2" in err
    assert lines[0] == {"cmd": 1, "event": "rejected", "id": 0, "reason": "invalid_id", "instrument": 1}
    assert lines[1]["event"] == "accepted" and lines[1]["cmd"] == 2
    assert lines[2] == {"instrument": 1, "bids": [[5, 1, 1]], "asks": []}


def test_replay_of_every_example_is_reproducible():
    paths = sorted(EXAMPLES.glob("*.jsonl"))
    assert paths, EXAMPLES  # an empty loop would prove nothing
    for path in paths:
        text = path.read_text()
        first = run(text)
        assert first[0], path  # it wrote events
        assert run(text) == first, path


def test_console_script_reads_stdin():
    line = '{"op": "new", "instrument": 1, "id": 1, "side": "buy", "price": 10, "qty": 1}\n'
    proc = subprocess.run(
        [sys.executable, "-m", "matching.cli", "replay", "-", "--depth"],
        input=line,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(proc.stdout.splitlines()[0])["event"] == "accepted"


def test_command_record_round_trips_valid_commands():
    cmds = [
        {
            "op": "new",
            "instrument": 1,
            "id": 7,
            "side": "buy",
            "type": "limit",
            "price": 1250,
            "qty": 100,
            "tif": "GTC",
            "account": 3,
            "post_only": False,
            "display_qty": 0,
            "stp": "none",
        },
        {"op": "cancel", "instrument": 1, "id": 7},
        {"op": "replace", "instrument": 1, "id": 7, "price": 1251, "qty": 60},
        {"op": "replace", "instrument": 1, "id": 7, "qty": 0},
        {"op": "mass_cancel", "account": 3, "instrument": 1},
        {"op": "mass_cancel"},
    ]
    for cmd in cmds:
        assert command_dict(command_record(cmd)) == cmd
    arr = command_array(cmds)
    assert [command_dict(row) for row in arr] == cmds


GOOD_NEW = {"op": "new", "instrument": 1, "id": 9, "side": "buy", "price": 100, "qty": 5}


def test_command_record_never_raises_on_garbage_and_the_engine_rejects_it_by_name():
    # Each command is a good one with one thing wrong, so the reason names that thing.
    garbage = [
        (None, "invalid_op"),
        (3, "invalid_op"),
        ("new", "invalid_op"),
        ([], "invalid_op"),
        ({"op": None}, "invalid_op"),
        (GOOD_NEW | {"qty": 1.5}, "bad_field"),
        (GOOD_NEW | {"price": "100"}, "bad_field"),
        (GOOD_NEW | {"side": 4}, "invalid_side"),
        (GOOD_NEW | {"post_only": "yes"}, "bad_field"),
        ({"op": "cancel", "instrument": 1, "id": 1 << 70}, "out_of_range"),
    ]
    engines = (ReferenceEngine, *([Engine] if Engine is not None else []))
    for make in engines:  # the command without its fault is accepted
        assert type(make().apply_record(command_record(GOOD_NEW))[0]).__name__ == "Accepted"
    for junk, reason in garbage:
        rec = command_record(junk)
        for engine in (make() for make in engines):
            events = engine.apply_record(rec)
            assert events == [Rejected(instrument=events[0].instrument, id=events[0].id, reason=reason)], (
                junk,
                type(engine).__name__,
            )
            assert engine.live_orders == 0
