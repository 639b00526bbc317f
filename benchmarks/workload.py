"""The standard command mix, deterministic from a seed.

About 60% new limit orders (about a third of them marketable: IOC limits
priced through the opposite best, so they trade and their remainder is
cancelled; the rest rest without crossing), 30% cancels of live orders and
10% replaces of live orders (each moves the price within the same side, half
of them also set a new quantity; none crosses). One
instrument, or eight with commands spread evenly.

Replaces always change the price because that is the one kind of replace
whose meaning every peer shares (the order loses its place). A replace that
only lowers the quantity keeps priority in matchcore but not in the peers,
whose books would then drift from ours and from each other.

To pick *live* orders for cancels and replaces, the generator keeps a small
price-time model of the books (a subset of the matching rules: limit GTC and
IOC orders, no icebergs, no self-trade prevention). Before the timed
commands come ``setup`` commands that rest a few thousand orders so the
books are never empty; every harness applies them untimed.

The same workload is produced in every form a driver needs: a
``COMMAND_DTYPE`` array for the batch API, generic operation tuples that the
peer adapters (:mod:`benchmarks.peers`) translate into their own calls, and
per-call argument tuples for ``Engine.submit / cancel / replace``.

Randomness (``random.Random(seed)``) is fine here; it is never used in matching.
Not a correctness test: the differential tests in ``tests/`` cover the rules.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from matching import codes

MID = 100_000  # every instrument's fixed "fair" price; bids rest at <= MID, asks at > MID
BAND = 100  # resting prices lie within BAND ticks of MID on their own side
RESTING_QTY = (1, 100)
MARKETABLE_QTY = (1, 50)
SETUP_PER_INSTRUMENT = 2_000

# Generic operations (what a command means, independent of any engine's API).
NEW, CANCEL, REPLACE = "new", "cancel", "replace"


@dataclass
class Workload:
    """A generated command stream.

    Attributes
    ----------
    setup, ops : list of tuple
        Generic operations, applied untimed (``setup``) and timed (``ops``):
        ``("new", instrument, id, side, price, qty, ioc)``,
        ``("cancel", instrument, id, side, price)``,
        ``("replace", instrument, id, side, old_price, old_open, new_price | None, new_qty | None)``
        where ``side`` is ``codes.SIDE_BUY`` / ``codes.SIDE_SELL``.
    counts : dict
        How many of each kind the timed part holds.
    """

    seed: int
    instruments: int
    setup: list[tuple] = field(default_factory=list)
    ops: list[tuple] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    live_after: int = 0

    @property
    def name(self) -> str:
        return f"{self.instruments}-instrument"

    def describe(self) -> dict[str, Any]:
        """Counts and shares of the timed mix, for result files."""
        n = len(self.ops) or 1
        return {
            "seed": self.seed,
            "instruments": self.instruments,
            "commands": len(self.ops),
            "setup_commands": len(self.setup),
            "live_orders_after": self.live_after,
            "counts": dict(self.counts),
            "shares": {k: round(v / n, 4) for k, v in self.counts.items()},
        }


class _Model:
    """Price-time books of the generator: just enough to know which orders are live and their open qty."""

    def __init__(self) -> None:
        self.levels: dict[tuple[int, int], dict[int, dict[int, None]]] = {}  # (instr, side) -> price -> FIFO
        self.prices: dict[tuple[int, int], list[int]] = {}  # (instr, side) -> ascending prices
        self.orders: dict[int, list[int]] = {}  # id -> [instrument, side, price, open]
        self.live: list[int] = []  # live ids, for uniform random choice
        self.where: dict[int, int] = {}  # id -> index in self.live

    def best(self, instrument: int, side: int) -> int | None:
        prices = self.prices.get((instrument, side))
        if not prices:
            return None
        return prices[-1] if side == codes.SIDE_BUY else prices[0]

    def rest(self, oid: int, instrument: int, side: int, price: int, qty: int) -> None:
        key = (instrument, side)
        levels = self.levels.setdefault(key, {})
        level = levels.get(price)
        if level is None:
            level = levels[price] = {}
            bisect.insort(self.prices.setdefault(key, []), price)
        level[oid] = None
        self.orders[oid] = [instrument, side, price, qty]
        self.where[oid] = len(self.live)
        self.live.append(oid)

    def remove(self, oid: int) -> None:
        instrument, side, price, _ = self.orders.pop(oid)
        key = (instrument, side)
        level = self.levels[key][price]
        del level[oid]
        if not level:
            del self.levels[key][price]
            prices = self.prices[key]
            del prices[bisect.bisect_left(prices, price)]
        i = self.where.pop(oid)
        last = self.live.pop()
        if last != oid:
            self.live[i] = last
            self.where[last] = i

    def take(self, instrument: int, side: int, limit: int, qty: int) -> None:
        """An IOC order of ``side`` for ``qty`` up to ``limit``: trade FIFO against the other side."""
        other = 1 - side
        while qty > 0:
            best = self.best(instrument, other)
            if best is None or (best > limit if side == codes.SIDE_BUY else best < limit):
                return
            level = self.levels[(instrument, other)][best]
            while qty > 0 and level:
                maker = next(iter(level))
                o = self.orders[maker]
                traded = min(qty, o[3])
                qty -= traded
                o[3] -= traded
                if o[3] == 0:
                    self.remove(maker)  # an emptied level is dropped; the outer loop re-reads the best

    def move(self, oid: int, price: int) -> None:
        """A price change: to the back of the new level (never crossing, by construction)."""
        instrument, side, _, open_qty = self.orders[oid]
        self.remove(oid)
        self.rest(oid, instrument, side, price, open_qty)


def generate(
    n: int = 1_000_000,
    instruments: int = 1,
    seed: int = 1,
    setup_per_instrument: int = SETUP_PER_INSTRUMENT,
    on_progress: Callable[[int], None] | None = None,
) -> Workload:
    """Generate the standard mix. Deterministic: the same arguments give the same workload. O(n log levels).

    Parameters
    ----------
    n : int
        Timed commands.
    instruments : int
        Number of instruments (ids 1..instruments), commands spread uniformly.
    seed : int
        Seed of the ``random.Random`` that draws everything.
    setup_per_instrument : int
        Resting orders placed before the timed commands, per instrument.
    on_progress : callable, optional
        Called with a count of commands generated, every 65,536 commands.

    Returns
    -------
    Workload
    """
    rng = random.Random(seed)
    model = _Model()
    wl = Workload(seed=seed, instruments=instruments)
    counts = {"new_resting": 0, "new_marketable": 0, "cancel": 0, "replace_price": 0, "replace_price_qty": 0}
    next_id = 1

    def resting_price(side: int) -> int:
        off = rng.randrange(BAND)
        return MID - off if side == codes.SIDE_BUY else MID + 1 + off

    def new_resting(instrument: int, out: list) -> None:
        nonlocal next_id
        side = rng.randrange(2)
        price = resting_price(side)
        qty = rng.randint(*RESTING_QTY)
        out.append((NEW, instrument, next_id, side, price, qty, False))
        model.rest(next_id, instrument, side, price, qty)
        next_id += 1

    for instrument in range(1, instruments + 1):
        for _ in range(setup_per_instrument):
            new_resting(instrument, wl.setup)

    ops = wl.ops
    for i in range(n):
        if on_progress is not None and i and not i & 0xFFFF:
            on_progress(0x10000)
        r = rng.random()
        if r >= 0.6 and not model.live:
            r = 0.0  # nothing to cancel or replace: a new order instead
        if r < 0.6:
            instrument = 1 + rng.randrange(instruments)
            if rng.random() < 1 / 3:
                side = rng.randrange(2)
                best = model.best(instrument, 1 - side)
                if best is None:
                    best = MID + 1 if side == codes.SIDE_BUY else MID
                price = best + rng.randrange(4) if side == codes.SIDE_BUY else best - rng.randrange(4)
                qty = rng.randint(*MARKETABLE_QTY)
                ops.append((NEW, instrument, next_id, side, price, qty, True))
                model.take(instrument, side, price, qty)
                next_id += 1
                counts["new_marketable"] += 1
            else:
                new_resting(instrument, ops)
                counts["new_resting"] += 1
            continue
        oid = model.live[rng.randrange(len(model.live))]
        instrument, side, price, open_qty = model.orders[oid]
        if r < 0.9:
            ops.append((CANCEL, instrument, oid, side, price))
            model.remove(oid)
            counts["cancel"] += 1
            continue
        new_price = resting_price(side)
        while new_price == price:
            new_price = resting_price(side)
        if rng.random() < 0.5:
            ops.append((REPLACE, instrument, oid, side, price, open_qty, new_price, None))
            counts["replace_price"] += 1
        else:
            new_qty = rng.randint(*RESTING_QTY)
            ops.append((REPLACE, instrument, oid, side, price, open_qty, new_price, new_qty))
            model.orders[oid][3] = new_qty
            counts["replace_price_qty"] += 1
        model.move(oid, new_price)
    wl.counts = counts
    wl.live_after = len(model.live)
    return wl


def resting_only(n: int, instruments: int = 1, seed: int = 1, levels: int = 1_000) -> list[tuple]:
    """``n`` non-crossing resting orders (bids at or below MID, asks above) over ``levels`` prices a side.

    The memory harness's book: every order rests, none trades. O(n).
    """
    rng = random.Random(seed)
    out = []
    for oid in range(1, n + 1):
        side = rng.randrange(2)
        off = rng.randrange(levels)
        price = MID - off if side == codes.SIDE_BUY else MID + 1 + off
        out.append((NEW, 1 + rng.randrange(instruments), oid, side, price, rng.randint(*RESTING_QTY), False))
    return out


# ----- forms for matchcore's two APIs ---------------------------------------------------


def command_array(ops: list[tuple]) -> np.ndarray:
    """The ``COMMAND_DTYPE`` array of generic operations (for ``Engine.apply_batch``). O(n)."""
    n = len(ops)
    arr = np.zeros(n, dtype=codes.COMMAND_DTYPE)
    op = np.empty(n, np.uint8)
    instrument = np.empty(n, np.uint32)
    ids = np.empty(n, np.uint64)
    side = np.zeros(n, np.uint8)
    price = np.zeros(n, np.int64)
    qty = np.zeros(n, np.int64)
    tif = np.zeros(n, np.uint8)
    flags = np.zeros(n, np.uint16)
    for i, o in enumerate(ops):
        kind = o[0]
        instrument[i] = o[1]
        ids[i] = o[2]
        if kind == NEW:
            op[i] = codes.OP_NEW
            side[i] = o[3]
            price[i] = o[4]
            qty[i] = o[5]
            tif[i] = codes.TIF_IOC if o[6] else codes.TIF_GTC
            flags[i] = codes.HAS_PRICE | codes.HAS_QTY
        elif kind == CANCEL:
            op[i] = codes.OP_CANCEL
        else:
            op[i] = codes.OP_REPLACE
            f = 0
            if o[6] is not None:
                price[i] = o[6]
                f |= codes.HAS_PRICE
            if o[7] is not None:
                qty[i] = o[7]
                f |= codes.HAS_QTY
            flags[i] = f
    arr["op"], arr["instrument"], arr["id"], arr["side"] = op, instrument, ids, side
    arr["price"], arr["qty"], arr["tif"], arr["flags"] = price, qty, tif, flags
    arr["type"] = codes.TYPE_LIMIT
    return arr


_SIDE_TEXT = {codes.SIDE_BUY: "buy", codes.SIDE_SELL: "sell"}


def call_args(ops: list[tuple]) -> list[tuple[int, tuple]]:
    """Per-call arguments: ``(0, submit args) | (1, cancel args) | (2, replace args)``, positional. O(n).

    ``submit(instrument, id, side, price, qty[, type, tif])``, ``cancel(instrument, id)``,
    ``replace(instrument, id, price, qty)`` with None for an unchanged field.
    """
    out: list[tuple[int, tuple]] = []
    for o in ops:
        kind = o[0]
        if kind == NEW:
            if o[6]:
                out.append((0, (o[1], o[2], _SIDE_TEXT[o[3]], o[4], o[5], "limit", "IOC")))
            else:
                out.append((0, (o[1], o[2], _SIDE_TEXT[o[3]], o[4], o[5])))
        elif kind == CANCEL:
            out.append((1, (o[1], o[2])))
        else:
            out.append((2, (o[1], o[2], o[6], o[7])))
    return out
