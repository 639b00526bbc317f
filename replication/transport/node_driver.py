"""The node's driver: runs one ``NodeMachine`` behind the shared socket loop, in a process.

For: a node's pass (read, tick, perform), performing its outputs in the
journal's durability order, bundling replies per client, the entry stream's
``XPUB`` at ``group_file.pub_endpoint(endpoint)`` (with events, for
subscribers; gaps are filled by a ``Refill`` to the ROUTER), and timing a
promotion from the message that decides it to serving. Not for: the sockets
and inbound checks every process shares (``loop``), the witness
(``witness_driver``), or any protocol decision (``replication.protocol.node``).

Durability: the machine writes its journal appends before it returns; the
journal defers their fdatasync (``defer_sync``) to :meth:`NodeDriver.perform`,
which syncs before the first output that needs it (``wire.Send.needs_sync``,
every publish and every reply) — the machine, not this module, says which.
What a pass made while every append was durable (an ack's replies, before
the pass sequences its next batch) needs no sync: it leaves before the
pass's tick (:meth:`NodeDriver.run_once`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import zmq

from ..protocol import wire
from ..protocol.journal_api import JournalFault
from .group_file import GroupConfig, pub_endpoint
from .loop import MAX_DRAIN, SocketLoop, acknowledges_nothing
from .market_data_pub import MarketDataPublisher
from .sockets import tune_pub

if TYPE_CHECKING:
    from ..protocol.node.machine import NodeMachine

log = logging.getLogger("replication.node")

BUNDLE_BYTES = 1 << 20  # a Replies frame is split past this size (far below wire.MAX_PAYLOAD)


def wall_clock(now: float) -> int:
    """The group's time as a primary stamps it (``NodeMachine``'s ``clock``): the wall clock in
    nanoseconds since the epoch (``now``, the loop's monotonic clock, is for timers only)."""
    return time.time_ns()


def _reply_frame(msgs: list) -> bytes:
    return wire.encode(msgs[0] if len(msgs) == 1 else wire.Replies(tuple(msgs)))


class NodeDriver(SocketLoop):
    """Runs a ``NodeMachine`` (``handle``/``handle_requests``/``tick``) behind ZeroMQ sockets.

    Parameters are :class:`~replication.transport.loop.SocketLoop`'s, and
    ``publish``: bind the entry stream's XPUB (nodes of a group always do).
    """

    machine: NodeMachine
    pub: zmq.Socket | None = None
    md: MarketDataPublisher | None = None  # the public market-data feed, when the engine computes one

    def __init__(
        self,
        machine: NodeMachine,
        name: str,
        endpoint: str,
        peers: dict[str, str],
        publish: bool = True,
        ctx: zmq.Context | None = None,
        keys_dir: str = "",
        cfg: GroupConfig | None = None,
    ) -> None:
        super().__init__(machine, name, endpoint, peers, ctx, keys_dir, cfg)
        # Topics some subscriber holds (XPUB reports the first subscribe and last
        # unsubscribe per topic): with none, Publish outputs are not even encoded.
        self.pub_topics: set[bytes] = set()
        if publish:
            self.pub = self.ctx.socket(zmq.XPUB)
            tune_pub(self.pub)
            if keys_dir:
                from . import curve  # only with keys: see transport.loop

                curve.make_server(self.pub, keys_dir, name)
                self.pub.zap_domain = curve.DROP_COPY_DOMAIN.encode()  # operators' only
            self.pub.bind(pub_endpoint(endpoint))
            self.poller.register(self.pub, zmq.POLLIN)
        # The public market-data feed (market_data_pub), when the engine computes one (md_engine).
        if publish and getattr(machine.replica.engine, "enabled", False):
            self.md = MarketDataPublisher(self.ctx, name, endpoint, keys_dir, self.counters)
            for s in self.md.sockets():
                self.poller.register(s, zmq.POLLIN)
        # The journal's fdatasync is ours to call, after the outputs that may leave first
        # (perform()): it then overlaps the peers' journal writes and round trips.
        self.journal = machine.journal
        self.journal.defer_sync = True

    # -- a pass ----------------------------------------------------------------------------

    def run_once(self, timeout_ms: float) -> None:
        events, now = self.poll(timeout_ms)
        m = self.machine
        # A standby times a promotion from the message that decides it (a grant, a
        # handover, an operator promote) to serving: it performs that pass's outputs
        # as soon as it is primary (_serve_promotion).
        watch = not m.is_primary
        outs: list = []
        # How many of ``outs`` were made while every journal append was durable (see below).
        journal = self.journal
        covered = 0

        def full() -> bool:  # enough for one pass: the rest waits in the socket
            return len(outs) > MAX_DRAIN or len(m.pending) > MAX_DRAIN

        if self.router in events:
            for ident, frame, user_id in self.frames(now, full):
                if not watch:
                    outs += self._inbound(ident, frame, now, user_id)
                    if not journal.dirty:
                        covered = len(outs)
                    continue
                decided = time.monotonic()
                outs += self._inbound(ident, frame, now, user_id)
                if m.is_primary:
                    watch = False
                    self._serve_promotion(outs, decided)
                    outs = []
                if not journal.dirty:
                    covered = len(outs)
        outs += self.disconnects(events, now)
        if not journal.dirty:
            covered = len(outs)
        if covered:
            # What the pass made while every append was durable acknowledges nothing a sync
            # must still cover: it leaves now, before the tick's work (the next batch's engine
            # pass, journal write and sync). An ack's replies thus wait for neither.
            self.perform(outs[:covered], covered=True)
            del outs[:covered]
        if self.pub is not None and self.pub in events:
            self._pub_subscriptions()
        outs += m.tick(now)
        if watch and m.is_primary:
            self._serve_promotion(outs, now)  # promoted by a timer: timed from the pass's start
        else:
            self.perform(outs)
        if self.md is not None:  # what this pass applied, now durable here: the public feed
            self.md.after_pass(m.replica.engine, events, now)

    def _deliver_requests(self, src: wire.Address, requests: Any, now: float) -> list:
        return self.machine.handle_requests(src, requests, now)  # the primary's batch path

    def wait_ms(self) -> float:
        wait = super().wait_ms()
        # Requests still queued: sequence the next batch without waiting.
        return 0 if self._has_queued_requests() else wait

    def _has_queued_requests(self) -> bool:
        m = self.machine
        # (Async without its lease, a primary sequences nothing: sleep until a message renews it.)
        return bool(m.pending) and m.is_primary and m.lease_held(time.monotonic())

    def _serve_promotion(self, outs: list, decided: float) -> None:
        """Perform a promotion's outputs at once and record decision -> serving.

        Serving means: the new epoch's record is durable (``promote`` synced it)
        and its heartbeats, which tell the peers and the witness, are sent. The
        requests the new primary held are queued then, and the first batch is
        sequenced by this pass's tick: that work is the first order's, measured
        by "first accepted", not the promotion's.
        """
        self.perform(outs)
        self.machine.promotion_ms = (time.monotonic() - decided) * 1000.0
        log.info(
            "serving node=%s epoch=%d decision_to_serving_ms=%.3f",
            self.name,
            self.machine.epoch,
            self.machine.promotion_ms,
        )

    # -- outputs ---------------------------------------------------------------------------

    def perform(self, outputs: list, covered: bool = False) -> None:
        """Perform outputs in order (see :meth:`_perform`); a failed journal lets only refusals and
        status out (``journal_health``): nothing that may acknowledge what is not on disk.

        ``covered``: every output was made while the journal was clean (every append
        durable). An output acknowledges at most what was appended before it was made, so
        none of these waits for a sync, and the journal is left as it is.
        """
        if self.journal.failed:
            outputs = [o for o in outputs if acknowledges_nothing(o)]
        try:
            self._perform(outputs, sync=not covered)
        except JournalFault as exc:
            # Its fdatasync failed: what this pass had not sent yet stays unsent.
            self._perform(self.machine.on_journal_fault(exc))  # refusals only

    def _perform(self, outputs: list, sync: bool = True) -> None:
        """Perform outputs in order.

        Durability rule: the machine has written (not yet fsynced) its journal
        appends before returning, and marks what may leave before the fsync: a
        ``Send`` with ``needs_sync`` cleared (the primary's ``Entries``, so its
        fdatasync overlaps the standby's journal write and round trip). Every
        other output (replies, acks, heartbeats — all of which may acknowledge a
        seq — and publishes) waits for the fsync. So a reply is released only
        once the primary's copy is synced *and* (sync mode) every ISR member
        acked its own journaled copy. Replies to clients go last, bundled per
        client (``wire.Replies``), but before any other message to the same
        client that follows them (its reports); a ``wire.ReplyRun`` (a batch's
        replies to one client) joins its client's bundle as it is, packed
        straight from its columns. ``sync=False``: the journal already covers
        every output here (:meth:`perform`'s ``covered``), none waits for it.
        """
        journal = self.journal
        # Replies to one client within one pass go out as one ``Replies`` frame, after
        # everything else (and so after the journal sync below): a client cannot tell
        # the difference, and under load it saves a send and a checksum per order.
        replies: dict[bytes, list] = {}
        Reply, Send, ReplyRun, timer = wire.Reply, wire.Send, wire.ReplyRun, self.reply_timer
        # Consecutive replies mostly go to one client: its list is kept at hand (no dict
        # look-up per reply).
        last: bytes | None = None
        bundle: list = []
        for o in outputs:
            if type(o) is ReplyRun:
                if timer is not None:
                    for msg in o.replies():
                        timer.on_reply(msg)
                if not isinstance(o.dest, bytes):
                    self._perform(o.sends(), sync)  # a peer's address: one frame per reply, as a Send each
                    continue
                if o.dest != last:
                    last = o.dest
                    bundle = replies.setdefault(last, [])
                bundle.append(o)
                continue
            if isinstance(o, Send):
                msg = o.msg
                if type(msg) is Reply and isinstance(o.dest, bytes):
                    if timer is not None:
                        timer.on_reply(msg)
                    if o.dest != last:
                        last = o.dest
                        bundle = replies.setdefault(last, [])
                    bundle.append(msg)
                    continue
                if sync and o.needs_sync and journal.dirty:
                    journal.sync()
                if o.dest in replies:  # (only a client's address holds a bundle)
                    # A client's other messages (its execution reports, say) do not overtake the
                    # replies made before them: the client sees the machine's order.
                    if sync and journal.dirty:
                        journal.sync()
                    self._send_replies(o.dest, replies.pop(o.dest))
                    last = None
                self.send(o.dest, msg)
            elif isinstance(o, wire.Publish) and self.pub is not None:
                if sync and journal.dirty:
                    journal.sync()
                if self.pub_topics:
                    self.pub.send_multipart([o.topic, wire.encode(o.msg)], zmq.NOBLOCK)
        if sync and journal.dirty:
            journal.sync()
        for dest, msgs in replies.items():
            self._send_replies(dest, msgs)

    def _send_replies(self, dest: bytes, msgs: list) -> None:
        """One frame per client, split only where a frame would pass ``BUNDLE_BYTES``.

        ``msgs`` holds ``wire.Reply`` messages and ``wire.ReplyRun`` runs; a run
        counts as its replies (so the frames are those of one ``Reply`` each).
        """
        Reply = wire.Reply
        if all([type(m) is Reply for m in msgs]):
            size = sum([len(m.events) for m in msgs]) + 64 * len(msgs)
            if size <= BUNDLE_BYTES:
                self._send_client(dest, _reply_frame(msgs))  # the usual case: one frame, no loop of ours
                return
        else:
            size = sum(
                [len(m.events) + 64 if type(m) is Reply else m.events_size() + 64 * len(m) for m in msgs]
            )
            if size <= BUNDLE_BYTES:
                self._send_client(dest, wire.encode_replies(msgs))
                return
            msgs = [r for m in msgs for r in ([m] if type(m) is Reply else m.replies())]
        start, size = 0, 0
        for i, m in enumerate(msgs):
            size += len(m.events) + 64
            if size > BUNDLE_BYTES and i > start:
                self._send_client(dest, _reply_frame(msgs[start:i]))
                start, size = i, len(m.events) + 64
        self._send_client(dest, _reply_frame(msgs[start:]))

    def _pub_subscriptions(self) -> None:
        while True:
            try:
                ev = self.pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if ev[:1] == b"\x01":
                self.pub_topics.add(ev[1:])
            elif ev[:1] == b"\x00":
                self.pub_topics.discard(ev[1:])

    def _close_more(self) -> None:
        if self.pub is not None:
            self.pub.close(0)
        if self.md is not None:
            self.md.close()
        self.journal.close()


def node_driver(
    cfg: GroupConfig, name: str, start_role: str, engine_factory: Any = None, perturb_seq: int = 0
) -> NodeDriver:
    """Build the driver of node ``name`` of the group ``cfg``."""
    from ..protocol.node.machine import NodeMachine
    from ..protocol.replica import default_engine_factory
    from ..storage.journal import FileJournal
    from .md_engine import feed_engine_factory

    if name not in cfg.nodes:
        raise ValueError(f"no node {name!r} in {cfg.path} (nodes: {', '.join(cfg.nodes)})")
    spec = cfg.nodes[name]
    try:
        journal = FileJournal(spec.journal, cfg.settings.fsync)
    except OSError as exc:  # a disk that cannot even be read or written at start: say so, no traceback
        raise SystemExit(f"node {name}: cannot open its journal {spec.journal}: {exc}") from None
    # The public feed: every node of the group computes it (or, market_data = 0, none does).
    engine_factory = feed_engine_factory(
        engine_factory or default_engine_factory, cfg.extra.get("market_data", 1)
    )
    machine = NodeMachine(
        name,
        cfg.node_names,
        journal,
        cfg.settings,
        "witness" if cfg.witness else None,
        engine_factory,
        start_role,
        perturb_seq,
        clock=wall_clock,
    )
    peers = {n: s.endpoint for n, s in cfg.nodes.items() if n != name}
    if cfg.witness:
        peers["witness"] = cfg.witness
    driver = NodeDriver(machine, name, spec.endpoint, peers, publish=True, keys_dir=cfg.keys_dir, cfg=cfg)
    if spec.busy_poll:  # the group file's [nodes.NAME] busy_poll: a core of its own (transport.loop)
        driver.busy_poll = True
        log.info("busy_poll node=%s: the loop polls without sleeping", name)
    return driver
