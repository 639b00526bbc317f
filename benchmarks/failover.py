"""Fail-over harness: how long clients wait when the primary dies, hangs, or hands over.

One group on loopback (primary, standby, witness; real processes started by
:class:`replication.testing.harness.Group`, ``sync`` mode, the group file's default
failure-detector settings unless ``--heartbeat-ms/--timeout-ms/--suspect-ms``
say otherwise) and one :class:`replication.Client` in this process that keeps
``--window`` orders in flight all the time. Rounds go round-robin over three
kinds, so that load from elsewhere on the machine hits them alike:

- **sigkill**: SIGKILL the primary. Found through the connection drop
  (``suspect_ms``) and heartbeats; the witness grants the standby its promotion.
- **sigstop**: SIGSTOP the primary (a hung process: its sockets stay open, so
  only missing heartbeats, ``timeout_ms``, reveal it); SIGCONT and SIGKILL it
  once the new primary serves.
- **switchover**: a ``Switchover`` message to the primary (what
  ``matchcore switchover`` sends), from this process.

With ``--rate N`` the client is paced instead: one new order every ``1/N`` s
(as many in flight as that takes), the way a trading client sends, rather
than a fixed window kept full. A switchover round then also measures the
**client window**: the write-unavailability the client saw, from the last
``OK`` reply of the old epoch to the first ``OK`` reply of the new one (both
on this process's clock as the replies were received), and the longest time
any one order of the round waited for its reply (send -> reply).

Each round measures, from the kill (or the command) on this process's
``time.monotonic`` clock, the time to the first **new** order accepted by the
new primary as the client saw it (a reply with a seq at or after the new
epoch's first, so a re-sent request answered from the dedupe table does not
count), the time to the first reply of any kind from the new primary, and the
new primary's own promotion-decision -> serving time (``promotion_ms`` in its
status, as the demo reports it: from the start of the loop pass in which the
witness's grant, the handover or the operator's promote arrived to the end of
that pass, when the epoch record is durable and the new epoch's heartbeats
are out), and the vote round trip before it (``candidacy_ms``: from the
candidacy's start to the decision). A killed node is then restarted as a
standby and the next round waits until it has joined, so every round is a
fresh fail-over.

At the end the final primary's journal is read and every acknowledged order
is looked up in it: an order acknowledged but absent is *lost*, a request
journaled twice is *duplicated*; both are attributed to the round in which
they happened and must be 0.

Before and after the rounds it measures the **teardown floor**: the kernel
closes a SIGKILLed process's sockets only after it has freed the process's
memory, so no peer can learn of the death sooner. ``--floor-children``
processes that import what a node imports (:mod:`benchmarks.teardown`) each
connect a DEALER to a ROUTER of this process and are SIGKILLed one at a
time; the time from the signal to that ROUTER's socket monitor reporting
``EVENT_DISCONNECTED`` (what the nodes watch) is the floor under
"SIGKILL -> first accepted", reported beside it as the part above the floor
and as a multiple of it, with both processes' resident memory at the kill.

Not a correctness test (``tests/system`` and ``tests/faults`` are) and not a latency benchmark
(``bench replication``).
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import common, groups, teardown

SUMMARY = (
    "fail-over time distribution: SIGKILL, SIGSTOP (hung) and planned switchover; lost/duplicated orders"
)

KINDS = ("sigkill", "sigstop", "switchover")
FULL_ROUNDS = 20
QUICK_ROUNDS = 2

TARGET_SIGKILL_P50_MS = 5.0
TARGET_HUNG_P50_MS = 50.0
TARGET_PROMOTION_MS = 1.0
TARGET_SWITCHOVER_P99_MS = 1.0
TARGET_CLIENT_WINDOW_P50_MS = 1.0  # paced client: last old-epoch reply -> first new-epoch reply
TARGET_CLIENT_WINDOW_P99_MS = 2.0
CLIENT_ID = 7

#: Children per teardown-floor pass (one pass before the rounds, one after).
FULL_FLOOR_CHILDREN = 20
QUICK_FLOOR_CHILDREN = 8
FLOOR_PASSES = ("teardown_floor_before", "teardown_floor_after")  # their keys in the result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of this harness (besides the common ones)."""
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help=f"rounds per kind (default {FULL_ROUNDS}, quick {QUICK_ROUNDS})",
    )
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help="comma-separated subset of " + ",".join(KINDS)
    )
    parser.add_argument("--window", type=int, default=8, help="orders the client keeps in flight (default 8)")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="pace the client at this many orders/s instead of a full window (0: the window; "
        "switchover rounds then also report the client window, last old-epoch -> first new-epoch reply)",
    )
    parser.add_argument(
        "--retry-ms", type=float, default=20.0, help="client re-send timeout in ms (default 20, as the demo)"
    )
    parser.add_argument("--engine", choices=("auto", "native", "reference"), default="auto")
    parser.add_argument(
        "--floor-children",
        type=int,
        default=None,
        help=f"processes SIGKILLed per teardown-floor pass, before and after the rounds "
        f"(default {FULL_FLOOR_CHILDREN}, quick {QUICK_FLOOR_CHILDREN}; 0 skips the floor)",
    )
    groups.add_timing_arguments(parser)
    # The failure detector as a group file without those keys runs it (config.py's defaults),
    # so the figures are what an operator gets out of the box.
    from replication.protocol.settings import Settings

    d = Settings()
    parser.set_defaults(
        heartbeat_ms=round(d.heartbeat_interval * 1000, 3),
        timeout_ms=round(d.heartbeat_timeout * 1000, 3),
        suspect_ms=round(d.suspect_timeout * 1000, 3),
    )


PACED_IN_FLIGHT = 4096  # a paced client's cap on orders in flight (a switchover holds a few ms of them)


class Flow:
    """The client's continuous order flow: keep ``window`` in flight (or send ``rate`` orders/s),
    log every reply with its time."""

    def __init__(self, client: Any, window: int, rate: float = 0.0) -> None:
        from replication.testing.harness import order

        self.c, self.window, self.order = client, window, order
        self.rate = rate
        self.next_at = 0.0  # paced: when the next order is due
        self.sent_at: dict[int, float] = {}  # request id -> first send (paced: each order's wait)
        self.sent = 0
        self.acked: dict[int, tuple[int, int]] = {}  # request id -> (seq, round)
        self.round = -1
        self.log: list[tuple[float, Any]] = []  # (receive time, Reply) since mark()
        self.statuses: dict[int, int] = {}

    def mark(self, round_no: int) -> None:
        """Start a new round: replies are logged from here."""
        self.round = round_no
        self.log = []

    def pump_replies_only(self, seconds: float) -> None:
        """Receive (and log) replies for up to ``seconds`` without sending."""
        window, self.window = self.window, 0
        try:
            self.pump(seconds)
        finally:
            self.window = window

    def pump(self, seconds: float) -> None:
        """Send and receive for ``seconds`` (at least one poll)."""
        from replication.protocol import wire

        end = time.monotonic() + seconds
        while True:
            if self.rate > 0:
                self._send_paced()
            while not self.rate and self.c.in_flight < self.window:
                self.c.send(self.order(self.sent))
                self.sent += 1
            wait = 0.001 if not self.rate else max(0.0, min(0.001, self.next_at - time.monotonic()))
            for r in self.c.poll_replies(wait):
                now = time.monotonic()
                self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
                self.log.append((now, r))
                if r.status == wire.OK and r.request_id not in self.acked:
                    self.acked[r.request_id] = (r.seq, self.round)
            if time.monotonic() >= end:
                return

    def _send_paced(self) -> None:
        """Send the orders due by now (at most one per ``1/rate`` s; a late loop does not burst)."""
        now = time.monotonic()
        if not self.window or now < self.next_at or self.c.in_flight >= PACED_IN_FLIGHT:
            return
        rid = self.c.send(self.order(self.sent))
        self.sent_at[rid] = now
        self.sent += 1
        self.next_at = max(self.next_at + 1.0 / self.rate, now)


def client_window(flow: Flow, old_epoch: int, t_mark: float) -> dict[str, Any]:
    """The write-unavailability the client saw across an epoch change (ms), from ``flow.log``.

    ``client_window_ms``: from the last ``OK`` reply of ``old_epoch`` received before the
    first ``OK`` reply of a newer epoch, to that first reply. ``late_old_replies``: old-epoch
    replies received after it (held by the old primary until the handover was proven).
    ``max_wait_ms``: the longest send -> reply of any order sent since ``t_mark``.
    """
    from replication.protocol import wire

    ok = [(t, r) for t, r in flow.log if r.status == wire.OK]
    first_new = min((t for t, r in ok if r.epoch > old_epoch), default=None)
    if first_new is None:
        return {}
    last_old = max((t for t, r in ok if r.epoch == old_epoch and t <= first_new), default=t_mark)
    waits = [t - flow.sent_at[r.request_id] for t, r in ok if flow.sent_at.get(r.request_id, -1.0) >= t_mark]
    return {
        "client_window_ms": round((first_new - last_old) * 1000, 3),
        "late_old_replies": sum(1 for t, r in ok if r.epoch == old_epoch and t > first_new),
        "max_wait_ms": round(max(waits) * 1000, 3) if waits else None,
    }


def _ready(g: Any, flow: Flow, timeout: float = 30.0) -> dict[str, Any]:
    """Pump the flow until the group could fail over again; its status.

    That is: one primary, every other node joined and in the primary's
    in-sync set as the witness recorded it (so the witness would grant it a
    promotion), i.e. the primary no longer runs solo.
    """
    deadline = time.monotonic() + timeout
    while True:
        flow.pump(0.02)
        st = g.status(0.3)
        roles = [st.get(n, {}).get("role") for n in g.names]
        if roles.count("primary") == 1:
            primary = g.names[roles.index("primary")]
            p = st[primary]
            others = [n for n in g.names if n != primary]
            isr = p.get("isr")  # the in-sync set the witness recorded (older builds: a solo flag)
            in_sync = (
                all(n in isr for n in others)
                if isr is not None
                else not (p.get("solo") or p.get("witness_solo"))
            )
            if in_sync and all(st[n].get("joined") for n in others):
                return st
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"group not ready for a fail-over after {timeout:.0f} s: "
                f"{ {n: st.get(n, {}).get(k) for n in g.names for k in ('role',)} } "
                f"solo={[st.get(n, {}).get('solo') for n in g.names]} "
                f"isr={[st.get(n, {}).get('isr') for n in g.names]}"
                f"\n{g.tail_logs(8)}"
            )


def _node_status(g: Any, name: str, timeout: float = 0.3) -> dict[str, Any]:
    """One node's status dict (``{}`` if it does not answer within ``timeout``)."""
    import json

    from replication.client.admin import ask
    from replication.protocol import wire

    got = ask(g.cfg.nodes[name].endpoint, wire.StatusRequest(), timeout, g.cfg.keys_dir, name)
    return json.loads(got.body) if isinstance(got, wire.Status) else {}


def _first_new(flow: Flow, g: Any, new: str, t0: float, timeout: float = 20.0) -> dict[str, Any]:
    """Pump until the new primary has accepted a new order; the round's timings (ms after ``t0``)."""
    from replication.protocol import wire

    deadline = time.monotonic() + timeout
    st: dict[str, Any] = {}
    while True:
        flow.pump(0.005)
        ok_new = [(t, r) for t, r in flow.log if r.status == wire.OK and r.leader == new and t >= t0]
        if ok_new:
            if not st:
                # Ask the new primary only: a group-wide status waits out the dead node's
                # timeout (0.3 s) while no reply is received, which used to add ~300 ms to
                # "first new order accepted" whenever the first replies were re-sends.
                st = _node_status(g, new)
                if st.get("role") != "primary":
                    st = {}
            if st:
                start = st.get("epoch_start_seq", 1)
                first = next((t for t, r in ok_new if r.seq >= start), None)
                if first is not None:
                    any_reply = min(t for t, r in flow.log if r.leader == new and t >= t0)
                    return {
                        "first_accepted_ms": round((first - t0) * 1000, 3),
                        "first_reply_ms": round((any_reply - t0) * 1000, 3),
                        "promotion_ms": st.get("promotion_ms"),
                        "candidacy_ms": st.get("candidacy_ms"),
                        "epoch": st.get("epoch"),
                        "epoch_start_seq": start,
                    }
        if time.monotonic() > deadline:
            raise TimeoutError(f"no order accepted by {new} within {timeout} s\n{g.tail_logs(8)}")


def _switchover_socket(endpoint: str) -> Any:
    import zmq

    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    return s


def one_round(g: Any, flow: Flow, kind: str, round_no: int) -> dict[str, Any]:
    """One fail-over of ``kind`` on a ready group; the killed node is back as a joined standby after."""
    from replication.protocol import wire

    st = _ready(g, flow)
    old = next(n for n in g.names if st[n].get("role") == "primary")
    new = next(n for n in g.names if n != old)
    flow.pump(0.1)  # steady flow before the event
    flow.mark(round_no)
    proc = g.procs[old]
    out: dict[str, Any] = {
        "kind": kind,
        "round": round_no,
        "old": old,
        "new": new,
        "old_epoch": st[old].get("epoch"),
    }
    if kind == "switchover":
        sock = _switchover_socket(g.endpoints[old])
        try:
            # Connected before the clock starts: the figure is command -> first accepted,
            # not TCP + ZMTP set-up of the operator's fresh socket.
            sock.send(wire.encode(wire.StatusRequest()))
            if sock.poll(2000):
                sock.recv()
            t0 = time.monotonic()
            sock.send(wire.encode(wire.Switchover(new)))
            out.update(_first_new(flow, g, new, t0))
        finally:
            sock.close(0)
        if flow.rate > 0:
            flow.pump(0.02)  # the old primary's held replies, if any, come in
            out.update(client_window(flow, int(out["old_epoch"] or 0), t0))
        return out
    sig = signal.SIGKILL if kind == "sigkill" else signal.SIGSTOP
    out["old_rss_kb"] = teardown.rss_kb(proc.pid)  # what the kernel will free before the sockets close
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        out.update(_first_new(flow, g, new, t0))
    finally:
        if kind == "sigstop":
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        log = g.logs.pop(old, None)
        if log is not None:
            log.close()
    g.start(old, "standby")
    return out


# ----- the teardown floor ----------------------------------------------------------------------


def _measure_floor(n: int) -> dict[str, Any]:
    """One teardown-floor pass of ``n`` children; ``{"error": ...}`` if the machine would not run it."""
    import zmq

    try:
        samples = teardown.measure(n)
    except (RuntimeError, TimeoutError, OSError, subprocess.SubprocessError, zmq.ZMQError) as exc:
        common.say(f"failover: teardown floor not measured: {str(exc)[:200]}")
        return {"children": n, "error": str(exc)[:3000]}
    return {"children": n, "imports": list(teardown.FLOOR_IMPORTS), "samples": samples} | floor_summary(
        samples
    )


def _mb_summary(kbs: list[int | None]) -> dict[str, Any]:
    vals = [v / 1024 for v in kbs if v is not None]
    if not vals:
        return {"p50": None, "min": None, "max": None, "count": 0}
    return {
        "p50": round(statistics.median(vals), 1),
        "min": round(min(vals), 1),
        "max": round(max(vals), 1),
        "count": len(vals),
    }


def floor_summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """``disconnect_ms``, ``exit_ms`` (ms summaries) and ``rss_mb`` of teardown-floor samples."""
    return {
        "disconnect_ms": _summary_ms([x["disconnect_ms"] for x in samples]),
        "exit_ms": _summary_ms([x.get("exit_ms") for x in samples]),
        "rss_mb": _mb_summary([x.get("rss_kb") for x in samples]),
    }


def against_floor(result: dict[str, Any]) -> None:
    """Fill ``teardown_floor`` (both passes pooled), ``node_rss_mb``, and the SIGKILL row's ratios."""
    passes = [result.get(k) or {} for k in FLOOR_PASSES]
    samples = [x for p in passes for x in p.get("samples", [])]
    result["teardown_floor"] = {"children": len(samples)} | floor_summary(samples)
    result["node_rss_mb"] = _mb_summary(
        [r.get("old_rss_kb") for r in result["rounds"] if r.get("kind") in ("sigkill", "sigstop")]
    )
    floor = result["teardown_floor"]["disconnect_ms"]["p50"]
    s = result["summary"].get("sigkill")
    if s is not None:
        got = s["first_accepted_ms"]["p50"]
        known = floor is not None and got is not None
        s["floor_ms"] = floor
        s["above_floor_ms"] = round(got - floor, 3) if known else None
        s["x_floor"] = round(got / floor, 2) if known and floor > 0 else None


def check_journal(g: Any, flow: Flow) -> dict[str, Any]:
    """Every acknowledged order in the final primary's journal exactly once; counts per round."""
    st = g.status(0.5)
    primary = next((n for n in g.names if st.get(n, {}).get("role") == "primary"), g.names[0])
    entries = g.journal_entries(primary)
    base = entries[0].seq - 1 if entries else 0
    by_key: dict[int, list[int]] = {}
    for e in entries:
        if e.client_id == CLIENT_ID:
            by_key.setdefault(e.request_id, []).append(e.seq)
    lost: dict[int, int] = {}
    unchecked = 0
    for rid, (seq, rnd) in flow.acked.items():
        if seq <= base:
            unchecked += 1
        elif rid not in by_key:
            lost[rnd] = lost.get(rnd, 0) + 1
    dups = [seqs for seqs in by_key.values() if len(seqs) > 1]
    return {
        "journal_of": primary,
        "entries": len(entries),
        "acked": len(flow.acked),
        "unchecked_below_base": unchecked,
        "lost_by_round": lost,
        "duplicated_seqs": dups[:50],
        "duplicated": len(dups),
        "lost": sum(lost.values()),
    }


# ----- summaries and output ------------------------------------------------------------------


def _summary_ms(values: list[float]) -> dict[str, Any]:
    vals = [v for v in values if v is not None]
    s = common.latency_summary(common.histogram([int(v * 1e6) for v in vals]))
    return {
        k: (None if s.get(k) is None else round(s[k] / 1e6, 3)) for k in ("p50", "p99", "max", "mean")
    } | {"count": len(vals)}


def summarize(rounds: list[dict[str, Any]], kinds: list[str]) -> dict[str, Any]:
    out = {}
    for kind in kinds:
        rs = [r for r in rounds if r["kind"] == kind and "first_accepted_ms" in r]
        out[kind] = {
            "rounds": len([r for r in rounds if r["kind"] == kind]),
            "failed": len([r for r in rounds if r["kind"] == kind and "error" in r]),
            "first_accepted_ms": _summary_ms([r["first_accepted_ms"] for r in rs]),
            "first_reply_ms": _summary_ms([r["first_reply_ms"] for r in rs]),
            "promotion_ms": _summary_ms([r["promotion_ms"] for r in rs]),
            "candidacy_ms": _summary_ms([r.get("candidacy_ms") for r in rs]),
            "client_window_ms": _summary_ms([r.get("client_window_ms") for r in rs]),
            "max_wait_ms": _summary_ms([r.get("max_wait_ms") for r in rs]),
            "lost": sum(r.get("lost", 0) for r in rs),
            "duplicated": sum(r.get("duplicated", 0) for r in rs),
        }
    return out


def targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    def get(kind: str, what: str, stat: str) -> float | None:
        return summary.get(kind, {}).get(what, {}).get(stat)

    promo = [
        v
        for v in (get(kind, "promotion_ms", "p50") for kind in ("sigkill", "sigstop", "switchover"))
        if v is not None
    ]
    sigkill = groups.target(
        "SIGKILL -> first accepted, p50",
        get("sigkill", "first_accepted_ms", "p50"),
        TARGET_SIGKILL_P50_MS,
        "<=",
        "ms",
    )
    # The kernel's part of it, measured in the same run (the goal stays what it is).
    sigkill |= {k: summary.get("sigkill", {}).get(k) for k in ("floor_ms", "above_floor_ms", "x_floor")}
    return [
        sigkill,
        groups.target(
            "hung (SIGSTOP) -> first accepted, p50",
            get("sigstop", "first_accepted_ms", "p50"),
            TARGET_HUNG_P50_MS,
            "<=",
            "ms",
        ),
        groups.target(
            "promotion decision -> serving, p50",
            max(promo) if promo else None,
            TARGET_PROMOTION_MS,
            "<",
            "ms",
        ),
        groups.target(
            "switchover -> first accepted, p99",
            get("switchover", "first_accepted_ms", "p99"),
            TARGET_SWITCHOVER_P99_MS,
            "<=",
            "ms",
        ),
    ] + (
        [
            groups.target(
                f"switchover client window (paced), {stat}",
                get("switchover", "client_window_ms", stat),
                goal,
                "<",
                "ms",
            )
            for stat, goal in (("p50", TARGET_CLIENT_WINDOW_P50_MS), ("p99", TARGET_CLIENT_WINDOW_P99_MS))
        ]
        if get("switchover", "client_window_ms", "count")
        else []
    )


def print_result(result: dict[str, Any], machine: str) -> None:
    rows = []
    for kind, s in result["summary"].items():
        for what, label in (
            ("first_accepted_ms", "-> first new order accepted"),
            ("first_reply_ms", "-> first reply from new primary"),
            ("promotion_ms", "decision -> serving (node)"),
            ("candidacy_ms", "candidacy -> decision (vote round trip)"),
            ("client_window_ms", "client window: last old-epoch -> first new-epoch reply"),
            ("max_wait_ms", "longest order wait in the round (send -> reply)"),
        ):
            m = s[what]
            if not m["count"] and what in ("client_window_ms", "max_wait_ms"):
                continue  # (paced rounds only)
            rows.append(
                [
                    f"{kind} {label}",
                    m["count"],
                    *(f"{m[k]:.3f}" if m[k] is not None else "-" for k in ("p50", "p99", "max")),
                ]
            )
        rows.append(
            [
                f"{kind} lost / duplicated acked orders",
                s["rounds"],
                f"{s['lost']} / {s['duplicated']}",
                "",
                f"{s['failed']} failed" if s["failed"] else "",
            ]
        )
    floors = [result.get(k, {}).get("p50") for k in ("floor_rtt_ns_before", "floor_rtt_ns_after")]
    floor_note = " / ".join(common.fmt_ns(f) for f in floors if f)
    common.print_table(
        f"fail-over, ms ({machine})",
        ["", "rounds", "p50", "p99", "max"],
        rows,
        note=f"timeouts: heartbeat {result['settings']['heartbeat_ms']} ms, silence "
        f"{result['settings']['timeout_ms']} ms, after disconnect {result['settings']['suspect_ms']} "
        f"ms; client re-send {result['retry_ms']} ms; "
        + (
            f"paced at {result['rate']:g} orders/s; "
            if result.get("rate")
            else f"{result['window']} orders in flight; "
        )
        + f"bare pyzmq round trip p50 before / after: {floor_note or '-'}",
    )
    j = result.get("journal_check", {})
    if j:
        common.print_table(
            "acknowledged orders vs the final primary's journal",
            ["", "value"],
            [
                ["acknowledged", common.fmt_int(j["acked"])],
                ["lost", j["lost"]],
                ["duplicated", j["duplicated"]],
                ["not checkable (below journal base)", j["unchecked_below_base"]],
            ],
        )
    print_floor(result)
    shown = []
    for t in result["targets"]:  # the SIGKILL row with the kernel's part beside it (display only)
        if t.get("floor_ms") is not None:
            t = t | {"target": f"{t['target']} (kernel floor {t['floor_ms']:.3f} ms of it)"}
        shown.append(t)
    groups.print_targets("fail-over targets", shown)
    failed = [r for r in result["rounds"] if "error" in r]
    if failed or result.get("final_error"):
        print(f"NOTE: {len(failed)} round(s) failed and the rest were skipped; first error:")
        print((failed[0]["error"] if failed else result["final_error"]).splitlines()[0])


def print_floor(result: dict[str, Any]) -> None:
    """The SIGKILL figure against the kernel's teardown floor measured in the same run."""
    tf = result.get("teardown_floor") or {}
    if not tf.get("children"):
        err = next((result[k]["error"] for k in FLOOR_PASSES if "error" in result.get(k, {})), None)
        if err:
            print("NOTE: teardown floor not measured: " + err.splitlines()[0])
        return

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    def dist(label: str, m: dict[str, Any]) -> list[Any]:
        return [label, m["count"], *(ms(m[k]) for k in ("p50", "p99", "max"))]

    rows = [
        dist("kernel floor: SIGKILL -> peer sees the connection drop", tf["disconnect_ms"]),
        dist("kernel floor: SIGKILL -> process exited", tf["exit_ms"]),
    ]
    s = result["summary"].get("sigkill")
    if s is not None:
        x = s.get("x_floor")
        rows += [
            dist("sigkill -> first new order accepted", s["first_accepted_ms"]),
            ["sigkill above the floor (p50 - floor p50)", "", ms(s.get("above_floor_ms")), "", ""],
            ["sigkill x floor (p50 / floor p50)", "", "-" if x is None else f"{x:.2f}x", "", ""],
        ]
    for label, m in (("floor process", tf["rss_mb"]), ("node (primary)", result["node_rss_mb"])):
        rows.append([f"RSS at the kill, MB: {label}", m["count"], m["p50"] or "-", "", m["max"] or "-"])
    before_after = " / ".join(ms(result.get(k, {}).get("disconnect_ms", {}).get("p50")) for k in FLOOR_PASSES)
    common.print_table(
        "SIGKILL fail-over against the kernel's teardown floor, ms (same run)",
        ["", "n", "p50", "p99", "max"],
        rows,
        note="floor: processes with a node's imports and a DEALER connected to a ROUTER here, SIGKILLed "
        "one at a time; the ROUTER's socket monitor (EVENT_DISCONNECTED) times the drop. Floor p50 before / "
        f"after the rounds: {before_after} ms.",
    )


def plot(result: dict[str, Any], out_dir: str, machine: str) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    data = {
        k: [r["first_accepted_ms"] for r in result["rounds"] if r["kind"] == k and "first_accepted_ms" in r]
        for k in result["summary"]
    }
    data = {k: v for k, v in data.items() if v}
    if not data:
        return []
    fig, axes = plt.subplots(len(data), 1, figsize=(8, 2.2 * len(data) + 0.8), dpi=120, squeeze=False)
    goals = {
        "sigkill": TARGET_SIGKILL_P50_MS,
        "sigstop": TARGET_HUNG_P50_MS,
        "switchover": TARGET_SWITCHOVER_P99_MS,
    }
    for ax, (kind, vals) in zip(axes[:, 0], data.items(), strict=True):
        ax.hist(vals, bins=min(40, max(5, len(vals))), color="#4878a8")
        ax.axvline(
            goals[kind], color="#c44e52", linestyle="--", linewidth=1, label=f"target {goals[kind]:g} ms"
        )
        floor = result["summary"][kind].get("floor_ms")
        if floor is not None:
            ax.axvline(
                floor, color="#555555", linestyle=":", linewidth=1, label=f"kernel floor {floor:.2f} ms"
            )
        ax.set_title(f"{kind}: event -> first new order accepted ({len(vals)} rounds)", fontsize=9)
        ax.set_xlabel("ms")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Fail-over time as the client saw it\n{machine}", fontsize=9)
    fig.tight_layout()
    path = Path(out_dir) / "failover-histogram.png"
    fig.savefig(path)
    plt.close(fig)
    return [str(path)]


# ----- entry points -----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the harness with parsed arguments; print tables, write JSON (and PNG); return the result."""
    n_rounds = args.rounds or (QUICK_ROUNDS if args.quick else FULL_ROUNDS)
    n_floor = args.floor_children
    if n_floor is None:
        n_floor = QUICK_FLOOR_CHILDREN if args.quick else FULL_FLOOR_CHILDREN
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if set(kinds) - set(KINDS):
        raise SystemExit(f"--kinds: choose from {', '.join(KINDS)}")
    result = common.result_skeleton("failover", args)
    result.update(
        {
            "rounds_per_kind": n_rounds,
            "window": args.window,
            "rate": args.rate,
            "retry_ms": args.retry_ms,
            "settings": groups.timing_extra(args),
            "rounds": [],
            "charts": [],
        }
    )
    machine = common.machine_line(result["machine"])
    Path(args.out).mkdir(parents=True, exist_ok=True)
    try:
        with groups.sigterm_interrupts():
            result["floor_rtt_ns_before"] = groups.floor_rtt()
            if n_floor > 0:
                result["teardown_floor_before"] = _measure_floor(n_floor)
        with (
            groups.sigterm_interrupts(),
            groups.group(("a", "b"), "sync", groups.timing_extra(args), args.engine) as g,
        ):
            g.start_all()
            g.wait_ready()
            c = g.client(CLIENT_ID, timeout=10.0, retry_timeout=args.retry_ms / 1000)
            flow = Flow(c, args.window, args.rate)
            try:
                with common.progress() as prog:
                    task = prog.add_task("fail-over rounds", total=n_rounds * len(kinds))
                    for _ in range(n_rounds):
                        for kind in kinds:
                            no = len(result["rounds"])
                            try:
                                res = one_round(g, flow, kind, no)
                            except TimeoutError as exc:
                                res = {"kind": kind, "round": no, "error": str(exc)[:3000]}
                                common.say(f"failover: round {no} ({kind}) failed: {str(exc)[:200]}")
                            result["rounds"].append(res)
                            prog.advance(task)
                            if "error" in res:
                                break
                        if result["rounds"] and "error" in result["rounds"][-1]:
                            break
                    try:
                        _ready(g, flow, timeout=10.0)
                        flow.pump(0.1)
                    except TimeoutError as exc:  # the group did not recover: say so, still check the journal
                        result["final_error"] = str(exc)[:3000]
                    deadline = time.monotonic() + 5
                    while flow.c.in_flight and time.monotonic() < deadline:  # let the last answers in
                        flow.pump_replies_only(0.01)
            finally:
                c.close()
            result["client_statuses"] = {str(k): v for k, v in flow.statuses.items()}
            result["journal_check"] = check_journal(g, flow)
            starts = sorted(
                (r["epoch_start_seq"], r["round"]) for r in result["rounds"] if "epoch_start_seq" in r
            )
            dup_by_round: dict[int, int] = {}
            for seqs in result["journal_check"][
                "duplicated_seqs"
            ]:  # the round whose epoch holds the 2nd copy
                rnd = max((no for start, no in starts if start <= seqs[1]), default=-1)
                dup_by_round[rnd] = dup_by_round.get(rnd, 0) + 1
            for rnd in result["rounds"]:
                rnd["lost"] = result["journal_check"]["lost_by_round"].get(rnd["round"], 0)
                rnd["duplicated"] = dup_by_round.get(rnd["round"], 0)
        with groups.sigterm_interrupts():
            result["floor_rtt_ns_after"] = groups.floor_rtt()
            if n_floor > 0:
                result["teardown_floor_after"] = _measure_floor(n_floor)
    except KeyboardInterrupt:
        result["interrupted"] = True
    result["summary"] = summarize(result["rounds"], kinds)
    against_floor(result)
    if "journal_check" in result:
        result["journal_check"]["lost_by_round"] = {
            str(k): v for k, v in result["journal_check"]["lost_by_round"].items()
        }
    result["targets"] = targets(result["summary"])
    return common.finish("failover", result, args, machine, print_result, plot)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.failover [flags]``."""
    return common.harness_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
