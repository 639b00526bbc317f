"""Drivers that run the standard mix through each engine's per-call Python API.

A *driver* turns the generic operations of :mod:`benchmarks.workload` into a
list of ``(callable, args)`` pairs for one fresh engine, so every engine is
timed by the very same loop (``for fn, args in calls: fn(*args)``). Where an
engine has no direct equivalent of an operation, the driver adds the thinnest
possible Python wrapper, and the wrapper's cost is counted as that engine's:
that is what using it from Python costs.

Engines:

- ``matchcore`` per-call API (``Engine``) and the plain-Python reference
  (``ReferenceEngine``): direct calls to ``submit`` / ``cancel`` / ``replace``.
- ``lightmatchingengine`` (PyPI, pure Python): no IOC, no replace, and it
  numbers orders itself. IOC = ``add_order`` then ``cancel_order`` of any
  remainder; replace = ``cancel_order`` + ``add_order`` (always loses
  priority); its order ids are precomputed from its counter, so new orders
  and cancels are direct calls.
- ``liquibook`` (PyPI, SWIG bindings of the C++ book): one
  ``OrderBook`` per instrument with no listeners (no Python callbacks), IOC
  via its ``oc_immediate_or_cancel`` condition, replace via ``replace``
  (a quantity change also loses priority there). Orders are ``SimpleOrder``
  objects the driver must keep to cancel them later, so each command goes
  through a short wrapper.

Peers are optional: a peer that cannot be imported is reported as
``missing: <reason>``, never replaced by something else. Semantic
differences (priority on a quantity decrease, events returned) are listed in
each driver's ``notes``; the mix avoids everything else that differs
(no market orders, no FOK, no icebergs, no self-trade prevention).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from matching import codes

from .workload import CANCEL, NEW, call_args

Calls = list[tuple[Callable[..., Any], tuple]]


class Driver(ABC):
    """One engine under test. Subclasses fill in ``start`` and ``calls``.

    Attributes
    ----------
    name : str
        Label in tables, JSON and charts.
    missing : str or None
        Why the engine cannot run here (None when it can).
    notes : str
        How it is driven and what differs from matchcore's semantics.
    """

    name = "?"
    notes = ""

    def __init__(self) -> None:
        self.missing: str | None = None

    @abstractmethod
    def start(self) -> Any:
        """A fresh engine (state) to run one pass on."""

    @abstractmethod
    def calls(self, engine: Any, ops: list[tuple]) -> Calls:
        """The ``(fn, args)`` list that applies ``ops`` to ``engine``. Built untimed."""

    def setup(self, engine: Any, ops: list[tuple]) -> None:
        """Apply the untimed setup operations."""
        for fn, args in self.calls(engine, ops):
            fn(*args)

    def live_orders(self, engine: Any) -> int | None:
        """Resting orders now in the engine (a check that the driver drove it right), or None."""
        return None


class MatchcoreDriver(Driver):
    """``matching.Engine`` or ``matching.ReferenceEngine`` through ``submit / cancel / replace``."""

    def __init__(self, name: str, factory: Callable[[], Any] | None, missing: str | None = None) -> None:
        super().__init__()
        self.name = name
        self.factory = factory
        self.missing = missing if factory is None else None
        self.notes = "direct calls: submit(instrument, id, side, price, qty[, type, tif]), cancel, replace"

    def start(self) -> Any:
        assert self.factory is not None
        return self.factory()

    def calls(self, engine: Any, ops: list[tuple]) -> Calls:
        fns = (engine.submit, engine.cancel, engine.replace)
        return [(fns[k], a) for k, a in call_args(ops)]

    def setup(self, engine: Any, ops: list[tuple]) -> None:
        from .workload import command_array

        batch = getattr(engine, "apply_batch", None)
        if batch is not None and type(engine).__name__ != "ReferenceEngine":
            batch(command_array(ops))
        else:
            super().setup(engine, ops)

    def live_orders(self, engine: Any) -> int | None:
        return int(engine.live_orders)


class LightMatchingEngineDriver(Driver):
    """``lightmatchingengine.LightMatchingEngine`` (pure Python)."""

    name = "lightmatchingengine"
    notes = (
        "IOC = add_order + cancel_order of the remainder; replace = cancel_order + add_order "
        "(loses priority even on a quantity decrease); its own order ids precomputed"
    )

    def __init__(self) -> None:
        super().__init__()
        try:
            from lightmatchingengine.lightmatchingengine import LightMatchingEngine, Side
        except Exception as exc:  # any import failure means the peer is missing
            self.missing = f"{type(exc).__name__}: {exc}"
            return
        self._cls = LightMatchingEngine
        self._side = {codes.SIDE_BUY: Side.BUY, codes.SIDE_SELL: Side.SELL}

    def start(self) -> Any:
        engine = self._cls()
        engine._bench_next_id = 1  # our mirror of its order-id counter (advanced while building calls)
        engine._bench_ids = {}  # our order id -> its order id
        return engine

    def calls(self, engine: Any, ops: list[tuple]) -> Calls:
        add, cancel = engine.add_order, engine.cancel_order
        side_of = self._side
        ids: dict[int, int] = engine._bench_ids
        nxt = engine._bench_next_id

        def ioc(instmt: int, price: int, qty: int, side: int) -> None:
            order, _trades = add(instmt, price, qty, side)
            if order.leaves_qty:
                cancel(order.order_id, instmt)

        def replace(their_id: int, instmt: int, price: int, qty: int, side: int) -> None:
            cancel(their_id, instmt)
            add(instmt, price, qty, side)

        out: Calls = []
        for o in ops:
            kind, instrument, oid = o[0], o[1], o[2]
            if kind == NEW:
                if o[6]:
                    out.append((ioc, (instrument, o[4], o[5], side_of[o[3]])))
                else:
                    out.append((add, (instrument, o[4], o[5], side_of[o[3]])))
                    ids[oid] = nxt
                nxt += 1
            elif kind == CANCEL:
                out.append((cancel, (ids.pop(oid), instrument)))
            else:
                _, _, _, side, old_price, old_open, new_price, new_qty = o
                price = old_price if new_price is None else new_price
                qty = old_open if new_qty is None else new_qty
                out.append((replace, (ids[oid], instrument, price, qty, side_of[side])))
                ids[oid] = nxt
                nxt += 1
        engine._bench_next_id = nxt
        return out

    def live_orders(self, engine: Any) -> int | None:
        return sum(
            len(level)
            for book in engine.order_books.values()
            for side in (book.bids, book.asks)
            for level in side.values()
        )


class LiquibookDriver(Driver):
    """``liquibook`` SWIG bindings: ``liquibook_book_OrderBook`` of ``SimpleOrder``, no listeners."""

    name = "liquibook"
    notes = (
        "one OrderBook per instrument, no listeners; IOC via oc_immediate_or_cancel; replace via "
        "OrderBook.replace (a quantity change also loses priority); thin wrapper per command "
        "(SimpleOrder objects kept in a dict to cancel later)"
    )

    def __init__(self) -> None:
        super().__init__()
        try:
            import liquibook
        except Exception as exc:  # any import failure means the peer is missing
            self.missing = f"{type(exc).__name__}: {exc}"
            return
        self._lb = liquibook
        for attr in ("liquibook_book_OrderBook", "SimpleOrder", "oc_immediate_or_cancel"):
            if not hasattr(liquibook, attr):
                self.missing = f"liquibook {getattr(liquibook, '__version__', '')} has no {attr}"

    def start(self) -> Any:
        return {"books": {}, "orders": {}}

    def _book(self, state: dict, instrument: int) -> Any:
        book = state["books"].get(instrument)
        if book is None:
            book = state["books"][instrument] = self._lb.liquibook_book_OrderBook()
            book.set_symbol(str(instrument))
        return book

    def calls(self, engine: Any, ops: list[tuple]) -> Calls:
        lb = self._lb
        order_cls = lb.SimpleOrder
        ioc_flag = lb.oc_immediate_or_cancel
        orders: dict[int, Any] = engine["orders"]

        def new(oid: int, book: Any, is_buy: bool, price: int, qty: int) -> None:
            o = order_cls(is_buy, price, qty)
            book.add(o)
            orders[oid] = o

        def ioc(book: Any, is_buy: bool, price: int, qty: int) -> None:
            book.add(order_cls(is_buy, price, qty, 0, ioc_flag), ioc_flag)

        def cancel(oid: int, book: Any) -> None:
            book.cancel(orders.pop(oid))

        def replace(oid: int, book: Any, size_delta: int, new_price: int) -> None:
            o = orders[oid]
            book.replace(o, size_delta, new_price)
            if new_price:
                # The book finds an order by the price the order object reports: keep it in step.
                o.accept()
                o.replace(0, new_price)

        out: Calls = []
        for o in ops:
            kind, instrument, oid = o[0], o[1], o[2]
            book = self._book(engine, instrument)
            if kind == NEW:
                is_buy = o[3] == codes.SIDE_BUY
                if o[6]:
                    out.append((ioc, (book, is_buy, o[4], o[5])))
                else:
                    out.append((new, (oid, book, is_buy, o[4], o[5])))
            elif kind == CANCEL:
                out.append((cancel, (oid, book)))
            else:
                _, _, _, side, old_price, old_open, new_price, new_qty = o
                delta = 0 if new_qty is None else new_qty - old_open
                out.append((replace, (oid, book, delta, new_price or 0)))
        return out

    def live_orders(self, engine: Any) -> int | None:
        return sum(book.bids().size() + book.asks().size() for book in engine["books"].values())


def matchcore_drivers() -> tuple[MatchcoreDriver, MatchcoreDriver]:
    """The per-call drivers of the Cython engine and of the reference engine."""
    from matching.reference import ReferenceEngine

    missing = None
    try:
        from matching import Engine
    except ImportError:
        # A stale editable install can expose ``matching`` as a bare namespace package.
        try:
            from matching._engine import Engine
        except ImportError as exc:
            Engine, missing = None, f"matching.Engine is not built ({exc}); run `make build`"
    if Engine is None and missing is None:
        missing = "matching.Engine is not built (run `make build`)"
    return (
        MatchcoreDriver("matchcore per-call", Engine, missing),
        MatchcoreDriver("reference", ReferenceEngine),
    )


def peer_drivers() -> list[Driver]:
    """The other Python matching engines, each either runnable or ``missing`` with a reason."""
    return [LightMatchingEngineDriver(), LiquibookDriver()]
