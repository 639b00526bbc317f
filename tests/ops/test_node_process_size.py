"""A node process stays small: no numpy before its CLI has set up OpenBLAS, one OpenBLAS thread.

A SIGKILLed node's peers learn of its death only once the kernel has torn it
down (threads, memory), so the node's size is the floor under every such
fail-over (``benchmarks.teardown``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("zmq")

pytestmark = pytest.mark.timeout(60)


def test_importing_the_package_loads_no_numpy():
    # ``python -m replication.ops.cli`` imports the package first: numpy must not load there,
    # or the CLI's OPENBLAS_NUM_THREADS comes too late.
    code = (
        "import sys, replication; assert 'numpy' not in sys.modules; print(replication.ReportsGone.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == "ReportsGone", out.stderr


def test_a_node_started_without_openblas_settings_runs_three_threads(tmp_path):
    # main, ZeroMQ's I/O thread and its reaper; without the CLI's setting OpenBLAS would add
    # one per further core.
    from replication.testing.harness import free_ports
    from replication.transport import group_file

    a, b = free_ports(2)
    path = str(tmp_path / "group.toml")
    nodes = {
        "a": (f"tcp://127.0.0.1:{a}", str(tmp_path / "a")),
        "b": (f"tcp://127.0.0.1:{b}", str(tmp_path / "b")),
    }
    group_file.write(path, "sync", nodes, None)
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    p = subprocess.Popen(
        [sys.executable, "-m", "replication.ops.cli", "standby", "--config", path, "--node", "a"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        from replication.client.admin import group_status

        cfg = group_file.load(path)
        deadline = time.monotonic() + 30
        while group_status(cfg, 0.3)["a"]["role"] == "unreachable":  # up once its loop answers
            assert p.poll() is None and time.monotonic() < deadline, "node a did not start"
        threads = {
            open(f"/proc/{p.pid}/task/{t}/comm").read().strip() for t in os.listdir(f"/proc/{p.pid}/task")
        }
        assert len(os.listdir(f"/proc/{p.pid}/task")) == 3, threads
    finally:
        p.terminate()
        p.communicate(timeout=10)


def test_the_console_script_sets_one_openblas_thread_before_numpy_loads():
    # The ``matchcore`` script's entry (replication.ops.entry) runs before matching/__init__
    # loads numpy; after it, numpy's OpenBLAS has started no thread of its own.
    code = (
        "import os, sys\n"
        "sys.argv = ['matchcore', '--help']\n"
        "from replication.ops import entry\n"
        "try:\n    entry.main()\nexcept SystemExit:\n    pass\n"
        "assert 'numpy' in sys.modules\n"
        "print(os.environ['OPENBLAS_NUM_THREADS'], len(os.listdir('/proc/self/task')), file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stderr.split() == ["1", "1"]  # one OpenBLAS thread (the caller's), no pool
