"""``Replica.fresh_count``: the primary's check that a span of requests is new, answered without
flushing the deferred dedupe updates, always equal to what ``lookup`` says request by request."""

from __future__ import annotations

import random

import pytest

import matching
from matching.commands import command_record
from replication.protocol import wire
from replication.protocol.replica import EXPIRED, Replica

pytestmark = pytest.mark.skipif(matching.Engine is None, reason="native engine not built")


def _commands(first_order_id: int, n: int) -> bytes:
    return b"".join(
        wire.pack_command(
            tuple(
                command_record(
                    {
                        "op": "new",
                        "instrument": 1,
                        "id": first_order_id + i,
                        "side": "buy" if i % 2 else "sell",
                        "price": 100 + i % 3,
                        "qty": 1 + i % 4,
                    }
                )
            )
        )
        for i in range(n)
    )


def _by_lookup(r: Replica, cid: int, first: int, count: int) -> int:
    """The specification: how many ids from ``first`` ``lookup`` answers None for."""
    for j in range(count):
        if r.lookup(cid, first + j) is not None:
            return j
    return count


def _flow(seed: int, window: int) -> None:
    rng = random.Random(seed)
    r = Replica(matching.Engine, dedupe_window=window)
    r.pending_max = rng.choice((4 * window, 1024))  # flushes now and then, in bulk, or late
    next_rid = {1: 1, 2: 1, 3: 1}
    order_id = 1
    for _ in range(60):
        n = rng.choice((3, 16, 40, 120))  # below and above the bulk path's threshold
        cids, rids = [], []
        for _ in range(n):
            cid = rng.choice((0, 1, 1, 1, 2, 3)) if rng.random() < 0.5 else 1
            if cid and rng.random() < 0.05:  # now and then an old id again (a re-send)
                rid = max(1, next_rid[cid] - rng.randint(1, 3 * window))
            else:
                rid = next_rid.get(cid, 1)
                if cid:
                    next_rid[cid] = rid + rng.choice((1, 1, 1, 2))
            cids.append(cid)
            rids.append(rid)
        r.execute_batch(1, cids, rids, _commands(order_id, n))
        order_id += n
        for _ in range(12):
            cid = rng.choice((1, 2, 3, 4))
            top = next_rid.get(cid, 1)
            first = max(1, top + rng.randint(-3 * window, 3))
            count = rng.randint(1, 2 * window)
            flushed_before = not r._pending
            got = r.fresh_count(cid, first, count)
            assert got == _by_lookup(r, cid, first, count), (seed, cid, first, count)
            if flushed_before:
                assert not r._pending


@pytest.mark.parametrize("seed", range(12))
def test_fresh_count_equals_lookup_request_by_request(seed):
    _flow(seed, window=rng_window(seed))


def rng_window(seed: int) -> int:
    return (4, 16, 64)[seed % 3]


def test_rising_requests_need_no_flush():
    r = Replica(matching.Engine, dedupe_window=8)
    r.execute_batch(1, [7] * 32, list(range(1, 33)), _commands(1, 32))
    assert r._pending  # deferred
    assert r.fresh_count(7, 33, 100) == 100 and r._pending  # above every id: no flush, no probe
    assert r.fresh_count(7, 30, 5) == 0 and not r._pending  # executed: the table answers, flushed
    assert r.lookup(7, 20) is EXPIRED and r.lookup(7, 30)[0] == 30  # the last 8 kept, the floor above


def test_restored_replica_knows_its_highest_ids():
    r = Replica(matching.Engine, dedupe_window=8)
    r.execute_batch(1, [7] * 32, list(range(1, 33)), _commands(1, 32))
    back = Replica.restore(r.snapshot(), matching.Engine, dedupe_window=8)
    assert back._high[7] == 32
    assert back.fresh_count(7, 32, 3) == 0 and back.fresh_count(7, 33, 3) == 3
    assert back.fresh_count(7, 10, 3) == 0  # below the floor: expired
