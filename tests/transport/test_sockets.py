"""Socket options and the GC setup every driver process shares (``transport.sockets``)."""

from __future__ import annotations

import gc

import zmq

from replication.protocol import wire
from replication.transport import sockets


def test_tune_gc_freezes_startup_objects_and_raises_the_young_threshold():
    before = gc.get_threshold()
    try:
        sockets.tune_gc()
        assert gc.get_threshold() == (sockets.GC_THRESHOLD0, *before[1:])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_a_peer_dealer_is_named_immediate_and_bounded():
    ctx = zmq.Context()
    try:
        d = ctx.socket(zmq.DEALER)
        sockets.tune_peer_dealer(d, "b")
        assert d.getsockopt(zmq.IDENTITY) == b"peer:b"
        assert d.getsockopt(zmq.IMMEDIATE) == 1 and d.getsockopt(zmq.LINGER) == 0
        assert d.getsockopt(zmq.SNDHWM) == d.getsockopt(zmq.RCVHWM) == sockets.DEALER_HWM
        assert d.getsockopt(zmq.MAXMSGSIZE) == wire.MAX_INBOUND_FRAME
        d.close(0)
    finally:
        ctx.term()


def test_a_router_refuses_big_frames_and_says_when_a_client_does_not_read():
    ctx = zmq.Context()
    try:
        r = ctx.socket(zmq.ROUTER)
        sockets.tune_router(r)
        assert r.getsockopt(zmq.MAXMSGSIZE) == wire.MAX_INBOUND_FRAME
        assert r.getsockopt(zmq.SNDHWM) == r.getsockopt(zmq.RCVHWM) == sockets.ROUTER_HWM
        assert r.getsockopt(zmq.LINGER) == 0
        r.close(0)
    finally:
        ctx.term()
