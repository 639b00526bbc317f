"""What the blocking and the asyncio group clients share below their call surfaces.

For: :func:`connect_nodes` (one DEALER per node, CURVE when the group has keys, a
disconnect monitor on each, registered on the caller's poller), :func:`config_args`
(a group file -> endpoints and the client's keyword arguments), :func:`reply_events`
(a final reply -> its events, or the exception it stands for) and :func:`silence`
(the message of a ``TimeoutError``: what got no answer, from where) and
:func:`perform_outputs` (a client core's outputs sent, a call's requests to one node
bundled into one frame). Not for: waiting,
re-sending or decoding (``group_client``, ``aio_client`` and the client core).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import zmq

from ..protocol import wire
from ..protocol.client_core import Done
from ..protocol.session import SessionFenced
from ..transport.group_file import load
from ..transport.sockets import tune_dealer

MAX_BUNDLE = 1024  # requests per Requests frame


class RequestExpired(RuntimeError):
    """The group no longer remembers this (very old) request's result; it was not executed again."""


def connect_nodes(
    ctx: zmq.Context, endpoints: Mapping[str, str], keys_dir: str, cert: str, poller: Any
) -> tuple[dict[str, Any], dict[Any, str], dict[Any, str]]:
    """One DEALER per node, connected and registered on ``poller`` with its disconnect
    monitor: ``(socket by node, node by socket, node by monitor)``. The sockets are of
    ``ctx``'s kind (plain or ``zmq.asyncio``)."""
    socks: dict[str, Any] = {}
    by_sock: dict[Any, str] = {}
    monitors: dict[Any, str] = {}
    for name, ep in endpoints.items():
        s = ctx.socket(zmq.DEALER)
        tune_dealer(s)
        # Queue for a node not yet connected rather than drop: a fresh client's
        # first request must not wait for a retry timeout. Re-sends are deduped.
        s.setsockopt(zmq.IMMEDIATE, 0)
        if keys_dir:
            from ..transport.curve import make_client

            make_client(s, keys_dir, server=name, me=cert)
        mon = s.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        s.connect(ep)
        socks[name] = s
        by_sock[s] = name
        monitors[mon] = name
        poller.register(s, zmq.POLLIN)
        poller.register(mon, zmq.POLLIN)
    return socks, by_sock, monitors


def config_args(path: str, client_id: int, kw: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """The group file ``path`` as a client's arguments: its nodes' endpoints, and ``kw`` with
    its ``keys_dir`` and (under CURVE) the key of this client id's ``[clients]`` entry."""
    cfg = load(path)
    kw.setdefault("keys_dir", cfg.keys_dir)
    if cfg.keys_dir and "cert" not in kw:
        from ..transport.curve import client_key_for

        kw["cert"] = client_key_for(cfg, client_id)  # its [clients] entry's key, else the implicit one
    return {n: s.endpoint for n, s in cfg.nodes.items()}, kw


def reply_events(reply: wire.Reply, client_id: int, session: int, decode: Callable[[bytes], list]) -> list:
    """A final reply's events; ``SessionFenced`` or ``RequestExpired`` for what it refuses."""
    if reply.status == wire.FENCED:
        raise SessionFenced(client_id, session)
    if reply.status == wire.EXPIRED:
        raise RequestExpired(f"request {reply.request_id} is older than the group's dedupe window")
    return decode(reply.events)


def silence(endpoints: Mapping[str, str], primary: str, what: str, waited: float) -> str:
    """The message of a ``TimeoutError``: what got no answer, for how long, and from where."""
    asked = ", ".join(f"{n} at {ep}" for n, ep in endpoints.items())
    return (
        f"{what} within {waited:g} s from the group ({asked}; last believed primary: "
        f"{primary}). Is the group running? `matchcore status` shows each node"
    )


def perform_outputs(
    outputs: list, on_done: Callable[[int, wire.Reply], None], send: Callable[[str, bytes], None]
) -> None:
    """Perform a client core's outputs in order: each ``Done`` through ``on_done(request id,
    reply)``, each ``Send`` through ``send(node, frame)``. Requests to one node within one
    call go out as one ``Requests`` frame per ``MAX_BUNDLE`` (a pipelined window costs one
    send, not one per order), after the other sends; their order is kept."""
    bundles: dict[str, list] = {}
    for o in outputs:
        if isinstance(o, Done):
            on_done(o.request_id, o.reply)
        elif isinstance(o, wire.Send):
            if type(o.msg) is wire.Request:
                bundles.setdefault(o.dest, []).append(o.msg)
            else:
                send(o.dest, wire.encode(o.msg))
    for dest, reqs in bundles.items():
        for i in range(0, len(reqs), MAX_BUNDLE):
            chunk = reqs[i : i + MAX_BUNDLE]
            send(dest, wire.encode(chunk[0] if len(chunk) == 1 else wire.Requests(tuple(chunk))))
