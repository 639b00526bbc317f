"""Catch-up harness: how fast a late-joining standby reaches a primary that holds N journal entries.

Set-up, per variant, on loopback with real processes (``replication.testing.harness.Group``):

1. The primary's journal is written before it starts: ``--entries`` commands
   of the standard mix (:mod:`benchmarks.workload`) applied one by one to a
   ``replication.protocol.replica.Replica`` and appended, as ``wire.Entry`` records
   with the digest after each, to a ``replication.storage.journal.FileJournal`` —
   the same classes and the same bytes the primary's sequencer produces,
   only without a client and sockets in front (loading a million entries
   through a client would take minutes and measure something else). A
   snapshot at the last entry lets the primary start without replaying them.
2. The witness and the primary start; the primary is promoted (epoch 2).
3. The primary is paused (SIGSTOP); the standby starts, with an empty
   journal, and answers a status request; the primary resumes (SIGCONT) and
   the clock starts, so interpreter start-up stays out of the figure. The
   standby is then polled with ``StatusRequest`` (what ``matchcore status``
   sends) every ``--poll-ms`` until it has joined, holds every entry and
   reports lag 0.

Variants (``--variants``): **journal** — ``catchup_snapshot_lag`` above N, so
the standby receives the entries themselves in refill chunks and applies each
(its own journal written as it goes); **snapshot** — ``catchup_snapshot_lag``
small, so it receives the primary's snapshot and then the (empty) tail.

Reported: entries per second from the primary's resumption to caught-up
(it includes the join: the standby re-sends its join every ``join_retry``),
the same from its first non-zero seq (the data phase alone), and the
seq-vs-time curve. The figures include the polling's own cost; the
resolution is about one poll interval. The snapshot path's time depends on
the size of the book (the standard mix keeps it small), not on N, so its
entries/s says how many entries a snapshot saved replaying.

Not a replication-latency or fail-over benchmark, and not a measure of the
standby's steady-state apply rate under a live primary.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

from . import common, groups

SUMMARY = "catch-up rate of a late-joining standby (journal refill and snapshot paths)"

FULL_ENTRIES = 1_000_000
QUICK_ENTRIES = 100_000
TARGET_RATE = 1_000_000  # entries/s
VARIANTS = ("journal", "snapshot")
CLIENT_ID = 9


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of this harness (besides the common ones)."""
    parser.add_argument(
        "--entries",
        type=int,
        default=None,
        metavar="N",
        help=f"journal entries the primary holds (default {FULL_ENTRIES:,}, quick {QUICK_ENTRIES:,};"
        " --commands too)",
    )
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated subset of journal,snapshot"
    )
    parser.add_argument("--poll-ms", type=float, default=5.0, help="status poll interval in ms (default 5)")
    parser.add_argument("--engine", choices=("auto", "native", "reference"), default="auto")


def write_journal(path: str, records: list[tuple], prog: Any = None) -> str:
    """The primary's journal: ``records`` as entries 1..N of epoch 1, then a snapshot; returns its digest.

    O(N): each command is applied once to a fresh ``Replica``, exactly as the
    sequencer does, and its entry carries the digest after it.
    """
    from replication.protocol import wire
    from replication.protocol.replica import Replica
    from replication.storage.journal import FileJournal

    j = FileJournal(path, "none")
    try:
        r = Replica()
        batch: list[wire.Entry] = []
        task = prog.add_task("writing the primary's journal", total=len(records)) if prog else None
        for seq, rec in enumerate(records, 1):
            cmd = wire.pack_command(rec)
            _, digest = r.execute(1, seq, CLIENT_ID, seq, cmd)
            batch.append(wire.Entry(1, seq, CLIENT_ID, seq, digest, cmd))
            if len(batch) == 8192:
                j.append(batch)
                batch = []
                if task is not None:
                    prog.advance(task, 8192)
        j.append(batch)
        j.save_snapshot(r.seq, 1, r.snapshot())
        j.save_meta({"epoch": 1, "history": [[1, 1]]})
        return f"{r.digest:016x}"
    finally:
        j.close()


def _status(g: Any, name: str, timeout: float) -> dict[str, Any] | None:
    from replication.client.admin import ask
    from replication.protocol import wire

    got = ask(g.cfg.nodes[name].endpoint, wire.StatusRequest(), timeout)
    if not isinstance(got, wire.Status):
        return None
    import json

    return json.loads(got.body)


def run_variant(variant: str, records: list[tuple], args: argparse.Namespace, prog: Any) -> dict[str, Any]:
    """One primary with ``len(records)`` entries, one standby started late; the catch-up timeline."""
    n = len(records)
    lag_key = n * 10 + 1 if variant == "journal" else 1_000
    # Roomy timeouts: a busy catch-up, or the primary paused while the standby starts, is not a death.
    extra = {"catchup_snapshot_lag": lag_key, "timeout_ms": 10_000}
    out: dict[str, Any] = {"variant": variant, "entries": n, "catchup_snapshot_lag": lag_key}
    with groups.group(("a", "b"), "sync", extra, args.engine) as g:
        t = time.perf_counter()
        out["primary_digest"] = write_journal(g.cfg.nodes["a"].journal, records, prog)
        out["journal_write_s"] = round(time.perf_counter() - t, 3)
        # The witness's record of that history: a led epoch 1 alone (a witness with no record
        # refuses a candidate for epoch 2, which says an epoch ran before it).
        from replication.storage.witness_state import save_witness_state

        save_witness_state(g.cfg.witness_state, {"epoch": 1, "primary": "a", "isr": [], "isr_proposal": 0})
        g.start("witness")
        g.start("a", "primary")
        deadline = time.monotonic() + 60
        while (_status(g, "a", 0.5) or {}).get("role") != "primary":
            if time.monotonic() > deadline:
                raise TimeoutError(f"primary did not start\n{g.tail_logs(8)}")
            time.sleep(0.02)
        target = (_status(g, "a", 0.5) or {}).get("last_seq", n)
        poll = args.poll_ms / 1000
        # The standby is started while the primary is paused, and the clock starts when
        # the primary resumes: interpreter start-up and socket set-up stay out of the figure.
        pa = g.procs["a"]
        pa.send_signal(signal.SIGSTOP)
        try:
            t_launch = time.monotonic()
            g.start("b", "standby")
            while _status(g, "b", 0.2) is None:
                if time.monotonic() > t_launch + 60:
                    raise TimeoutError(f"standby did not start\n{g.tail_logs(8)}")
                time.sleep(poll)
            t_up = time.monotonic()
        finally:
            pa.send_signal(signal.SIGCONT)
        t0 = time.monotonic()
        curve: list[tuple[float, int]] = [(0.0, 0)]
        t_data = t_done = None
        last: dict[str, Any] = {}
        deadline = t0 + 120 + n / 20_000
        while True:
            st = _status(g, "b", 0.5)
            now = time.monotonic()
            if st is not None:
                last = st
                curve.append((round((now - t0) * 1000, 3), int(st.get("last_seq", 0))))
                if t_data is None and st.get("last_seq", 0) > 0:
                    t_data = curve[-2][0] / 1000 + t0
                if st.get("joined") and st.get("last_seq", 0) >= target and st.get("lag", 1) == 0:
                    t_done = now
                    break
            if now > deadline:
                raise TimeoutError(
                    f"standby at {last.get('last_seq')}/{target} after {now - t0:.0f} s\n{g.tail_logs(8)}"
                )
            time.sleep(poll)
        primary = _status(g, "a", 0.5) or {}
    total_s = t_done - t0
    data_s = t_done - t_data if t_data is not None else None
    out.update(
        {
            "target_seq": target,
            "standby_up_s": round(t_up - t_launch, 4),
            "catchup_s": round(total_s, 4),
            "data_phase_s": None if data_s is None else round(data_s, 4),
            "rate": round(target / total_s, 1) if total_s > 0 else None,
            "rate_data_phase": round(target / data_s, 1) if data_s else None,
            "digest_equal": last.get("digest") == primary.get("digest"),
            "standby_counters": last.get("counters", {}),
            "primary_counters": primary.get("counters", {}),
            "curve_ms_seq": curve,
        }
    )
    return out


def print_result(result: dict[str, Any], machine: str) -> None:
    rows = []
    for name, v in result["variants"].items():
        if "error" in v:
            rows.append([name, "failed", v["error"][:80], "", "", "", ""])
            continue
        rows.append(
            [
                name,
                common.fmt_int(v["target_seq"]),
                f"{v['standby_up_s'] * 1000:,.0f} ms",
                f"{v['catchup_s'] * 1000:,.1f} ms",
                common.fmt_int(v["rate"]),
                common.fmt_int(v["rate_data_phase"]),
                "yes" if v["digest_equal"] else "NO",
            ]
        )
    common.print_table(
        f"standby catch-up ({machine})",
        [
            "path",
            "entries",
            "standby start",
            "resume -> caught up",
            "entries/s",
            "entries/s (data phase)",
            "digest equal",
        ],
        rows,
        note=f"status polled every {result['poll_ms']} ms (resolution); the standby starts while the primary is "
        "paused (SIGSTOP); entries/s = entries / (caught up - primary resumed); the data phase starts at the last "
        "poll before seq > 0; the snapshot path's cost grows with the book, not the entries",
    )
    groups.print_targets("catch-up target", result["targets"])


def plot(result: dict[str, Any], out_dir: str, machine: str) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    drawn = False
    for name, v in result["variants"].items():
        pts = v.get("curve_ms_seq")
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", markersize=3, label=name)
            drawn = True
    if not drawn:
        plt.close(fig)
        return []
    ax.set_xlabel("ms since the primary resumed (standby up and waiting)")
    ax.set_ylabel("standby last_seq")
    ax.set_title(f"Late-joining standby catch-up, {result['entries']:,} entries\n{machine}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(out_dir) / "catchup-curve.png"
    fig.savefig(path)
    plt.close(fig)
    return [str(path)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the harness with parsed arguments; print tables, write JSON (and PNG); return the result."""
    n = args.entries or args.commands or (QUICK_ENTRIES if args.quick else FULL_ENTRIES)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if set(variants) - set(VARIANTS):
        raise SystemExit(f"--variants: choose from {', '.join(VARIANTS)}")
    result = common.result_skeleton("catchup", args)
    result.update({"entries": n, "poll_ms": args.poll_ms, "variants": {}, "charts": []})
    machine = common.machine_line(result["machine"])
    Path(args.out).mkdir(parents=True, exist_ok=True)
    try:
        with groups.sigterm_interrupts(), common.progress() as prog:
            setup, ops = groups.mix_records(max(0, n - 2_000), args.seed)
            records = (setup + ops)[:n]
            for variant in variants:
                common.say(f"catchup: {variant} path, {n:,} entries")
                try:
                    result["variants"][variant] = run_variant(variant, records, args, prog)
                except (TimeoutError, RuntimeError) as exc:
                    result["variants"][variant] = {"variant": variant, "error": str(exc)[:3000]}
    except KeyboardInterrupt:
        result["interrupted"] = True
    rates = {k: v.get("rate") for k, v in result["variants"].items()}
    result["targets"] = [
        groups.target(f"{k} catch-up rate", r, TARGET_RATE, ">=", "entries/s") for k, r in rates.items()
    ]
    return common.finish("catchup", result, args, machine, print_result, plot)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.catchup [flags]``."""
    return common.harness_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
