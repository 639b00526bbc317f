"""``MarketData``: follow a group's public feed, with a verified local book, through fail-over.

For: a third party that wants L2 books, trades and BBO of some instruments
(docs/operations.md "Public market data", docs/semantics.md "Market data")::

    md = MarketData.from_config("group.toml", instruments=[1])
    md.poll(timeout=0.01)   # -> updates applied since the last call (dicts: instrument, kind, ...)
    md.book(1)              # -> (bids, asks) as Engine.depth gives them, verified by checksum

It listens to one node at a time (any node: standbys publish the same feed),
starts each instrument from that node's snapshot service, applies the
updates after the snapshot (``matching.LocalBook``: every checksum checked),
and on a gap in the instrument seqs or a checksum mismatch takes a new
snapshot. A node that says nothing for ``silence`` seconds (its feed
heartbeats every 0.2 s) is left for the next one in the group file, and
every instrument starts again from that node's snapshot. Counters:
``gaps``, ``checksum_failures``, ``resyncs`` (an instrument recovered after
a gap or a mismatch), ``switches`` (nodes left), ``decode_errors``.

Not for: orders (``Client``), the operators' entry stream
(``transport.subscriber``), or publishing (``transport.market_data_pub``).
Updates are best effort: a subscriber that falls behind loses some and
recovers by snapshot; ``poll`` returns only updates applied to a verified
book, so it may skip some (the book after them is right).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import zmq

from matching.market_data import APPLIED, STALE, LocalBook, Update, update_dict

from ..protocol import market_data as md_wire
from ..transport.group_file import GroupConfig, load
from ..transport.market_data_pub import md_endpoint, md_snapshot_endpoint

SILENCE_S = 1.0  # a node heard from less often than this is left for the next
ASK_AGAIN_S = 0.5  # a snapshot request not answered by then is sent again
RCVHWM = 10_000  # frames queued by the subscriber's socket
MAX_BUFFERED = 100_000  # updates held per instrument while its snapshot is awaited
MAX_FRAMES_PER_POLL = 10_000  # a poll returns after this many frames even if more wait
MAX_LEVELS = 1 << 20  # a snapshot deeper than this a side is refused
MAX_UPDATES_PER_FRAME = md_wire.MAX_UPDATES_PER_FRAME

Callback = Callable[[dict], Any]


class MarketData:
    """A verified local book of some instruments, fed by whichever node of a group is alive.

    Parameters
    ----------
    nodes : list of (name, endpoint)
        The group's nodes, in the order they are tried.
    instruments : iterable of int
        What to follow.
    keys_dir, key : str
        Under CURVE: the group's keys directory, and this subscriber's key name
        (any key of the group may subscribe: a client's, an operator's).
    silence : float
        Seconds without a word from the node before moving to the next.
    on_update, on_level, on_trade, on_bbo : callable, optional
        Called with each applied update's dict (``on_update`` for every kind).
    rcvhwm : int
        Frames this subscriber queues before ZeroMQ drops (then it resyncs by snapshot).
    """

    def __init__(
        self,
        nodes: list[tuple[str, str]],
        instruments: Iterable[int],
        keys_dir: str = "",
        key: str = "",
        silence: float = SILENCE_S,
        on_update: Callback | None = None,
        on_level: Callback | None = None,
        on_trade: Callback | None = None,
        on_bbo: Callback | None = None,
        ctx: zmq.Context | None = None,
        rcvhwm: int = RCVHWM,
    ) -> None:
        if not nodes:
            raise ValueError("MarketData needs at least one node")
        self.nodes = list(nodes)
        self.instruments = sorted(set(instruments))
        self.keys_dir, self.key = keys_dir, key
        self.silence = silence
        self.rcvhwm = rcvhwm
        self.callbacks = {"level": on_level, "trade": on_trade, "bbo": on_bbo}
        self.on_update = on_update
        self.ctx = ctx or zmq.Context.instance()
        self.local = LocalBook()
        self.switches = 0
        self.decode_errors = 0
        self.snapshots = 0  # snapshots loaded, first ones included
        self.heard_seq = 0
        self._index = -1
        self._sub: zmq.Socket | None = None
        self._dealer: zmq.Socket | None = None
        self._poller = zmq.Poller()
        self._want: dict[int, float] = {}  # instrument -> when its snapshot was last asked for
        self._held: dict[int, list[Update]] = {}  # updates received while its snapshot is awaited
        self._loaded_at: dict[int, int] = {}  # instrument -> group seq of the snapshot it was loaded from
        self._heard = 0.0
        self._next_node(time.monotonic(), first=True)

    @classmethod
    def from_config(
        cls,
        path: str | GroupConfig,
        instruments: Iterable[int],
        node: str | None = None,
        key: str = "",
        **kw: Any,
    ) -> MarketData:
        """Follow the group of a group file; start at ``node`` (default: the file's first)."""
        cfg = path if isinstance(path, GroupConfig) else load(path)
        names = list(cfg.nodes)
        if node is not None:
            if node not in cfg.nodes:
                raise ValueError(f"no node {node!r} in {cfg.path} (nodes: {', '.join(names)})")
            names = names[names.index(node) :] + names[: names.index(node)]
        if cfg.keys_dir and not key:
            from ..transport.curve import client_key_for

            key = client_key_for(cfg, 0)
        return cls([(n, cfg.nodes[n].endpoint) for n in names], instruments, cfg.keys_dir, key, **kw)

    # -- what a user calls ----------------------------------------------------------------

    def poll(self, timeout: float = 0.0) -> list[dict]:
        """Wait up to ``timeout`` s for the feed; the updates applied since the last call, in order."""
        out: list[dict] = []
        ready = dict(self._poller.poll(max(0.0, timeout) * 1000))
        now = time.monotonic()
        frames = 0
        if self._dealer in ready:
            frames += self._snapshots(now, out)
        if self._sub in ready:
            frames += self._updates(now, out, MAX_FRAMES_PER_POLL - frames)
        if now - self._heard > self.silence:
            self._next_node(now)
        else:
            for ins, asked in list(self._want.items()):
                if now - asked > ASK_AGAIN_S:
                    self._ask(ins, now)
        return out

    def book(self, instrument: int) -> tuple[list, list]:
        """(bids, asks) of an instrument, as ``Engine.depth`` gives them; as last verified."""
        return self.local.book(instrument)

    def synced(self, instrument: int) -> bool:
        """Whether the instrument's book follows the feed now (no snapshot awaited)."""
        return instrument not in self._want and self.local.synced(instrument)

    @property
    def node(self) -> str:
        """The node listened to."""
        return self.nodes[self._index][0]

    @property
    def gaps(self) -> int:
        return self.local.gaps

    @property
    def checksum_failures(self) -> int:
        return self.local.checksum_failures

    @property
    def resyncs(self) -> int:
        return self.local.resyncs

    def counters(self) -> dict[str, int]:
        return {
            "gaps": self.gaps,
            "checksum_failures": self.checksum_failures,
            "resyncs": self.resyncs,
            "snapshots": self.snapshots,
            "switches": self.switches,
            "decode_errors": self.decode_errors,
        }

    def close(self) -> None:
        for s in (self._sub, self._dealer):
            if s is not None:
                s.close(0)
        self._sub = self._dealer = None

    def __enter__(self) -> MarketData:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------

    def _next_node(self, now: float, first: bool = False) -> None:
        """Listen to the next node; every instrument starts again from its snapshot."""
        if not first:
            self.switches += 1
        for s in (self._sub, self._dealer):
            if s is not None:
                self._poller.unregister(s)
                s.close(0)
        self._index = (self._index + 1) % len(self.nodes)
        name, endpoint = self.nodes[self._index]
        self._sub = self.ctx.socket(zmq.SUB)
        self._dealer = self.ctx.socket(zmq.DEALER)
        for s, ep in ((self._sub, md_endpoint(endpoint)), (self._dealer, md_snapshot_endpoint(endpoint))):
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.RCVHWM, self.rcvhwm)
            if self.keys_dir:
                from ..transport.curve import make_client

                make_client(s, self.keys_dir, server=name, me=self.key)
            s.connect(ep)
            self._poller.register(s, zmq.POLLIN)
        self._sub.setsockopt(zmq.SUBSCRIBE, md_wire.TOPIC_HEARTBEAT)
        for ins in self.instruments:
            self._sub.setsockopt(zmq.SUBSCRIBE, md_wire.update_topic(ins))
        self._dealer.setsockopt(zmq.SNDHWM, 64)
        self._heard = now  # it has ``silence`` to say something
        self.heard_seq = 0  # the group seq of this node's feed in its last heartbeat
        self._loaded_at = {}
        self._held = {ins: [] for ins in self.instruments}
        for ins in self.instruments:
            self._ask(ins, now)

    def _ask(self, instrument: int, now: float) -> None:
        self._want[instrument] = now
        try:
            self._dealer.send(md_wire.encode_snapshot_ask(instrument), zmq.NOBLOCK)  # type: ignore[union-attr]
        except zmq.Again:
            pass  # asked again in ASK_AGAIN_S

    def _updates(self, now: float, out: list[dict], budget: int) -> int:
        n = 0
        while n < budget:
            try:
                parts = self._sub.recv_multipart(zmq.NOBLOCK)  # type: ignore[union-attr]
            except zmq.Again:
                break
            n += 1
            self._heard = now
            if len(parts) != 2:
                self.decode_errors += 1
                continue
            topic, body = parts
            if topic == md_wire.TOPIC_HEARTBEAT:
                self._heartbeat(body, now)
                continue
            try:
                instrument = md_wire.topic_instrument(topic)
                updates = md_wire.decode_updates(body, MAX_UPDATES_PER_FRAME)
            except md_wire.DecodeError:
                self.decode_errors += 1
                continue
            if instrument not in self._held or any(u.instrument != instrument for u in updates):
                self.decode_errors += 1
                continue
            for u in updates:
                self._take(u, now, out)
        return n

    def _heartbeat(self, body: bytes, now: float) -> None:
        """Where the node's feed is. The heartbeat follows the updates before it on the same
        connection, so an instrument whose seq there differs from our book's starts again from a
        snapshot: further on, updates were dropped on the way (and nothing came after them);
        behind, the node's history was cut back (a standby truncated to its primary's). A
        heartbeat older than the instrument's snapshot (sent before it, read after it: another
        connection) says nothing about it."""
        try:
            seq, iseqs = md_wire.decode_heartbeat(body)
        except md_wire.DecodeError:
            self.decode_errors += 1
            return
        self.heard_seq = max(self.heard_seq, seq)
        for ins in self.instruments:
            if ins in self._want or ins not in iseqs or seq < self._loaded_at.get(ins, 0):
                continue
            if iseqs[ins] != self.local.instrument_seq(ins):
                self.local.lost(ins)
                self._held[ins] = []
                self._ask(ins, now)

    def _take(self, u: Update, now: float, out: list[dict]) -> None:
        """Apply one update, or hold it while the instrument's snapshot is awaited."""
        ins = u.instrument
        if ins in self._want:
            held = self._held[ins]
            if len(held) >= MAX_BUFFERED:
                held.clear()  # the snapshot, when it comes, will be followed by a gap: asked again
            held.append(u)
            return
        result = self.local.apply(u)
        if result == APPLIED:
            self._emit(u, out)
        elif result != STALE:  # a gap or a mismatch: start again from a snapshot
            self._held[ins] = [u]
            self._ask(ins, now)

    def _snapshots(self, now: float, out: list[dict]) -> int:
        n = 0
        while True:
            try:
                frame = self._dealer.recv(zmq.NOBLOCK)  # type: ignore[union-attr]
            except zmq.Again:
                return n
            n += 1
            try:
                snap = md_wire.decode_snapshot_reply(frame, MAX_LEVELS)
            except md_wire.DecodeError:
                self.decode_errors += 1
                continue
            if snap is None:  # this node's feed does not know its book: try the next
                self._heard = 0.0
                return n
            self._heard = now
            if snap.instrument not in self._want:
                continue  # an answer to a request already served
            if not self.local.load(snap):
                self._ask(snap.instrument, now)
                continue
            self.snapshots += 1
            self._loaded_at[snap.instrument] = snap.seq
            del self._want[snap.instrument]
            held, self._held[snap.instrument] = self._held[snap.instrument], []
            for u in held:
                if snap.instrument in self._want:
                    self._held[snap.instrument].append(u)
                else:
                    self._take(u, now, out)

    def _emit(self, u: Update, out: list[dict]) -> None:
        d = update_dict(u)
        out.append(d)
        if self.on_update is not None:
            self.on_update(d)
        cb = self.callbacks[d["kind"]]
        if cb is not None:
            cb(d)
