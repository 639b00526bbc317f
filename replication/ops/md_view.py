"""``matchcore md``: print a group's public market-data feed, as JSON lines or as a live depth view.

For: ``md(cfg, instruments, ...)``, run by ``matchcore md --config g.toml
--instrument 1 [--json | --view]``. JSON lines: one line per update applied
to the verified book (``replication.MarketData.poll``'s dicts), then, on
exit, one ``{"counters": ...}`` line. ``--view``: a depth ladder per
instrument redrawn in place with ``rich`` (best levels, BBO, last trade,
the node listened to and the counters). Not for: the feed itself
(``replication.client.market_data``).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from ..client.market_data import MarketData
from ..transport.group_file import GroupConfig

VIEW_LEVELS = 10  # levels a side shown by --view


def md(
    cfg: GroupConfig,
    instruments: list[int],
    node: str | None = None,
    key: str = "",
    count: int = 0,
    timeout: float = 0.0,
    view: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """Follow the feed until ``count`` updates or ``timeout`` seconds with none (0 = never)."""
    feed = MarketData.from_config(cfg, instruments=instruments, node=node, key=key)
    printed = 0
    last = time.monotonic()
    try:
        if view:
            _view(feed, instruments, count, timeout)
            return 0
        while not count or printed < count:
            got = feed.poll(0.05)
            now = time.monotonic()
            for d in got[: count - printed if count else None]:
                out.write(json.dumps(d) + "\n")
                printed += 1
            if got:
                last = now
                out.flush()
            elif timeout and now - last > timeout:
                break
        out.write(json.dumps({"counters": feed.counters(), "node": feed.node}) + "\n")
        out.flush()
    except KeyboardInterrupt:
        pass
    finally:
        feed.close()
    return 0


def _view(feed: MarketData, instruments: list[int], count: int, timeout: float) -> None:
    from rich.live import Live

    trades: dict[int, dict] = {}
    seen = 0
    last = time.monotonic()
    with Live(_render(feed, instruments, trades), refresh_per_second=10) as live:
        while not count or seen < count:
            got = feed.poll(0.1)
            now = time.monotonic()
            for d in got:
                if d["kind"] == "trade":
                    trades[d["instrument"]] = d
            seen += len(got)
            if got:
                last = now
            elif timeout and now - last > timeout:
                break
            live.update(_render(feed, instruments, trades))


def _render(feed: MarketData, instruments: list[int], trades: dict[int, dict]) -> Any:
    from rich.console import Group
    from rich.table import Table

    tables = []
    for ins in instruments:
        bids, asks = feed.book(ins)
        state = "synced" if feed.synced(ins) else "resyncing"
        t = Table(title=f"instrument {ins} ({state}, seq {feed.local.instrument_seq(ins)})")
        for col in ("orders", "bid qty", "bid", "ask", "ask qty", "orders "):
            t.add_column(col, justify="right")
        for i in range(min(VIEW_LEVELS, max(len(bids), len(asks)))):
            b = bids[i] if i < len(bids) else None
            a = asks[i] if i < len(asks) else None
            t.add_row(
                str(b[2]) if b else "",
                str(b[1]) if b else "",
                str(b[0]) if b else "",
                str(a[0]) if a else "",
                str(a[1]) if a else "",
                str(a[2]) if a else "",
            )
        tr = trades.get(ins)
        if tr:
            t.caption = f"last trade {tr['qty']} @ {tr['price']} ({tr['aggressor']} aggressor)"
        tables.append(t)
    counters = ", ".join(f"{k} {v}" for k, v in feed.counters().items())
    return Group(*tables, f"node {feed.node}: {counters}")
