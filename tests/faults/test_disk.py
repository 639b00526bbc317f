"""Disk faults on real processes: a full disk under each role, and bytes flipped in stopped journals.

Each test runs a small group (``replication.testing.harness.Group``) on loopback. A full
disk is a small tmpfs the test mounts over a node's journal directory (or the
witness's state directory) and fills with a filler file, leaving a few pages
free; it needs root, and the test skips cleanly where the mount is refused.
Every mount is unmounted and every process stopped, whatever happens.

Each test compares every acknowledged reply (request id -> seq) against the
journals of the surviving nodes (each acknowledged request exactly once, at
its seq), and checks that the group still serves or says clearly why not:
``status`` names the error and the node's log has one line for it, no
traceback. No assertion on time. ``MATCHCORE_FAULT_SCALE`` (default 1)
scales the order counts for a longer run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

zmq = pytest.importorskip("zmq")

from replication.protocol import wire  # noqa: E402
from replication.storage.journal import RECORD  # noqa: E402
from replication.testing.harness import Group, order  # noqa: E402

pytestmark = pytest.mark.timeout(180)

SCALE = int(os.environ.get("MATCHCORE_FAULT_SCALE", "1"))
FREE = 16 * 4096  # bytes the filler leaves free on a "full" disk: ~650 journal records


class Disks:
    """Small tmpfs mounts under a group's temp dir; unmounted at teardown (after the processes)."""

    def __init__(self) -> None:
        self.mounts: list[str] = []

    def mount(self, path: str, size: str = "2m") -> None:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        os.makedirs(path, exist_ok=True)
        res = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], capture_output=True, timeout=10
        )
        if res.returncode != 0:
            pytest.skip(f"tmpfs mount refused: {res.stderr.decode(errors='replace').strip()}")
        self.mounts.append(path)

    def fill(self, path: str, leave: int = FREE) -> str:
        """Fill the mount at ``path`` up, then give back ``leave`` bytes; return the filler's path."""
        filler = os.path.join(path, "filler")
        chunk = b"\xa5" * (1 << 16)
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(chunk)
                    f.flush()
            except OSError:
                pass
        with open(filler, "r+b") as f:
            size = os.fstat(f.fileno()).st_size
            f.truncate(max(0, size - leave))
        return filler

    def unmount_all(self) -> None:
        for path in reversed(self.mounts):
            subprocess.run(["umount", "-l", path], capture_output=True, timeout=10)
        self.mounts = []


@pytest.fixture
def env():
    groups: list[Group] = []
    disks = Disks()

    def make(*args, **kw) -> Group:
        g = Group(*args, **kw)
        groups.append(g)
        return g

    yield make, disks
    for g in groups:
        for name in list(g.procs):
            g.kill(name)
    disks.unmount_all()
    for g in groups:
        g.stop()


# -- helpers -----------------------------------------------------------------------------


def send_flow(c, first: int, n: int, until=None, timeout: float = 30.0) -> dict[int, wire.Reply]:
    """Send orders first..first+n-1 pipelined; return {request id: Reply} of the OK replies.

    Stops when all are acknowledged, when ``until()`` holds, or at ``timeout``."""
    acked: dict[int, wire.Reply] = {}
    sent = 0
    deadline = time.monotonic() + timeout
    while len(acked) < n and time.monotonic() < deadline:
        while sent < n and c.in_flight < 16:
            c.send(order(first + sent))
            sent += 1
        for r in c.poll_replies(0.005):
            if r.status == wire.OK:
                acked[r.request_id] = r
        if until is not None and until():
            break
    return acked


def check_acked(g: Group, acked: dict[int, wire.Reply], nodes: list[str], client_id: int) -> None:
    """Every acknowledged request in each node's journal once, at the seq its reply named."""
    for name in nodes:
        entries = g.journal_entries(name)
        keys = [(e.client_id, e.request_id) for e in entries if e.client_id]  # (0: time commands)
        assert len(keys) == len(set(keys)), f"{name}: a request executed twice"
        at = {e.request_id: e.seq for e in entries if e.client_id == client_id}
        lost = sorted(rid for rid in acked if at.get(rid) != acked[rid].seq)
        assert not lost, f"{name}: acknowledged requests missing or moved: {lost[:10]} of {len(acked)}"


def log_of(g: Group, name: str) -> str:
    g.logs[name].flush()
    with open(os.path.join(g.dir, f"{name}.log"), "rb") as f:
        return f.read().decode("utf-8", "replace")


def assert_clear_error(g: Group, name: str, needle: str) -> None:
    text = log_of(g, name)
    assert "Traceback" not in text, text[-3000:]
    assert sum(1 for line in text.splitlines() if needle in line) == 1, text[-3000:]


def error_of(name: str):
    return lambda st: bool(st[name].get("error"))


# -- a full disk ---------------------------------------------------------------------------


def test_full_disk_under_a_solo_primary_acknowledges_only_what_it_wrote(env):
    """Finding 5: solo, the primary acknowledged entries it never wrote. Now it stops at the
    first failed write, says why, and after a restart with room every acknowledged order is there."""
    make, disks = env
    g = make(("a",), "sync")
    disks.mount(os.path.join(g.dir, "a"))
    g.start_all()
    g.wait_for(lambda st: st["a"].get("role") == "primary", what="a primary")
    filler = disks.fill(os.path.join(g.dir, "a"))
    c = g.client(7, timeout=5.0, retry_timeout=0.05)
    try:
        full = error_of("a")
        n = FREE // RECORD * 2 * SCALE
        acked = send_flow(c, 0, n, until=lambda: full(g.status(0.3)))
        st = g.wait_for(full, what="a reports its journal error")
    finally:
        c.close()
    assert 0 < len(acked) < n
    assert st["a"]["error"] == f"journal: ENOSPC writing {os.path.join(g.dir, 'a', 'entries.log')}"
    assert st["a"]["role"] == "standby" and g.procs["a"].poll() is None  # up, not serving
    shown = subprocess.run(
        [sys.executable, "-m", "replication.ops.cli", "status", "--config", g.path],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert f"error: {st['a']['error']}" in shown.stdout, shown.stdout
    assert_clear_error(g, "a", "journal_failed")
    g.kill("a", signal.SIGTERM)
    check_acked(g, acked, ["a"], 7)
    os.unlink(filler)  # the operator frees the disk and restarts the node: it serves again
    g.start("a")
    g.wait_for(lambda st: st["a"].get("role") == "primary", what="a primary again")
    c = g.client(8, timeout=5.0, retry_timeout=0.05)
    try:
        more = send_flow(c, n, 50)
    finally:
        c.close()
    assert len(more) == 50
    g.kill("a", signal.SIGTERM)
    check_acked(g, acked, ["a"], 7)
    check_acked(g, more, ["a"], 8)


def test_full_disk_under_the_primary_hands_the_group_to_its_standby(env):
    """With a standby, the primary crashed with an ENOSPC traceback. Now it stops acknowledging,
    stays up to say why, and the in-sync standby takes over with every acknowledged order."""
    make, disks = env
    g = make(("a", "b"), "sync")
    disks.mount(os.path.join(g.dir, "a"))
    g.start_all()
    g.wait_ready()
    g.wait_for(lambda st: st["a"].get("isr") == ["b"], what="b in sync")
    disks.fill(os.path.join(g.dir, "a"))
    c = g.client(7, timeout=10.0, retry_timeout=0.05)
    try:
        n = FREE // RECORD * 2 * SCALE
        acked = send_flow(c, 0, n, timeout=60.0)
    finally:
        c.close()
    assert len(acked) == n  # the group kept serving: b took over
    st = g.wait_for(lambda s: s["b"].get("role") == "primary" and s["a"].get("error"), what="b primary")
    assert st["a"]["error"].startswith("journal: ENOSPC writing") and g.procs["a"].poll() is None
    assert_clear_error(g, "a", "journal_failed")
    g.kill("a", signal.SIGTERM)
    g.kill("b", signal.SIGTERM)
    check_acked(g, acked, ["b"], 7)


def test_full_disk_under_the_standby_leaves_the_primary_serving(env):
    make, disks = env
    g = make(("a", "b"), "sync")
    disks.mount(os.path.join(g.dir, "b"))
    g.start_all()
    g.wait_ready()
    g.wait_for(lambda st: st["a"].get("isr") == ["b"], what="b in sync")
    disks.fill(os.path.join(g.dir, "b"))
    c = g.client(7, timeout=10.0, retry_timeout=0.05)
    try:
        n = FREE // RECORD * 2 * SCALE
        acked = send_flow(c, 0, n, timeout=60.0)
    finally:
        c.close()
    assert len(acked) == n
    st = g.wait_for(lambda s: s["b"].get("error") and s["a"].get("isr") == [], what="b out of the ISR")
    assert st["a"]["role"] == "primary" and st["b"]["error"].startswith("journal: ENOSPC writing")
    assert_clear_error(g, "b", "journal_failed")
    g.kill("a", signal.SIGTERM)
    g.kill("b", signal.SIGTERM)
    check_acked(g, acked, ["a"], 7)
    # b acknowledged only entries it wrote: its journal is a prefix of a's.
    a_entries, b_entries = g.journal_entries("a"), g.journal_entries("b")
    assert b_entries == a_entries[: len(b_entries)]


def _witness_state_on_tmpfs(g: Group, disks: Disks) -> str:
    """Point the group file's witness state at a fresh tmpfs; return that directory."""
    from replication.transport import group_file as config

    wdir = os.path.join(g.dir, "w")
    disks.mount(wdir, "64k")
    config.write(
        g.path,
        "sync",
        {n: (ep, os.path.join(g.dir, n)) for n, ep in g.endpoints.items()},
        g.witness_endpoint,
        {"heartbeat_ms": 5, "timeout_ms": 100, "suspect_ms": 0, "fsync": "batch"},
        witness_state=os.path.join(wdir, "witness.state"),
    )
    return wdir


def test_full_disk_under_the_witness(env):
    """The witness saves its decisions in place (no new space once its file exists): a fail-over
    still works on a full disk. A witness that cannot create its file decides nothing, says why,
    and stays up."""
    make, disks = env
    g = make(("a", "b"), "sync")
    wdir = _witness_state_on_tmpfs(g, disks)
    g.start_all()
    g.wait_ready()
    g.wait_for(lambda st: st["witness"].get("isr") == ["b"], what="the witness knows b in sync")
    disks.fill(wdir, leave=0)
    c = g.client(7, timeout=10.0, retry_timeout=0.05)
    try:
        acked = send_flow(c, 0, 100 * SCALE)
        g.kill("a")
        acked.update(send_flow(c, 100 * SCALE, 100 * SCALE, timeout=60.0))
    finally:
        c.close()
    assert len(acked) == 200 * SCALE
    st = g.wait_for(lambda s: s["b"].get("role") == "primary", what="b primary")
    assert st["b"]["epoch"] == 2 and not st["witness"]["error"]
    g.kill("b", signal.SIGTERM)
    check_acked(g, acked, ["b"], 7)
    for name in list(g.procs):
        g.kill(name, signal.SIGTERM)

    # A new group whose witness finds its disk full before its first save.
    g2 = make(("a", "b"), "sync")
    wdir2 = _witness_state_on_tmpfs(g2, disks)
    disks.fill(wdir2, leave=0)
    g2.start_all()
    st = g2.wait_for(lambda s: s["witness"].get("error"), what="the witness reports its error")
    assert st["witness"]["error"] == f"witness state: ENOSPC writing {os.path.join(wdir2, 'witness.state')}"
    time.sleep(0.3)
    st = g2.status()
    assert all(st[n].get("role") != "primary" for n in ("a", "b"))  # no decision it could not save
    assert g2.procs["witness"].poll() is None
    assert_clear_error(g2, "witness", "witness_state_failed")


# -- flipped bytes -------------------------------------------------------------------------


def _flip(path: str, offset: int) -> bytes:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x20]))
    with open(path, "rb") as f:
        return f.read()


def test_a_flipped_byte_mid_journal_of_the_last_primary(env):
    """Finding 6: the last primary, a byte flipped mid-journal, restarted with the standby down, was
    elected on half its history and the returning standby fenced to match. Now it reports the
    damage, serves nothing, keeps the file as it was, and once the standby is back the standby
    leads and the damaged node gets its history back."""
    make, _ = env
    g = make(("a", "b"), "sync")
    g.start_all()
    g.wait_ready()
    g.wait_for(lambda st: st["a"].get("isr") == ["b"], what="b in sync")
    n = 400 * SCALE
    c = g.client(7, timeout=10.0, retry_timeout=0.05)
    try:
        acked = send_flow(c, 0, n)
    finally:
        c.close()
    assert len(acked) == n
    for name in ("b", "a", "witness"):
        g.kill(name, signal.SIGTERM)
    log_path = os.path.join(g.dir, "a", "entries.log")
    size = os.path.getsize(log_path)
    bad = _flip(log_path, size // 2 + 10)
    seq = size // 2 // RECORD + 1
    g.start("witness")
    g.start("a", "primary")
    st = g.wait_for(lambda s: s["a"].get("damaged"), what="a reports the damage")
    assert f"{log_path} at offset {(seq - 1) * RECORD} (seq {seq})" in st["a"]["damaged"]
    time.sleep(0.5)
    st = g.status()
    assert st["a"]["role"] == "standby" and st["a"]["last_seq"] == 0  # neither serves nor votes
    with open(log_path, "rb") as f:
        assert f.read() == bad  # nothing cut
    g.start("b")
    g.wait_for(lambda s: s["b"].get("role") == "primary", what="b primary")
    c = g.client(8, timeout=10.0, retry_timeout=0.05)
    try:
        more = send_flow(c, n, 50)
    finally:
        c.close()
    st = g.wait_for(
        lambda s: not s["a"].get("damaged") and s["a"].get("last_seq") == s["b"].get("last_seq"),
        what="a repaired",
    )
    assert st["a"]["digest"] == st["b"]["digest"]
    assert_clear_error(g, "a", "journal_damaged")
    for name in ("a", "b"):
        g.kill(name, signal.SIGTERM)
    check_acked(g, acked, ["a", "b"], 7)
    check_acked(g, more, ["a", "b"], 8)


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_a_damaged_snapshot_of_the_standby(env, how):
    """A flipped or truncated snapshot: the node does not "start empty" as if nothing happened; it
    reports the damage, and the primary gives it its history back."""
    make, _ = env
    g = make(("a", "b"), "sync", extra={"snapshot_every": 100})
    g.start_all()
    g.wait_ready()
    n = 300 * SCALE
    c = g.client(7, timeout=10.0, retry_timeout=0.05)
    try:
        acked = send_flow(c, 0, n)
        g.kill("b", signal.SIGTERM)
        snap = os.path.join(g.dir, "b", "snapshot.bin")
        size = os.path.getsize(snap)
        if how == "flip":
            _flip(snap, size // 2)
        else:
            os.truncate(snap, size // 2)
        g.start("b")
        more = send_flow(c, n, 50)
    finally:
        c.close()
    g.wait_for(
        lambda s: not s["b"].get("damaged") and s["b"].get("last_seq") == s["a"].get("last_seq"),
        what="b repaired",
    )
    # (The repair is quick: the log, not a status poll, is where the damage is sure to show.)
    text = log_of(g, "b")
    assert "Traceback" not in text
    damaged = [line for line in text.splitlines() if "journal_damaged" in line]
    assert len(damaged) == 1 and f"{snap} at offset 0" in damaged[0], text[-3000:]
    assert "journal_repaired node=b" in text
    acked.update(more)
    for name in ("a", "b"):
        g.kill(name, signal.SIGTERM)
    check_acked(g, acked, ["a", "b"], 7)


def test_a_journal_that_cannot_be_opened_stops_the_start_with_one_line(env):
    """A journal directory the node cannot create (a file is in its way): a clear message and a
    non-zero exit, no traceback."""
    make, _ = env
    g = make(("a",), "sync")
    with open(os.path.join(g.dir, "a"), "w") as f:
        f.write("not a directory")
    p = g.start("a")
    assert p.wait(30) != 0
    text = log_of(g, "a")
    assert "Traceback" not in text and f"node a: cannot open its journal {os.path.join(g.dir, 'a')}" in text
