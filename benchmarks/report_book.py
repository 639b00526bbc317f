"""What the execution-report book costs per order on the primary's apply path.

For: orders per second through ``Replica.execute_batch`` (the sync primary's
path: engine, dedupe table, report book) with the book off (a no-op stand-in),
the plain-Python book (``reports.ReportBookPy``) and the C one
(``replication.native._reports``, ``reports.ReportBook`` when built); rounds
interleaved so that machine noise hits every variant alike, medians reported,
and the book's cost per order (the difference of the inverse rates against
"off"; and, less noisy, the CPU time spent inside the book's ``absorb_batch``). The workload: ``--orders`` GTC limit orders on one instrument, random
side, price in a narrow band (most of them cross and trade: accept, trade to
both sides), from ``--clients`` clients, in batches of ``--batch``.

Run: ``python -m benchmarks.report_book [--orders N] [--rounds R] [--json]``.
Not for: end-to-end throughput over sockets (``benchmarks.replication``), or
``make test``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time

import numpy as np

from matching.codes import COMMAND_DTYPE
from matching.commands import command_record, new_order_dict
from replication.protocol import reports
from replication.protocol.replica import Replica


class _NoBook:
    """The book left out: takes every entry and keeps nothing."""

    def absorb(self, *args: object) -> None:
        pass

    def absorb_batch(self, *args: object) -> None:
        pass


class _Timed:
    """A book, and the CPU time spent in its ``absorb_batch`` (the book's own cost, measured inside)."""

    def __init__(self, book: object) -> None:
        self.book, self.cpu = book, 0.0

    def absorb_batch(self, *args: object) -> None:
        start = time.process_time()
        self.book.absorb_batch(*args)  # type: ignore[attr-defined]
        self.cpu += time.process_time() - start


def workload(orders: int, clients: int, seed: int = 1) -> tuple[bytes, list[int]]:
    """``orders`` crossing limit orders (56-byte commands back to back) and each one's client id."""
    rnd = random.Random(seed)
    rows = [
        tuple(
            command_record(
                new_order_dict(
                    1,
                    i + 1,
                    rnd.choice(["buy", "sell"]),
                    price=rnd.randint(95, 105),
                    qty=rnd.randint(1, 10),
                    account=1,
                )
            )
        )
        for i in range(orders)
    ]
    return np.array(rows, dtype=COMMAND_DTYPE).tobytes(), [1 + rnd.randrange(clients) for _ in range(orders)]


def one_run(variant: str, commands: bytes, cids: list[int], batch: int) -> tuple[float, float, float]:
    """Orders per second through ``execute_batch`` with the book ``variant``: by the wall clock,
    and by this process's CPU time (less disturbed by the other processes of a shared machine);
    and the book's CPU time per order, measured inside its ``absorb_batch`` (us)."""
    replica = Replica()
    inner = {"off": _NoBook(), "python": reports.ReportBookPy()}.get(variant, replica.reports)
    book = replica.reports = _Timed(inner)  # type: ignore[assignment]
    n = len(cids)
    start, cpu = time.perf_counter(), time.process_time()
    for b in range(0, n, batch):
        k = min(batch, n - b)
        replica.execute_batch(
            1, cids[b : b + k], list(range(b + 1, b + k + 1)), commands[b * 80 : (b + k) * 80]
        )
    return n / (time.perf_counter() - start), n / (time.process_time() - cpu), 1e6 * book.cpu / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report_book", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-python", action="store_true", help="leave the plain-Python book out (slow)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    commands, cids = workload(args.orders, args.clients)
    variants = ["off", "native"] if reports.NATIVE else ["off"]
    if not args.skip_python:
        variants.append("python")
    wall: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    inside: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for v in variants:
            w, c, i = one_run(v, commands, cids, args.batch)
            wall[v].append(w)
            cpu[v].append(c)
            inside[v].append(i)
    result: dict = {
        "orders": args.orders,
        "clients": args.clients,
        "batch": args.batch,
        "rounds": args.rounds,
    }
    for clock, rates in (("wall", wall), ("cpu", cpu)):
        medians = {v: statistics.median(r) for v, r in rates.items()}
        result[clock] = {
            "orders_per_s": {v: round(m) for v, m in medians.items()},
            "book_us_per_order": {
                v: round(1e6 * (1 / m - 1 / medians["off"]), 3) for v, m in medians.items() if v != "off"
            },
        }
    result["inside_us_per_order"] = {
        v: round(statistics.median(r), 3) for v, r in inside.items() if v != "off"
    }
    if args.json:
        print(json.dumps(result))
        return 0
    for clock in ("wall", "cpu"):
        r = result[clock]
        for v in variants:
            extra = f"  (book: {r['book_us_per_order'][v]:+.3f} us/order)" if v != "off" else ""
            print(
                f"{clock:>4} {v:>7}: {r['orders_per_s'][v] / 1e3:8.0f} k orders/s, median of {args.rounds}{extra}"
            )
    for v, us in result["inside_us_per_order"].items():
        print(f"inside absorb_batch, {v}: {us:.3f} us/order (CPU, median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
