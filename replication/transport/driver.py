"""The thin ZeroMQ driver: runs one sans-IO machine (node or witness) in a process.

For: sockets, the poll loop, the clock (``time.monotonic``), decoding inbound
frames (bad ones are counted per reason, logged, dropped — the loop keeps
running), turning pyzmq socket-monitor disconnects into ``PeerDown`` hints,
and performing the machine's outputs. Not for: any protocol decision — those
live in ``failover``/``sequencer``/``standby``/``witness``.

Sockets (one ``zmq.Context`` per process, all used from this one thread):

- ``ROUTER`` bound at the node's endpoint: clients, operators and peers all
  send here. Peers identify themselves with the routing id ``peer:<name>``;
  anything else is a client address (``bytes``), answered through this socket.
- one ``DEALER`` per peer (and to the witness), connected to its endpoint,
  ``ZMQ_IMMEDIATE`` so nothing queues for a dead peer (sends are dropped and
  counted; the protocol re-sends what matters), monitored for disconnects.
- ``PUB`` at ``config.pub_endpoint(endpoint)`` (nodes only): the entry stream,
  with events, for subscribers; gaps are filled by a ``Refill`` to the ROUTER.

With ``keys_dir`` in the group file every socket uses CURVE (``security``), and
each frame's sender is the identity its key's ZAP ``User-Id`` names. Every
inbound message passes ``trust.Policy`` (who may send what) before the machine
sees it; a refusal is counted (``refused_<code>``) and logged once a second at most.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from typing import Any

import zmq

from ..protocol import trust, wire
from ..protocol.journal_api import JournalFault
from ..storage.diskio import describe
from ..storage.witness_state import load_witness_state, save_witness_state
from .group_file import GroupConfig, pub_endpoint
from .monitor import drain_disconnects
from .sockets import tune_gc, tune_peer_dealer, tune_pub, tune_router

log = logging.getLogger("replication.node")

MAX_DRAIN = 4096  # inbound frames handled before the next tick (bounds batch latency)
# Seconds of inbound handling per loop pass. A pass's acks, replies and heartbeats go out
# only at its end (after the journal's fdatasync), so a node that fell behind must not
# drain its whole backlog in one pass: a standby applying 4,096 queued frames held its
# acks ~100 ms, long enough for the primary to drop it from the in-sync set (and for
# sync replies to wait as long). With the budget the backlog drains in short passes.
PASS_BUDGET = 0.002
BUNDLE_BYTES = 1 << 20  # a Replies frame is split past this size (far below wire.MAX_PAYLOAD)


def _harmless(o: Any) -> bool:
    """An output that acknowledges nothing: a refusal or a status (all a failed journal lets out)."""
    msg = getattr(o, "msg", None)
    return type(msg) is wire.Status or (type(msg) is wire.Reply and msg.status != wire.OK)


def _reply_frame(msgs: list) -> bytes:
    return wire.encode(msgs[0] if len(msgs) == 1 else wire.Replies(tuple(msgs)))


class Driver:
    """Runs ``machine`` (``handle``/``tick``) behind ZeroMQ sockets.

    ``policy`` (``trust.Policy``) decides who may send what; the class default,
    an open group with no peers, serves stand-ins that skip ``__init__``.

    Parameters
    ----------
    machine : NodeMachine or WitnessMachine
    name : str
        This process's name (a node name, or ``"witness"``).
    endpoint : str
        Where to bind the ROUTER.
    peers : dict
        Peer name -> endpoint to connect a DEALER to.
    publish : bool
        Bind a PUB socket at the derived port.
    """

    router_monitor: zmq.Socket | None = None  # the ROUTER's disconnect events (set by __init__)
    policy = trust.Policy("", ())
    auth = None  # the ZAP thread under CURVE

    def __init__(
        self,
        machine: Any,
        name: str,
        endpoint: str,
        peers: dict[str, str],
        publish: bool = True,
        ctx: zmq.Context | None = None,
        keys_dir: str = "",
        cfg: GroupConfig | None = None,
    ) -> None:
        from . import curve as security

        self.machine = machine
        self.name = name
        self.ctx = ctx or zmq.Context()
        self.counters: dict[str, int] = {}
        self.running = False
        if cfg is not None:
            self.policy = trust.policy_for(cfg, name)
        else:  # open mode, the group as ``peers`` shows it
            if keys_dir:
                raise ValueError("a CURVE driver needs its group file (cfg)")
            nodes = [p for p in [name, *peers] if p != trust.WITNESS]
            self.policy = trust.Policy(name, nodes, trust.WITNESS in (name, *peers))
        self.auth = security.start_authenticator(self.ctx, cfg) if keys_dir and cfg is not None else None
        self._log_trust()
        self.router = self.ctx.socket(zmq.ROUTER)
        if keys_dir:
            security.make_server(self.router, keys_dir, name)
        tune_router(self.router)
        self.router_monitor = self.router.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self.router.bind(endpoint)
        self.pub = None
        # Topics some subscriber holds (XPUB reports the first subscribe and last
        # unsubscribe per topic): with none, Publish outputs are not even encoded.
        self.pub_topics: set[bytes] = set()
        if publish:
            self.pub = self.ctx.socket(zmq.XPUB)
            tune_pub(self.pub)
            if keys_dir:
                security.make_server(self.pub, keys_dir, name)
            self.pub.bind(pub_endpoint(endpoint))
        self.dealers: dict[str, zmq.Socket] = {}
        self.monitors: dict[zmq.Socket, str] = {}
        for peer, ep in peers.items():
            d = self.ctx.socket(zmq.DEALER)
            tune_peer_dealer(d, name)
            if keys_dir:
                security.make_client(d, keys_dir, server=peer, me=name)
            mon = d.get_monitor_socket(zmq.EVENT_DISCONNECTED)
            d.connect(ep)
            self.dealers[peer] = d
            self.monitors[mon] = peer
        self.poller = zmq.Poller()
        self.poller.register(self.router, zmq.POLLIN)
        self.poller.register(self.router_monitor, zmq.POLLIN)
        for mon in self.monitors:
            self.poller.register(mon, zmq.POLLIN)
        if self.pub is not None:
            self.poller.register(self.pub, zmq.POLLIN)
        # A journal that defers its fsync (FileJournal with fsync="batch") is synced by
        # perform() after the Entries sends and before any other output: see perform().
        self.journal = getattr(machine, "journal", None)  # (a witness has none)
        if self.journal is not None:
            self.journal.defer_sync = True
        self._last_drop_log = 0.0
        # The witness's durable decisions: saved before any output of a pass that changed them.
        self.state_path = ""
        self.saved_state: dict | None = None
        self.state_error = ""  # the witness's state file failed: it decides nothing more
        self.reply_timer = None  # set by enable_metrics(); None keeps the hot path free of it

    def _log_trust(self) -> None:
        """Say at start how this process knows who sends what (DESIGN.md "Trust")."""
        p = self.policy
        if p.curve:
            log.info(
                "auth=curve node=%s: every connection is tied to its key (%d operators, %d clients)",
                self.name,
                len(p.operators),
                len(p.clients),
            )
        else:
            log.warning(
                "auth=open node=%s: no keys_dir, the group trusts its network: any host that reaches "
                "this process may send requests and operator commands; peers are known by name only (%s)",
                self.name,
                ", ".join(sorted(p.nodes)),
            )

    def enable_metrics(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve Prometheus metrics on ``http://host:port/metrics`` (see ``replication.transport.metrics``)."""
        from . import metrics

        self.reply_timer = metrics.start(self, port, host)

    def count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    # -- outputs ----------------------------------------------------------------------

    def perform(self, outputs: list) -> None:
        """Perform outputs in order (see :meth:`_perform`); a failed journal lets only refusals and
        status out (``journal_health``): nothing that may acknowledge what is not on disk."""
        journal = self.journal
        if journal is not None and journal.failed:
            outputs = [o for o in outputs if _harmless(o)]
        try:
            self._perform(outputs)
        except JournalFault as exc:
            # Its fdatasync failed: what this pass had not sent yet stays unsent.
            self._perform(self.machine.on_journal_fault(exc))  # refusals only

    def _perform(self, outputs: list) -> None:
        """Perform outputs in order.

        Durability rule: the machine has written (not yet fsynced) its journal
        appends before returning, and marks what may leave before the fsync: a
        ``Send`` with ``needs_sync`` cleared (the primary's ``Entries``, so its
        fdatasync overlaps the standby's journal write and round trip). Every
        other output (replies, acks, heartbeats — all of which may acknowledge a
        seq — and publishes) waits for the fsync. So a
        reply is released only once the primary's copy is synced *and* (sync
        mode) every ISR member acked its own journaled copy. Replies to
        clients go last, bundled per client (``wire.Replies``); a
        ``wire.ReplyRun`` (a batch's replies to one client) joins its client's
        bundle as it is, packed straight from its columns.
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
                    self._perform(o.sends())  # a peer's address: one frame per reply, as a Send each
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
                if o.needs_sync and journal is not None and journal.dirty:
                    journal.sync()
                frame = wire.encode(msg)
                if isinstance(o.dest, bytes):
                    self._send_client(o.dest, frame)
                else:
                    sock = self.dealers.get(o.dest)
                    if sock is None:
                        self.count("unknown_destination")
                        continue
                    try:
                        sock.send(frame, zmq.NOBLOCK)
                    except zmq.Again:
                        self.count("dropped_sends")  # peer not connected (IMMEDIATE): it will catch up
            elif isinstance(o, wire.Publish) and self.pub is not None:
                if journal is not None and journal.dirty:
                    journal.sync()
                if self.pub_topics:
                    self.pub.send_multipart([o.topic, wire.encode(o.msg)], zmq.NOBLOCK)
        if journal is not None and journal.dirty:
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

    def _send_client(self, dest: bytes, frame: bytes) -> None:
        try:
            self.router.send_multipart([dest, frame], zmq.NOBLOCK)
        except zmq.Again:
            self.count("replies_dropped_hwm")  # it does not read: its re-send gets the same answer
        except zmq.ZMQError:
            self.count("replies_unroutable")  # gone (EHOSTUNREACH): nobody to tell

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

    # -- inbound ----------------------------------------------------------------------

    def _inbound(self, ident: bytes, frame: bytes, now: float, user_id: str | None = None) -> list:
        """Decode one frame from ``ident`` (under CURVE, its key's ``user_id``), check it, hand it on."""
        try:
            msg = wire.decode_packed(frame)  # a client's bundle stays packed (a wire.RequestRun)
        except wire.DecodeError as exc:
            key = f"decode_{exc.reason}"
            self.count(key)
            if now - self._last_drop_log > 1.0:  # one line a second at most under a flood
                self._last_drop_log = now
                log.warning(
                    "dropped_frame node=%s reason=%s from=%r total=%d",
                    self.name,
                    exc.reason,
                    ident[:32],
                    self.counters[key],
                )
            return []
        who = self.policy.identify(ident, user_id)
        refusal = self.policy.check(who, msg)
        if refusal is not None:
            self._refuse(who, msg, refusal, now)
            return []
        src: wire.Address = who.name if who.role in (trust.NODE, trust.WITNESS_ROLE) else ident
        if isinstance(msg, wire.StatusRequest):
            body = self.machine.status()
            body["auth"] = self.policy.mode
            body["driver"] = dict(sorted(self.counters.items()))
            return [wire.Send(src, wire.Status(json.dumps(body, sort_keys=True).encode()))]
        if type(msg) is wire.Requests:
            # A client's bundle: exactly as if its requests had arrived one by one (the reply
            # timer only starts clocks; replies are timed on the way out, after this pass).
            timer = self.reply_timer
            if timer is not None:
                for req in msg.requests:
                    timer.on_request(req)
            handle_requests = getattr(self.machine, "handle_requests", None)  # a witness has none
            if handle_requests is not None:
                return handle_requests(src, msg.requests, now)
            out: list = []
            for req in msg.requests:
                out += self.machine.handle(src, req, now)
            return out
        if self.reply_timer is not None and type(msg) is wire.Request:
            self.reply_timer.on_request(msg)
        return self.machine.handle(src, msg, now)

    def _refuse(self, who: trust.Identity, msg: wire.Message, refusal: trust.Refusal, now: float) -> None:
        """Count a refused message (``refused_<code>``) and log it, one line a second at most."""
        key = f"refused_{refusal.code}"
        self.count(key)
        if now - self._last_drop_log > 1.0:
            self._last_drop_log = now
            log.warning(
                "refused_message node=%s type=%s from=%s reason=%s total=%d",
                self.name,
                type(msg).__name__,
                who,
                refusal.detail,
                self.counters[key],
            )

    def run_once(self, timeout_ms: float) -> None:
        events = dict(self.poller.poll(timeout_ms))
        now = time.monotonic()
        was_primary = getattr(self.machine, "is_primary", True)
        # A standby times a promotion from the message that decides it (a grant, a
        # handover, an operator promote) to serving. The witness (state_path) keeps its
        # save-before-outputs order, so only nodes perform outputs mid-pass.
        watch = not was_primary and not self.state_path
        outs: list = []
        if self.router in events:
            budget_end = now + PASS_BUDGET
            for _ in range(MAX_DRAIN):
                if len(outs) > MAX_DRAIN or len(getattr(self.machine, "pending", ())) > MAX_DRAIN:
                    break  # enough for one pass; the rest waits in the socket (ZeroMQ's high-water mark)
                if time.monotonic() > budget_end:
                    self.count("pass_budget_spent")  # the rest waits for the next pass (polled at once)
                    break
                try:
                    parts, user_id = self._recv()
                except zmq.Again:
                    break
                if len(parts) != 2:
                    self.count("decode_bad_parts")
                    continue
                if not watch:
                    outs += self._inbound(parts[0], parts[1], now, user_id)
                    continue
                decided = time.monotonic()
                outs += self._inbound(parts[0], parts[1], now, user_id)
                if self.machine.is_primary:
                    watch = False
                    self._serve_promotion(outs, decided)
                    outs = []
        if self.router_monitor is not None and self.router_monitor in events:
            # Clients that left, and senders of frames past MAXMSGSIZE (ZeroMQ drops those).
            n = drain_disconnects(self.router_monitor)
            self.counters["inbound_disconnects"] = self.counters.get("inbound_disconnects", 0) + n
        for mon, peer in self.monitors.items():
            if mon in events and drain_disconnects(mon):
                log.info("peer_disconnected node=%s peer=%s", self.name, peer)
                outs += self.machine.handle(peer, wire.PeerDown(peer), now)
        if self.pub is not None and self.pub in events:
            self._pub_subscriptions()
        outs += self.machine.tick(now)
        if self.state_path:
            outs = self._save_witness_state(outs)
        if watch and self.machine.is_primary:
            self._serve_promotion(outs, now)  # promoted by a timer: timed from the pass's start
        else:
            self.perform(outs)

    def _recv(self) -> tuple[list, str | None]:
        """One ROUTER message's frames and, under CURVE, the ZAP User-Id of its sender's key."""
        if self.auth is None:
            return self.router.recv_multipart(zmq.NOBLOCK), None
        frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
        return [f.bytes for f in frames], frames[-1].get("User-Id")

    def _save_witness_state(self, outs: list) -> list:
        """Save the witness's decisions before the Vote or IsrAck that announces them leaves.

        A failed save (ENOSPC, EIO, a failed fdatasync, never retried) ends the witness's
        decisions for good: it announces nothing more, answers only ``status`` (with the
        error), and stays up. Without it no automatic fail-over happens; an operator's
        ``promote`` still can.
        """
        if self.state_error:
            return [o for o in outs if _harmless(o)]
        state = self.machine.durable_state()
        if state == self.saved_state:
            return outs
        try:
            save_witness_state(self.state_path, state)
        except (
            OSError,
            ValueError,
        ) as exc:  # ValueError: a record larger than its slot (trust refuses those)
            self.state_error = (
                describe(exc, "writing", self.state_path).replace("journal:", "witness state:")
                if isinstance(exc, OSError)
                else f"witness state: {exc}"
            )
            log.error(
                "witness_state_failed error=%r: no more votes; the witness stays up to report status",
                self.state_error,
            )
            self.machine.error = self.state_error
            return [o for o in outs if _harmless(o)]
        self.saved_state = state
        return outs

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

    def _has_queued_requests(self) -> bool:
        m = self.machine
        # (Async without its lease, a primary sequences nothing: sleep until a message renews it.)
        return (
            bool(getattr(m, "pending", None))
            and getattr(m, "is_primary", False)
            and m.lease_held(time.monotonic())
        )

    def run(self, poll_ms: float = 1.0) -> int:
        """Loop until SIGTERM/SIGINT; return an exit code."""
        self.running = True

        def stop(signum, frame):  # noqa: ARG001
            self.running = False

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        tune_gc()
        try:
            while self.running:
                # Requests still queued: sequence the next batch without waiting. Otherwise
                # the machine says how long it may sleep until its next timer, counted from
                # now (not from its last tick: the pass's outputs took time since).
                idle = getattr(self.machine, "idle_wait", None)
                wait = poll_ms if idle is None else idle(time.monotonic()) * 1000.0
                self.run_once(0 if self._has_queued_requests() else wait)
        finally:
            self.close()
        return 0

    def close(self) -> None:
        for mon in self.monitors:
            mon.close(0)
        if self.router_monitor is not None:
            self.router.disable_monitor()
            self.router_monitor.close(0)
        for d in self.dealers.values():
            d.disable_monitor()
            d.close(0)
        self.router.close(0)
        if self.pub is not None:
            self.pub.close(0)
        journal = getattr(self.machine, "journal", None)
        if journal is not None:
            journal.close()
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()


def node_driver(
    cfg: GroupConfig, name: str, start_role: str, engine_factory: Any = None, perturb_seq: int = 0
) -> Driver:
    """Build the driver of node ``name`` of the group ``cfg``."""
    from ..protocol.node.machine import NodeMachine
    from ..protocol.replica import default_engine_factory
    from ..storage.journal import FileJournal

    if name not in cfg.nodes:
        raise ValueError(f"no node {name!r} in {cfg.path} (nodes: {', '.join(cfg.nodes)})")
    spec = cfg.nodes[name]
    try:
        journal = FileJournal(spec.journal, cfg.settings.fsync)
    except OSError as exc:  # a disk that cannot even be read or written at start: say so, no traceback
        raise SystemExit(f"node {name}: cannot open its journal {spec.journal}: {exc}") from None
    machine = NodeMachine(
        name,
        cfg.node_names,
        journal,
        cfg.settings,
        "witness" if cfg.witness else None,
        engine_factory or default_engine_factory,
        start_role,
        perturb_seq,
    )
    peers = {n: s.endpoint for n, s in cfg.nodes.items() if n != name}
    if cfg.witness:
        peers["witness"] = cfg.witness
    return Driver(machine, name, spec.endpoint, peers, publish=True, keys_dir=cfg.keys_dir, cfg=cfg)


def witness_driver(cfg: GroupConfig) -> Driver:
    """Build the witness's driver."""
    from ..protocol.witness import WitnessMachine

    if not cfg.witness:
        raise ValueError(f"{cfg.path} has no [witness] endpoint")
    state = load_witness_state(cfg.witness_state) if cfg.witness_state else None
    if not cfg.witness_state and cfg.mode == "sync":
        log.warning(
            "witness_state_volatile path=%s: no [witness] state file; after a restart this witness "
            "refuses automatic promotions until the primary reports its in-sync set",
            cfg.path,
        )
    machine = WitnessMachine(cfg.node_names, cfg.settings, state=state)
    peers = {n: s.endpoint for n, s in cfg.nodes.items()}
    driver = Driver(machine, "witness", cfg.witness, peers, publish=False, keys_dir=cfg.keys_dir, cfg=cfg)
    driver.state_path = cfg.witness_state
    driver.saved_state = machine.durable_state()
    return driver
