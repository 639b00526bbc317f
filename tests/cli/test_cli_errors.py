"""Operator mistakes end in one clear line and a documented exit code, never a traceback (issue 16).

For: ``matchcore`` run as a subprocess, as an operator runs it, for each mistake the issue
names (no group file, a node without a journal, a bad mode, a TOML syntax error, ``keys``
without ``keys_dir``, ``replay`` of a missing file or of invalid lines, an unknown node, a
port already taken) and for the waits that must say what they wait for (``status``,
``subscribe`` and ``switchover`` against a group that is down). Exit codes, as
``docs/operations.md`` ("Exit codes") lists them: 0 done, 1 the command ran and the answer
is no (unhealthy, refused, nothing to follow), 2 unusable input (group file, arguments,
unknown names), 3 the system refused (a file, a directory, a port).
Not for: the group file's schema rule by rule (``tests/transport/test_group_file.py``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group(tmp_path: Path, extra: str = "", mode: str = "sync") -> str:
    """A group file whose nodes are not running (ports nobody listens on)."""
    a, b, w = free_port(), free_port(), free_port()
    text = (
        f'mode = "{mode}"\n{extra}'
        f'[nodes.a]\nendpoint = "tcp://127.0.0.1:{a}"\njournal = "{tmp_path / "a"}"\n'
        f'[nodes.b]\nendpoint = "tcp://127.0.0.1:{b}"\njournal = "{tmp_path / "b"}"\n'
        f'[witness]\nendpoint = "tcp://127.0.0.1:{w}"\n'
    )
    path = tmp_path / "group.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def matchcore(*args: str, cwd: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "matching.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd or ROOT,
        env=env,
        input=stdin,
    )


def one_line(proc: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_a_missing_group_file(tmp_path: Path) -> None:
    absent = str(tmp_path / "absent.toml")
    one_line(matchcore("status", "--config", absent), 2, absent, "cannot read the group file")


def test_a_node_without_a_journal(tmp_path: Path) -> None:
    path = group(tmp_path)
    text = Path(path).read_text(encoding="utf-8").replace(f'journal = "{tmp_path / "a"}"\n', "", 1)
    Path(path).write_text(text, encoding="utf-8")
    one_line(matchcore("primary", "--config", path, "--node", "a"), 2, "[nodes.a] 'journal'")


def test_a_bad_mode(tmp_path: Path) -> None:
    one_line(
        matchcore("status", "--config", group(tmp_path, mode="sink")), 2, "mode must be one of", "'sink'"
    )


def test_a_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = group(tmp_path)
    Path(path).write_text(Path(path).read_text(encoding="utf-8") + "heartbeat_ms = \n", encoding="utf-8")
    one_line(matchcore("status", "--config", path), 2, "not valid TOML", "line")


def test_keys_without_keys_dir(tmp_path: Path) -> None:
    one_line(matchcore("keys", "--config", group(tmp_path)), 2, "has no keys_dir", "--client")


def test_replay_of_a_missing_file(tmp_path: Path) -> None:
    one_line(matchcore("replay", str(tmp_path / "absent.jsonl")), 2, "cannot read")


def test_replay_of_invalid_lines_exits_1() -> None:
    log = '{"op": "new", "instrument": 1, "id": 1, "side": "buy", "price": 10, "qty": 1, "dispaly_qty": 2}\n'
    proc = matchcore("replay", "-", stdin=log)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "bad_field" in proc.stderr and "dispaly_qty" in proc.stderr


def test_unknown_nodes_are_named(tmp_path: Path) -> None:
    path = group(tmp_path)
    one_line(matchcore("promote", "--config", path, "--node", "zz"), 2, "no node 'zz'")
    one_line(matchcore("switchover", "--config", path, "--to", "zz"), 2, "no node 'zz'")
    one_line(matchcore("subscribe", "--config", path, "--node", "zz"), 2, "no node 'zz'")
    one_line(matchcore("primary", "--config", path, "--node", "zz"), 2, "zz")


def test_status_of_a_group_that_is_down_is_unhealthy(tmp_path: Path) -> None:
    proc = matchcore("status", "--config", group(tmp_path), "--timeout", "0.2")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "health: a does not answer; b does not answer; witness does not answer; no primary" in proc.stdout
    proc = matchcore("status", "--config", group(tmp_path), "--timeout", "0.2", "--json")
    assert proc.returncode == 1
    assert {s["role"] for s in json.loads(proc.stdout).values()} == {"unreachable"}


def test_waits_on_a_group_that_is_down_say_what_they_wait_for(tmp_path: Path) -> None:
    path = group(tmp_path)
    one_line(
        matchcore("subscribe", "--config", path), 1, "no node answers", "a at tcp://", "is the group running"
    )
    one_line(
        matchcore("switchover", "--config", path, "--to", "b", "--timeout", "0.2"),
        1,
        "no primary found",
        "did not answer within 0.2 s",
    )


def test_a_port_already_taken(tmp_path: Path) -> None:
    path = group(tmp_path)
    endpoint = next(
        line.split('"')[1]
        for line in Path(path).read_text(encoding="utf-8").splitlines()
        if "endpoint" in line
    )
    port = int(endpoint.rsplit(":", 1)[1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        proc = matchcore("primary", "--config", path, "--node", "a")
    # The node logs its start before it binds: the error is the last line.
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("matchcore primary:") and "in use" in last and endpoint in last, last


def test_help_shows_examples_units_and_no_test_flags() -> None:
    top = matchcore("--help")
    assert top.returncode == 0 and "``" not in top.stdout and ":func:" not in top.stdout
    version = matchcore("--version")
    assert version.returncode == 0 and version.stdout.startswith("matchcore ")
    for command in (
        "primary",
        "standby",
        "witness",
        "status",
        "switchover",
        "promote",
        "subscribe",
        "keys",
        "demo",
    ):
        out = matchcore(command, "--help").stdout
        assert "example:\n  matchcore " + command in out, command
        assert "TEST ONLY" not in out and "perturb" not in out, command
        if command in ("witness", "status", "switchover", "keys", "demo"):
            assert "--node" not in out, command  # where it would mean nothing
        if "--timeout" in out:
            assert "--timeout SECONDS" in out and "(default:" in out.split("--timeout SECONDS", 2)[-1], (
                command
            )
        if "--log-level" in out:
            assert "{debug,info,warning,error}" in out and "--log-format {text,json}" in out, command


def test_json_logs_and_a_logged_shutdown(tmp_path: Path) -> None:
    path = group(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.Popen(
        [sys.executable, "-m", "matching.cli", "witness", "--config", path, "--log-format", "json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        status = matchcore("status", "--config", path, "--timeout", "2", "--json")
        deadline = time.monotonic() + 20
        while json.loads(status.stdout)["witness"]["role"] == "unreachable" and time.monotonic() < deadline:
            status = matchcore("status", "--config", path, "--timeout", "2", "--json")
        assert json.loads(status.stdout)["witness"]["role"] == "witness"
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    assert p.returncode == 0
    records = [json.loads(line) for line in err.strip().splitlines()]  # every line is one JSON object
    assert records and all({"ts", "level", "logger", "event", "msg"} <= set(r) for r in records)
    last = records[-1]
    assert last["event"] == "shutdown" and last["signal"] == "SIGTERM" and last["level"] == "info"
