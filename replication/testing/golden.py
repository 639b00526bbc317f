"""Golden traces: a digest of everything a simulated schedule shows, to prove a refactoring changed nothing.

For: recording, for a fixed set of seeds in each of four configurations
(sync and async, faults overlapping or one at a time), a digest of what an
observer outside the machines can see — every frame each participant sent
(time, source, destination, bytes, including the stream it published), each
node's journal at the end (base, entries, snapshot) and replica digest, the
witness's durable state, the fault log and the checker's report — and
comparing a run against the recorded file. A restructuring of the protocol
code that keeps every trace is, for these schedules, the same protocol.

Not for: judging correctness (``sim.check`` does; a golden trace records a
schedule's result whether it broke a rule or not) or timing.

Run: ``python -m replication.testing.golden --check`` (all of them, ``make golden``)
or ``--record`` after a change meant to change behaviour (say so in the commit).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

CONFIGS = ("sync-off", "sync-on", "async-off", "async-on")  # mode - overlap
SEEDS = range(1, 2001)
DEFAULT_FILE = Path(__file__).resolve().parents[2] / "tests" / "golden" / "traces.json"


class Trace:
    """Frames as a simulator emits them, folded into one running hash per source."""

    def __init__(self) -> None:
        self._by_src: dict[str, Any] = {}

    def frame(self, now: float, src: Any, dest: Any, frame: bytes) -> None:
        key = src if isinstance(src, str) else src.decode()
        h = self._by_src.get(key)
        if h is None:
            h = self._by_src[key] = hashlib.blake2b(digest_size=16)
        h.update(f"{now!r}|{dest!r}|{len(frame)}|".encode())
        h.update(frame)

    def digests(self) -> dict[str, str]:
        return {k: self._by_src[k].hexdigest() for k in sorted(self._by_src)}


def _digest(obj: Any) -> str:
    return hashlib.blake2b(json.dumps(obj, sort_keys=True).encode(), digest_size=8).hexdigest()


def _journal_digest(sim: Any) -> str:
    h = hashlib.blake2b(digest_size=8)
    for name in sim.names:
        node = sim.nodes[name]
        j = node.journal
        h.update(f"{name}|{j.base_seq}|{j.last_seq}|".encode())
        for e in j.read(j.base_seq + 1):
            h.update(e.pack())
        snap = j.load_snapshot()
        if snap is not None:
            h.update(f"snap|{snap[0]}|{snap[1]}|".encode())
            h.update(snap[2])
        m = node.machine
        if m is not None:
            h.update(f"replica|{m.replica.seq}|{m.replica.digest}|{m.epoch}|{m.role}".encode())
    return h.hexdigest()


def trace_schedule(seed: int, config: str) -> dict[str, str]:
    """Run seed ``seed`` in ``config`` and return its trace: four short digests."""
    from dataclasses import replace

    from .sim import Sim, check_sim, random_schedule

    mode, overlap = config.split("-")
    sched = replace(random_schedule(seed), mode=mode, engine="native", overlap=overlap == "on")
    sim = Sim(sched)
    sim.trace = Trace()
    sim.run()
    report = check_sim(sim)
    return {
        "frames": _digest(sim.trace.digests()),
        "journals": _journal_digest(sim),
        "witness": _digest(sim.witness_saved),
        "faults": _digest(sim.fault_log),
        "report": _digest(report.as_dict()),
    }


def _one(key: tuple[str, int]) -> tuple[str, dict[str, str]]:
    config, seed = key
    return f"{config}/{seed}", trace_schedule(seed, config)


def run_traces(keys: list[tuple[str, int]], jobs: int = 1) -> dict[str, dict[str, str]]:
    """The traces of ``(config, seed)`` pairs, on ``jobs`` processes."""
    import logging

    logging.disable(logging.CRITICAL)
    if jobs > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            return dict(pool.imap(_one, keys, chunksize=8))
    return dict(_one(k) for k in keys)


def all_keys() -> list[tuple[str, int]]:
    return [(c, s) for c in CONFIGS for s in SEEDS]


def load(path: Path = DEFAULT_FILE) -> dict[str, dict[str, str]]:
    return json.loads(path.read_text())


def compare(expected: dict[str, dict[str, str]], got: dict[str, dict[str, str]]) -> list[str]:
    """One line per trace that differs, naming the parts that differ."""
    out = []
    for key, trace in got.items():
        want = expected.get(key)
        if want is None:
            out.append(f"{key}: not recorded")
        elif want != trace:
            parts = ", ".join(p for p in trace if trace[p] != want.get(p))
            out.append(f"{key}: {parts} differ")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m replication.testing.golden", description=__doc__.split("\n\n")[0]
    )
    act = ap.add_mutually_exclusive_group(required=True)
    act.add_argument("--check", action="store_true", help="run every recorded trace and compare")
    act.add_argument("--record", action="store_true", help="run every trace and write the file")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--file", type=Path, default=DEFAULT_FILE)
    args = ap.parse_args(argv)
    got = run_traces(all_keys(), args.jobs)
    if args.record:
        args.file.parent.mkdir(parents=True, exist_ok=True)
        args.file.write_text(json.dumps(got, indent=0, sort_keys=True) + "\n")
        print(f"recorded {len(got)} traces in {args.file}")
        return 0
    diff = compare(load(args.file), got)
    for line in diff[:50]:
        print(line)
    print(f"{len(got) - len(diff)} of {len(got)} traces unchanged")
    return 1 if diff else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
