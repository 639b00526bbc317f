"""``matchcore keys``: the group's key pairs (nodes, witness, clients, operators), and one pair for a
client or operator who keeps its secret elsewhere, with the group file lines that admit it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

pytest.importorskip("zmq.auth")
tomllib = pytest.importorskip("tomllib")  # 3.11+

from replication.transport import curve  # noqa: E402
from replication.transport import group_file as config  # noqa: E402

GROUP = """mode = "sync"
keys_dir = "keys"
[nodes.a]
endpoint = "tcp://127.0.0.1:5601"
journal = "var/a"
[witness]
endpoint = "tcp://127.0.0.1:5609"
[operators.ops]
[clients.desk]
client_id = 7
accounts = [1, 2]
"""


def keys(cwd, *args):
    return subprocess.run(
        [sys.executable, "-m", "replication.ops.cli", "keys", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )


def secret_mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_keys_creates_every_identity_of_the_group_file(tmp_path):
    (tmp_path / "group.toml").write_text(GROUP)
    out = keys(tmp_path, "--config", "group.toml")
    assert out.returncode == 0, out.stderr
    made = {"a", "witness", "operator-ops", "client-desk"}
    assert {
        f.removesuffix(".key_secret") for f in os.listdir(tmp_path / "keys") if f.endswith("_secret")
    } == made
    for name in made:
        assert secret_mode(tmp_path / "keys" / f"{name}.key_secret") == 0o600, name
    cfg = config.load(str(tmp_path / "group.toml"))
    for key, user in curve.user_ids(cfg).items():  # every identity printed with its public key
        assert f"{user:<24} {key.decode()}" in out.stdout, user
    assert {"client:desk", "operator:ops", "node:a", "witness"} == set(curve.user_ids(cfg).values())
    again = keys(tmp_path, "--config", "group.toml")
    assert "created none (all present)" in again.stdout


def test_keys_for_one_client_prints_the_lines_that_admit_it(tmp_path):
    out = keys(tmp_path, "--client", "desk2", "--out", "mine")
    assert out.returncode == 0, out.stderr
    assert secret_mode(tmp_path / "mine" / "client-desk2.key_secret") == 0o600
    table = out.stdout[out.stdout.index("[clients.desk2]") :]
    spec = tomllib.loads(table)["clients"]["desk2"]
    assert spec["public_key"].encode() == curve.public_key(str(tmp_path / "mine"), "client-desk2")
    # Pasted into a group file, that key is the client's identity (no file of it in keys_dir).
    (tmp_path / "group.toml").write_text(GROUP + table.replace("accounts = []", "accounts = [3]"))
    cfg = config.load(str(tmp_path / "group.toml"))
    assert cfg.clients["desk2"].accounts == (3,)
    curve.create_keys(cfg)
    assert curve.user_ids(cfg)[spec["public_key"].encode()] == "client:desk2"
    assert not (tmp_path / "keys" / "client-desk2.key_secret").exists()
    # An existing pair is never overwritten; a name that is no TOML table name is refused.
    again = keys(tmp_path, "--client", "desk2", "--out", "mine")
    assert again.returncode == 1 and "exists" in again.stderr
    bad = keys(tmp_path, "--operator", "a b", "--out", "mine")
    assert bad.returncode == 2 and "not a name" in bad.stderr
    ops = keys(tmp_path, "--operator", "night", "--out", "mine")
    assert ops.returncode == 0 and "[operators.night]" in ops.stdout and "accounts" not in ops.stdout
