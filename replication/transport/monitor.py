"""Reading pyzmq socket-monitor events, without pyzmq's helper module.

For: the node driver and the client, which only need to know that a
monitored connection dropped. Not for: anything else a monitor reports.

Why not ``zmq.utils.monitor``: it imports ``zmq.asyncio``, and with it asyncio
and ssl — about 7 MB of resident memory in every node process. When a process
is SIGKILLed the kernel frees its memory before it closes its sockets, so each
MB delays the moment the peers see the connection drop (about 0.12 ms per MB
on the 2-core VM we measure on): the node keeps its footprint small.
"""

from __future__ import annotations

import struct

import zmq

# The first frame of a monitor message (zmq_socket_monitor): a 16-bit event id and a
# 32-bit value, native byte order, no padding; the second frame is the endpoint.
_EVENT = struct.Struct("=HI")


def drain_disconnects(mon: zmq.Socket) -> int:
    """Read every event queued on monitor socket ``mon``; return how many were disconnects."""
    drops = 0
    while True:
        try:
            frames = mon.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return drops
        drops += is_disconnect(frames)


def is_disconnect(frames: list[bytes]) -> bool:
    """Whether one monitor message (its two frames) reports a dropped connection."""
    return (
        len(frames) == 2
        and len(frames[0]) == _EVENT.size
        and _EVENT.unpack(frames[0])[0] == zmq.EVENT_DISCONNECTED
    )
