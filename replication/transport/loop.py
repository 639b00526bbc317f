"""The socket loop a node's driver and the witness's driver share: ROUTER in, DEALERs out.

For: the sockets every process of the group has (one ``zmq.Context``, all used
from this one thread), receiving and checking inbound frames, sending one
message, the clock (``time.monotonic``), idle waits and signals.

- ``ROUTER`` bound at the process's endpoint: clients, operators and peers all
  send here. Peers identify themselves with the routing id ``peer:<name>``;
  anything else is a client address (``bytes``), answered through this socket.
- one ``DEALER`` per peer, connected to its endpoint, ``ZMQ_IMMEDIATE`` so
  nothing queues for a dead peer (sends are dropped and counted; the protocol
  re-sends what matters), monitored: a disconnect becomes a ``PeerDown`` hint.

Inbound frames are decoded (bad ones are counted per reason, logged, dropped —
the loop keeps running), then pass ``trust.Policy`` (who may send what) before
the machine sees them; a refusal is counted (``refused_<code>``) and logged
once a second at most. A client key restricted to some accounts has its
requests screened by ``entitlement``: those it may not send are answered
``NOT_ENTITLED`` here, never handed to the machine (``refused_not_entitled``). With ``keys_dir`` in the group file every socket uses
CURVE (``curve``), and each frame's sender is the identity its key's ZAP
``User-Id`` names. A ``StatusRequest`` is answered here: the machine's status
plus the loop's counters.

Idle waits: a pass's poll sleeps until a socket is ready or the machine's
next timer is due (``wait_ms``), so a process at rest wakes only for the
messages it gets and the timers it armed. With ``busy_poll`` (the group
file's ``[nodes.NAME] busy_poll``) it never sleeps: it polls with timeout 0
until the same moment, saving the wakeup's latency at the price of a whole
core.

Not for: what a pass does with the machine's outputs (``node_driver``,
``witness_driver``) or any protocol decision (``replication.protocol``).
"""

from __future__ import annotations

import json
import logging
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

import zmq

from ..protocol import entitlement, trust, wire
from .group_file import GroupConfig
from .monitor import drain_disconnects
from .sockets import tune_gc, tune_peer_dealer, tune_router

log = logging.getLogger("replication.node")

MAX_DRAIN = 4096  # inbound frames handled before the next tick (bounds batch latency)
# Seconds of inbound handling per loop pass. A pass's acks, replies and heartbeats go out
# only at its end (after the journal's fdatasync), so a node that fell behind must not
# drain its whole backlog in one pass: a standby applying 4,096 queued frames held its
# acks ~100 ms, long enough for the primary to drop it from the in-sync set (and for
# sync replies to wait as long). With the budget the backlog drains in short passes.
PASS_BUDGET = 0.002


def acknowledges_nothing(o: Any) -> bool:
    """An output that acknowledges nothing: a refusal or a status (all a failed journal, or a
    witness whose state file failed, lets out)."""
    if not isinstance(o, wire.Send):
        return False  # a publish carries entries; a ReplyRun, OK replies
    msg = o.msg
    return type(msg) is wire.Status or (type(msg) is wire.Reply and msg.status != wire.OK)


class SocketLoop(ABC):
    """The sockets, inbound path and main loop of one process running ``machine``.

    A driver subclasses it with ``run_once(timeout_ms)`` (one pass: poll, read,
    tick, perform) and ``wait_ms()`` (how long the next poll may sleep).

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
    """

    router_monitor: zmq.Socket | None = None  # the ROUTER's disconnect events (set by __init__)
    _monitor_fds: dict[zmq.Socket, int] = {}  # noqa: RUF012 - each monitor's ZMQ_FD, polled (__init__'s own)
    policy = trust.Policy("", ())
    auth = None  # the ZAP thread under CURVE
    reply_timer = None  # set by enable_metrics(); None keeps the hot path free of it
    busy_poll = False  # spin in poll(), never sleep (a dedicated core: see the module docstring)
    _last_sent: tuple[Any, bytes] = (None, b"")  # the last message send() encoded, and its frame

    def __init__(
        self,
        machine: Any,
        name: str,
        endpoint: str,
        peers: dict[str, str],
        ctx: zmq.Context | None = None,
        keys_dir: str = "",
        cfg: GroupConfig | None = None,
    ) -> None:
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
        # CURVE only when the group has keys, imported only then: zmq.auth brings asyncio and ssl
        # (~70 modules, ~1.2 MB RSS), and a node's RSS is the teardown floor of every SIGKILL fail-over.
        curve = _curve() if keys_dir else None
        self.auth = curve.start_authenticator(self.ctx, cfg) if curve and cfg is not None else None
        self._log_trust()
        self.router = self.ctx.socket(zmq.ROUTER)
        if curve:
            curve.make_server(self.router, keys_dir, name)
        tune_router(self.router)
        self.router_monitor = self.router.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self.router.bind(endpoint)
        self.dealers: dict[str, zmq.Socket] = {}
        self.monitors: dict[zmq.Socket, str] = {}
        for peer, ep in peers.items():
            d = self.ctx.socket(zmq.DEALER)
            tune_peer_dealer(d, name)
            if curve:
                curve.make_client(d, keys_dir, server=peer, me=name)
            mon = d.get_monitor_socket(zmq.EVENT_DISCONNECTED)
            d.connect(ep)
            self.dealers[peer] = d
            self.monitors[mon] = peer
        self.poller = zmq.Poller()
        self.poller.register(self.router, zmq.POLLIN)
        self._monitor_fds = {}
        for mon in [self.router_monitor, *self.monitors]:
            self._watch_monitor(mon)
        self._last_drop_log = 0.0

    def _watch_monitor(self, mon: zmq.Socket) -> None:
        """Poll monitor socket ``mon`` by its file descriptor (``ZMQ_FD``), not as a ZeroMQ socket.

        Why: ``zmq_poll`` asks every ZeroMQ socket it watches for its events before it
        sleeps and again after, two system calls each, at every pass (at rest, one per
        heartbeat); the monitors are three of a node's seven polled sockets, for events
        that come once per dropped connection (a sleeping poll cost ~15 % less CPU without
        them). The descriptor is readable when the socket has commands to process, which a
        new event in its empty pipe is, once the socket read its pipe dry: drained here
        first, and by :meth:`disconnects` at every wake, it always is.
        """
        drain_disconnects(mon)  # (nothing yet: this arms the wakeup of the first event)
        fd = mon.getsockopt(zmq.FD)
        self._monitor_fds[mon] = fd
        self.poller.register(fd, zmq.POLLIN)

    def _log_trust(self) -> None:
        """Say at start, in one line, how this process knows who sends what and why (docs/operations.md
        "Security", "Entitlements")."""
        p = self.policy
        if p.curve and p.listed_clients:
            log.info(
                "auth=curve node=%s: every connection is tied to its key (%d operators, %d clients, "
                "%d of them restricted to accounts)",
                self.name,
                len(p.operators),
                len(p.clients),
                sum(1 for c in p.clients.values() if c.accounts),
            )
        elif p.curve:
            log.info(
                "auth=open node=%s: no [clients] entries in the group file: any holder of the implicit "
                "client key may use any client id and account (peers and operators are tied to their keys)",
                self.name,
            )
        else:
            log.warning(
                "auth=open node=%s: no keys_dir, the group trusts its network: any host that reaches "
                "this process may send requests and operator commands; peers are known by name only (%s)%s",
                self.name,
                ", ".join(sorted(p.nodes)),
                # No key tells who a client is: its entry's client_id and accounts bind nobody.
                "; [clients] entries restrict nothing without keys"
                if any(c.client_id or c.accounts for c in p.clients.values())
                else "",
            )

    def enable_metrics(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve Prometheus metrics on ``http://host:port/metrics`` (see ``replication.transport.metrics``)."""
        from . import metrics

        self.reply_timer = metrics.start(self, port, host)

    def count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    # -- one pass's inbound ------------------------------------------------------------

    def poll(self, timeout_ms: float) -> tuple[dict, float]:
        """Wait up to ``timeout_ms`` for a socket; the ready sockets and the pass's clock reading."""
        self._last_sent = (None, b"")  # a new pass: nothing it sends was encoded yet
        if self.busy_poll and timeout_ms > 0:
            return self._spin(timeout_ms)
        events = dict(self.poller.poll(timeout_ms))
        return events, time.monotonic()

    def _spin(self, timeout_ms: float) -> tuple[dict, float]:
        """``poll`` without sleeping: non-blocking polls until a socket is ready or ``timeout_ms``
        has passed (the wait ends when it would have; a signal is seen by then too)."""
        deadline = time.monotonic() + timeout_ms / 1000.0
        poll = self.poller.poll
        while True:
            events = poll(0)
            now = time.monotonic()
            if events or now >= deadline:
                return dict(events), now

    def frames(self, now: float, full: Callable[[], bool]) -> Iterator[tuple[bytes, bytes, str | None]]:
        """The ROUTER's waiting frames, as ``(routing id, frame, ZAP User-Id)``, for one pass.

        Stops at ``MAX_DRAIN`` frames, once ``PASS_BUDGET`` seconds of the pass are spent, or as
        soon as ``full()`` says the pass has enough work (checked before each read): the rest
        waits in the socket, bounded by ZeroMQ's high-water mark, for the next pass.
        """
        budget_end = now + PASS_BUDGET
        for _ in range(MAX_DRAIN):
            if full():
                return
            if time.monotonic() > budget_end:
                self.count("pass_budget_spent")  # the rest waits for the next pass (polled at once)
                return
            try:
                parts, user_id = self._recv()
            except zmq.Again:
                return
            if len(parts) != 2:
                self.count("decode_bad_parts")
                continue
            yield parts[0], parts[1], user_id

    def _recv(self) -> tuple[list, str | None]:
        """One ROUTER message's frames and, under CURVE, the ZAP User-Id of its sender's key."""
        if self.auth is None:
            return self.router.recv_multipart(zmq.NOBLOCK), None
        frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
        return [f.bytes for f in frames], frames[-1].get("User-Id")

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
        if who.accounts and type(msg) in (wire.Request, wire.Requests, wire.Query):  # a restricted client's
            return self._entitled(who, src, msg, now)  # type: ignore[arg-type]
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
            return self._deliver_requests(src, msg.requests, now)
        if self.reply_timer is not None and type(msg) is wire.Request:
            self.reply_timer.on_request(msg)
        return self.machine.handle(src, msg, now)

    def _entitled(
        self,
        who: trust.Identity,
        src: wire.Address,
        msg: wire.Request | wire.Requests | wire.Query,
        now: float,
    ) -> list:
        """A restricted client's request, bundle or query: what it may send goes on as usual, the
        rest is answered ``NOT_ENTITLED`` at once and counted (``entitlement``)."""
        if type(msg) is wire.Query:
            answer = entitlement.screen_query(who.accounts, msg, self._known_order_account)
            if answer is None:
                return self.machine.handle(src, msg, now)
            self._not_entitled(who, 1, now)
            return [wire.Send(src, answer)]
        allowed, refused = entitlement.screen(who.accounts, msg, self._account_of)
        deferred = entitlement.unknown_targets(allowed, self._account_of)
        if deferred:
            self.machine.defer_entitlement(deferred, who.accounts)
        outs: list = [wire.Send(src, reply) for reply in refused]
        if refused:
            self._not_entitled(who, len(refused), now)
        if type(allowed) is wire.Requests:
            timer = self.reply_timer
            if timer is not None:
                for req in allowed.requests:
                    timer.on_request(req)
            outs += self._deliver_requests(src, allowed.requests, now)
        elif allowed is not None:
            if self.reply_timer is not None:
                self.reply_timer.on_request(allowed)
            outs += self.machine.handle(src, allowed, now)
        return outs

    def _not_entitled(self, who: trust.Identity, n: int, now: float) -> None:
        """Count ``n`` requests or queries refused ``not_entitled``; log one line a second at most."""
        key = "refused_not_entitled"
        self.counters[key] = self.counters.get(key, 0) + n
        if now - self._last_drop_log > 1.0:
            self._last_drop_log = now
            log.warning(
                "not_entitled node=%s from=%s accounts=%s refused=%d total=%d",
                self.name,
                who,
                sorted(who.accounts),
                n,
                self.counters[key],
            )

    def _account_of(self, order_id: int) -> int | None:
        """The account of a live order of the machine's replica (None: no such live order)."""
        return self.machine.replica.order_account(order_id)

    def _known_order_account(self, order_id: int) -> int | None:
        """The account of a live or recently ended order, what an order query tells about (None:
        the replica does not know it)."""
        state = self.machine.replica.reports.order(order_id)
        return None if state is None else state.account

    def _deliver_requests(self, src: wire.Address, requests: Any, now: float) -> list:
        """Hand a client's bundle to the machine: one ``handle`` per request (a node driver has
        its machine's batch path)."""
        out: list = []
        for req in requests:
            out += self.machine.handle(src, req, now)
        return out

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

    def disconnects(self, events: dict, now: float) -> list:
        """Count dropped inbound connections; tell the machine of each peer whose DEALER dropped."""
        outs: list = []
        fds = self._monitor_fds  # (polled by descriptor: each wake drains its socket, see _watch_monitor)
        if self.router_monitor is not None and fds.get(self.router_monitor) in events:
            # Clients that left, and senders of frames past MAXMSGSIZE (ZeroMQ drops those).
            n = drain_disconnects(self.router_monitor)
            self.counters["inbound_disconnects"] = self.counters.get("inbound_disconnects", 0) + n
        for mon, peer in self.monitors.items():
            if fds.get(mon) in events and drain_disconnects(mon):
                log.info("peer_disconnected node=%s peer=%s", self.name, peer)
                outs += self.machine.handle(peer, wire.PeerDown(peer), now)
        return outs

    # -- sending ---------------------------------------------------------------------------

    def send(self, dest: wire.Address, msg: wire.Message) -> None:
        """Send one message: to a peer's DEALER (``str``) or a client through the ROUTER (``bytes``).

        The same message object sent again within a pass (a heartbeat to every peer and the
        witness) is encoded once (``_last_sent``, forgotten at each pass's poll).
        """
        last, frame = self._last_sent
        if msg is not last:
            frame = wire.encode(msg)
            self._last_sent = (msg, frame)
        if isinstance(dest, bytes):
            self._send_client(dest, frame)
            return
        sock = self.dealers.get(dest)
        if sock is None:
            self.count("unknown_destination")
            return
        try:
            sock.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            self.count("dropped_sends")  # peer not connected (IMMEDIATE): it will catch up

    def _send_client(self, dest: bytes, frame: bytes) -> None:
        try:
            self.router.send_multipart([dest, frame], zmq.NOBLOCK)
        except zmq.Again:
            self.count("replies_dropped_hwm")  # it does not read: its re-send gets the same answer
        except zmq.ZMQError:
            self.count("replies_unroutable")  # gone (EHOSTUNREACH): nobody to tell

    # -- the loop --------------------------------------------------------------------------

    @abstractmethod
    def run_once(self, timeout_ms: float) -> None:
        """One pass: poll up to ``timeout_ms``, read, tick, perform the outputs."""

    def wait_ms(self) -> float:
        """Milliseconds the next poll may sleep: until the machine's next timer, counted from now
        (not from its last tick: the pass's outputs took time since)."""
        return self.machine.idle_wait(time.monotonic()) * 1000.0

    def run(self) -> int:
        """Loop until SIGTERM/SIGINT; return an exit code."""
        self.running = True

        def stop(signum, frame):  # noqa: ARG001
            self.running = False
            self.stopped_by = signal.Signals(signum).name

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        tune_gc()
        self.stopped_by = ""
        try:
            while self.running:
                self.run_once(self.wait_ms())
        finally:
            t0 = time.monotonic()
            self.close()
            if self.stopped_by:
                log.info(
                    "shutdown name=%s signal=%s close_ms=%.1f",
                    self.name,
                    self.stopped_by,
                    (time.monotonic() - t0) * 1000.0,
                )
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
        self._close_more()
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()

    def _close_more(self) -> None:  # noqa: B027 - optional hook: the witness opens nothing more
        """What a driver opened beyond the shared sockets (closed before the context ends)."""


def _curve() -> Any:
    """``transport.curve``, imported on first use (see ``SocketLoop.__init__``)."""
    from . import curve

    return curve
