"""Time in the simulator: each node's skewed clock, time in the workload, and the stamps' rules.

For: the clock a simulated node's machine stamps with (``node_clock``: the
virtual clock plus a skew of the node's own, so a fail-over to a node whose
clock is behind is common), the simulator's ``time_interval`` (short, so idle
``time`` commands happen in a run of a second), the workload's use of time
(``with_time``: some GTD orders whose ``expire_ts`` falls inside the run, some
stop-limit orders at the book's prices, and
some commands that carry a bogus ``ts`` of their own, which the primary must
overwrite), and the checker's rules on the stamps of a history
(``check_stamps``), and the expiries and stop triggers it saw (``count_expired``). Each node's skew and the workload's changes are drawn
from streams of their own: the schedule draws from ``Sim.rng`` what it drew
before. Not for: the group's time itself (``replication.protocol.group_time``).
"""

from __future__ import annotations

import random

import numpy as np

from matching.codes import EV_CANCELLED, EV_TRIGGERED, EVENT_DTYPE, R_EXPIRED

from ...protocol import wire
from ...protocol.group_time import Clock, is_time_command, stamp_of, virtual_clock

TIME_INTERVAL = 0.05  # seconds: a primary idle this long sequences a time command (runs last ~1 s)
MAX_SKEW = 0.2  # seconds: a node's clock is off the virtual one by up to this, either way
GTD_SHARE = 0.2  # of the new resting orders
BOGUS_TS = 1 << 62  # a client's own ts: were it applied, every GTD order would expire at once
BOGUS_SHARE = 0.1  # of the commands
STOP_SHARE = 0.1  # of the new limit orders: made stop-limit orders, their stop at their own price


def node_clock(seed: int, name: str) -> Clock:
    """Node ``name``'s clock in schedule ``seed``: the virtual clock plus a skew fixed for the run
    (drawn from a stream of its own). O(1)."""
    skew = random.Random(f"clock/{seed}/{name}").uniform(-MAX_SKEW, MAX_SKEW)
    skew_ns = round(skew * 1e9)
    return lambda now: virtual_clock(now) + skew_ns


def with_time(seed: int, client_id: int, commands: list[dict]) -> list[dict]:
    """``commands`` with time in them: a share of the GTC limit orders made GTD with an
    ``expire_ts`` within the run's first second and a half (virtual), and a share of every
    command given a bogus ``ts``. Drawn from a stream of the client's own. O(commands)."""
    rng = random.Random(f"time/{seed}/{client_id}")
    out = []
    for c in commands:
        c = dict(c)
        if c["op"] == "new" and c.get("tif") == "GTC" and rng.random() < GTD_SHARE:
            c["tif"] = "GTD"
            c["expire_ts"] = rng.randrange(50_000_000, 1_500_000_000)
        elif (
            c["op"] == "new"
            and c.get("type", "limit") == "limit"
            and "price" in c
            and rng.random() < STOP_SHARE
        ):
            # Stops clustered at the book's own prices: trades reach them often, and a triggered
            # stop's own trades reach the next (cascades), so fail-overs fall between them.
            c["type"] = "stop_limit"
            c["stop_price"] = c["price"] + rng.choice((-1, 0, 0, 1))
        if rng.random() < BOGUS_SHARE:
            c["ts"] = BOGUS_TS
        out.append(c)
    return out


def check_stamps(chain: list[wire.Entry], end: float) -> list[str]:
    """The rules of the stamps along a history: they never decrease; none is a client's own (each
    lies within the nodes' clocks over the run, ``end`` its virtual length); every entry of client
    id 0 is a ``time`` command (request id 0) and, in the simulator (no client sends one), nothing
    else is. The first violations found. O(history)."""
    out: list[str] = []
    last = 0
    top = virtual_clock(end + MAX_SKEW)
    for e in chain:
        ts = stamp_of(e.command)
        if ts < last:
            out.append(f"time: seq {e.seq} stamped {ts}, below the {last} before it")
        if not 0 <= ts <= top:
            out.append(f"time: seq {e.seq} stamped {ts}, outside every node's clock (a client's own?)")
        if (e.client_id == 0) != is_time_command(e.command) or (e.client_id == 0 and e.request_id):
            what = "a time command" if is_time_command(e.command) else "not a time command"
            out.append(f"time: seq {e.seq} of client {e.client_id}, request {e.request_id}, is {what}")
        last = max(last, ts)
        if len(out) >= 3:
            break
    return out


def count_expired(events_at: list[bytes]) -> tuple[int, int]:
    """How many ``cancelled`` events with reason ``expired``, and how many ``triggered`` events,
    the entries' events hold. O(events)."""
    expired = triggered = 0
    for events in events_at:
        if events:
            ev = np.frombuffer(events, dtype=EVENT_DTYPE)
            expired += int(((ev["kind"] == EV_CANCELLED) & (ev["reason"] == R_EXPIRED)).sum())
            triggered += int((ev["kind"] == EV_TRIGGERED).sum())
    return expired, triggered
