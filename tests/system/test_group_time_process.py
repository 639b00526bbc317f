"""The group's time on real processes: the node driver stamps with the wall clock, and idles with time commands.

A group with ``time_interval_ms = 100``: orders get the primary's wall-clock
stamp (between the clock read before the group started and after it
stopped: a bound, not a timing), a client's own ``ts`` is overwritten, the
idle primary sequences ``time`` commands (client id 0), the stamps never
decrease, and the standby's journal is the primary's. Loopback only.
"""

from __future__ import annotations

import time

import pytest

from replication.protocol.group_time import is_time_command, stamp_of

pytestmark = pytest.mark.timeout(120)


def test_orders_get_the_wall_clock_stamp_and_an_idle_primary_sequences_time(group):
    before = time.time_ns()
    g = group(("a", "b"), "sync", extra={"time_interval_ms": 100})
    g.start_all()
    g.wait_ready()
    with g.client(21, retry_timeout=0.05) as c:
        c.apply({"op": "new", "instrument": 1, "id": 1, "side": "buy", "price": 10, "qty": 1, "ts": 1 << 62})
        c.apply({"op": "new", "instrument": 1, "id": 2, "side": "buy", "price": 10, "qty": 1, "ts": 1})
    g.wait_for(
        lambda s: (
            s["a"].get("counters", {}).get("time_commands", 0) >= 2
            and s["b"].get("last_seq") == s["a"].get("last_seq")
        ),
        what="two idle time commands, replicated",
    )
    for name in ("a", "b", "witness"):
        g.kill(name, 15)
    after = time.time_ns()
    entries = g.journal_entries("a")
    assert g.journal_entries("b") == entries
    stamps = [stamp_of(e.command) for e in entries]
    assert stamps == sorted(stamps)
    assert all(before <= t <= after for t in stamps), (
        before,
        stamps,
        after,
    )  # the wall clock's, not 1 << 62 or 1
    orders = [e for e in entries if e.client_id == 21]
    assert len(orders) == 3  # the session open and the two orders
    times = [e for e in entries if e.client_id == 0]
    assert len(times) >= 2 and all(is_time_command(e.command) and e.request_id == 0 for e in times)
