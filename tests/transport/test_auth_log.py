"""Each process says at start, in one line, how it knows who sends what, and why (``SocketLoop._log_trust``)."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("zmq")

from replication.protocol import trust  # noqa: E402
from replication.transport import group_file as config  # noqa: E402
from replication.transport.loop import SocketLoop  # noqa: E402

NODES = {"a": {"endpoint": "tcp://127.0.0.1:1", "journal": "a"}}
DESK = {"desk": {"client_id": 7, "accounts": [1]}}


class _Probe(SocketLoop):
    """Only the start line: no sockets are opened."""

    def run_once(self, timeout_ms: float) -> None:  # pragma: no cover - never run
        raise AssertionError


def start_line(doc: dict, caplog) -> logging.LogRecord:
    probe = _Probe.__new__(_Probe)
    probe.name = "a"
    probe.policy = trust.policy_for(config.parse({"nodes": NODES, **doc}), "a")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="replication.node"):
        probe._log_trust()
    (record,) = caplog.records
    return record


@pytest.mark.parametrize(
    ("doc", "level", "says"),
    [
        ({}, logging.WARNING, "auth=open node=a: no keys_dir"),
        ({"clients": DESK}, logging.WARNING, "[clients] entries restrict nothing without keys"),
        ({"keys_dir": "k"}, logging.INFO, "auth=open node=a: no [clients] entries"),
        ({"keys_dir": "k", "clients": DESK}, logging.INFO, "auth=curve node=a: "),
    ],
    ids=["plain", "plain-with-clients", "keys-without-clients", "keys-and-clients"],
)
def test_one_start_line_says_the_auth_and_why(doc, level, says, caplog):
    record = start_line(doc, caplog)
    assert record.levelno == level and says in record.getMessage(), record.getMessage()


def test_the_curve_line_counts_the_restricted_clients(caplog):
    record = start_line({"keys_dir": "k", "clients": {**DESK, "any": {}}}, caplog)
    assert "2 clients, 1 of them restricted to accounts" in record.getMessage()
    assert "restrict nothing" not in start_line({}, caplog).getMessage()
