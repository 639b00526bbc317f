"""``replication.aio.Client``: the group client as coroutines, on ``zmq.asyncio``.

For: asyncio applications. The same calls as the blocking ``replication.Client``
(``send``, ``send_many``, ``poll``, ``wait``, ``apply``, ``submit``, ``cancel``,
``replace``, ``mass_cancel``, ``submit_many``, ``executions``, ``order``,
``open_orders``), each a coroutine, over the same sans-IO
``protocol.client_core.ClientCore``: the session, exactly-once re-sending,
fail-over and the execution-report feed behave exactly as they do there. One
background task per client reads every socket, ticks the core when its next
timer is due (``ClientCore.next_due``) and wakes the coroutines waiting for
what arrived, so any number of coroutines may have requests in flight at once.
Not for: blocking code (``replication.Client``: it also has the column-wise
``send_batch``/``poll_batch`` for throughput), several groups
(``replication.Router``), or sharing one client between event loops.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import zmq
import zmq.asyncio

from matching import commands as command_dicts

from ..protocol import wire
from ..protocol.client_core import ClientCore
from ..protocol.client_service import QueryRefused
from ..protocol.session import SessionFenced
from ..transport.monitor import is_disconnect
from .connection import MAX_BUNDLE, config_args, connect_nodes, perform_outputs, reply_events, silence
from .group_client import pack_commands
from .reports import ReportsGone, report_dict

# The background task never sleeps longer than this, so a closed client's task ends soon.
MAX_SLEEP = 0.05


class Client:
    """A client of one group for asyncio code; construct it inside a running event loop
    or before one (the background task starts at the first call).

    Parameters are :class:`replication.Client`'s: ``endpoints`` (node name ->
    ZeroMQ endpoint), ``client_id``, ``timeout`` (seconds a call waits for its
    answer before ``TimeoutError``), ``retry_timeout`` (seconds before a
    re-send), ``keys_dir``/``cert`` (CURVE) and ``resume_from`` (execution
    reports after this seq, after a restart). Use ``async with`` or ``close()``.
    """

    def __init__(
        self,
        endpoints: Mapping[str, str],
        client_id: int,
        timeout: float = 10.0,
        retry_timeout: float = 0.05,
        keys_dir: str = "",
        cert: str = "client",
        resume_from: int | None = None,
    ) -> None:
        from matching import events_from_bytes

        self._events_from_bytes = events_from_bytes
        self.core = ClientCore(
            client_id, list(endpoints), 1, retry_timeout, reports=True, resume_from=resume_from
        )
        self.timeout = timeout
        self.endpoints = dict(endpoints)
        self.ctx = zmq.asyncio.Context.instance()
        self.poller = zmq.asyncio.Poller()
        self.socks, self.by_sock, self.monitors = connect_nodes(
            self.ctx, endpoints, keys_dir, cert, self.poller
        )
        self.results: dict[int, wire.Reply] = {}
        self.closed = False
        self._task: asyncio.Task | None = None
        self._changed: asyncio.Event | None = None  # set (and replaced) after every pass

    @classmethod
    def from_config(cls, path: str, client_id: int, **kw: Any) -> Client:
        """A client for the group described by the TOML file ``path``."""
        endpoints, kw = config_args(path, client_id, kw)
        return cls(endpoints, client_id, **kw)

    # -- the background task ----------------------------------------------------------------

    def _start(self) -> None:
        """At the first call, on the running loop: open the session and start reading."""
        if self.closed:
            raise RuntimeError("this client is closed")
        if self._task is not None:
            if self._task.done() and not self._task.cancelled() and self._task.exception() is not None:
                raise RuntimeError("the client's reader stopped") from self._task.exception()
            return
        self._changed = asyncio.Event()
        # The nonce only tells this open's answer (and re-sends) from another's: not a clock.
        self._perform(self.core.open(secrets.randbits(64) or 1, time.monotonic()))
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"matchcore-client-{self.core.client_id}"
        )

    async def _run(self) -> None:
        core = self.core
        while not self.closed:
            now = time.monotonic()
            sleep = min(max(core.next_due() - now, 0.0), MAX_SLEEP)
            events = dict(await self.poller.poll(sleep * 1000.0))
            now = time.monotonic()
            outs: list = []
            for sock, name in self.by_sock.items():
                if sock in events:
                    while True:
                        try:
                            frame = await sock.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        outs += self._take(name, frame, now)
            for mon, name in self.monitors.items():
                if mon in events and await self._disconnects(mon):
                    outs += core.handle(name, wire.PeerDown(name), now)
            outs += core.tick(now)
            self._perform(outs)
            changed, self._changed = self._changed, asyncio.Event()
            if changed is not None:
                changed.set()

    def _take(self, name: str, frame: bytes, now: float) -> list:
        try:
            msg = wire.decode(frame)
        except wire.DecodeError:
            self.core.count("bad_frames")
            return []
        if type(msg) is wire.Replies:
            return self.core.handle_replies(name, msg.replies, now, self.results)
        if type(msg) is wire.Reply:
            return self.core.handle_replies(name, (msg,), now, self.results)
        return self.core.handle(name, msg, now)

    @staticmethod
    async def _disconnects(mon: Any) -> int:
        drops = 0
        while True:
            try:
                frames = await mon.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return drops
            drops += is_disconnect(frames)

    def _perform(self, outputs: list) -> None:
        perform_outputs(outputs, self.results.__setitem__, self._send)

    def _send(self, dest: str, frame: bytes) -> None:
        sent = self.socks[dest].send(frame, zmq.NOBLOCK)
        # Not connected (``zmq.Again``): the core re-sends after its timeout. Retrieve the
        # outcome so asyncio does not warn of an exception nobody read.
        sent.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def _until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until ``ready()`` (checked after every pass of the reader), or raise."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.core.fenced:
                raise SessionFenced(self.core.client_id, self.core.session)
            self._start()  # re-raises if the reader died
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(self.silence(what, timeout))
            assert self._changed is not None
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def _ready(self) -> None:
        """Before sending: the session is open (up to ``timeout``) and not fenced."""
        self._start()
        core = self.core
        if core.opening:
            await self._until(
                lambda: not core.opening,
                self.timeout,
                f"no answer to the session open of client id {core.client_id}",
            )
        if core.fenced:
            raise SessionFenced(core.client_id, core.session)

    def silence(self, what: str, timeout: float | None = None) -> str:
        """The message of a ``TimeoutError`` (``connection.silence``)."""
        return silence(self.endpoints, self.core.primary, what, self.timeout if timeout is None else timeout)

    def _events(self, reply: wire.Reply) -> list:
        return reply_events(reply, self.core.client_id, self.core.session, self._events_from_bytes)

    # -- pipelined calls ---------------------------------------------------------------------

    async def send(self, command: Mapping | tuple) -> int:
        """Send one command (a command-log dict or a record tuple); return its request id."""
        from matching.commands import command_record

        rec = command_record(command) if isinstance(command, Mapping) else command
        await self._ready()
        rid, outs = self.core.submit(wire.pack_command(rec), time.monotonic())
        self._perform(outs)
        return rid

    async def send_many(self, commands: Iterable[Mapping | tuple]) -> list[int]:
        """Send several commands at once; return their request ids in order."""
        packed = pack_commands(commands)
        if not packed:
            return []
        await self._ready()
        core = self.core
        target, cid = core.primary, core.client_id
        first = core.submit_window(packed, time.monotonic())
        for i in range(0, len(packed), MAX_BUNDLE):
            self._send(target, wire.encode_request_window(cid, first + i, packed[i : i + MAX_BUNDLE]))
        return list(range(first, first + len(packed)))

    async def poll(self, timeout: float = 0.0) -> list[tuple[int, list]]:
        """Finished requests ``[(request_id, events)]``, waiting up to ``timeout`` s for one.
        An expired or fenced request raises (once), as in ``replication.Client.poll``."""
        self._start()
        if not self.results and timeout > 0:
            try:
                await self._until(lambda: bool(self.results), timeout, "")
            except TimeoutError:
                pass
        for rid, r in list(self.results.items()):
            if r.status in (wire.EXPIRED, wire.FENCED):
                del self.results[rid]
                self._events(r)
        out = [(rid, self._events(r)) for rid, r in self.results.items()]
        self.results.clear()
        return out

    async def wait(self, request_id: int, timeout: float | None = None) -> list:
        """Wait until ``request_id`` is answered; return its events."""
        await self._until(
            lambda: request_id in self.results,
            self.timeout if timeout is None else timeout,
            f"no reply to request {request_id}",
        )
        return self._events(self.results.pop(request_id))

    # -- the engine's calls --------------------------------------------------------------------

    async def apply(self, cmd: Mapping[str, Any]) -> list:
        """Apply one command-log dict; its events."""
        return await self.wait(await self.send(cmd))

    async def submit(
        self,
        instrument: int,
        id: int,
        side: str,
        price: int | None = None,
        qty: int = 0,
        type: str = "limit",
        tif: str = "GTC",
        account: int = 0,
        post_only: bool = False,
        display_qty: int = 0,
        stp: str = "none",
    ) -> list:
        """A new order; same arguments and events as ``Engine.submit``."""
        return await self.apply(
            command_dicts.new_order_dict(
                instrument, id, side, price, qty, type, tif, account, post_only, display_qty, stp
            )
        )

    async def cancel(self, instrument: int, id: int) -> list:
        return await self.apply(command_dicts.cancel_dict(instrument, id))

    async def replace(
        self, instrument: int, id: int, price: int | None = None, qty: int | None = None
    ) -> list:
        return await self.apply(command_dicts.replace_dict(instrument, id, price, qty))

    async def mass_cancel(self, account: int | None = None, instrument: int | None = None) -> list:
        return await self.apply(command_dicts.mass_cancel_dict(account, instrument))

    async def submit_many(self, commands: Iterable[Mapping | tuple], window: int = 1024) -> list[list]:
        """Send many commands pipelined (at most ``window`` in flight); their events in order."""
        todo = list(commands)
        got: dict[int, list] = {}
        rids: list[int] = []
        while len(rids) < len(todo) or len(got) < len(rids):
            room = min(window - (len(rids) - len(got)), len(todo) - len(rids))
            if room > 0:
                rids += await self.send_many(todo[len(rids) : len(rids) + room])
                continue
            waiting = [r for r in rids if r not in got]
            await self._until(
                lambda waiting=waiting: any(r in self.results for r in waiting),
                self.timeout,
                "submit_many: replies stopped",
            )
            for r in waiting:
                if r in self.results:
                    got[r] = self._events(self.results.pop(r))
        return [got[r] for r in rids]

    # -- execution reports and queries ----------------------------------------------------------

    async def executions(self, timeout: float = 0.0) -> list[dict]:
        """New execution reports for this client's orders, in seq order, each exactly once
        (as ``replication.Client.executions``): waits up to ``timeout`` s for one. Raises
        ``ReportsGone`` once past the retention window, ``SessionFenced`` if fenced."""
        feed = self.core.feed
        await self._ready()
        if timeout > 0 and not feed.ready and not feed.gone:
            try:
                await self._until(lambda: feed.ready or feed.gone, timeout, "")
            except TimeoutError:
                pass
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

    async def order(self, instrument: int, id: int, timeout: float | None = None) -> dict:
        """The state of order ``id`` of ``instrument`` (as ``replication.Client.order``)."""
        return await self._query(wire.QUERY_ORDER, timeout, instrument=instrument, order_id=id)  # type: ignore[return-value]

    async def open_orders(self, account: int | None = None, timeout: float | None = None) -> list[dict]:
        """This client's open orders (as ``replication.Client.open_orders``)."""
        return await self._query(wire.QUERY_OPEN_ORDERS, timeout, account=account)  # type: ignore[return-value]

    async def _query(self, kind: int, timeout: float | None, **fields: Any) -> object:
        await self._ready()
        qs = self.core.queries
        qid, outs = qs.ask(kind, time.monotonic(), **fields)
        self._perform(outs)
        try:
            await self._until(
                lambda: qid in qs.done,
                self.timeout if timeout is None else timeout,
                f"no answer to query {qid}",
            )
        except TimeoutError:
            qs.pending.pop(qid, None)
            raise
        answer = qs.done.pop(qid)
        if isinstance(answer, QueryRefused):
            raise PermissionError(f"{answer.reason}: this client's key may not query {answer.detail}")
        return answer

    # -- state and lifetime -----------------------------------------------------------------------

    @property
    def session(self) -> int:
        """This client's session number (0 while opening)."""
        return 0 if self.core.opening else self.core.session

    @property
    def in_flight(self) -> int:
        return len(self.core.pending)

    def close(self) -> None:
        """Stop the reader and close the sockets (unanswered requests are abandoned)."""
        if self.closed:
            return
        self.closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
        for mon in self.monitors:
            mon.close(0)
        for s in self.socks.values():
            s.disable_monitor()
            s.close(0)

    async def aclose(self) -> None:
        """:meth:`close`, then wait for the reader to end."""
        self.close()
        if self._task is not None:
            try:
                await self._task
            except (asyncio.CancelledError, zmq.ZMQError):
                pass

    async def __aenter__(self) -> Client:
        await self._ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
