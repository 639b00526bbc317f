"""Long differential run: the Cython engine against the reference on random commands.

    python -m benchmarks.differential --commands 1000000 --seed 1
    python -m benchmarks.differential --commands 1000000 --seed 1 --mix stops
    python -m benchmarks.differential --commands 1000000 --mix stops --throughput

Generates a seeded stream of commands (several instruments and accounts,
every order type, time in force, self-trade mode, post-only and iceberg,
cancels and replaces of live and dead ids, some malformed commands, prices
clustered so books cross often), applies each command to both engines and
compares the events of every command, the chained digest after every
command and the full book digest every ``--check-every`` commands.
``--mix stops`` makes 20 % of new orders stops or stop-limits (their stop
prices next to the book, so they trigger and cascade), another tenth
DAY or GTD, stamps every command with a rising ``ts`` so GTD orders fall
due, and adds ``time`` and ``end_of_day`` commands. Prints
and (with ``--json``) emits the count of mismatches; the goal is 0.

``--throughput`` compares nothing: it times the Cython batch API on the
same stream (one ``apply_batch`` of all the commands on a fresh engine,
``--repeat`` times; the median and best wall and process-CPU rates).

This is a test harness that is too long for ``make test``; the bounded
version of the same comparison is ``tests/differential``.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from statistics import median

import matching
from matching import ReferenceEngine, command_record

MIXES = ("standard", "stops")


class CommandGenerator:
    """A seeded stream of command dicts that keeps books busy and crossing."""

    def __init__(self, seed: int, instruments: int = 3, accounts: int = 4, mix: str = "standard") -> None:
        if mix not in MIXES:
            raise ValueError(f"mix must be one of {MIXES}, not {mix!r}")
        self.stops = mix == "stops"
        self.ts = 0
        self.rng = random.Random(seed)
        self.instruments = instruments
        self.accounts = accounts
        self.next_id = 1
        self.issued: list[tuple[int, int]] = []  # (instrument, id) of every order sent, live or not

    def _known(self) -> tuple[int, int]:
        if not self.issued or self.rng.random() < 0.05:
            return self.rng.randrange(self.instruments), self.rng.randrange(1, self.next_id + 3)
        # Recent ids are more often live; reach back further now and then.
        depth = min(len(self.issued), 200 if self.rng.random() < 0.9 else len(self.issued))
        return self.issued[-1 - self.rng.randrange(depth)]

    def _price(self, side: str) -> int:
        """Buys mostly below 1000 and sells above, with about a third crossing."""
        away = int(abs(self.rng.gauss(0, 6)))
        if self.rng.random() < 0.3:
            away = -self.rng.randrange(1, 6)
        return 1000 - away if side == "buy" else 1000 + away

    def __next__(self) -> dict:
        if not self.stops:
            return self._next()
        rng = self.rng
        self.ts += rng.choice((0, 1, 1, 2, 5))
        r = rng.random()
        if r < 0.01:
            return {"op": "time", "ts": self.ts}
        if r < 0.0105:
            return {"op": "end_of_day", "instrument": rng.randrange(self.instruments), "ts": self.ts}
        cmd = self._next()
        if cmd["op"] == "new" and "price" in cmd and not cmd.get("post_only") and cmd.get("tif") != "FOK":
            r = rng.random()
            if r < 0.2:  # a stop just beyond the touch: a print that way reaches it
                cmd["type"] = rng.choice(["stop", "stop_limit"])
                away = rng.randrange(0, 4)
                cmd["stop_price"] = 1000 + away if cmd["side"] == "buy" else 1000 - away
                if cmd["type"] == "stop":
                    del cmd["price"]
                else:
                    cmd["price"] = cmd["stop_price"] + (2 if cmd["side"] == "buy" else -2)
                if rng.random() < 0.3:
                    cmd["tif"], cmd["expire_ts"] = "GTD", self.ts + rng.randrange(1, 400)
            elif r < 0.3:
                cmd["tif"] = rng.choice(["DAY", "GTD"])
                if cmd["tif"] == "GTD":
                    cmd["expire_ts"] = self.ts + rng.randrange(1, 400)
        elif cmd["op"] == "replace" and rng.random() < 0.2:
            cmd["stop_price"] = 1000 + rng.randrange(-4, 5)
        cmd["ts"] = self.ts
        return cmd

    def _next(self) -> dict:
        r = self.rng.random()
        rng = self.rng
        if r < 0.60:
            instrument = rng.randrange(self.instruments)
            oid = self.next_id if rng.random() > 0.02 else rng.randrange(1, self.next_id + 1)
            self.next_id += 1
            self.issued.append((instrument, oid))
            qty = rng.choice([1, 2, 5, 10, 20, 50, 100])
            cmd = {
                "op": "new",
                "instrument": instrument,
                "id": oid,
                "side": rng.choice(["buy", "sell"]),
                "qty": qty,
                "account": rng.randrange(self.accounts),
                "stp": rng.choice(["none", "none", "cancel_taker", "cancel_maker", "cancel_both"]),
            }
            if rng.random() < 0.08:
                cmd["type"] = "market"
                cmd["tif"] = rng.choice(["IOC", "FOK", "GTC"])
            else:
                cmd["price"] = self._price(cmd["side"])
                cmd["tif"] = rng.choices(["GTC", "IOC", "FOK"], [8, 1, 1])[0]
                if rng.random() < 0.1:
                    cmd["post_only"] = True
                if rng.random() < 0.1:
                    cmd["display_qty"] = rng.randrange(1, qty + 1)
            if rng.random() < 0.01:  # a malformed order now and then
                cmd[rng.choice(["qty", "price", "side", "tif", "display_qty"])] = rng.choice(
                    [0, -1, "x", 1 << 70]
                )
            return cmd
        instrument, oid = self._known()
        if r < 0.88:
            return {"op": "cancel", "instrument": instrument, "id": oid}
        if r < 0.999:
            cmd = {"op": "replace", "instrument": instrument, "id": oid}
            if rng.random() < 0.6:
                cmd["price"] = self._price(rng.choice(["buy", "sell"]))
            if rng.random() < 0.7:
                cmd["qty"] = rng.choice([0, 1, 3, 10, 40, 120])
            return cmd
        cmd = {"op": "mass_cancel"}
        if rng.random() < 0.7:
            cmd["account"] = rng.randrange(self.accounts)
        if rng.random() < 0.5:
            cmd["instrument"] = rng.randrange(self.instruments)
        return cmd

    def __iter__(self):
        return self


def run(
    commands: int, seed: int, check_every: int = 1000, stop_after: int = 10, mix: str = "standard"
) -> dict:
    """Apply ``commands`` random commands to both engines; return the tally of mismatches."""
    if matching.Engine is None:
        raise SystemExit("the Cython engine is not built: run `make build` first")
    fast, ref = matching.Engine(), ReferenceEngine()
    gen = CommandGenerator(seed, mix=mix)
    kinds: dict[str, int] = {}
    mismatches: list[dict] = []
    events = 0
    started = time.perf_counter()
    n = 0
    try:
        for n in range(1, commands + 1):
            rec = command_record(next(gen))
            got, want = fast.apply_record(tuple(rec)), ref.apply_record(rec)
            events += len(want)
            for ev in want:
                name = type(ev).__name__.lower()
                kinds[name] = kinds.get(name, 0) + 1
            problem = None
            if got != want:
                problem = "events"
            elif fast.digest != ref.digest:
                problem = "digest"
            elif n % check_every == 0 and fast.book_digest() != ref.book_digest():
                problem = "book_digest"
            if problem:
                mismatches.append(
                    {
                        "command": n,
                        "kind": problem,
                        "cmd": dict(rec._asdict()),
                        "cython": [tuple(e) for e in got],
                        "reference": [tuple(e) for e in want],
                    }
                )
                if len(mismatches) >= stop_after:
                    break
                # Resynchronise so one bug does not hide the next.
                fast = matching.Engine.restore(fast.snapshot()) if problem == "digest" else fast
    except KeyboardInterrupt:
        pass
    fast._check()
    ref._check()
    return {
        "commands": n,
        "seed": seed,
        "mix": mix,
        "events": events,
        "event_kinds": dict(sorted(kinds.items())),
        "mismatches": len(mismatches),
        "first_mismatches": mismatches[:3],
        "final_book_digest_equal": fast.book_digest() == ref.book_digest(),
        "seconds": round(time.perf_counter() - started, 1),
    }


def throughput(commands: int, seed: int, mix: str, repeat: int = 5) -> dict:
    """Batch throughput of the Cython engine on the generated stream (nothing compared)."""
    if matching.Engine is None:
        raise SystemExit("the Cython engine is not built: run `make build` first")
    gen = CommandGenerator(seed, instruments=1, mix=mix)
    cmds = matching.command_array([next(gen) for _ in range(commands)])
    wall, cpu = [], []
    for _ in range(repeat):
        engine = matching.Engine()
        gc.collect()
        gc.disable()
        t0, c0 = time.perf_counter_ns(), time.process_time_ns()
        engine.apply_batch(cmds)
        wall.append(time.perf_counter_ns() - t0)
        cpu.append(time.process_time_ns() - c0)
        gc.enable()

    def rate(ns: int) -> float:
        return round(commands / (ns / 1e9))

    return {
        "commands": commands,
        "mix": mix,
        "repeat": repeat,
        "wall_cmd_per_s": {"median": rate(median(wall)), "best": rate(min(wall))},
        "cpu_cmd_per_s": {"median": rate(median(cpu)), "best": rate(min(cpu))},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--check-every", type=int, default=1000, help="book digest comparison period")
    parser.add_argument("--mix", choices=MIXES, default="standard", help="stops: 20%% stops, DAY/GTD, time")
    parser.add_argument("--throughput", action="store_true", help="time apply_batch on the stream instead")
    parser.add_argument("--repeat", type=int, default=5, help="--throughput passes (default 5)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.throughput:
        out = throughput(args.commands, args.seed, args.mix, args.repeat)
        print(
            json.dumps(out)
            if args.json
            else f"{args.mix} mix, {out['commands']:,} commands: "
            f"batch {out['wall_cmd_per_s']['median']:,} cmd/s wall (median; best {out['wall_cmd_per_s']['best']:,}), "
            f"{out['cpu_cmd_per_s']['median']:,} cmd/s CPU (median; best {out['cpu_cmd_per_s']['best']:,})"
        )
        return 0
    result = run(args.commands, args.seed, args.check_every, mix=args.mix)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['commands']} commands (seed {args.seed}), {result['events']} events, "
            f"{result['mismatches']} mismatches, final book digests equal: {result['final_book_digest_equal']}, "
            f"{result['seconds']} s; events by kind: {result['event_kinds']}"
        )
        for m in result["first_mismatches"]:
            print(json.dumps(m), file=sys.stderr)
    return 0 if result["mismatches"] == 0 and result["final_book_digest_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
