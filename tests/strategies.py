"""Hypothesis strategies for engine commands, shared by every test suite.

What it is for: generating command-log dicts (the JSON-lines form of
docs/semantics.md) that exercise every rule at once — several instruments, a few
accounts so self-trade prevention fires, every order type, time in force,
STP mode, post-only and icebergs, cancels and replaces aimed at live and dead
ids, prices clustered around one value so books cross often, and now and
then a malformed command.  ``commands()`` draws one command, ``command_lists()``
a session of them.

What it is not for: checking results; the tests compare engines.
"""

from __future__ import annotations

from hypothesis import strategies as st

from matching.codes import MAX_PRICE, MAX_QTY

# The edges of every valid range appear now and then (about 1 draw in 10),
# so C integer types are exercised at their limits against Python ints.
TOP_INSTRUMENT = (1 << 32) - 1
TOP_ID = (1 << 64) - 1
TOP_ACCOUNT = (1 << 64) - 1
INSTRUMENTS = (1, 2, 7, TOP_INSTRUMENT)
EXTREME_IDS = (TOP_ID, 1 << 63)
ACCOUNTS = (0, 1, 1, 2, 2, 3)
MID = 100


def _mostly(common: st.SearchStrategy, *rare) -> st.SearchStrategy:
    """``common`` nine times in ten, else one of ``rare``."""
    return st.one_of(*([common] * 9), st.sampled_from(rare))


# Mostly one instrument, so its book gets busy; the others keep books apart.
instruments = _mostly(st.sampled_from((1, 1, 1, 1, 1, 2, 7)), TOP_INSTRUMENT)
accounts = _mostly(st.sampled_from(ACCOUNTS), TOP_ACCOUNT)
# A small id space: ids collide (duplicate_id), die and are reused.
order_ids = _mostly(st.integers(min_value=1, max_value=16), *EXTREME_IDS)
# Prices within a few ticks of MID: bids and asks overlap, so books cross.
prices = _mostly(st.integers(min_value=MID - 4, max_value=MID + 4), 1, MAX_PRICE - 1, MAX_PRICE)
quantities = _mostly(st.sampled_from((1, 1, 2, 3, 5, 8, 10, 20, 50)), MAX_QTY - 1, MAX_QTY)
stps = st.sampled_from(("none", "none", "cancel_taker", "cancel_maker", "cancel_both"))

# Values that are wrong in one way or another for some field.
BAD_VALUES = (
    0,
    -1,
    -(1 << 63) - 1,
    1 << 63,
    1 << 64,
    1 << 70,
    MAX_PRICE + 1,
    MAX_QTY + 1,
    "x",
    "7",
    True,
    None,
    1.5,
    [1],
)
BAD_NAMES = ("BUY", "Sell", "gtc", "ioc", "LIMIT", "Market", "CANCEL_BOTH", "bogus", "", 0, None)


@st.composite
def new_orders(draw) -> dict:
    """A well-formed ``new`` command (any type, tif, stp, post-only, iceberg)."""
    side = draw(st.sampled_from(("buy", "sell")))
    qty = draw(quantities)
    d: dict = {"op": "new", "instrument": draw(instruments), "id": draw(order_ids), "side": side, "qty": qty}
    if draw(st.integers(0, 9)) == 0:
        d["type"] = "market"
        d["tif"] = draw(st.sampled_from(("IOC", "FOK", "GTC")))
    else:
        d["price"] = draw(prices)
        d["tif"] = draw(st.sampled_from(("GTC", "GTC", "GTC", "GTC", "IOC", "FOK")))
        if draw(st.integers(0, 7)) == 0:
            d["post_only"] = True
        if draw(st.integers(0, 4)) == 0:
            # At most ~50 refills per order: an iceberg showing 1 lot of
            # MAX_QTY would emit a trillion trade events against one taker.
            d["display_qty"] = draw(st.integers(max(1, qty // 50), qty))
    if draw(st.integers(0, 2)):
        d["account"] = draw(accounts)
        d["stp"] = draw(stps)
    return d


@st.composite
def cancels(draw) -> dict:
    return {"op": "cancel", "instrument": draw(instruments), "id": draw(order_ids)}


@st.composite
def replaces(draw) -> dict:
    d = {"op": "replace", "instrument": draw(instruments), "id": draw(order_ids)}
    if draw(st.booleans()):
        d["price"] = draw(prices)
    if draw(st.integers(0, 3)):
        # Never a huge qty here: it would turn a small iceberg into a
        # trillion refills (see new_orders).
        d["qty"] = draw(st.sampled_from((0, 1, 2, 4, 10, 30, 60)))
    return d


@st.composite
def mass_cancels(draw) -> dict:
    # Mostly by account: an unfiltered mass cancel empties every book.
    d: dict = {"op": "mass_cancel"}
    if draw(st.integers(0, 3)):
        d["account"] = draw(accounts)
    if draw(st.booleans()):
        d["instrument"] = draw(instruments)
    return d


@st.composite
def invalid_commands(draw) -> dict:
    """A command with one thing wrong (or an unknown op)."""
    base = draw(st.one_of(new_orders(), cancels(), replaces(), mass_cancels()))
    how = draw(st.integers(0, 4))
    if how == 0:
        base["op"] = draw(st.sampled_from(("amend", "NEW", "", 3, None)))
    elif how == 1:
        key = draw(st.sampled_from(("side", "type", "tif", "stp")))
        base[key] = draw(st.sampled_from(BAD_NAMES))
    elif how == 2:
        del_key = draw(st.sampled_from(sorted(k for k in base if k != "op") or ["id"]))
        base.pop(del_key, None)
    else:
        key = draw(
            st.sampled_from(("id", "price", "qty", "display_qty", "account", "instrument", "post_only"))
        )
        base[key] = draw(st.sampled_from(BAD_VALUES))
    return base


def commands() -> st.SearchStrategy[dict]:
    """One command dict, mostly new orders, with cancels, replaces, mass cancels and bad input."""
    return st.one_of(
        new_orders(),
        new_orders(),
        new_orders(),
        new_orders(),
        new_orders(),
        cancels(),
        cancels(),
        replaces(),
        replaces(),
        mass_cancels(),
        invalid_commands(),
    )


# Built once: hypothesis validates a strategy object on first use, which is
# costly for a one_of tree, so the session loop must reuse this one.
_COMMANDS = commands()


@st.composite
def queue_position_runs(draw) -> list[dict]:
    """Orders queued at one price, one of them (not the first) replaced, then a fill.

    Time priority is invisible until the level trades: the replace shrinks (or
    keeps) a queued order's quantity, which must keep its place, or moves its
    price back and forth or grows it, which must send it to the back; then an
    order from the other side takes part of the level, and the order of the
    trades shows the queue. Plain limit orders, no account: nothing else
    (STP, icebergs, post-only) decides who trades first.
    """
    instrument = draw(st.sampled_from((1, 1, 2)))
    side = draw(st.sampled_from(("buy", "sell")))
    price = draw(st.integers(min_value=MID - 2, max_value=MID + 2))
    ids = draw(st.lists(st.integers(min_value=1, max_value=16), min_size=3, max_size=5, unique=True))
    sizes = [draw(st.sampled_from((2, 3, 5, 8, 10))) for _ in ids]
    out: list[dict] = [
        {"op": "new", "instrument": instrument, "id": i, "side": side, "price": price, "qty": q}
        for i, q in zip(ids, sizes, strict=True)
    ]
    k = draw(st.integers(min_value=1, max_value=len(ids) - 1))  # never the front of the queue
    how = draw(st.sampled_from(("shrink", "shrink", "same", "grow", "away_and_back")))
    replace = {"op": "replace", "instrument": instrument, "id": ids[k]}
    if how == "shrink":
        replace["qty"] = draw(st.integers(min_value=1, max_value=sizes[k]))
    elif how == "same":
        replace["price"], replace["qty"] = price, sizes[k]
    elif how == "grow":
        replace["qty"] = sizes[k] + draw(st.integers(min_value=1, max_value=5))
    else:
        away = price - 3 if side == "buy" else price + 3  # off the level without crossing
        out.append({"op": "replace", "instrument": instrument, "id": ids[k], "price": away})
        replace["price"] = price
    out.append(replace)
    taker = "sell" if side == "buy" else "buy"
    qty = draw(st.integers(min_value=1, max_value=sum(sizes) + 5))
    out.append(
        {
            "op": "new",
            "instrument": instrument,
            "id": draw(order_ids),
            "side": taker,
            "price": price,
            "qty": qty,
            "tif": "IOC",
        }
    )
    return out


@st.composite
def command_lists(draw, min_size: int = 8, max_size: int = 100) -> list[dict]:
    """A session of commands against one engine.

    Most cancels and replaces are re-aimed at an order the session already
    sent (live, filled or cancelled by then), the way real flow refers to
    its own orders; the rest keep hitting unknown ids. Now and then a run
    from :func:`queue_position_runs` shows whether replaces kept (or lost)
    their place in the queue.
    """
    n = draw(st.integers(min_value=min_size, max_value=max_size), label="length")
    issued: list[tuple[int, int]] = []
    out = []
    for _ in range(n):
        if draw(st.integers(0, 11)) == 0:
            run = draw(queue_position_runs())
            issued += [(c["instrument"], c["id"]) for c in run if c["op"] == "new"]
            out += run
            continue
        cmd = draw(_COMMANDS)
        op = cmd.get("op")
        if op in ("cancel", "replace") and issued and draw(st.integers(0, 4)):
            cmd["instrument"], cmd["id"] = draw(st.sampled_from(issued))
        elif op == "new" and type(cmd.get("id")) is int and type(cmd.get("instrument")) is int:
            issued.append((cmd["instrument"], cmd["id"]))
        out.append(cmd)
    return out


# ----- time, expiry and stops (issue 19) ------------------------------------------------

# Stop prices cluster on the same few ticks as limit prices, so most trades reach some stop
# and cascades are common; expiries land a few ticks of time ahead, so they fall due often.
stop_prices = _mostly(st.sampled_from((MID, MID, MID - 1, MID + 1, MID - 2, MID + 2)), 1, MAX_PRICE)


@st.composite
def timed_orders(draw) -> dict:
    """A ``new`` order that waits or expires: a stop, a stop-limit, or a DAY/GTD limit order."""
    d = draw(new_orders())
    # Their own ids: a stop may wait long, and would otherwise make most new ids duplicates.
    d["id"] = draw(st.integers(min_value=17, max_value=48))
    kind = draw(st.sampled_from(("stop_limit", "stop", "stop_limit", "DAY", "GTD", "GTD")))
    if kind in ("stop", "stop_limit"):
        d["type"] = kind
        d["stop_price"] = draw(stop_prices)
        d.pop("post_only", None)
        if kind == "stop":
            d.pop("price", None)
        else:
            d.setdefault("price", draw(prices))
        d["tif"] = draw(st.sampled_from(("GTC", "GTC", "IOC", "DAY", "GTD")))
    else:
        d["type"] = "limit"
        d.setdefault("price", draw(prices))
        d["tif"] = kind
    if d["tif"] == "GTD":
        d["expire_ts"] = draw(st.integers(min_value=1, max_value=12))  # made relative below
    return d


@st.composite
def timed_commands(draw) -> dict:
    """One command of the issue-19 kind: a timed order, a ``time``, an ``end_of_day``, a stop
    replace, an ``instrument`` (rules), a ``risk`` (limits)."""
    how = draw(st.integers(0, 11))
    if how == 11:
        return {
            "op": "risk",
            "account": draw(accounts),
            "max_open_qty": draw(st.sampled_from((0, 10, 40))),
            "max_position": draw(st.sampled_from((0, 5, 20))),
        }
    if how == 10:
        return {
            "op": "instrument",
            "instrument": draw(instruments),
            "tick": draw(st.sampled_from((0, 1, 2))),
            "lot": draw(st.sampled_from((0, 1, 2))),
            "min_qty": draw(st.sampled_from((0, 0, 2))),
            "max_qty": draw(st.sampled_from((0, 0, 30))),
            "band": draw(st.sampled_from((0, 2, 5))),
            "ref_price": draw(st.sampled_from((0, MID))),
        }
    if how < 6:
        return draw(timed_orders())
    if how < 8:
        return {"op": "time", "ts": 0}  # ts set below
    if how < 9:
        return {"op": "end_of_day", "instrument": draw(instruments)}
    d = draw(replaces())
    d["stop_price"] = draw(stop_prices)
    return d


@st.composite
def stop_runs(draw, first_id: int) -> list[dict]:
    """Resting orders on both sides, stops clustered just beyond them, then an aggressor.

    The aggressor's prints reach some stops, whose entries print further and reach more:
    a trigger cascade (ids from ``first_id``, fresh in the session).
    """
    instrument = draw(st.sampled_from((1, 1, 2)))
    out: list[dict] = []
    oid = first_id
    for side, prices_ in (("sell", (MID, MID + 1, MID + 2, MID + 3)), ("buy", (MID - 1, MID - 2, MID - 3))):
        for price in draw(st.lists(st.sampled_from(prices_), min_size=1, max_size=4)):
            out.append(
                {
                    "op": "new",
                    "instrument": instrument,
                    "id": oid,
                    "side": side,
                    "price": price,
                    "qty": draw(st.sampled_from((1, 2, 3, 5))),
                }
            )
            oid += 1
    for _ in range(draw(st.integers(1, 5))):
        side = draw(st.sampled_from(("buy", "sell")))
        stop = {
            "op": "new",
            "instrument": instrument,
            "id": oid,
            "side": side,
            "type": draw(st.sampled_from(("stop", "stop_limit"))),
            "qty": draw(st.sampled_from((1, 2, 4))),
            "stop_price": draw(st.sampled_from((MID - 2, MID - 1, MID, MID + 1, MID + 2))),
        }
        if stop["type"] == "stop_limit":
            stop["price"] = stop["stop_price"] + draw(st.sampled_from((-1, 0, 1, 2)))
            stop["tif"] = draw(st.sampled_from(("GTC", "IOC", "DAY", "GTD")))
            if stop["tif"] == "GTD":
                stop["expire_ts"] = draw(st.integers(min_value=1, max_value=12))
        if draw(st.integers(0, 2)) == 0:
            stop["account"], stop["stp"] = draw(accounts), draw(stps)
        out.append(stop)
        oid += 1
    out.append(
        {
            "op": "new",
            "instrument": instrument,
            "id": oid,
            "side": draw(st.sampled_from(("buy", "sell"))),
            "price": draw(st.sampled_from((MID - 3, MID - 1, MID, MID + 1, MID + 3))),
            "qty": draw(st.sampled_from((1, 3, 6, 10))),
            "tif": draw(st.sampled_from(("IOC", "GTC"))),
        }
    )
    return out


_TIMED = st.one_of(timed_commands(), new_orders(), new_orders(), commands())


@st.composite
def timed_command_lists(draw, min_size: int = 8, max_size: int = 100) -> list[dict]:
    """A session mixing the classic commands with stops, DAY/GTD orders, ``time`` and ``end_of_day``.

    Every command carries a ``ts`` that mostly steps forward by a few units (now and then
    it stays, goes back, or is absent: time never goes back in the engine); a GTD order's
    ``expire_ts`` is a few units past its own ts, so expiries fall due within the session.
    Cancels and replaces are mostly aimed at orders the session sent, stops included.
    """
    n = draw(st.integers(min_value=min_size, max_value=max_size), label="length")
    issued: list[tuple[int, int]] = []
    out = []
    ts = 0
    for _ in range(n):
        if draw(st.integers(0, 7)) == 0:
            for cmd in draw(stop_runs(5000 + 100 * len(out))):
                ts += draw(st.sampled_from((0, 1)))
                cmd["ts"] = ts
                if "expire_ts" in cmd:
                    cmd["expire_ts"] += ts
                issued.append((cmd["instrument"], cmd["id"]))
                out.append(cmd)
            continue
        cmd = draw(_TIMED)
        ts += draw(st.sampled_from((0, 1, 1, 2, 3, 5)))
        when = draw(st.sampled_from(("now", "now", "now", "now", "back", "none")))
        cmd_ts = ts if when == "now" else max(0, ts - 4) if when == "back" else None
        op = cmd.get("op")
        if op == "time":
            cmd["ts"] = ts
        elif cmd_ts is not None:
            cmd["ts"] = cmd_ts
        if type(cmd.get("expire_ts")) is int:
            cmd["expire_ts"] += ts - 2  # may already be past: invalid_expiry
        if cmd.get("type") in ("stop", "stop_limit") and draw(st.integers(0, 3)):
            cmd["id"] = 1000 + len(out)  # mostly a fresh id: a waiting stop holds its id for long
        if op in ("cancel", "replace") and issued and draw(st.integers(0, 4)):
            cmd["instrument"], cmd["id"] = draw(st.sampled_from(issued))
        elif op == "new" and type(cmd.get("id")) is int and type(cmd.get("instrument")) is int:
            issued.append((cmd["instrument"], cmd["id"]))
        out.append(cmd)
    return out
