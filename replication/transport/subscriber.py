"""A stream subscriber: follow a group's published entries (with events) and print them.

For: market-data / drop-copy / audit style consumers and ``matchcore
subscribe``. Subscribes to every node's PUB stream, keeps the highest epoch,
prints each seq once and in order, and fills gaps by asking the publishing
node's ROUTER for a ``Refill`` (refilled entries carry no events: a consumer
that needs them replays the commands, which is deterministic). Not for:
durability — a subscriber is not a standby and never acks.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

import numpy as np
import zmq

from ..protocol import wire
from ..protocol.session import is_open_entry, session_of
from .group_file import GroupConfig, pub_endpoint


def entry_json(e: wire.Entry, events: bytes | None) -> dict[str, Any]:
    """The printed form of one entry (command as a command-log dict, events as JSON events)."""
    from matching import EVENT_DTYPE, command_dict, event_dict, events_from_array

    out: dict[str, Any] = {
        "epoch": e.epoch,
        "seq": e.seq,
        "client_id": e.client_id,
        "request_id": e.request_id,
        "digest": f"{e.digest:016x}",
        "command": command_dict(wire.unpack_command(e.command)),
    }
    if is_open_entry(e.request_id):  # a client session's open, not an engine command
        out["command"] = {"op": "session_open", "session": session_of(e.request_id)}
    if events is not None:
        out["events"] = [event_dict(ev) for ev in events_from_array(np.frombuffer(events, dtype=EVENT_DTYPE))]
    return out


def subscribe(
    cfg: GroupConfig,
    node: str | None = None,
    count: int = 0,
    idle_timeout: float = 0.0,
    out: TextIO = sys.stdout,
) -> int:
    """Print the stream as JSON lines until ``count`` entries or ``idle_timeout`` idle seconds."""
    ctx = zmq.Context.instance()
    names = [node] if node else list(cfg.nodes)
    # One SUB per node: with CURVE each pins its own server key.
    subs = {n: ctx.socket(zmq.SUB) for n in names}
    req = {n: ctx.socket(zmq.DEALER) for n in names}
    poller = zmq.Poller()
    for n in names:
        for s, ep in ((subs[n], pub_endpoint(cfg.nodes[n].endpoint)), (req[n], cfg.nodes[n].endpoint)):
            s.setsockopt(zmq.LINGER, 0)
            if cfg.keys_dir:
                from .curve import default_operator_key, make_client

                make_client(
                    s, cfg.keys_dir, server=n, me=default_operator_key(cfg)
                )  # the drop copy is the operators'
            s.connect(ep)
            poller.register(s, zmq.POLLIN)
        subs[n].setsockopt(zmq.SUBSCRIBE, b"")
    next_seq, epoch, printed = 0, 0, 0
    held: dict[int, tuple[wire.Entry, bytes | None]] = {}
    last_activity = time.monotonic()
    try:
        while not count or printed < count:
            events = dict(poller.poll(50))
            now = time.monotonic()
            batch: list[tuple[wire.Entries, str | None]] = []
            for sub in subs.values():
                if sub not in events:
                    continue
                while True:
                    try:
                        _, frame = sub.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    except ValueError:
                        continue
                    try:
                        msg = wire.decode(frame)
                    except wire.DecodeError:
                        continue
                    if isinstance(msg, wire.Entries):
                        batch.append((msg, None))
            for n, s in req.items():
                if s in events:
                    try:
                        msg = wire.decode(s.recv(zmq.NOBLOCK))
                    except (zmq.Again, wire.DecodeError):
                        continue
                    if isinstance(msg, wire.Entries):
                        batch.append((msg, n))
            for msg, _ in batch:
                if msg.epoch < epoch:
                    continue
                epoch = msg.epoch
                for i, e in enumerate(msg.entries):
                    if next_seq == 0:
                        next_seq = e.seq
                    if e.seq >= next_seq:
                        held.setdefault(e.seq, (e, msg.events[i] if msg.events else None))
                last_activity = now
            while next_seq in held and (not count or printed < count):
                e, evs = held.pop(next_seq)
                out.write(json.dumps(entry_json(e, evs)) + "\n")
                next_seq += 1
                printed += 1
            out.flush()
            if held and (not count or printed < count):
                for s in req.values():  # gap: ask the nodes (only the primary answers)
                    s.send(
                        wire.encode(wire.Refill(epoch, next_seq, min(held) - 1, "subscriber")), zmq.NOBLOCK
                    )
            if idle_timeout and now - last_activity > idle_timeout:
                break
    finally:
        for s in [*subs.values(), *req.values()]:
            s.close(0)
    return 0
