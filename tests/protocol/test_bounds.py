"""Bounded resources, sans-IO: a client's requests in flight at the primary, ``busy`` and the client's backoff.

The process-level flood (sockets, high-water marks, oversized frames, memory)
is ``tests/faults/test_flood.py``.
"""

from __future__ import annotations

import pytest

from matching import ReferenceEngine
from replication.protocol import wire
from replication.protocol.client_core import ClientCore
from replication.protocol.node.machine import NodeMachine
from replication.protocol.settings import Settings
from replication.storage.journal import MemoryJournal
from replication.testing.sim import pack

LIMIT = 4


def command(i: int) -> bytes:
    return pack({"op": "new", "instrument": 1, "id": i, "side": "buy", "price": 100, "qty": 1})


def solo_primary() -> NodeMachine:
    """A group of one (no witness), serving, with a 4-request bound per client."""
    a = NodeMachine(
        "a", ["a"], MemoryJournal(), Settings(max_in_flight=LIMIT), None, ReferenceEngine, "primary"
    )
    a.tick(0.0)
    assert a.is_primary
    return a


def statuses(out: list) -> dict[int, int]:
    got = {}
    for o in out:
        for r in o.replies() if isinstance(o, wire.ReplyRun) else [o.msg]:
            if isinstance(r, wire.Reply):
                got[r.request_id] = r.status
    return got


def bundle(first: int, n: int) -> wire.Message:
    """A client's bundle as the driver decodes it (a packed RequestRun from 64 requests on)."""
    return wire.decode_packed(
        wire.encode_request_window(7, first, [command(i) for i in range(first, first + n)])
    )


@pytest.mark.parametrize(("n", "packed"), [(10, True), (100, True), (10, False), (40, False)])
def test_past_its_bound_a_clients_requests_are_answered_busy_and_not_sequenced(n, packed):
    """Packed: the driver's RequestRun (the span path); else Request objects (the pair path)."""
    a = solo_primary()
    requests = (
        bundle(1, n).requests if packed else tuple(wire.Request(7, i, command(i)) for i in range(1, n + 1))
    )
    out = a.handle_requests(b"c", requests, 0.001)
    assert statuses(out) == {rid: wire.BUSY for rid in range(LIMIT + 1, n + 1)}
    assert len(a.pending) == LIMIT and a.pending.by_src == {b"c": LIMIT}
    assert a.counters["requests_busy"] == n - LIMIT
    assert a.counters.get("requests_spanned", 0) == (LIMIT if packed else 0)
    # Another client is not held back by the first one's bound.
    assert a.handle(b"d", wire.Request(8, 1, command(99)), 0.001) == [] and a.pending.by_src[b"d"] == 1
    got = statuses(a.tick(0.002))  # sequenced: room again
    assert got == {1: wire.OK, 2: wire.OK, 3: wire.OK, 4: wire.OK} and a.pending.by_src == {}
    assert a.replica.seq == LIMIT + 1
    # The refused ones, re-sent, run once each; a re-send of an executed one gets its first result.
    out = a.handle_requests(b"c", (wire.Request(7, 5, command(5)), wire.Request(7, 1, command(1))), 0.003)
    assert statuses(out) == {1: wire.OK}
    assert statuses(a.tick(0.004)) == {5: wire.OK} and a.replica.seq == LIMIT + 2


def test_single_requests_past_the_bound_are_busy_too():
    a = solo_primary()
    outs = [a.handle(b"c", wire.Request(7, rid, command(rid)), 0.001) for rid in range(1, 7)]
    assert [statuses(o) for o in outs] == [{}] * LIMIT + [{5: wire.BUSY}, {6: wire.BUSY}]
    assert a.status()["counters"]["requests_busy"] == 2


def test_the_queue_counts_per_sender_through_spans_pairs_and_takes():
    a = solo_primary()
    a.settings.max_in_flight = 1000
    a.handle_requests(b"c", bundle(1, 100).requests, 0.001)  # a span
    a.handle(b"d", wire.Request(8, 1, command(1)), 0.001)  # a pair
    assert a.pending.by_src == {b"c": 100, b"d": 1}
    a.pending.take(60)  # the senders in turn: d's one request is in this batch, c gives the rest
    assert a.pending.by_src == {b"c": 41}
    a.pending.take(41)
    assert a.pending.by_src == {} and not a.pending


def test_the_client_backs_off_and_resends_a_busy_request_to_the_same_primary():
    c = ClientCore(7, ["a", "b"], retry_timeout=0.05)
    rid, _ = c.submit(command(1), 0.0)
    assert c.handle("a", wire.Reply(7, rid, wire.BUSY, 1, 0, "a"), 0.001) == []
    assert c.primary == "a" and rid in c.pending and c.counters["busy"] == 1
    assert c.tick(0.0015) == []  # backing off (1 ms)
    (resend,) = c.tick(0.0021)
    assert resend.dest == "a" and resend.msg.request_id == rid
    c.handle("a", wire.Reply(7, rid, wire.BUSY, 1, 0, "a"), 0.003)
    assert c.tick(0.0045) == [] and len(c.tick(0.0051)) == 1  # doubled: 2 ms
    done = c.handle("a", wire.Reply(7, rid, wire.OK, 1, 1, "a"), 0.006)
    assert [d.request_id for d in done] == [rid] and not c.pending and c.primary == "a"


def replies_to(out: list, dest: bytes) -> list[tuple[int, int]]:
    """``(request id, status)`` of every reply in ``out`` to ``dest``, in order."""
    got = []
    for o in out:
        if getattr(o, "dest", None) == dest:
            for r in o.replies() if isinstance(o, wire.ReplyRun) else [o.msg]:
                got.append((r.request_id, r.status))
    return got


def test_one_request_behind_a_flooders_backlog_is_in_the_next_batch():
    """The queue serves its senders in turn: the flooder's 4,096 queued requests do not go first."""
    a = solo_primary()
    a.settings.max_in_flight, a.settings.max_batch = 4096, 1024
    for first in range(1, 4097, 1024):
        assert a.handle_requests(b"flood", bundle(first, 1024).requests, 0.001) == []
    assert a.handle(b"good", wire.Request(8, 1, command(5000)), 0.001) == []
    assert a.pending.by_src == {b"flood": 4096, b"good": 1}
    out = a.tick(0.002)
    assert replies_to(out, b"good") == [(1, wire.OK)]
    # The flooder's requests went in its order: its first 1,023 (the rest of the batch).
    assert replies_to(out, b"flood") == [(rid, wire.OK) for rid in range(1, 1024)]
    assert a.replica.seq == 1024 and a.pending.by_src == {b"flood": 4096 - 1023}
