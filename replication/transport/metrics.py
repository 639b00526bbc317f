"""Prometheus metrics for a running node (``--metrics-port``).

For: exposing what an operator watches — role, epoch, last seq, standby
lag, acks pending, divergence, frames dropped by reason, journal bytes,
client requests, reply latency — on an HTTP endpoint scraped by Prometheus.
Not for: the hot path. Almost everything is read from the node's own
``status()`` and counters at scrape time by a custom collector, so a node
pays nothing per message for it; the one exception is the reply-latency
histogram, which costs a dict insert and a pop per request, and only when
metrics are switched on.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from ..protocol import wire
from ..protocol.session import COUNTER_MASK

log = logging.getLogger("matchcore.metrics")

ROLES = ("primary", "standby", "draining", "diverged", "witness")

# Reply latency buckets, in seconds: 10 µs .. 1 s.
LATENCY_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 1.0)


class NodeCollector:
    """Builds the metric families from a driver's machine and counters on every scrape."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        d = self.driver
        status = d.machine.status()
        node = str(status.get("node", d.name))
        labels = ["node"]

        role = GaugeMetricFamily("matchcore_role", "1 for the node's current role", labels=["node", "role"])
        for name in ROLES:
            role.add_metric([node, name], 1.0 if status.get("role", "witness") == name else 0.0)
        yield role

        def gauge(name: str, help_text: str, value: Any) -> GaugeMetricFamily:
            g = GaugeMetricFamily(name, help_text, labels=labels)
            g.add_metric([node], float(value or 0))
            return g

        yield gauge("matchcore_epoch", "current epoch", status.get("epoch", 0))
        yield gauge("matchcore_last_seq", "last sequence number applied", status.get("last_seq", 0))
        yield gauge(
            "matchcore_commit_seq",
            "highest seq acknowledged by a standby (primary) or known committed",
            status.get("commit", 0),
        )
        yield gauge(
            "matchcore_standby_lag_entries",
            "entries the standby is behind (primary: slowest ack)",
            status.get("lag", 0),
        )
        machine = d.machine
        yield gauge(
            "matchcore_acks_pending",
            "replies held until a standby acknowledges them",
            len(getattr(machine, "waiting", ())),
        )
        yield gauge(
            "matchcore_diverged",
            "1 once this node's book diverged from the primary's",
            1 if status.get("role") == "diverged" or status.get("diverged_at") else 0,
        )
        journal = getattr(machine, "journal", None)
        path = getattr(journal, "path", None)
        size = 0
        if isinstance(path, str):
            try:
                # The active segment and the sealed ones (entries.<first seq>.log).
                with os.scandir(path) as it:
                    size = sum(
                        e.stat().st_size
                        for e in it
                        if e.name.startswith("entries.") and e.name.endswith(".log")
                    )
            except OSError:
                size = 0
        yield gauge("matchcore_journal_bytes", "size of the entry log segments on disk", size)

        dropped = CounterMetricFamily(
            "matchcore_frames_dropped", "frames dropped, by reason", labels=["node", "reason"]
        )
        for key, value in sorted(d.counters.items()):
            if key.startswith("decode_"):
                dropped.add_metric([node, key[len("decode_") :]], float(value))
        yield dropped

        events = CounterMetricFamily(
            "matchcore_node_events",
            "node counters (requests, dedupe hits, refills, ...)",
            labels=["node", "counter"],
        )
        for key, value in sorted(status.get("counters", {}).items()):
            events.add_metric([node, key], float(value))
        yield events

        feed = CounterMetricFamily(
            "matchcore_market_data",
            "the public market-data feed: updates and frames published, dropped, snapshots served",
            labels=["node", "counter"],
        )
        for key, value in sorted(d.counters.items()):
            if key.startswith("md_"):
                feed.add_metric([node, key[len("md_") :]], float(value))
        yield feed


class ReplyTimer:
    """Observes request -> reply latency in the driver; only built when metrics are on."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Histogram

        self.requests = Counter("matchcore_client_requests", "client requests received", registry=registry)
        self.latency = Histogram(
            "matchcore_reply_latency_seconds",
            "request arrival to reply sent",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.started: dict[tuple[int, int], float] = {}

    def on_request(self, msg: wire.Request) -> None:
        self.requests.inc()
        self.started.setdefault((msg.client_id, msg.request_id), time.perf_counter())

    def on_reply(self, msg: wire.Reply) -> None:
        rid = msg.request_id if msg.request_id & COUNTER_MASK else 0  # an open's answer names its session
        t0 = self.started.pop((msg.client_id, rid), None)
        if t0 is not None:
            self.latency.observe(time.perf_counter() - t0)
        if len(self.started) > 1_000_000:  # requests that never got a reply (refused, lost)
            self.started.clear()


def start(driver: Any, port: int, host: str = "127.0.0.1") -> ReplyTimer:
    """Serve the driver's metrics on ``http://host:port/metrics``; return the reply timer to feed.

    Raises
    ------
    SystemExit
        If ``prometheus-client`` is not installed.
    """
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise SystemExit(f"--metrics-port needs prometheus-client: {exc}") from exc
    registry = CollectorRegistry()
    registry.register(NodeCollector(driver))
    timer = ReplyTimer(registry)
    start_http_server(port, addr=host, registry=registry)
    log.info("metrics node=%s url=http://%s:%d/metrics", driver.name, host, port)
    return timer
