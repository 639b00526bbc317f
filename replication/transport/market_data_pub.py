"""A node's public market-data feed on the wire: the updates of each pass on a PUB, heartbeats, and a snapshot service.

For: ``MarketDataPublisher``, which a ``NodeDriver`` runs after each pass
(``after_pass``): it takes the updates the node's ``FeedEngine``
(``md_engine``) computed from the entries the pass applied and publishes
them, one frame per instrument per pass, on an XPUB at the node's port
+ 200 (``md_endpoint``); it sends a heartbeat (the feed's group seq) every
``HEARTBEAT_S``; and it answers snapshot requests (full-depth L2 of one
instrument at the feed's seq) on a ROUTER at port + 201
(``md_snapshot_endpoint``). Every node runs one, standbys too: their feeds
are the same as the primary's at every group seq.

Not for: computing the feed (``md_engine``, ``matching.BookFeed``), nor
following it (``replication.client.market_data``).

A slow subscriber never slows matching: every send is non-blocking, each
subscriber's pipe holds at most ``SNDHWM`` frames and ZeroMQ drops past it
for that subscriber alone (it sees a gap in its instrument seqs and takes a
snapshot: the snapshot *is* the conflation to the latest state). The node
counts what it published (``md_updates``, ``md_frames``), what it could not
(``md_frames_dropped``: the whole socket refused, ``md_unpublished``:
updates nobody took) and the snapshots it served (``md_snapshots``); they are
in ``matchcore status --json`` under ``driver``. Updates are only encoded
when some subscriber holds their topic (XPUB reports subscriptions); they are
always computed, so the seqs and checksums stay the same on every node.

Under CURVE both sockets are servers with the node's key in the default ZAP
domain: any key of the group (client, operator, node, witness) may
subscribe and ask for snapshots — the feed is public, it carries no order
id, account or client id. Open mode: anyone who reaches the port.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import zmq

from ..protocol import market_data as md_wire
from .group_file import pub_endpoint

log = logging.getLogger("replication.market_data")

MD_OFFSET = 200  # the feed's PUB: node port + 200 (the entry stream is + 100)
MD_SNAPSHOT_OFFSET = 201  # the snapshot service's ROUTER
HEARTBEAT_S = 0.2  # a feed with nothing to say still says where it is this often
# Frames queued per subscriber before ZeroMQ drops its next ones, and updates per frame (a
# pass's updates of one instrument, split): at most SNDHWM x FRAME_UPDATES x 64 bytes (1 MiB)
# held for one subscriber that does not read, plus SNDBUF in the kernel: several passes of a
# busy primary. A subscriber further behind loses updates and resyncs by snapshot.
SNDHWM = 64
FRAME_UPDATES = 256
SNDBUF = 1 << 18
SNAPSHOT_HWM = 16  # queued snapshot requests and answers per asker
# What either socket accepts inbound: an 8-byte request, a subscription, and the CURVE handshake
# (whose INITIATE command, key and metadata, does not fit in 64 bytes: a tighter bound stops
# every keyed subscriber).
MAX_INBOUND = 4096
MAX_SNAPSHOTS_PER_PASS = 32
REBIND_S = 1.0  # a feed whose port was taken tries to bind again this often  # the rest wait in the socket: a flood of requests cannot hold the loop


def md_endpoint(endpoint: str) -> str:
    """The feed's PUB endpoint of a node at ``endpoint``: same host, port + 200."""
    return pub_endpoint(endpoint, MD_OFFSET)


def md_snapshot_endpoint(endpoint: str) -> str:
    """The snapshot service's ROUTER endpoint of a node: same host, port + 201."""
    return pub_endpoint(endpoint, MD_SNAPSHOT_OFFSET)


class MarketDataPublisher:
    """The feed's two sockets, bound next to a node's endpoint; driven by ``after_pass``."""

    def __init__(self, ctx: zmq.Context, name: str, endpoint: str, keys_dir: str, counters: dict) -> None:
        self.counters = counters
        self.pub = ctx.socket(zmq.XPUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.setsockopt(zmq.SNDHWM, SNDHWM)
        self.pub.setsockopt(zmq.SNDBUF, SNDBUF)
        self.pub.setsockopt(zmq.MAXMSGSIZE, MAX_INBOUND)  # it receives subscriptions only
        self.snap = ctx.socket(zmq.ROUTER)
        self.snap.setsockopt(zmq.LINGER, 0)
        self.snap.setsockopt(zmq.SNDHWM, SNAPSHOT_HWM)
        self.snap.setsockopt(zmq.RCVHWM, SNAPSHOT_HWM)
        self.snap.setsockopt(zmq.MAXMSGSIZE, MAX_INBOUND)
        self.snap.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a full pipe raises: counted, not silent
        if keys_dir:
            from . import curve  # only with keys, as the loop does

            curve.make_server(self.pub, keys_dir, name)
            curve.make_server(self.snap, keys_dir, name)
        self.endpoint = endpoint
        self.bound = False
        self.last_bind = 0.0
        self._bind(0.0)
        self.topics: set[bytes] = set()  # subscribed prefixes (XPUB: first subscribe, last unsubscribe)
        self.engine: Any = None  # the FeedEngine being followed (a new one after a snapshot install)
        self.last_heartbeat = 0.0

    def sockets(self) -> list[zmq.Socket]:
        """The sockets the driver's poller watches (POLLIN)."""
        return [self.pub, self.snap]

    def _bind(self, now: float) -> None:
        """Bind both sockets. A port taken (by another process, say between a restart and this
        bind) stops the feed, never the node: it is tried again every ``REBIND_S``."""
        self.last_bind = now
        try:
            if self.pub.last_endpoint in (None, b""):
                self.pub.bind(md_endpoint(self.endpoint))
            self.snap.bind(md_snapshot_endpoint(self.endpoint))
        except zmq.ZMQError as exc:
            self._add("md_bind_failed", 1)
            log.error(
                "market_data_bind_failed endpoint=%s error=%s (the feed waits; matching goes on)",
                self.endpoint,
                exc,
            )
            return
        self.bound = True

    def after_pass(self, engine: Any, events: dict, now: float) -> None:
        """Publish what the pass applied, serve snapshot requests, heartbeat. Called once the
        pass's outputs are performed (its journal appends durable). O(updates + requests)."""
        if not self.bound:
            if engine is not self.engine:
                self._follow(engine)
            engine.take()  # nobody can hear them: not kept
            if now - self.last_bind >= REBIND_S:
                self._bind(now)
            return
        if self.pub in events:
            self._subscriptions()
        if engine is not self.engine:
            self._follow(engine)
        if engine.available:
            records = engine.take()
            if records and self.topics:
                self._publish(records)
            elif records:
                self._add("md_updates_unheard", len(records) // md_wire.UPDATE_SIZE)
            if engine.unpublished:
                self._add("md_unpublished", engine.unpublished)
                engine.unpublished = 0
            if now - self.last_heartbeat >= HEARTBEAT_S:
                self.last_heartbeat = now
                feed = engine.feed
                self._send(
                    md_wire.TOPIC_HEARTBEAT, md_wire.encode_heartbeat(feed.seq, feed.instrument_seqs())
                )
        if self.snap in events:
            self._serve(engine)

    def close(self) -> None:
        self.pub.close(0)
        self.snap.close(0)

    # -- internals ---------------------------------------------------------------------------

    def _follow(self, engine: Any) -> None:
        """A new engine (start, rebuild, snapshot install): collect its updates from now on."""
        if self.engine is not None:
            self.engine.collect = False
            self.engine.take()
        self.engine = engine
        engine.collect = True
        if not engine.available:
            log.warning("market_data_unavailable: the feed does not know this node's book; publishing none")

    def _publish(self, records: bytes) -> None:
        """One frame per instrument (its updates in order, split past ``FRAME_UPDATES``), for the
        instruments someone holds. O(updates), no Python object per update."""
        size = md_wire.UPDATE_SIZE
        instruments = np.frombuffer(records, dtype="<u4").reshape(-1, size // 4)[:, 1]
        first = int(instruments[0])
        if (instruments == first).all():  # the usual pass: one instrument
            runs = [(first, records)]
        else:  # several: each instrument's records, in their order (a stable sort)
            order = np.argsort(instruments, kind="stable")
            rows = np.frombuffer(records, dtype=f"V{size}")[order]
            keys = instruments[order]
            cuts = np.flatnonzero(np.diff(keys)) + 1
            starts = [0, *cuts.tolist()]
            ends = [*cuts.tolist(), len(keys)]
            runs = [(int(keys[a]), rows[a:b].tobytes()) for a, b in zip(starts, ends, strict=True)]
        topics = self.topics
        every = md_wire.TOPIC_UPDATES in topics
        sent = 0
        step = FRAME_UPDATES * size
        for instrument, run in runs:
            topic = md_wire.update_topic(instrument)
            if not every and topic not in topics:
                continue
            for start in range(0, len(run), step):
                part = run[start : start + step]
                if self._send(topic, part):
                    sent += len(part) // size
        self._add("md_updates", sent)

    def _send(self, topic: bytes, body: bytes) -> bool:
        try:
            self.pub.send_multipart([topic, body], zmq.NOBLOCK)
        except zmq.Again:
            self._add("md_frames_dropped", 1)
            return False
        self._add("md_frames", 1)
        return True

    def _subscriptions(self) -> None:
        while True:
            try:
                ev = self.pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if ev[:1] == b"\x01":
                self.topics.add(ev[1:])
            elif ev[:1] == b"\x00":
                self.topics.discard(ev[1:])

    def _serve(self, engine: Any) -> None:
        for _ in range(MAX_SNAPSHOTS_PER_PASS):
            try:
                parts = self.snap.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(parts) != 2:
                self._add("md_snapshot_bad", 1)
                continue
            try:
                instrument = md_wire.decode_snapshot_ask(parts[1])
            except md_wire.DecodeError:
                self._add("md_snapshot_bad", 1)
                continue
            snap = engine.feed.snapshot(instrument) if engine.available else None
            try:
                self.snap.send_multipart([parts[0], md_wire.encode_snapshot_reply(snap)], zmq.NOBLOCK)
            except (zmq.Again, zmq.ZMQError):  # its pipe is full, or it is gone: it asks again
                self._add("md_snapshot_dropped", 1)
                continue
            self._add("md_snapshots", 1)

    def _add(self, key: str, n: int) -> None:
        if n:
            self.counters[key] = self.counters.get(key, 0) + n
