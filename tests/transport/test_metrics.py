"""The Prometheus exposition of a node: families, labels and values from its status."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import CollectorRegistry, generate_latest

from replication.protocol import wire
from replication.transport.metrics import NodeCollector, ReplyTimer


class FakeMachine:
    waiting = [1, 2, 3]

    def status(self):
        return {
            "node": "a",
            "role": "primary",
            "epoch": 4,
            "last_seq": 120,
            "commit": 117,
            "lag": 3,
            "diverged_at": None,
            "counters": {"requests_deduplicated": 2},
        }


def scrape(driver, timer_calls=None) -> str:
    registry = CollectorRegistry()
    registry.register(NodeCollector(driver))
    timer = ReplyTimer(registry)
    for request in timer_calls or []:
        timer.on_request(request)
        timer.on_reply(wire.Reply(request.client_id, request.request_id, wire.OK, 4, 1, "a"))
    return generate_latest(registry).decode()


def test_status_becomes_metrics():
    driver = SimpleNamespace(
        name="a", machine=FakeMachine(), counters={"decode_bad_crc": 5, "dropped_sends": 1}
    )
    text = scrape(driver)
    assert 'matchcore_role{node="a",role="primary"} 1.0' in text
    assert 'matchcore_role{node="a",role="standby"} 0.0' in text
    assert 'matchcore_epoch{node="a"} 4.0' in text
    assert 'matchcore_last_seq{node="a"} 120.0' in text
    assert 'matchcore_standby_lag_entries{node="a"} 3.0' in text
    assert 'matchcore_acks_pending{node="a"} 3.0' in text
    assert 'matchcore_diverged{node="a"} 0.0' in text
    assert 'matchcore_frames_dropped_total{node="a",reason="bad_crc"} 5.0' in text
    assert 'matchcore_node_events_total{counter="requests_deduplicated",node="a"} 2.0' in text


def test_reply_latency_is_observed_per_request():
    driver = SimpleNamespace(name="a", machine=FakeMachine(), counters={})
    requests = [
        wire.Request(client_id=7, request_id=i, command=b"\0" * wire.COMMAND_SIZE) for i in range(1, 4)
    ]
    text = scrape(driver, requests)
    assert "matchcore_client_requests_total 3.0" in text
    assert "matchcore_reply_latency_seconds_count 3.0" in text
