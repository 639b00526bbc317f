"""``replication.Client``: the user-facing client of a replicated group, over ZeroMQ.

For: the blocking per-call API that mirrors the embedded engine (``submit``,
``cancel``, ``replace``, ``mass_cancel``, ``apply`` each return the same event
named tuples), a pipelined API for throughput (``send`` + ``poll``,
``submit_many``), a column-wise pipelined API with no Python object per
order (``send_batch`` + ``poll_batch``: NumPy command records in, NumPy
columns and an ``EVENT_DTYPE`` array out), and fail-over with re-sending,
all delegated to the sans-IO ``client_core.ClientCore``. A ``Client`` opens
a session when it is made (its client id's next session: any older session
of the id is fenced, and this one is fenced by the next open of the id, its
calls then raising ``SessionFenced``). ``Replies`` bundles
are decoded by ``_client_fast`` when it is built (its answers stay in C
records until a caller asks for objects), else by ``wire.decode``. Not for: routing between groups by
instrument (one ``Client`` talks to one group) or threads (one ``Client`` per
thread: its sockets belong to the thread that made it).
"""

from __future__ import annotations

import secrets
import select
import time
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
import zmq

from ..protocol import wire
from ..protocol.client_core import ClientCore
from ..protocol.client_service import QueryRefused
from ..protocol.session import SessionFenced
from ..transport.monitor import drain_disconnects
from .calls import EngineCalls
from .connection import (  # noqa: F401 (RequestExpired: callers import it from here)
    MAX_BUNDLE,
    RequestExpired,
    config_args,
    connect_nodes,
    perform_outputs,
    reply_events,
    silence,
)
from .reports import ReportsGone, report_dict

try:
    from ..protocol._client_fast import SESSION_RANGE, ReplyBlock, decode_replies, gather
except ImportError:  # not built (or built before sessions): every frame goes through wire.decode
    decode_replies = gather = SESSION_RANGE = None

_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)  # plain ints: no enum object per check


def pack_commands(commands: Iterable[Mapping | tuple]) -> list[bytes]:
    """``wire.pack_command`` of each command (a command-log dict or a record tuple). O(n)."""
    from matching.commands import command_record

    fast, pack = wire.COMMAND.pack, wire.pack_command
    return [
        fast(*c) if type(c) is tuple else pack(command_record(c) if isinstance(c, Mapping) else c)
        for c in commands
    ]


class ReplyBatch(NamedTuple):
    """Finished requests as columns (:meth:`Client.poll_batch`), a row per request in arrival order.

    ``status`` is ``wire.OK``, ``wire.EXPIRED`` (an expired request has no
    events and was not executed again), ``wire.FENCED`` (never executed: a
    newer session holds the client id) or ``wire.NOT_ENTITLED`` (never
    executed: the client's key may not use the command's account; one
    ``rejected not_entitled`` event). ``events`` holds every row's events
    as ``matching.EVENT_DTYPE`` records, row by row, each with ``cmd`` set to
    its row, as ``Engine.apply_batch`` numbers its commands;
    ``matching.events_from_array`` turns a row's slice into the named tuples
    ``poll`` gives.
    """

    request_id: np.ndarray  # uint64
    status: np.ndarray  # uint8
    epoch: np.ndarray  # uint32
    seq: np.ndarray  # uint64
    events: np.ndarray  # EVENT_DTYPE

    def __len__(self) -> int:  # rows, not fields
        return len(self.request_id)


def _columns(replies: list[wire.Reply], blocks: list) -> ReplyBatch:
    """``replies`` then the answered rows of ``blocks`` (``ReplyBlock``) as one :class:`ReplyBatch`."""
    from matching import EVENT_DTYPE

    n = len(replies)
    if not n:  # the common cases: nothing came, or only decoded blocks did
        if blocks:
            return ReplyBatch(*gather(blocks, 0))
        return ReplyBatch(*(np.empty(0, t) for t in (np.uint64, np.uint8, np.uint32, np.uint64, EVENT_DTYPE)))
    cols = [
        np.fromiter((r.request_id for r in replies), np.uint64, n),
        np.fromiter((r.status for r in replies), np.uint8, n),
        np.fromiter((r.epoch for r in replies), np.uint32, n),
        np.fromiter((r.seq for r in replies), np.uint64, n),
        np.frombuffer(bytearray(b"".join(r.events for r in replies)), EVENT_DTYPE),
    ]
    counts = [len(r.events) // wire.EVENT_SIZE for r in replies]
    cols[4]["cmd"] = np.repeat(np.arange(n, dtype=np.uint64), counts)
    if blocks:
        tail = gather(blocks, n)
        cols = [np.concatenate((a, b)) for a, b in zip(cols, tail, strict=True)]
    return ReplyBatch(*cols)


class Client(EngineCalls):
    """A client of one group; see docs/operations.md ("Start a group",
    "Execution reports", "Queries") for how a group serves it.

    Parameters
    ----------
    endpoints : dict
        Node name -> ZeroMQ endpoint, in group-file order.
    client_id : int
        Positive; identifies this client in the replicated dedupe table. One
        live client per id: making a ``Client`` opens a new session of the id,
        which fences any older one (its next call raises ``SessionFenced``).
    timeout : float
        Seconds a blocking call waits for its reply before ``TimeoutError``.
    retry_timeout : float
        Seconds without an answer before re-sending to the next node.
    first_request_id : int or None
        None (the default): open a session; request ids are then
        ``session << 40 | counter``, unique across processes and restarts
        without any clock. An int: no session; ids count from it and the
        caller keeps them unique for the id (for tests of a bare node).
    keys_dir : str
        CURVE keys directory of the group ("" = plaintext); see ``security``.
    cert : str
        This client's key pair: a name in ``keys_dir`` (``client-NAME``) or a ``.key_secret`` path.
    resume_from : int or None
        With a session: the execution reports :meth:`executions` gives start after
        this group seq (a restarted client passes the last ``seq`` it saw); None:
        from this session's open on.
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
        resume_from: int | None = None,
    ) -> None:
        from matching import events_from_bytes

        self._events_from_bytes = events_from_bytes
        self.core = ClientCore(
            client_id,
            list(endpoints),
            first_request_id or 1,
            retry_timeout,
            reports=first_request_id is None,  # reports follow the session
            resume_from=resume_from,
        )
        self.timeout = timeout
        self.endpoints = dict(endpoints)
        self.ctx = zmq.Context.instance()
        self.poller = zmq.Poller()
        self.socks, self.by_sock, self.monitors = connect_nodes(
            self.ctx, endpoints, keys_dir, cert, self.poller
        )
        self._all_socks = list(self.socks.values()) + list(self.monitors)
        self._fds = [s.getsockopt(zmq.FD) for s in self._all_socks]
        self.results: dict[int, wire.Reply] = {}
        # Answers after those in ``results``, still as decoded blocks: ``_flush`` makes
        # them Reply objects in ``results`` when a caller wants objects.
        self._arrived: list[ReplyBlock] = []
        self.last_reply: wire.Reply | None = None
        self.closed = False
        if first_request_id is None:
            # The nonce only tells this open's answer (and re-sends) from another's: not a clock.
            self._perform(self.core.open(secrets.randbits(64) or 1, time.monotonic()))

    @classmethod
    def from_config(cls, path: str, client_id: int, **kw: Any) -> Client:
        """A client for the group described by the TOML file ``path``."""
        endpoints, kw = config_args(path, client_id, kw)
        return cls(endpoints, client_id, **kw)

    # -- plumbing ----------------------------------------------------------------------

    def _perform(self, outputs: list) -> None:
        perform_outputs(outputs, self._done, self._send)

    def _done(self, request_id: int, reply: wire.Reply) -> None:
        self._flush()  # answers keep their arrival order (see _flush)
        self.results[request_id] = reply
        self.last_reply = reply

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
            if s.getsockopt(_EVENTS) & _POLLIN:
                return
        select.select(self._fds, [], [], timeout_ms / 1000)

    def _pump(self, timeout_ms: float) -> None:
        if 0 < timeout_ms < 1:
            self._short_wait(timeout_ms)
            timeout_ms = 0
        events = dict(self.poller.poll(timeout_ms))
        now = time.monotonic()
        outs: list = []
        core, results, arrived = self.core, self.results, self._arrived
        answered, newest = len(results), arrived[-1] if arrived else None
        # Final replies go into ``results`` (no ``Done`` each), or stay in their decoded
        # block on ``_arrived``; arrival order is kept across both (see _flush).
        for sock, name in self.by_sock.items():
            if sock not in events:
                continue
            while True:
                try:
                    frame = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                try:
                    block = decode_replies(frame) if decode_replies is not None else None
                    msg = wire.decode(frame) if block is None else None
                except wire.DecodeError:
                    continue
                if block is not None:
                    if core.handle_answered(name, block, now):
                        if block.answered:
                            arrived.append(block)
                        continue
                    self._flush()
                    outs += core.handle_replies(name, block.replies(), now, results)
                elif type(msg) is wire.Replies:
                    self._flush()
                    outs += core.handle_replies(name, msg.replies, now, results)
                elif type(msg) is wire.Reply:
                    self._flush()
                    outs += core.handle_replies(name, (msg,), now, results)
                else:
                    outs += core.handle(name, msg, now)
        if arrived and arrived[-1] is not newest:
            self.last_reply = arrived[-1].last_answered()
        elif len(results) > answered:
            self.last_reply = next(reversed(results.values()))
        for mon, name in self.monitors.items():
            if mon in events and drain_disconnects(mon):
                outs += self.core.handle(name, wire.PeerDown(name), now)
        outs += self.core.tick(now)
        self._perform(outs)

    def _flush(self) -> None:
        """Answers still in decoded blocks into ``results`` as ``wire.Reply`` objects, in order.

        Every answer in ``results`` arrived before every one in ``_arrived``: whatever
        puts an answer straight into ``results`` flushes first.
        """
        if self._arrived:
            results = self.results
            for block in self._arrived:
                for r in block.answered_replies():
                    results[r.request_id] = r
            self._arrived.clear()

    def _ready(self) -> None:
        """Before sending: raise ``SessionFenced`` if a newer session fenced ours; wait for our
        session's open to be answered (up to ``timeout``)."""
        core = self.core
        if core.opening:
            deadline = time.monotonic() + self.timeout
            while core.opening:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        self.silence(f"no answer to the session open of client id {core.client_id}")
                    )
                self._pump(2)
        if core.fenced:
            raise SessionFenced(core.client_id, core.session)

    def silence(self, what: str, timeout: float | None = None) -> str:
        """The message of a ``TimeoutError`` (``connection.silence``)."""
        return silence(self.endpoints, self.core.primary, what, self.timeout if timeout is None else timeout)

    @property
    def session(self) -> int:
        """This client's session number (0 while opening, or without a session)."""
        return 0 if self.core.opening else self.core.session

    def _events(self, reply: wire.Reply) -> list:
        return reply_events(reply, self.core.client_id, self.core.session, self._events_from_bytes)

    # -- pipelined API ------------------------------------------------------------------

    def send(self, command: Mapping | tuple) -> int:
        """Send one command (a command-log dict or a record tuple) without waiting; return its request id."""
        from matching.commands import command_record

        rec = command_record(command) if isinstance(command, Mapping) else command
        self._ready()
        rid, outs = self.core.submit(wire.pack_command(rec), time.monotonic())
        self._perform(outs)
        return rid

    def send_many(self, commands: Iterable[Mapping | tuple]) -> list[int]:
        """Send several commands at once (one frame); return their request ids in order."""
        packed = pack_commands(commands)
        if not packed:
            return []
        self._ready()
        core = self.core
        target = core.primary
        first = core.submit_window(packed, time.monotonic())
        cid = core.client_id
        for i in range(0, len(packed), MAX_BUNDLE):
            self._send(target, wire.encode_request_window(cid, first + i, packed[i : i + MAX_BUNDLE]))
        return list(range(first, first + len(packed)))

    def send_batch(self, commands: np.ndarray | Iterable[Mapping | tuple]) -> range:
        """Send commands pipelined, with no Python object per order; return their request ids.

        Parameters
        ----------
        commands : numpy.ndarray or iterable
            ``matching.COMMAND_DTYPE`` records (``matching.command_array``), sent
            as they are; or command-log dicts / record tuples, packed first.

        Returns
        -------
        range
            The request ids, consecutive, in order. O(n), one frame per
            ``MAX_BUNDLE`` requests.
        """
        from matching import COMMAND_DTYPE

        if isinstance(commands, np.ndarray):
            if commands.dtype != COMMAND_DTYPE:
                raise TypeError(f"send_batch: records must have matching.COMMAND_DTYPE, not {commands.dtype}")
            records = np.ascontiguousarray(commands).tobytes()
        else:
            records = b"".join(pack_commands(commands))
        core = self.core
        self._ready()
        if not records:
            return range(core.next_id, core.next_id)
        target, cid = core.primary, core.client_id
        first = core.submit_records(records, time.monotonic())
        step = MAX_BUNDLE * wire.COMMAND_SIZE
        for i in range(0, len(records), step):
            self._send(
                target,
                wire.encode_request_records(cid, first + i // wire.COMMAND_SIZE, records[i : i + step]),
            )
        return range(first, first + len(records) // wire.COMMAND_SIZE)

    def poll_batch(self, timeout: float = 0.0) -> ReplyBatch:
        """Collect finished requests as columns (waits up to ``timeout`` s for one); see :class:`ReplyBatch`.

        The same requests, in the same order, as :meth:`poll_replies` would
        return; an expired request is a row with status ``wire.EXPIRED``
        rather than an exception. O(rows + event bytes), no object per row
        when the C decoder is built.
        """
        self._wait_any(timeout)
        replies = list(self.results.values())
        self.results.clear()
        blocks, self._arrived = self._arrived, []
        return _columns(replies, blocks)

    def _wait_any(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.results and not self._arrived:
            left = deadline - time.monotonic()
            self._pump(max(0.0, min(left, 0.005)) * 1000)
            if left <= 0:
                break

    def poll(self, timeout: float = 0.0) -> list[tuple[int, list]]:
        """Collect finished requests: ``[(request_id, events), ...]`` (waits up to ``timeout`` s for one)."""
        self._wait_any(timeout)
        self._flush()
        # An expired or fenced request raises, once: it leaves the results first, and the
        # other finished requests stay for the next call.
        for rid, r in self.results.items():
            if r.status in (wire.EXPIRED, wire.FENCED):
                del self.results[rid]
                self._events(r)
        out = [(rid, self._events(r)) for rid, r in self.results.items()]
        self.results.clear()
        return out

    def poll_replies(self, timeout: float = 0.0) -> list[wire.Reply]:
        """Like :meth:`poll` but returns the raw ``wire.Reply`` objects (epoch, seq, leader, events)."""
        self._wait_any(timeout)
        self._flush()
        out = list(self.results.values())
        self.results.clear()
        return out

    def wait(self, request_id: int, timeout: float | None = None) -> list:
        """Block until ``request_id`` is answered; return its events."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while request_id not in self.results:
            if self._arrived:
                self._flush()
                continue
            if self.core.fenced:
                raise SessionFenced(self.core.client_id, self.core.session)
            if time.monotonic() > deadline:
                raise TimeoutError(self.silence(f"no reply to request {request_id}", timeout))
            self._pump(2)
        return self._events(self.results.pop(request_id))

    # -- execution reports and queries ------------------------------------------------------

    def executions(self, timeout: float = 0.0) -> list[dict]:
        """New execution reports for this client's orders, in seq order, each exactly once.

        Waits up to ``timeout`` s for one. Each is a dict with the event's
        fields (as ``matchcore replay`` writes them), ``seq``, and ``side``
        (``taker``/``maker``) on trades. Raises ``ReportsGone`` once if some were
        past the group's retention window (resync with :meth:`open_orders`; the
        next call goes on from the oldest report kept), ``SessionFenced`` if a
        newer session holds the client id.
        """
        feed = self.core.feed
        self._ready()
        if not feed.running:
            raise RuntimeError("execution reports need a session (a Client made without first_request_id)")
        deadline = time.monotonic() + timeout
        while not feed.ready and not feed.gone and not self.core.fenced:
            left = deadline - time.monotonic()
            self._pump(max(0.0, min(left, 0.005)) * 1000)
            if left <= 0:
                break
        now = time.monotonic()
        if feed.gone:
            detail, outs = feed.take_gone(now)
            self._perform(outs)
            raise ReportsGone(detail)
        if self.core.fenced:
            raise SessionFenced(self.core.client_id, self.core.session)
        records, outs = feed.take(now)
        self._perform(outs)
        return [report_dict(r) for r in records]

    def order(self, instrument: int, id: int, timeout: float | None = None) -> dict:
        """The state of order ``id`` of ``instrument`` from the group's replicated state:
        ``{"status": "open"|"filled"|"cancelled"|"expired"|"unknown", "open": .., "filled": .., ...}``.
        Raises ``PermissionError`` (``not_entitled``) for an order of an account this client's key
        may not use (docs/operations.md "Entitlements")."""
        return self._query(wire.QUERY_ORDER, timeout, instrument=instrument, order_id=id)  # type: ignore[return-value]

    def open_orders(self, account: int | None = None, timeout: float | None = None) -> list[dict]:
        """This client's open orders (only ``account``'s, if given), in acceptance order, as
        :meth:`order` gives each. Raises ``PermissionError`` (``not_entitled``) for an
        ``account`` this client's key may not use."""
        return self._query(wire.QUERY_OPEN_ORDERS, timeout, account=account)  # type: ignore[return-value]

    def _query(self, kind: int, timeout: float | None, **fields: Any) -> object:
        self._ready()
        qs = self.core.queries
        qid, outs = qs.ask(kind, time.monotonic(), **fields)
        self._perform(outs)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while qid not in qs.done:
            if self.core.fenced:
                raise SessionFenced(self.core.client_id, self.core.session)
            if time.monotonic() > deadline:
                qs.pending.pop(qid, None)
                raise TimeoutError(self.silence(f"no answer to query {qid}", timeout))
            self._pump(2)
        answer = qs.done.pop(qid)
        if isinstance(answer, QueryRefused):
            raise PermissionError(f"{answer.reason}: this client's key may not query {answer.detail}")
        return answer

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
