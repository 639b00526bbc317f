"""The witness's state file: saved by its driver before the vote that changed it, loaded on start."""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("zmq")

from replication import config, wire  # noqa: E402
from replication.demo import free_ports  # noqa: E402
from replication.node import load_witness_state, save_witness_state, witness_driver  # noqa: E402


def _group(tmp_path, state: str = "w/witness.json") -> config.GroupConfig:
    ports = free_ports(3)
    path = str(tmp_path / "group.toml")
    nodes = {n: (f"tcp://127.0.0.1:{p}", n) for n, p in zip("ab", ports, strict=False)}
    config.write(path, "sync", nodes, f"tcp://127.0.0.1:{ports[2]}", witness_state=state)
    return config.load(path)


def test_state_path_is_relative_to_the_group_file(tmp_path):
    cfg = _group(tmp_path)
    assert cfg.witness_state == str(tmp_path / "w" / "witness.json")
    assert _group(tmp_path, state="").witness_state == ""


def test_a_grant_is_saved_by_the_driver_and_reloaded(tmp_path):
    cfg = _group(tmp_path)
    d = witness_driver(cfg)
    try:
        d.machine.handle("a", wire.VoteRequest(1, 0, "a", 0), 0.0)
        d.run_once(0)
        with open(cfg.witness_state, encoding="utf-8") as f:
            assert json.load(f) == {"epoch": 1, "primary": "a", "isr": ["b"], "isr_proposal": 0}
    finally:
        d.close()
    again = witness_driver(cfg)
    try:
        assert again.machine.durable_state()["epoch"] == 1 and again.machine.primary == "a"
    finally:
        again.close()


def test_a_damaged_state_file_stops_the_start(tmp_path):
    path = str(tmp_path / "witness.json")
    assert load_witness_state(path) is None
    save_witness_state(path, {"epoch": 3, "primary": "b", "isr": [], "isr_proposal": 2})
    assert load_witness_state(path)["epoch"] == 3 and not os.path.exists(path + ".tmp")
    with open(path, "w", encoding="utf-8") as f:
        f.write("{not json")
    with pytest.raises(SystemExit, match="unreadable"):
        load_witness_state(path)
