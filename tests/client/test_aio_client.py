"""``replication.aio.Client`` on real processes (loopback, bounded timeouts): the blocking
client's calls as coroutines, over the same client core (issue 16).

Checked against the group's journal and a local replay, as the blocking client's tests
are: every call gives the events the embedded engine gives; many coroutines share one
client; a SIGKILL of the primary mid-flow loses no acknowledged order and executes none
twice; execution reports and queries come from the group; a newer session fences the
older; a group that is down ends in a ``TimeoutError`` naming its endpoints.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from matching import Engine, ReferenceEngine
from replication import SessionFenced
from replication.aio import Client
from replication.protocol.session import is_open_entry
from replication.testing.harness import order, replay_digest

pytestmark = pytest.mark.timeout(120)


def aio_client(g, client_id: int, **kw) -> Client:
    kw.setdefault("timeout", 20.0)
    return Client({n: g.cfg.nodes[n].endpoint for n in g.names}, client_id, **kw)


def test_the_engine_calls_as_coroutines(group):
    g = group()
    g.start_all()
    g.wait_ready()
    local = (Engine or ReferenceEngine)()

    async def main() -> None:
        async with aio_client(g, 7) as c:
            assert c.session > 0
            assert await c.submit(instrument=1, id=1, side="sell", price=100, qty=10) == local.submit(
                instrument=1, id=1, side="sell", price=100, qty=10
            )
            assert await c.submit(instrument=1, id=2, side="buy", price=100, qty=4) == local.submit(
                instrument=1, id=2, side="buy", price=100, qty=4
            )
            assert await c.replace(instrument=1, id=1, qty=3) == local.replace(instrument=1, id=1, qty=3)
            assert await c.cancel(instrument=1, id=1) == local.cancel(instrument=1, id=1)
            # Fifty coroutines at once on one client: each gets its own order's events.
            flow = [order(i) for i in range(10, 60)]
            got = await asyncio.gather(*(c.apply(cmd) for cmd in flow))
            assert got == [local.apply(cmd) for cmd in flow]
            more = [order(i) for i in range(60, 400)]
            assert await c.submit_many(more, window=64) == [local.apply(cmd) for cmd in more]
            sent = [order(i) for i in range(400, 420)]
            rids = [await c.send(cmd) for cmd in sent]
            seen: dict[int, list] = {}
            while len(seen) < len(rids):
                seen.update(await c.poll(1.0))
            assert sorted(seen) == rids
            assert [seen[r] for r in rids] == [local.apply(cmd) for cmd in sent]
            assert await c.mass_cancel(account=1) == local.mass_cancel(account=1)

    asyncio.run(main())
    entries = g.journal_entries(g.names[0])
    assert replay_digest(entries) == entries[-1].digest


def test_reports_queries_and_fencing(group):
    g = group()
    g.start_all()
    g.wait_ready()

    async def main() -> None:
        maker, taker = aio_client(g, 7), aio_client(g, 8)
        try:
            await maker.submit(instrument=1, id=1, side="sell", price=100, qty=10, account=3)
            await taker.submit(instrument=1, id=2, side="buy", price=100, qty=4, account=4)
            reports: list[dict] = []
            for _ in range(50):
                reports += await maker.executions(timeout=0.2)
                if any(r["event"] == "trade" for r in reports):
                    break
            fill = next(r for r in reports if r["event"] == "trade")
            assert fill["side"] == "maker" and fill["qty"] == 4 and fill["maker"] == 1
            assert (await maker.order(instrument=1, id=1))["open"] == 6
            assert [o["id"] for o in await maker.open_orders()] == [1]
            assert await taker.open_orders() == []
            # A newer session of client id 7 fences this one: its next call raises.
            newer = aio_client(g, 7)
            try:
                await newer.submit(instrument=1, id=3, side="sell", price=101, qty=1)
                with pytest.raises(SessionFenced, match="client id 7"):
                    for _ in range(100):
                        await maker.submit(instrument=1, id=100 + _, side="sell", price=105, qty=1)
            finally:
                await newer.aclose()
        finally:
            await maker.aclose()
            await taker.aclose()

    asyncio.run(main())


def test_nothing_acknowledged_is_lost_across_a_sigkill_fail_over(group):
    g = group()
    g.start_all()
    g.wait_ready()
    acked: dict[int, int] = {}  # request id -> order id

    async def worker(c: Client, first: int, n: int, killed: asyncio.Event) -> None:
        for i in range(first, first + n):
            cmd = {
                "op": "new",
                "instrument": 1,
                "id": i,
                "side": "buy" if i % 2 else "sell",
                "price": 100 + i % 5,
                "qty": 1,
            }
            rid = await c.send(cmd)
            events = await c.wait(rid)
            assert events[0].id == i  # the reply carries this request's events
            acked[rid] = i
            if i == first + n // 3 and first == 1:
                g.kill(g.names[0])
                killed.set()

    async def main() -> None:
        killed = asyncio.Event()
        async with aio_client(g, 7, retry_timeout=0.05) as c:
            await asyncio.gather(*(worker(c, 1 + k * 1000, 120, killed) for k in range(4)))
            assert killed.is_set()

    asyncio.run(main())
    survivor = g.wait_for(
        lambda st: any(s.get("role") == "primary" for n, s in st.items() if n != g.names[0]),
        what="a new primary",
    )
    primary = next(n for n, s in survivor.items() if s.get("role") == "primary")
    entries = [e for e in g.journal_entries(primary) if e.client_id == 7 and not is_open_entry(e.request_id)]
    journaled = [e.request_id for e in entries]
    assert len(journaled) == len(set(journaled)), "a request executed twice"
    ids = {e.request_id: int.from_bytes(e.command[:8], "little") for e in entries}
    assert all(ids.get(rid) == oid for rid, oid in acked.items()), "an acknowledged order is missing"
    assert len(acked) == 480


def test_a_group_that_is_down_names_its_endpoints():
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])

    async def main() -> None:
        c = Client({"a": f"tcp://127.0.0.1:{ports[0]}", "b": f"tcp://127.0.0.1:{ports[1]}"}, 7, timeout=0.3)
        try:
            with pytest.raises(
                TimeoutError, match=rf"a at tcp://127.0.0.1:{ports[0]}, b at tcp://127.0.0.1:{ports[1]}"
            ):
                await c.submit(instrument=1, id=1, side="buy", price=1, qty=1)
        finally:
            await c.aclose()

    asyncio.run(main())
