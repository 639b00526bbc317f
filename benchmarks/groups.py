"""Process plumbing shared by the replication harnesses (replication, failover, catchup).

For: starting a real group on loopback through :class:`replication.testing.harness.Group`
(the same helper the demo and the process tests use) with the timing keys a
harness asks for; making sure every process it started ends on every path
(``finally``, ``atexit``, SIGTERM turned into ``KeyboardInterrupt``); the
bare-pyzmq echo server that gives the latency floor; the standard mix as
command records a ``replication.Client`` can send; and the "targets" table
the harnesses print. Run as ``python -m benchmarks.groups echo ENDPOINT
REPLY_BYTES`` it *is* that echo server.

Not for: measuring anything (the harness modules decide what to time), nor
for protocol logic (that is ``replication``).
"""

from __future__ import annotations

import atexit
import contextlib
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from . import common


def _config_defaults() -> dict[str, float]:
    """The group file's failure-detector defaults, read from ``replication.protocol.settings.Settings``."""
    from replication.protocol.settings import Settings

    d = Settings()
    return {
        "heartbeat_ms": round(d.heartbeat_interval * 1000, 3),
        "timeout_ms": round(d.heartbeat_timeout * 1000, 3),
        "suspect_ms": round(d.suspect_timeout * 1000, 3),
    }


#: Keys of the group file the harnesses expose as flags (config.py's defaults).
CONFIG_DEFAULTS = _config_defaults()

_live: list[Any] = []  # groups and Popen objects still running, for the atexit safety net


def _cleanup_all() -> None:
    for thing in list(_live):
        with contextlib.suppress(Exception):
            stop(thing)


atexit.register(_cleanup_all)


def stop(thing: Any) -> None:
    """Stop a ``Group`` (every process, temp dir) or one ``Popen`` (SIGTERM, then SIGKILL); bounded."""
    if thing in _live:
        _live.remove(thing)
    if isinstance(thing, subprocess.Popen):
        if thing.poll() is None:
            with contextlib.suppress(OSError):
                thing.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            thing.terminate()
            try:
                thing.wait(3)
            except subprocess.TimeoutExpired:
                thing.kill()
                thing.wait(5)
        return
    for p in thing.procs.values():  # a SIGSTOPped node would ignore SIGTERM until continued
        if p.poll() is None:
            with contextlib.suppress(OSError):
                p.send_signal(signal.SIGCONT)
    thing.stop()


@contextlib.contextmanager
def group(
    nodes: tuple[str, ...] = ("a", "b"),
    mode: str = "sync",
    extra: dict[str, Any] | None = None,
    engine: str = "auto",
    node_keys: dict[str, dict[str, Any]] | None = None,
) -> Iterator[Any]:
    """A :class:`replication.testing.harness.Group` that is stopped however the block ends.

    Parameters
    ----------
    nodes : tuple of str
        Node names; the first starts as primary.
    mode : str
        ``sync`` or ``async``.
    extra : dict, optional
        Group-file keys (``heartbeat_ms``, ``timeout_ms``, ``catchup_snapshot_lag``, ...)
        over the demo's defaults.
    engine : str
        ``auto`` | ``native`` | ``reference``.
    node_keys : dict, optional
        Keys of a node's own table (``{"a": {"busy_poll": True}}``).
    """
    from replication.testing.harness import Group

    g = Group(nodes, mode, engine, extra=extra, node_keys=node_keys)
    _live.append(g)
    try:
        yield g
    finally:
        stop(g)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` so ``finally`` clauses run."""

    def handler(signum: int, frame: Any) -> None:  # noqa: ARG001
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def timing_extra(args: Any) -> dict[str, Any]:
    """Group-file keys from ``--heartbeat-ms --timeout-ms --suspect-ms`` (and ``--fsync`` if the harness has it)."""
    out = {k: getattr(args, k) for k in CONFIG_DEFAULTS}
    if getattr(args, "fsync", None):
        out["fsync"] = args.fsync
    return out


def add_timing_arguments(parser: Any, timeout_ms: int = CONFIG_DEFAULTS["timeout_ms"]) -> None:
    """The failure-detector flags (group-file keys of the same names)."""
    parser.add_argument(
        "--heartbeat-ms",
        dest="heartbeat_ms",
        type=float,
        default=CONFIG_DEFAULTS["heartbeat_ms"],
        help="group-file heartbeat_ms (default %(default)s)",
    )
    parser.add_argument(
        "--timeout-ms",
        dest="timeout_ms",
        type=float,
        default=timeout_ms,
        help="group-file timeout_ms: silence that means dead (default %(default)s)",
    )
    parser.add_argument(
        "--suspect-ms",
        dest="suspect_ms",
        type=float,
        default=CONFIG_DEFAULTS["suspect_ms"],
        help="group-file suspect_ms: timeout after a dropped connection (default %(default)s)",
    )
    parser.add_argument(
        "--fsync",
        choices=("none", "batch", "always"),
        default="batch",
        help="group-file fsync policy of every node's journal (default batch, the group default)",
    )


# ----- the standard mix as records ------------------------------------------------------


def mix_records(n: int, seed: int, instruments: int = 1) -> tuple[list[tuple], list[tuple]]:
    """The standard mix (:mod:`benchmarks.workload`) as ``COMMAND_DTYPE`` record tuples.

    Returns
    -------
    (setup, ops) : two lists of tuple
        Records ``Client.send`` takes as they are (no per-send dict parsing).
    """
    from .workload import command_array, generate

    wl = generate(n, instruments, seed)
    return command_array(wl.setup).tolist(), command_array(wl.ops).tolist()


def message_sizes() -> tuple[int, int]:
    """Encoded sizes of a client request and of a one-event reply (what the floor echoes)."""
    from matching import EVENT_DTYPE
    from replication.protocol import wire

    req = wire.encode(wire.Request(7, 1 << 50, bytes(80)))
    rep = wire.encode(wire.Reply(7, 1 << 50, wire.OK, 1, 1 << 20, "a", bytes(EVENT_DTYPE.itemsize)))
    return len(req), len(rep)


# ----- CPU per order ------------------------------------------------------------------------------


def cpu_seconds(pid: int | None = None) -> float | None:
    """User + system CPU seconds of process ``pid`` (None: this process) so far; None if unknown.

    CPU time per order does not depend on what else the machine is doing, so
    it is the figure to compare across runs on a shared, noisy machine.
    Other processes are read from ``/proc`` (Linux only).
    """
    import os
    import resource

    if pid is None:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(g: Any) -> dict[str, float | None]:
    """CPU seconds of every process of the group ``g`` and of this one (key ``client``)."""
    out = {name: cpu_seconds(p.pid) for name, p in g.procs.items()}
    out["client"] = cpu_seconds()
    return out


def cpu_per_order(
    before: dict[str, float | None], after: dict[str, float | None], orders: int
) -> dict[str, float]:
    """Microseconds of CPU per order for each process between two :func:`cpu_snapshot` calls."""
    return {
        name: round((after[name] - b) / orders * 1e6, 2)
        for name, b in before.items()
        if b is not None and after.get(name) is not None and orders
    }


# ----- the floor: a bare pyzmq echo ------------------------------------------------------------


def until_sigterm() -> list[bool]:
    """``[True]`` until this process gets SIGTERM, then ``[False]``: a bare server's loop condition."""
    running = [True]

    def halt(signum: int, frame: Any) -> None:  # noqa: ARG001
        running[0] = False

    signal.signal(signal.SIGTERM, halt)
    return running


def bare_socket(ctx: Any, kind: int) -> Any:
    """A socket of a floor server: no linger, high-water marks out of the way."""
    import zmq

    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVHWM, 1_000_000)
    s.setsockopt(zmq.SNDHWM, 1_000_000)
    return s


def echo_server(endpoint: str, reply_bytes: int) -> int:
    """ROUTER at ``endpoint``: answer every frame with its first 8 bytes padded to ``reply_bytes``.

    The loop has the node driver's shape (poll, drain, send) and nothing else.
    Runs until SIGTERM.
    """
    import zmq

    running = until_sigterm()
    ctx = zmq.Context()
    s = bare_socket(ctx, zmq.ROUTER)
    s.bind(endpoint)
    pad = bytes(max(0, reply_bytes - 8))
    poller = zmq.Poller()
    poller.register(s, zmq.POLLIN)
    while running[0]:
        if not poller.poll(100):
            continue
        for _ in range(4096):
            try:
                ident, frame = s.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            except ValueError:
                continue
            s.send_multipart([ident, frame[:8] + pad], zmq.NOBLOCK)
    s.close(0)
    ctx.term()
    return 0


def _spawn(argv: list[str]) -> subprocess.Popen:
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
    _live.append(proc)
    return proc


def start_echo_server(reply_bytes: int) -> tuple[str, subprocess.Popen]:
    """An :func:`echo_server` process on a free loopback port: its endpoint and process."""
    from replication.testing.harness import free_ports

    endpoint = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    return endpoint, _spawn(
        [sys.executable, "-m", f"{__package__}.groups", "echo", endpoint, str(reply_bytes)]
    )


class Echo:
    """The echo server in its own process, and a DEALER to it with the client's loop shape.

    Parameters
    ----------
    request_bytes, reply_bytes : int
        Frame sizes, the same as a client request and a one-event reply.
    """

    def __init__(
        self, request_bytes: int, reply_bytes: int, server: tuple[str, list[str]] | None = None
    ) -> None:
        import zmq

        if server is None:
            self.endpoint, self.proc = start_echo_server(reply_bytes)
        else:  # another server with the echo's contract (benchmarks.twohop's relay)
            self.endpoint, argv = server
            self.proc = _spawn(argv)
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 100_000)
        self.sock.setsockopt(zmq.RCVHWM, 100_000)
        self.sock.connect(self.endpoint)
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.pad = bytes(max(0, request_bytes - 8))
        self._pack = struct.Struct("<Q")
        deadline = time.monotonic() + 20
        while True:  # until the server answers (it is a fresh interpreter)
            self.send(0)
            if self.sock.poll(200):
                self.poll()
                break
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("echo server did not start")

    def send(self, i: int) -> None:
        """Send request ``i`` (non-blocking)."""
        import zmq

        self.sock.send(self._pack.pack(i) + self.pad, zmq.NOBLOCK)

    def poll(self, wait: float = 0.0) -> list[int]:
        """Indices of the answers that arrived, waiting up to ``wait`` seconds for the first.

        Waits as ``replication.Client`` does: ``select`` on the socket's
        ``ZMQ_FD`` (sub-millisecond), after checking ``ZMQ_EVENTS``.
        """
        import select

        import zmq

        out = []
        if wait > 0 and not self.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            select.select([self.sock.getsockopt(zmq.FD)], [], [], wait)
        if self.poller.poll(0):
            while True:
                try:
                    frame = self.sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                out.append(self._pack.unpack_from(frame)[0])
        return out

    def close(self) -> None:
        """Close the socket and stop the server process."""
        self.sock.close(0)
        stop(self.proc)


def floor_rtt(n: int = 300, timeout: float = 10.0) -> dict[str, Any]:
    """Latency summary (ns) of ``n`` one-at-a-time round trips to a fresh echo server process.

    The machine's loopback + scheduling floor right now: context for figures
    made of a few sequential hops (fail-over), taken in the same run.
    """
    req, rep = message_sizes()
    echo = Echo(req, rep)
    lat = []
    try:
        pc = time.perf_counter_ns
        for i in range(1, n + 1):
            t = pc()
            echo.send(i)
            deadline = time.monotonic() + timeout
            while i not in echo.poll():
                if time.monotonic() > deadline:
                    raise TimeoutError("echo server stopped answering")
            lat.append(pc() - t)
    finally:
        echo.close()
    return common.latency_summary(common.histogram(lat))


# ----- targets ---------------------------------------------------------------------------------


def target(name: str, value: float | None, goal: float, op: str, unit: str) -> dict[str, Any]:
    """One target row: goal, measured value, met (None = not measured), measured / goal."""
    met = None if value is None else (value >= goal if op == ">=" else value <= goal)
    return {
        "target": name,
        "goal": f"{op} {goal:,.0f} {unit}"
        if float(goal).is_integer() and goal >= 1000
        else f"{op} {goal:g} {unit}",
        "measured": value,
        "unit": unit,
        "met": met,
        "measured_over_goal": None if value is None or not goal else round(value / goal, 3),
    }


def print_targets(title: str, rows: list[dict[str, Any]]) -> None:
    """The targets table: goal, measured, met or missed by how much."""
    out = []
    for t in rows:
        v = t["measured"]
        if v is None:
            shown = "-"
        elif t["unit"] == "ns":
            shown = common.fmt_ns(v)
        elif t["unit"] == "ms":
            shown = f"{v:,.3f} ms"
        elif v >= 1000:
            shown = common.fmt_int(v)
        else:
            shown = f"{v:,.2f}"
        verdict = {None: "not measured", True: "met"}.get(
            t["met"]
        ) or f"missed ({t['measured_over_goal']:g}x goal)"
        out.append([t["target"], t["goal"], shown, verdict])
    common.print_table(title, ["target", "goal", "measured", ""], out)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.groups echo ENDPOINT REPLY_BYTES``: the floor's echo server."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] != "echo":
        print(f"usage: python -m {__package__}.groups echo ENDPOINT REPLY_BYTES", file=sys.stderr)
        return 2
    return echo_server(args[1], int(args[2]))


if __name__ == "__main__":
    sys.exit(main())
