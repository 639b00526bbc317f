"""The pipelined floor: what a window of sync orders costs with no replication protocol at all.

For: the ceiling of ``benchmarks.replication``'s pipelined sync pass on this
machine. Three processes move one window of orders the way a sync group does,
with nothing else: this client sends the window as one frame (``REQUEST``
records), a **primary** stand-in forwards it to a **standby** stand-in as one
``Entries``-sized frame, the standby answers with an ``Ack``-sized frame, and
the primary then answers the client with one frame of the window's replies
(64 bytes and the events of each order) and one of its execution reports (64
bytes each). Two variants, interleaved round by round:

- ``bare``: the stand-ins only move bytes of those sizes (pyzmq, the node
  driver's loop shape: poll, drain, send);
- ``replica``: the primary stand-in also runs ``Replica.execute_batch`` on the
  commands (engine, dedupe table, report book) and sends the packed entries it
  returns, the standby stand-in runs ``Replica.apply_entries`` on them: the
  state machine's work and nothing of the protocol (no journal, no fsync, no
  codec, no checksums, no witness, no heartbeats, no report fetch protocol).

Orders per second over the pass, and CPU microseconds per order of each
process (user + system, from ``/proc``: independent of the machine's load).
The client here decodes nothing, unlike ``benchmarks.replication``'s.

Run: ``python -m benchmarks.batch_floor [--orders N] [--window W] [--rounds R] [--json]``.
Not for: latency (``benchmarks.twohop``), or ``make test``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import sys
import time
from typing import Any

import numpy as np

from . import groups

HEAD = struct.Struct("<QII")  # window tag; reply bytes, report bytes the bare primary answers with
REPLY_HEAD = 64  # per order in a reply bundle besides its events (the node driver's estimate)
REPORT_SIZE = 64
ACK_BYTES = 64
CLIENT_ID = 7


def _replica() -> Any:
    from replication.protocol.replica import Replica

    return Replica()


def primary_server(endpoint: str, upstream: str, work: bool) -> int:
    """ROUTER at ``endpoint`` for the client, DEALER to the standby at ``upstream``; one window at a
    time is forwarded, and answered once the standby's ack for it comes. Runs until SIGTERM."""
    import zmq

    from replication.protocol.records import REQUEST_DTYPE

    running = groups.until_sigterm()
    ctx = zmq.Context()
    front = groups.bare_socket(ctx, zmq.ROUTER)
    back = groups.bare_socket(ctx, zmq.DEALER)
    front.bind(endpoint)
    back.connect(upstream)
    replica = _replica() if work else None
    waiting: dict[bytes, tuple[bytes, list[bytes]]] = {}  # tag -> client, its answer frames
    poller = zmq.Poller()
    poller.register(front, zmq.POLLIN)
    poller.register(back, zmq.POLLIN)
    while running[0]:
        ready = dict(poller.poll(100))
        if front in ready:
            while True:
                try:
                    ident, frame = front.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                tag, reply_bytes, report_bytes = HEAD.unpack_from(frame)
                key = frame[:8]
                if replica is None:
                    n = (len(frame) - HEAD.size) // REQUEST_DTYPE.itemsize
                    forward = key + bytes(n * 92)
                    answer = [bytes(reply_bytes), bytes(report_bytes)]
                else:
                    req = np.frombuffer(frame, dtype=REQUEST_DTYPE, offset=HEAD.size)
                    before = replica.reports.last_report(CLIENT_ID)
                    cids, rids = (
                        np.ascontiguousarray(req["client_id"]),
                        np.ascontiguousarray(req["request_id"]),
                    )
                    run, raw, _ = replica.execute_batch(1, cids, rids, req["command"].tobytes())
                    forward = key + bytes(run.raw)
                    reports = replica.reports.reports_after(CLIENT_ID, before, replica.seq, 1 << 30)[1]
                    answer = [bytes(REPLY_HEAD * len(req)) + raw, reports]
                back.send(forward, zmq.NOBLOCK)
                waiting[key] = (ident, answer)
        if back in ready:
            while True:
                try:
                    frame = back.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                got = waiting.pop(frame[:8], None)
                if got is not None:
                    ident, answer = got
                    for part in answer:
                        front.send_multipart([ident, part], zmq.NOBLOCK)
    front.close(0)
    back.close(0)
    ctx.term()
    return 0


def standby_server(endpoint: str, work: bool) -> int:
    """ROUTER at ``endpoint``: apply each window's entries (``work``) and answer an ack. Until SIGTERM."""
    import zmq

    from replication.protocol.records import EntryRun

    running = groups.until_sigterm()
    ctx = zmq.Context()
    s = groups.bare_socket(ctx, zmq.ROUTER)
    s.bind(endpoint)
    replica = _replica() if work else None
    pad = bytes(ACK_BYTES - 8)
    poller = zmq.Poller()
    poller.register(s, zmq.POLLIN)
    while running[0]:
        if not poller.poll(100):
            continue
        while True:
            try:
                ident, frame = s.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if replica is not None:
                run = EntryRun.from_bytes(frame[8:])
                if replica.apply_entries(run) != len(run):
                    raise RuntimeError("the standby stand-in diverged")
            s.send_multipart([ident, frame[:8] + pad], zmq.NOBLOCK)
    s.close(0)
    ctx.term()
    return 0


def windows(orders: int, window: int, seed: int) -> list[tuple[bytes, int, int]]:
    """The standard mix as client frames of ``window`` requests: each frame, and the reply and
    report bytes a replica answers it with (the bare primary sends as many)."""
    from matching import COMMAND_DTYPE
    from replication.protocol.records import REQUEST_DTYPE

    setup, ops = groups.mix_records(orders, seed)
    commands = np.array(setup + ops, dtype=COMMAND_DTYPE)
    replica, out, rid = _replica(), [], 1 << 40
    for tag, i in enumerate(range(0, len(commands), window)):
        c = commands[i : i + window]
        req = np.zeros(len(c), dtype=REQUEST_DTYPE)
        cids, rids = (
            np.full(len(c), CLIENT_ID, dtype=np.uint64),
            np.arange(rid, rid + len(c), dtype=np.uint64),
        )
        req["client_id"], req["request_id"] = cids, rids
        req["command"] = c.view(req.dtype["command"])
        rid += len(c)
        before = replica.reports.last_report(CLIENT_ID)
        _, raw, _ = replica.execute_batch(1, cids, rids, c.tobytes())
        reports = REPORT_SIZE * (replica.reports.last_report(CLIENT_ID) - before)
        reply = REPLY_HEAD * len(c) + len(raw)
        out.append((HEAD.pack(tag, reply, reports) + req.tobytes(), len(c), reply + reports))
    return out


def one_pass(frames: list[tuple[bytes, int, int]], work: bool) -> dict[str, Any]:
    """Start the two stand-ins, send every window (one in flight, as the pipelined pass's single
    batch per round trip), and measure. The stand-ins are started afresh (empty books)."""
    import zmq

    from replication.testing.harness import free_ports

    a, b = (f"tcp://127.0.0.1:{p}" for p in free_ports(2))
    mode = ["--work"] if work else []
    me = f"{__package__}.batch_floor"
    standby = groups._spawn([sys.executable, "-m", me, "standby", b, *mode])
    primary = groups._spawn([sys.executable, "-m", me, "primary", a, b, *mode])
    ctx = zmq.Context()
    sock = groups.bare_socket(ctx, zmq.DEALER)
    try:
        sock.connect(a)
        time.sleep(1.0)  # both bound and connected (and imported)
        cpu0 = {"primary": groups.cpu_seconds(primary.pid), "standby": groups.cpu_seconds(standby.pid)}
        cpu0["client"] = groups.cpu_seconds()
        start, n = time.perf_counter(), 0
        for frame, k, _ in frames:
            sock.send(frame)
            sock.recv()  # the replies
            sock.recv()  # the reports
            n += k
        wall = time.perf_counter() - start
        cpu1 = {"primary": groups.cpu_seconds(primary.pid), "standby": groups.cpu_seconds(standby.pid)}
        cpu1["client"] = groups.cpu_seconds()
    finally:
        sock.close(0)
        ctx.term()
        groups.stop(primary)
        groups.stop(standby)
    return {"orders_per_s": n / wall, "cpu_us_per_order": groups.cpu_per_order(cpu0, cpu1, n)}


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["primary"]:
        return primary_server(args_in[1], args_in[2], "--work" in args_in)
    if args_in[:1] == ["standby"]:
        return standby_server(args_in[1], "--work" in args_in)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.batch_floor", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(args_in)
    frames = windows(args.orders, args.window, args.seed)
    runs: dict[str, list[dict]] = {"bare": [], "replica": []}
    for _ in range(args.rounds):
        for variant in runs:
            runs[variant].append(one_pass(frames, variant == "replica"))
    result: dict[str, Any] = {
        "orders": sum(k for _, k, _ in frames),
        "window": args.window,
        "rounds": args.rounds,
    }
    for variant, rs in runs.items():
        result[variant] = {
            "orders_per_s": round(statistics.median(r["orders_per_s"] for r in rs)),
            "cpu_us_per_order": {
                p: round(statistics.median(r["cpu_us_per_order"][p] for r in rs), 3)
                for p in rs[0]["cpu_us_per_order"]
            },
        }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['orders']:,} orders, window {args.window}, median of {args.rounds} interleaved rounds")
    for variant in runs:
        r = result[variant]
        cpu = ", ".join(f"{p} {v:.2f}" for p, v in r["cpu_us_per_order"].items())
        print(f"{variant:>8}: {r['orders_per_s']:>10,} orders/s   CPU us/order: {cpu}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
