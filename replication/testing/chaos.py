"""``matchcore chaos``: SIGKILL and switch over a real group, cycle after cycle, then prove nothing was lost.

For: the process-level twin of ``replication.testing.sim``. It starts a primary, a
standby and a witness as real processes on loopback (``harness.Group``), runs
pipelined client load through ``replication.Client``, and in every cycle,
at a random moment with requests in flight, SIGKILLs the primary (most
cycles) or the standby, or asks for a planned switchover; a killed node is
restarted as a standby and the cycle ends once the group is redundant again
(one primary, the other node joined and level with it). At the end it
checks what the client was told against the nodes' journals: acknowledged
requests missing from the surviving history (``lost``), requests executed
twice (``duplicates``), journals disagreeing at a seq both hold
(``divergences``), two leaders answering for one epoch (``split_brain``),
and reply events against a local replay; plus ``max_failover_ms``, from the
SIGKILL of a primary to the first reply the client got from its successor.

Not for: fault schedules finer than a process kill (the simulator does
those in virtual time), or benchmarking. Every process and the temp
directory are removed on exit, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import time
from typing import Any

from ..protocol import wire

CLIENT_ID = 77
WINDOW = 16
STALL = 30.0  # seconds without progress before a cycle counts as stuck (then the run stops and says so)


def order(rng: random.Random, i: int) -> dict[str, Any]:
    """One order of the flow: crossing limits on two instruments, with some cancels."""
    if i % 7 == 6:
        return {"op": "cancel", "instrument": 1, "id": i - 3}
    return {
        "op": "new",
        "instrument": 1 + i % 2,
        "id": i,
        "side": rng.choice(("buy", "sell")),
        "price": rng.randint(995, 1005),
        "qty": rng.randint(1, 9),
        "account": 1 + i % 4,
    }


class _Load:
    """Pipelined load through one ``Client``; remembers every OK reply."""

    def __init__(self, client: Any, rng: random.Random) -> None:
        self.c = client
        self.rng = rng
        self.next = 0
        self.acked: dict[int, wire.Reply] = {}
        self.leaders: dict[int, set[str]] = {}  # epoch -> nodes that answered OK in it (as leader)

    def pump(self, until_acked: int, on_reply: Any = None, deadline: float = 0.0) -> None:
        """Keep WINDOW requests in flight until ``until_acked`` replies are in."""
        deadline = deadline or time.monotonic() + STALL
        while len(self.acked) < until_acked:
            if time.monotonic() > deadline:
                raise TimeoutError(f"load stalled at {len(self.acked)}/{until_acked} acknowledged")
            while self.c.in_flight < WINDOW:
                self.c.send(order(self.rng, self.next))
                self.next += 1
            for r in self.c.poll_replies(0.002):
                if r.status == wire.OK:
                    self.acked[r.request_id] = r
                    if r.leader:
                        self.leaders.setdefault(r.epoch, set()).add(r.leader)
                    if on_reply is not None:
                        on_reply(r)

    def drain(self) -> None:
        deadline = time.monotonic() + STALL
        while self.c.in_flight:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.c.in_flight} requests never answered")
            for r in self.c.poll_replies(0.005):
                if r.status == wire.OK:
                    self.acked[r.request_id] = r
                    if r.leader:
                        self.leaders.setdefault(r.epoch, set()).add(r.leader)


def _level(st: dict[str, Any], names: list[str]) -> bool:
    """Redundant again: one primary; every other node joined, level with it and in its
    in-sync set as the witness confirmed it. Before that confirmation a sync primary runs
    solo, and killing it is a double fault: the witness rightly refuses to promote a
    standby that may lack acknowledged orders, and the group waits for the old primary.
    """
    roles = [st[n].get("role") for n in names]
    if roles.count("primary") != 1:
        return False
    p = names[roles.index("primary")]
    isr = st[p].get("isr") or []
    return all(
        n == p or (st[n].get("joined") and st[n].get("last_seq") == st[p].get("last_seq") and n in isr)
        for n in names
    )


def run_chaos(
    cycles: int, seed: int = 1, per_cycle: int = 30, engine: str = "auto", progress: Any = None
) -> dict[str, Any]:
    """Run ``cycles`` kill/switchover cycles; return the figures (see the module docstring)."""
    from .harness import Group

    rng = random.Random(seed)
    names = ["a", "b"]
    res: dict[str, Any] = {
        "cycles": 0,
        "seed": seed,
        "kills_primary": 0,
        "kills_standby": 0,
        "switchovers": 0,
        "stalled": "",
    }
    failovers: list[float] = []
    t_start = time.monotonic()
    with Group(tuple(names), "sync", engine) as g:
        g.start_all()
        g.wait_ready()
        c = g.client(CLIENT_ID, timeout=STALL, retry_timeout=0.02)
        load = _Load(c, rng)
        try:
            try:
                for cycle in range(cycles):
                    st = g.wait_for(lambda s: _level(s, names), timeout=STALL, what="a level group")
                    primary = next(n for n in names if st[n].get("role") == "primary")
                    standby = next(n for n in names if n != primary)
                    action = rng.choices(("kill_primary", "kill_standby", "switchover"), (7, 2, 1))[0]
                    load.pump(len(load.acked) + rng.randint(1, per_cycle))  # the kill lands mid-flow
                    if action == "switchover":
                        from ..client.admin import ask

                        ask(g.endpoints[primary], wire.Switchover(standby), 2.0)
                        res["switchovers"] += 1
                        load.pump(len(load.acked) + per_cycle)
                        g.wait_for(
                            lambda s, t=standby: s[t].get("role") == "primary",
                            timeout=STALL,
                            what="switchover",
                        )
                    else:
                        victim = primary if action == "kill_primary" else standby
                        killed_at = time.monotonic()
                        g.kill(victim, signal.SIGKILL)
                        res["kills_primary" if victim == primary else "kills_standby"] += 1
                        first: list[float] = []

                        def seen(
                            r: wire.Reply, v: str = victim, t0: float = killed_at, f: list = first
                        ) -> None:
                            if not f and r.leader and r.leader != v:
                                f.append(time.monotonic() - t0)

                        load.pump(len(load.acked) + per_cycle, seen if victim == primary else None)
                        if victim == primary and first:
                            failovers.append(first[0] * 1000.0)
                        g.start(victim, "standby")
                    res["cycles"] = cycle + 1
                    if progress is not None:
                        progress(res["cycles"], len(load.acked))
                load.drain()
                g.wait_for(lambda s: _level(s, names), timeout=STALL, what="a level group at the end")
            except TimeoutError as exc:
                # A stuck group is a finding: stop cycling, still check what was acknowledged.
                res["stalled"] = f"cycle {res['cycles'] + 1}: {str(exc).splitlines()[0]}"
                try:
                    res["stalled_status"] = {
                        n: {k: s.get(k) for k in ("role", "epoch", "last_seq", "leader", "joined")}
                        for n, s in g.status(0.5).items()
                    }
                except Exception as why:  # noqa: BLE001 - best effort: the report matters more
                    res["stalled_status"] = repr(why)
                res["stalled_logs"] = g.tail_logs(60)  # the nodes' own account of the stall
        finally:
            c.close()
            for n in names + ["witness"]:
                g.kill(n, signal.SIGTERM)
        journals = {n: g.journal_entries(n) for n in names}
    res.update(check(load, journals, engine))
    res["acked"] = len(load.acked)
    res["max_failover_ms"] = round(max(failovers), 1) if failovers else None
    res["median_failover_ms"] = round(sorted(failovers)[len(failovers) // 2], 1) if failovers else None
    res["split_brain"] += sum(1 for leaders in load.leaders.values() if len(leaders) > 1)
    res["seconds"] = round(time.monotonic() - t_start, 1)
    return res


def check(load: _Load, journals: dict[str, list[wire.Entry]], engine: str = "auto") -> dict[str, Any]:
    """Client records against the journals: lost, duplicates, divergences, split brain, wrong replies."""
    from ..protocol.engines import engine_factory
    from ..protocol.replica import Replica

    longest = max(journals, key=lambda n: (journals[n][-1].seq if journals[n] else 0, n))
    history = journals[longest]
    keys = [(e.client_id, e.request_id) for e in history if e.client_id]
    seq_of = {k: e.seq for k, e in zip(keys, (e for e in history if e.client_id), strict=True)}
    lost = sum(1 for rid in load.acked if (CLIENT_ID, rid) not in seq_of)
    duplicates = len(keys) - len(set(keys))
    divergences = 0
    by_seq = {n: {e.seq: e for e in es} for n, es in journals.items()}
    split = 0
    for n, es in by_seq.items():
        for s, e in es.items():
            mine = by_seq[longest].get(s)
            if mine is not None and n != longest:
                if mine.digest != e.digest:
                    divergences += 1
                elif mine.epoch == e.epoch and mine != e:
                    split += 1  # same (epoch, seq), different entry: two primaries in one epoch
    # Reply events against a replay of the surviving history (only if it starts at seq 1).
    wrong = 0
    if history and history[0].seq == 1:
        r = Replica(engine_factory(engine))
        events_at = {}
        for e in history:
            events_at[e.seq], _ = r.execute(e.epoch, e.seq, e.client_id, e.request_id, e.command)
        for rid, reply in load.acked.items():
            s = seq_of.get((CLIENT_ID, rid))
            if s is not None and (reply.seq != s or reply.events != events_at[s]):
                wrong += 1
    return {
        "lost": lost,
        "duplicates": duplicates,
        "divergences": divergences,
        "split_brain": split,
        "wrong_replies": wrong,
        "history": len(history),
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cycles", type=int, default=20, help="kill/switchover cycles")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--per-cycle", type=int, default=30, help="orders acknowledged around each fault")
    p.add_argument("--engine", choices=("auto", "native", "reference"), default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress line")


def run(args: argparse.Namespace) -> int:
    """The ``matchcore chaos`` command: exit 0 only if lost, duplicates, divergences and split brain are 0."""
    import logging

    logging.disable(logging.CRITICAL)

    def progress(done: int, acked: int) -> None:
        if not args.quiet and (done % 10 == 0 or done == args.cycles):
            print(f"  cycle {done}/{args.cycles}  acked {acked}", file=sys.stderr, flush=True)

    res = run_chaos(args.cycles, args.seed, args.per_cycle, args.engine, progress)
    good = not (
        res["lost"] or res["duplicates"] or res["divergences"] or res["split_brain"] or res["wrong_replies"]
    )
    if args.json:
        print(json.dumps(res, sort_keys=True))
    else:
        for k in (
            "cycles",
            "kills_primary",
            "kills_standby",
            "switchovers",
            "acked",
            "lost",
            "duplicates",
            "divergences",
            "split_brain",
            "wrong_replies",
            "max_failover_ms",
            "median_failover_ms",
            "seconds",
            "stalled",
        ):
            print(f"{k:<20}{res[k]}")
        if res["stalled"]:
            print(f"stalled_status      {json.dumps(res.get('stalled_status'), sort_keys=True)}")
            print(res.get("stalled_logs", ""))
        print("FAILED" if not good else "STALLED (safety held)" if res["stalled"] else "OK")
    return 0 if good and not res["stalled"] else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m replication.testing.chaos", description=__doc__.split("\n\n")[0]
    )
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
