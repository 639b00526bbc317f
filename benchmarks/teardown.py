"""The kernel's teardown floor: SIGKILL a process the size of a node, time until its peer sees the drop.

For: the floor under the fail-over harness's "SIGKILL -> first order
accepted" (:mod:`benchmarks.failover` measures it before and after its
rounds). When a process is SIGKILLed the kernel frees its memory before it
closes its sockets, so nobody can learn of the death sooner; the delay grows
with the process's resident memory. Each child process here imports what a
node imports (:data:`FLOOR_IMPORTS`), connects a DEALER to a ROUTER of this
process and sleeps; this process SIGKILLs it and waits for the ROUTER's
socket monitor to report ``EVENT_DISCONNECTED`` (how the nodes learn of a
dead peer). Run as ``python -m benchmarks.teardown [N]`` it prints the
figures.

Not for: reporting (the harness summarizes the samples) or anything about
the replication protocol.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

#: What a serving node has imported: ``python -m replication.ops.cli`` (runpy, the CLI), what its
#: ``primary|standby`` command and ``node_driver`` import, and the engine package. (A node started
#: with ``PYTHONPROFILEIMPORTTIME=1`` lists the same modules once the CLI's parser has run too;
#: ``transport.curve`` only with ``keys_dir``, which the harnesses' groups do not set.)
FLOOR_IMPORTS = (
    "runpy",
    "replication.ops.cli",
    "replication.transport.group_file",
    "replication.transport.node_driver",
    "replication.protocol.node.machine",
    "replication.storage.journal",
    "replication.protocol.replica",
    "matching",
)
#: What a node's CLI sets in its own environment before numpy loads (``replication.ops.cli``).
NODE_ENV = {"OPENBLAS_NUM_THREADS": "1"}
#: The floor's child: the node's imports and CLI parse, one ZeroMQ context, a DEALER that has sent
#: one frame; then it sleeps until killed.
_CHILD = """\
import argparse
import sys
import time

import zmq

import {imports}

parser = argparse.ArgumentParser(prog="python -m replication.ops.cli")
replication.ops.cli.add_subcommands(parser.add_subparsers(dest="command", required=True))
parser.parse_args(["primary", "--config", "group.toml", "--node", "a"])
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.setsockopt(zmq.LINGER, 0)
s.connect(sys.argv[1])
s.send(b"up")
time.sleep(float(sys.argv[2]))
"""


def rss_kb(pid: int) -> int | None:
    """``VmRSS`` of process ``pid`` in KiB (``/proc/PID/status``); None if unknown."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _kill_and_watch(proc: subprocess.Popen, mon: Any, timeout: float) -> tuple[float, float | None]:
    """SIGKILL ``proc``; ms until ``mon`` reports a disconnect, and until the process has exited.

    The exit is seen through a pidfd (None where there is none). O(1).
    """
    import zmq

    from replication.transport.monitor import drain_disconnects

    drain_disconnects(mon)  # nothing stale
    pidfd = os.pidfd_open(proc.pid) if hasattr(os, "pidfd_open") else None
    poller = zmq.Poller()
    poller.register(mon, zmq.POLLIN)
    if pidfd is not None:
        poller.register(pidfd, zmq.POLLIN)
    t_drop = t_exit = None
    try:
        t0 = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        deadline = t0 + timeout
        while t_drop is None or (pidfd is not None and t_exit is None):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no disconnect from a SIGKILLed floor process within {timeout} s")
            for what, _ in poller.poll(max(1, int(left * 1000))):
                now = time.monotonic()
                if what is mon:
                    if drain_disconnects(mon) and t_drop is None:
                        t_drop = now
                elif t_exit is None:
                    t_exit = now
                    poller.unregister(pidfd)  # stays readable
    finally:
        if pidfd is not None:
            os.close(pidfd)
    return (t_drop - t0) * 1000, None if t_exit is None else (t_exit - t0) * 1000


def measure(n: int, start_timeout: float = 60.0, kill_timeout: float = 5.0) -> list[dict[str, Any]]:
    """SIGKILL ``n`` node-sized processes one at a time; time signal -> the peer sees the drop.

    Each child imports :data:`FLOOR_IMPORTS`, connects a DEALER to its own
    ROUTER in this process (one ROUTER per child, so a drop is never
    misattributed), sends one frame, and sleeps. Once every child's frame has
    arrived each is killed in turn: its ``VmRSS`` is read, SIGKILL sent, and
    the time to the ROUTER's ``EVENT_DISCONNECTED`` (and to the exit, via a
    pidfd) recorded. Every child is killed and reaped on every path.

    Returns
    -------
    list of dict
        Per child: ``disconnect_ms``, ``exit_ms`` (None without pidfds),
        ``rss_kb`` (its ``VmRSS`` just before the kill) and ``pid``.
    """
    import zmq

    ctx = zmq.Context.instance()
    code = _CHILD.format(imports=", ".join(FLOOR_IMPORTS))
    linger = start_timeout + n * (kill_timeout + 1) + 60  # the child's own bound, should we vanish
    pairs: list[tuple[Any, Any]] = []  # (ROUTER, its monitor)
    procs: list[subprocess.Popen] = []
    samples: list[dict[str, Any]] = []
    try:
        for _ in range(n):
            r = ctx.socket(zmq.ROUTER)
            r.setsockopt(zmq.LINGER, 0)
            pairs.append((r, r.get_monitor_socket(zmq.EVENT_DISCONNECTED)))
            r.bind("tcp://127.0.0.1:*")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", code, r.getsockopt_string(zmq.LAST_ENDPOINT), str(linger)],
                    env={**os.environ, **NODE_ENV},
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                )
            )
        waiting = {r: p for (r, _), p in zip(pairs, procs, strict=True)}
        poller = zmq.Poller()
        for r in waiting:
            poller.register(r, zmq.POLLIN)
        deadline = time.monotonic() + start_timeout
        while waiting:
            for r, _ in poller.poll(100):
                r.recv_multipart()
                poller.unregister(r)
                del waiting[r]
            dead = [p for p in waiting.values() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = dead[0].stderr.read().decode(errors="replace")[-2000:] if dead else ""
                raise RuntimeError(f"{len(waiting)} of {n} floor processes did not connect\n{why}")
        for (_, mon), p in zip(pairs, procs, strict=True):
            time.sleep(0.02)  # the previous child's teardown done, this one asleep
            rss = rss_kb(p.pid)
            drop_ms, exit_ms = _kill_and_watch(p, mon, kill_timeout)
            p.wait(kill_timeout)
            samples.append(
                {
                    "disconnect_ms": round(drop_ms, 3),
                    "exit_ms": None if exit_ms is None else round(exit_ms, 3),
                    "rss_kb": rss,
                    "pid": p.pid,
                }
            )
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(kill_timeout)
            if p.stderr is not None:
                p.stderr.close()
        for r, mon in pairs:
            with contextlib.suppress(zmq.ZMQError):
                r.disable_monitor()
            mon.close(0)
            r.close(0)
    return samples


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.teardown [N]``: SIGKILL N node-sized processes, print the medians."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {__package__}.teardown", description=__doc__.split("\n")[0]
    )
    parser.add_argument("n", type=int, nargs="?", default=20, help="processes to kill (default 20)")
    samples = measure(parser.parse_args(argv).n)

    def med(key: str) -> float:
        vals = [x[key] for x in samples if x[key] is not None]
        return statistics.median(vals) if vals else float("nan")

    print(
        f"{len(samples)} processes, RSS {med('rss_kb') / 1024:.1f} MB: SIGKILL -> the peer sees the drop "
        f"{med('disconnect_ms'):.3f} ms, -> the process has exited {med('exit_ms'):.3f} ms (medians)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
