"""How fast ``matching.BookFeed`` turns engine events into public market-data updates.

For: a rough events/s (and commands/s, updates/s) figure of the feed alone,
on the standard mix of :mod:`benchmarks.workload` (untimed setup, then the
timed commands), in process CPU seconds (the machine may be shared): the engine runs first, untimed; then the feed is timed on
its events, per command (``BookFeed.apply`` on prebuilt event lists, what a
node does per entry) and in batch (``BookFeed.apply_batch``, which also
decodes the event array). A ``LocalBook`` then applies every update, timed
too (what a subscriber pays).

Not for: ``make test`` or ``matchcore bench`` (not registered there), nor a
profile. Run: ``python -m benchmarks.book_feed [--commands N] [--instruments K]``.
"""

from __future__ import annotations

import argparse
import time

from matching import BookFeed, Engine, LocalBook, events_from_array

from .workload import command_array, generate


def _per_command(rows: list, events: list) -> list[list]:
    """Each command's events as a list (index = command)."""
    out: list[list] = [[] for _ in rows]
    for cmd, ev in events:
        out[cmd].append(ev)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=200_000, help="timed commands (default 200,000)")
    parser.add_argument("--instruments", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    w = generate(args.commands, instruments=args.instruments, seed=args.seed)
    setup, timed = command_array(w.setup), command_array(w.ops)
    engine = Engine()
    setup_events = engine.apply_batch(setup)
    events = engine.apply_batch(timed)
    rows = timed.tolist()
    per_command = _per_command(rows, zip(events["cmd"].tolist(), events_from_array(events), strict=True))

    feed = BookFeed()
    feed.apply_batch(setup, setup_events)
    t0 = time.process_time()
    updates = []
    for i, row in enumerate(rows):
        updates += feed.apply(i, row, per_command[i])
    per_call_s = time.process_time() - t0

    batch_feed = BookFeed()
    batch_feed.apply_batch(setup, setup_events)
    t0 = time.process_time()
    batch_updates = batch_feed.apply_batch(timed, events)
    batch_s = time.process_time() - t0
    assert batch_updates == updates, "batch and per-command feeds disagree"

    start = LocalBook()  # a subscriber from the end of the setup: the snapshot of a feed at that point
    replay = BookFeed()
    replay.apply_batch(setup, setup_events)
    for ins in range(1, args.instruments + 1):
        start.load(replay.snapshot(ins))
    t0 = time.process_time()
    for u in updates:
        start.apply(u)
    local_s = time.process_time() - t0
    assert start.checksum_failures == 0 and start.gaps == 0
    for ins in range(1, args.instruments + 1):
        assert start.book(ins) == engine.depth(ins) == feed.depth(ins)

    n_cmd, n_ev, n_up = len(rows), len(events), len(updates)
    print(
        f"workload: {n_cmd:,} commands, {n_ev:,} events, {n_up:,} updates, {args.instruments} instrument(s)"
    )
    print(f"{'path':<28}{'s':>8}{'commands/s':>14}{'events/s':>14}{'updates/s':>14}")
    for name, s in (
        ("BookFeed.apply (per cmd)", per_call_s),
        ("BookFeed.apply_batch", batch_s),
        ("LocalBook.apply", local_s),
    ):
        print(f"{name:<28}{s:>8.2f}{n_cmd / s:>14,.0f}{n_ev / s:>14,.0f}{n_up / s:>14,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
