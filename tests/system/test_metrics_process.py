"""A running node serves its Prometheus metrics on --metrics-port."""

from __future__ import annotations

import time
import urllib.request

import pytest

pytest.importorskip("zmq")
pytest.importorskip("prometheus_client")

from replication import Client  # noqa: E402
from replication.testing.harness import Group, free_ports  # noqa: E402

pytestmark = pytest.mark.timeout(90)


def scrape(port: int, deadline: float) -> str:
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_primary_serves_role_seq_and_reply_latency():
    (port,) = free_ports(1)
    g = Group(extra={"time_interval_ms": 0})  # (counts seqs: no idle time commands)
    try:
        g.start("witness")
        g.start("a", "primary", "--metrics-port", str(port))
        g.start("b")
        g.wait_for(
            lambda st: st.get("b", {}).get("role") == "standby" and st.get("a", {}).get("role") == "primary",
            what="a primary and a standby",
        )
        with Client.from_config(g.path, client_id=3) as c:
            for i in range(1, 6):
                c.submit(instrument=1, id=i, side="buy", price=100 + i, qty=10)
        text = scrape(port, time.monotonic() + 20)
        assert 'matchcore_role{node="a",role="primary"} 1.0' in text
        # Five orders after the client's session open (an entry and a request of its own).
        assert 'matchcore_last_seq{node="a"} 6.0' in text
        assert "matchcore_client_requests_total 6.0" in text
        assert "matchcore_reply_latency_seconds_count 6.0" in text
        assert 'matchcore_diverged{node="a"} 0.0' in text
        assert 'matchcore_market_data_total{counter="frames",node="a"}' in text  # its heartbeats at least
    finally:
        g.stop()
