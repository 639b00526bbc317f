"""``replication.Client``: the user-facing client of a replicated group, over ZeroMQ.

For: the blocking per-call API that mirrors the embedded engine (``submit``,
``cancel``, ``replace``, ``mass_cancel``, ``apply`` each return the same event
named tuples), a pipelined API for throughput (``send`` + ``poll``,
``submit_many``), and fail-over with re-sending, all delegated to the
sans-IO ``client_core.ClientCore``. Not for: routing between groups by
instrument (one ``Client`` talks to one group) or threads (one ``Client`` per
thread: its sockets belong to the thread that made it).
"""

from __future__ import annotations

import select
import time
from collections.abc import Iterable, Mapping
from typing import Any

import zmq

from . import wire
from .calls import EngineCalls
from .client_core import ClientCore, Done
from .config import load
from .monitor import drain_disconnects
from .node import tune_dealer

MAX_BUNDLE = 1024  # requests per Requests frame


def pack_commands(commands: Iterable[Mapping | tuple]) -> list[bytes]:
    """``wire.pack_command`` of each command (a command-log dict or a record tuple). O(n)."""
    from matching.commands import command_record

    fast, pack = wire.COMMAND.pack, wire.pack_command
    return [
        fast(*c) if type(c) is tuple else pack(command_record(c) if isinstance(c, Mapping) else c)
        for c in commands
    ]


class RequestExpired(RuntimeError):
    """The group no longer remembers this (very old) request's result; it was not executed again."""


class Client(EngineCalls):
    """A client of one group; see DESIGN.md "Running a group".

    Parameters
    ----------
    endpoints : dict
        Node name -> ZeroMQ endpoint, in group-file order.
    client_id : int
        Positive; identifies this client in the replicated dedupe table.
    timeout : float
        Seconds a blocking call waits for its reply before ``TimeoutError``.
    retry_timeout : float
        Seconds without an answer before re-sending to the next node.
    first_request_id : int or None
        Defaults to the wall clock in microseconds, so a restarted client with
        the same id never reuses a request id the group remembers.
    keys_dir : str
        CURVE keys directory of the group ("" = plaintext); see ``security``.
    cert : str
        Name of this client's key pair in ``keys_dir``.
    """

    def __init__(
        self,
        endpoints: Mapping[str, str],
        client_id: int,
        timeout: float = 10.0,
        retry_timeout: float = 0.05,
        first_request_id: int | None = None,
        keys_dir: str = "",
        cert: str = "client",
    ) -> None:
        from matching import events_from_bytes

        self._events_from_bytes = events_from_bytes
        if first_request_id is None:
            first_request_id = time.time_ns() // 1000
        self.core = ClientCore(client_id, list(endpoints), first_request_id, retry_timeout)
        self.timeout = timeout
        self.ctx = zmq.Context.instance()
        self.socks: dict[str, zmq.Socket] = {}
        self.monitors: dict[zmq.Socket, str] = {}
        self.poller = zmq.Poller()
        self.by_sock: dict[zmq.Socket, str] = {}
        for name, ep in endpoints.items():
            s = self.ctx.socket(zmq.DEALER)
            tune_dealer(s)
            # Queue for a node not yet connected rather than drop: a fresh client's
            # first request must not wait for a retry timeout. Re-sends are deduped.
            s.setsockopt(zmq.IMMEDIATE, 0)
            if keys_dir:
                from .security import make_client

                make_client(s, keys_dir, server=name, me=cert)
            mon = s.get_monitor_socket(zmq.EVENT_DISCONNECTED)
            s.connect(ep)
            self.socks[name] = s
            self.by_sock[s] = name
            self.monitors[mon] = name
            self.poller.register(s, zmq.POLLIN)
            self.poller.register(mon, zmq.POLLIN)
        self._all_socks = list(self.socks.values()) + list(self.monitors)
        self._fds = [s.getsockopt(zmq.FD) for s in self._all_socks]
        self.results: dict[int, wire.Reply] = {}
        self.last_reply: wire.Reply | None = None
        self.closed = False

    @classmethod
    def from_config(cls, path: str, client_id: int, **kw: Any) -> Client:
        """A client for the group described by the TOML file ``path``."""
        cfg = load(path)
        kw.setdefault("keys_dir", cfg.keys_dir)
        return cls({n: s.endpoint for n, s in cfg.nodes.items()}, client_id, **kw)

    # -- plumbing ----------------------------------------------------------------------

    def _perform(self, outputs: list) -> None:
        # Requests to one node within one call go out as one ``Requests`` frame (a
        # pipelined window costs one send, not one per order); order is kept.
        bundles: dict[str, list] = {}
        for o in outputs:
            if isinstance(o, Done):
                self.results[o.request_id] = o.reply
                self.last_reply = o.reply
            elif isinstance(o, wire.Send):
                if type(o.msg) is wire.Request:
                    bundles.setdefault(o.dest, []).append(o.msg)
                else:
                    self._send(o.dest, wire.encode(o.msg))
        for dest, reqs in bundles.items():
            for i in range(0, len(reqs), MAX_BUNDLE):
                chunk = reqs[i : i + MAX_BUNDLE]
                self._send(dest, wire.encode(chunk[0] if len(chunk) == 1 else wire.Requests(tuple(chunk))))

    def _send(self, dest: str, frame: bytes) -> None:
        try:
            self.socks[dest].send(frame, zmq.NOBLOCK)
        except zmq.Again:
            pass  # not connected: the core re-sends after its timeout

    def _short_wait(self, timeout_ms: float) -> None:
        """Block up to ``timeout_ms`` (< 1 ms) until a socket may be readable.

        ``zmq_poll`` counts whole milliseconds, so a shorter wait would spin and
        take a core from the nodes on a small machine. The sockets' ``ZMQ_FD``
        wakes ``select`` at sub-millisecond resolution; it only signals that
        ``ZMQ_EVENTS`` may have changed, so that is checked first.
        """
        for s in self._all_socks:
            if s.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                return
        select.select(self._fds, [], [], timeout_ms / 1000)

    def _pump(self, timeout_ms: float) -> None:
        if 0 < timeout_ms < 1:
            self._short_wait(timeout_ms)
            timeout_ms = 0
        events = dict(self.poller.poll(timeout_ms))
        now = time.monotonic()
        outs: list = []
        core, results = self.core, self.results
        answered = len(results)
        # Final replies go straight into ``results``, in arrival order (no ``Done`` each).
        for sock, name in self.by_sock.items():
            if sock not in events:
                continue
            while True:
                try:
                    frame = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                try:
                    msg = wire.decode(frame)
                except wire.DecodeError:
                    continue
                if type(msg) is wire.Replies:
                    outs += core.handle_replies(name, msg.replies, now, results)
                elif type(msg) is wire.Reply:
                    outs += core.handle_replies(name, (msg,), now, results)
                else:
                    outs += core.handle(name, msg, now)
        if len(results) > answered:
            self.last_reply = next(reversed(results.values()))
        for mon, name in self.monitors.items():
            if mon in events and drain_disconnects(mon):
                outs += self.core.handle(name, wire.PeerDown(name), now)
        outs += self.core.tick(now)
        self._perform(outs)

    def _events(self, reply: wire.Reply) -> list:
        if reply.status == wire.EXPIRED:
            raise RequestExpired(f"request {reply.request_id} is older than the group's dedupe window")
        return self._events_from_bytes(reply.events)

    # -- pipelined API ------------------------------------------------------------------

    def send(self, command: Mapping | tuple) -> int:
        """Send one command (a command-log dict or a record tuple) without waiting; return its request id."""
        from matching.commands import command_record

        rec = command_record(command) if isinstance(command, Mapping) else command
        rid, outs = self.core.submit(wire.pack_command(rec), time.monotonic())
        self._perform(outs)
        return rid

    def send_many(self, commands: Iterable[Mapping | tuple]) -> list[int]:
        """Send several commands at once (one frame); return their request ids in order."""
        packed = pack_commands(commands)
        if not packed:
            return []
        core = self.core
        target = core.primary
        first = core.submit_window(packed, time.monotonic())
        cid = core.client_id
        for i in range(0, len(packed), MAX_BUNDLE):
            self._send(target, wire.encode_request_window(cid, first + i, packed[i : i + MAX_BUNDLE]))
        return list(range(first, first + len(packed)))

    def poll(self, timeout: float = 0.0) -> list[tuple[int, list]]:
        """Collect finished requests: ``[(request_id, events), ...]`` (waits up to ``timeout`` s for one)."""
        deadline = time.monotonic() + timeout
        while not self.results:
            left = deadline - time.monotonic()
            self._pump(max(0.0, min(left, 0.005)) * 1000)
            if left <= 0:
                break
        # An expired request raises, once: it leaves the results first, and the
        # other finished requests stay for the next call.
        for rid, r in self.results.items():
            if r.status == wire.EXPIRED:
                del self.results[rid]
                self._events(r)
        out = [(rid, self._events(r)) for rid, r in self.results.items()]
        self.results.clear()
        return out

    def poll_replies(self, timeout: float = 0.0) -> list[wire.Reply]:
        """Like :meth:`poll` but returns the raw ``wire.Reply`` objects (epoch, seq, leader, events)."""
        deadline = time.monotonic() + timeout
        while not self.results:
            left = deadline - time.monotonic()
            self._pump(max(0.0, min(left, 0.005)) * 1000)
            if left <= 0:
                break
        out = list(self.results.values())
        self.results.clear()
        return out

    def wait(self, request_id: int, timeout: float | None = None) -> list:
        """Block until ``request_id`` is answered; return its events."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while request_id not in self.results:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no reply to request {request_id} within the timeout")
            self._pump(2)
        return self._events(self.results.pop(request_id))

    @property
    def in_flight(self) -> int:
        return len(self.core.pending)

    def close(self) -> None:
        """Close the sockets (unanswered requests are abandoned)."""
        if self.closed:
            return
        self.closed = True
        for mon in self.monitors:
            mon.close(0)
        for s in self.socks.values():
            s.disable_monitor()
            s.close(0)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
