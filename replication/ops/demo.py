"""``matchcore demo``: a real group on loopback, a SIGKILLed primary, and the proof nothing was lost.

For: showing the fail-over contract end to end with real OS processes —
primary, standby and witness — an order flow through ``replication.Client``,
a SIGKILL of the primary in the middle of it, and a table of what clients
saw: orders acknowledged, orders lost, requests executed twice, digest
agreement at the old primary's last acknowledged seq, time from the kill to
the first order the new primary accepted, and the new primary's own
decision-to-serving time. The processes come from the test harness's
:class:`~replication.testing.harness.Group`. Not for: benchmarking (see ``benchmarks/``).

Every process and the temp directory are removed on exit, whatever happens,
within bounded timeouts.
"""

from __future__ import annotations

import json
import signal
import time
from typing import Any

from ..protocol import wire
from ..testing.harness import Group, order, replay_digest


def run_flow(
    orders: int = 2000, engine: str = "auto", keep: bool = False, window: int = 16
) -> dict[str, Any]:
    """Run the demo scenario; return the figures (see module docstring)."""
    with Group(("a", "b"), "sync", engine, keep=keep) as g:
        g.start_all()
        g.wait_ready()
        c = g.client(7, timeout=10.0, retry_timeout=0.02)
        try:
            acked: dict[int, wire.Reply] = {}
            sent = 0
            kill_at = orders // 2
            t_kill = None
            old, new, old_epoch = "a", "b", 0
            after_kill: list[tuple[float, int]] = []  # (receive time, seq) of replies from b
            deadline = time.monotonic() + 60
            while len(acked) < orders:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"flow stalled at {len(acked)}/{orders}\n{g.tail_logs()}")
                while sent < orders and c.in_flight < window:
                    c.send(order(sent))
                    sent += 1
                if t_kill is None and sent >= kill_at:
                    # SIGKILL whoever serves right now (normally a), mid-flow, requests in flight.
                    old = c.last_reply.leader if c.last_reply is not None and c.last_reply.leader else "a"
                    new = "b" if old == "a" else "a"
                    old_epoch = c.last_reply.epoch if c.last_reply is not None else 1
                    # The clock starts before the signal: kill() returns only once the process
                    # is reaped, after the kernel has torn it down (milliseconds for a node).
                    t_kill = time.monotonic()
                    g.kill(old)
                for r in c.poll_replies(0.002):
                    now = time.monotonic()
                    if r.status == wire.OK:
                        acked[r.request_id] = r
                        if t_kill is not None and r.leader == new:
                            after_kill.append((now, r.seq))
            st = g.status()
        finally:
            c.close()
        g.kill(new, signal.SIGTERM)
        g.kill("witness", signal.SIGTERM)
        a_entries = g.journal_entries(old)
        b_entries = g.journal_entries(new)
    keys = [(e.client_id, e.request_id) for e in b_entries]
    in_b = set(keys)
    lost = sum(1 for rid in acked if (7, rid) not in in_b)
    duplicates = len(keys) - len(in_b)
    old_acked = [r.seq for r in acked.values() if r.leader == old and r.epoch == old_epoch]
    last_old = max(old_acked) if old_acked else 0
    a_by_seq = {e.seq: e for e in a_entries}
    b_by_seq = {e.seq: e for e in b_entries}
    digest_equal = (
        bool(last_old)
        and last_old in a_by_seq
        and last_old in b_by_seq
        and a_by_seq[last_old].digest == b_by_seq[last_old].digest
    )
    replayed = replay_digest(b_entries)
    b_status = st.get(new, {})
    # A re-sent request b already held is answered from its dedupe table; the
    # fail-over figure is the first *new* order b sequenced as primary.
    first_new = b_status.get("epoch_start_seq", 1)
    t_first = next((t for t, seq in after_kill if seq >= first_new), None)
    t_reply = after_kill[0][0] if after_kill else None
    return {
        "acked": len(acked),
        "lost": lost,
        "duplicates": duplicates,
        "digest_equal": digest_equal,
        "failover_ms": round((t_first - t_kill) * 1000, 3) if t_first and t_kill else None,
        "first_reply_ms": round((t_reply - t_kill) * 1000, 3) if t_reply and t_kill else None,
        "switchover_ms": round(b_status["promotion_ms"], 3)
        if b_status.get("promotion_ms") is not None
        else None,
        "orders": orders,
        "old_primary_last_acked_seq": last_old,
        "old_primary_digest": f"{a_by_seq[last_old].digest:016x}" if last_old in a_by_seq else None,
        "new_primary_digest_at_that_seq": f"{b_by_seq[last_old].digest:016x}"
        if last_old in b_by_seq
        else None,
        "new_primary_last_seq": b_entries[-1].seq if b_entries else 0,
        "replay_digest_matches": f"{replayed:016x}" == b_status.get("digest"),
        "new_epoch": b_status.get("epoch"),
    }


def run_demo(json_out: bool = False, orders: int = 2000, engine: str = "auto", keep: bool = False) -> int:
    """``matchcore demo``: print the table (or one JSON object); exit 0 only if nothing was lost."""
    res = run_flow(orders, engine, keep)
    good = res["lost"] == 0 and res["duplicates"] == 0 and res["digest_equal"]
    if json_out:
        print(json.dumps(res, sort_keys=True))
        return 0 if good else 1
    rows = [
        ("orders acknowledged", res["acked"], f"of {res['orders']} sent"),
        ("orders lost", res["lost"], "must be 0"),
        ("requests executed twice", res["duplicates"], "must be 0"),
        (
            "digest at old primary's last acked seq",
            "equal" if res["digest_equal"] else "DIFFERENT",
            f"seq {res['old_primary_last_acked_seq']}: {res['old_primary_digest']} vs "
            f"{res['new_primary_digest_at_that_seq']}",
        ),
        (
            "new primary matches a local replay",
            "yes" if res["replay_digest_matches"] else "NO",
            f"{res['new_primary_last_seq']} entries, epoch {res['new_epoch']}",
        ),
        (
            "SIGKILL -> first order accepted by new primary",
            f"{res['failover_ms']} ms",
            "as the client saw it",
        ),
        (
            "SIGKILL -> first reply from new primary",
            f"{res['first_reply_ms']} ms",
            "a re-sent request it held",
        ),
        ("promotion decision -> serving", f"{res['switchover_ms']} ms", "measured by the new primary"),
    ]
    print("matchcore demo: primary a, standby b, witness; sync mode; SIGKILL a mid-flow")
    for name, value, note in rows:
        print(f"  {name:<48} {value!s:>10}   {note}")
    print("OK: nothing acknowledged was lost" if good else "FAILED")
    return 0 if good else 1
