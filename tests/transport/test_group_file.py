"""The group file is validated against one schema: an unknown table or key, a missing
required key or a value of the wrong type is refused, naming the key and the file.

Every process and client reads the file through ``config.load``; the CLI turns the
error into one line and exit status 2 (checked here on a real subprocess).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from replication.transport import group_file as config
from replication.transport.group_file import ConfigError

GOOD = """mode = "sync"
heartbeat_ms = 5
[nodes.a]
endpoint = "tcp://127.0.0.1:5601"
journal = "var/a"
[nodes.b]
endpoint = "tcp://127.0.0.1:5602"
journal = "var/b"
[witness]
endpoint = "tcp://127.0.0.1:5609"
state = "var/witness.state"
"""


def top(line: str) -> str:
    """GOOD with ``line`` among its top-level keys (appending would put it in [witness])."""
    return GOOD.replace("heartbeat_ms = 5\n", f"heartbeat_ms = 5\n{line}\n")


def write(tmp_path, text: str) -> str:
    path = tmp_path / "group.toml"
    path.write_text(text)
    return str(path)


def refusal(tmp_path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    msg = str(info.value)
    assert path in msg, msg  # every refusal names the file
    return msg


def test_a_good_file_loads(tmp_path):
    cfg = config.load(write(tmp_path, GOOD))
    assert list(cfg.nodes) == ["a", "b"] and cfg.witness == "tcp://127.0.0.1:5609"
    assert cfg.settings.heartbeat_interval == 0.005


@pytest.mark.parametrize(
    "text, named",
    [
        (GOOD.replace("[witness]", "[witnes]"), "'witnes'"),  # the group would have no witness
        (GOOD.replace("heartbeat_ms = 5", "heartbeat = 5"), "'heartbeat'"),
        (top("switchover_timeout = 5"), "'switchover_timeout'"),
        (GOOD.replace('journal = "var/a"', 'journal = "var/a"\njornal = "x"'), "[nodes.a] 'jornal'"),
        (GOOD.replace('state = "var/witness.state"', 'stat = "x"'), "[witness] 'stat'"),
    ],
)
def test_unknown_keys_and_tables_are_refused_by_name(tmp_path, text, named):
    msg = refusal(tmp_path, text)
    assert "unknown key" in msg and named in msg


def test_a_typo_gets_a_suggestion(tmp_path):
    assert "did you mean 'witness'?" in refusal(tmp_path, GOOD.replace("[witness]", "[witnes]"))
    assert "did you mean 'heartbeat_ms'?" in refusal(tmp_path, GOOD.replace("heartbeat_ms", "heartbeat"))


@pytest.mark.parametrize(
    "text, named",
    [
        (GOOD.replace('journal = "var/a"\n', ""), "[nodes.a] 'journal'"),
        (GOOD.replace('endpoint = "tcp://127.0.0.1:5609"\n', ""), "[witness] 'endpoint'"),
        ('mode = "sync"\n', "'nodes'"),
    ],
)
def test_missing_required_keys_are_named(tmp_path, text, named):
    msg = refusal(tmp_path, text)
    assert "missing required key" in msg and named in msg


@pytest.mark.parametrize(
    "text, named",
    [
        (GOOD.replace("heartbeat_ms = 5", 'heartbeat_ms = "5"'), "'heartbeat_ms' must be a number"),
        (GOOD.replace("heartbeat_ms = 5", "heartbeat_ms = true"), "'heartbeat_ms' must be a number"),
        (top("max_batch = 10.5"), "'max_batch' must be an integer"),
        (GOOD.replace('journal = "var/a"', "journal = 3"), "[nodes.a] 'journal' must be a string"),
        (GOOD.replace('mode = "sync"', 'mode = "fast"'), "mode must be one of sync, async"),
        (top('fsync = "sometimes"'), "fsync must be one of"),
        (GOOD.replace("heartbeat_ms = 5", "heartbeat_ms = 0"), "heartbeat_ms must be positive"),
        (top("timeout_ms = 3"), "timeout_ms must be larger than heartbeat_ms"),
        (top("max_batch = 0"), "max_batch must be at least 1"),
        (top("time_interval_ms = -1"), "time_interval_ms must not be negative"),
        (top('time_interval_ms = "1s"'), "'time_interval_ms' must be a number"),
        (GOOD.replace("[nodes.b]\n", "[nodes.b]\nnodes = 1\n"), "[nodes.b] 'nodes'"),
    ],
)
def test_ill_typed_values_are_refused(tmp_path, text, named):
    assert named in refusal(tmp_path, text)


def test_toml_syntax_errors_give_the_line(tmp_path):
    msg = refusal(tmp_path, GOOD.replace('mode = "sync"', 'mode = "sync'))
    assert "not valid TOML" in msg and "line 1" in msg


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the group file"):
        config.load(str(tmp_path / "absent.toml"))


def test_every_documented_key_is_in_the_schema():
    import pathlib

    doc = (pathlib.Path(config.__file__).parents[2] / "docs" / "operations.md").read_text()
    for key in config.TOP_LEVEL_KEYS:
        if config.TOP_LEVEL_KEYS[key].kind != "table":
            assert f"| `{key}` |" in doc, key


def test_time_interval_is_a_second_by_default_and_zero_switches_it_off(tmp_path):
    assert config.load(write(tmp_path, GOOD)).settings.time_interval == 1.0
    assert config.load(write(tmp_path, top("time_interval_ms = 250"))).settings.time_interval == 0.25
    assert config.load(write(tmp_path, top("time_interval_ms = 0"))).settings.time_interval == 0.0


def test_busy_poll_is_off_by_default_and_set_per_node(tmp_path):
    cfg = config.load(write(tmp_path, GOOD))
    assert [s.busy_poll for s in cfg.nodes.values()] == [False, False]
    text = GOOD.replace('journal = "var/a"\n', 'journal = "var/a"\nbusy_poll = true\n')
    cfg = config.load(write(tmp_path, text))
    assert cfg.nodes["a"].busy_poll is True and cfg.nodes["b"].busy_poll is False


@pytest.mark.parametrize("value", ["1", '"yes"'])
def test_busy_poll_must_be_a_boolean(tmp_path, value):
    text = GOOD.replace('journal = "var/a"\n', f'journal = "var/a"\nbusy_poll = {value}\n')
    msg = refusal(tmp_path, text)
    assert "[nodes.a] 'busy_poll' must be true or false" in msg, msg


def test_write_puts_node_keys_in_their_node_table(tmp_path):
    path = str(tmp_path / "group.toml")
    nodes = {"a": ("tcp://127.0.0.1:5601", "var/a"), "b": ("tcp://127.0.0.1:5602", "var/b")}
    config.write(path, "sync", nodes, None, node_keys={"b": {"busy_poll": True}})
    cfg = config.load(path)
    assert cfg.nodes["a"].busy_poll is False and cfg.nodes["b"].busy_poll is True


@pytest.mark.parametrize("command", ["status", "primary --node a", "witness", "switchover --to b", "keys"])
def test_the_cli_says_one_line_and_exits_2(tmp_path, command):
    path = write(tmp_path, GOOD.replace("[witness]", "[witnes]"))
    proc = subprocess.run(
        [sys.executable, "-m", "replication.ops.cli", *command.split(), "--config", path],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "unknown key 'witnes'" in proc.stderr and path in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize(
    "table, named",
    [
        (
            "[clients.desk]\nacounts = [1]\n",
            "unknown key [clients.desk] 'acounts' (did you mean 'accounts'?)",
        ),
        ('[clients.desk]\naccounts = [1, "x"]\n', "'accounts' must be a list of integers"),
        ("[clients.desk]\nclient_id = true\n", "'client_id' must be an integer"),
        ("[clients.desk]\nclient_id = -1\n", "client_id must be a non-negative 64-bit integer"),
        ('[operators.ops]\npublic_key = "short"\n', "public_key must be a 40-character Z85"),
        ("[operators.ops]\nclient_id = 7\n", "unknown key [operators.ops] 'client_id'"),
    ],
)
def test_key_tables_follow_the_same_schema(tmp_path, table, named):
    assert named in refusal(tmp_path, GOOD + table)
