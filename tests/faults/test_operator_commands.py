"""``matchcore promote`` on real processes, in a group that has a witness.

The case promote is for: the primary is dead and the witness, restarted
without its state file, refuses every automatic promotion (it no longer
knows the in-sync set). The operator's ``promote`` checks every node's and
the witness's report, promotes the standby, and nothing acknowledged is
lost or executed twice. ``MATCHCORE_FAULT_SCALE`` multiplies the orders.
"""

from __future__ import annotations

import json
import os

import pytest

zmq = pytest.importorskip("zmq")

from replication.testing.harness import Group  # noqa: E402

from .test_forged_messages import check_nothing_lost, cli, flow  # noqa: E402

pytestmark = pytest.mark.timeout(180)

SCALE = int(os.environ.get("MATCHCORE_FAULT_SCALE", "1"))


def test_promote_with_a_witness_that_cannot_decide_loses_nothing():
    g = Group(("a", "b"), "sync")
    try:
        g.start_all()
        g.wait_ready()
        c = g.client(31, retry_timeout=0.05)
        try:
            n = 200 * SCALE
            acked = flow(c, 0, n)
            g.wait_for(
                lambda s: s["b"].get("last_seq") == s["a"].get("last_seq") >= n, what="b holds every order"
            )
            # The witness goes, then the primary; the witness comes back without its state file.
            g.kill("witness")
            g.kill("a")
            os.unlink(g.cfg.witness_state)
            g.start("witness")
            g.wait_for(
                lambda s: s["witness"].get("epoch") == 1 and s["witness"].get("isr") is None,
                what="the witness relearned the epoch, not the in-sync set",
            )
            st = g.wait_for(
                lambda s: s["witness"].get("counters", {}).get("votes_denied", 0) > 0,
                what="the witness refusing b's candidacy",
            )
            assert st["b"]["role"] == "standby", st["b"]
            out = cli(g, "promote", "--node", "b")
            assert out.returncode == 0, out.stdout + out.stderr
            assert json.loads(out.stdout)["role"] == "primary"
            acked |= flow(c, n, n)
            st = g.status()
            assert st["b"]["epoch"] == 2 and st["witness"]["epoch"] == 2 and st["witness"]["primary"] == "b"
            # The old primary comes back as a standby and follows b.
            g.start("a", "standby")
            g.wait_for(
                lambda s: s["a"].get("joined") and s["a"].get("last_seq") == s["b"].get("last_seq"),
                what="a follows b",
            )
            # status shows the trust mode, in both forms.
            text = cli(g, "status")
            assert text.stdout.startswith("auth: open"), text.stdout
            assert all(
                v.get("auth") == "open" for v in json.loads(cli(g, "status", "--json").stdout).values()
            )
        finally:
            c.close()
        assert len(acked) == 2 * n
        check_nothing_lost(g, 31, acked, ("b", "a"))
    finally:
        g.stop()


def test_promote_refuses_a_primary_that_answers_and_force_says_what_it_risks():
    g = Group(("a", "b"), "sync")
    try:
        g.start_all()
        g.wait_ready()
        out = cli(g, "promote", "--node", "b")
        assert out.returncode == 1 and "a is primary and answers (use switchover)" in out.stderr, out.stderr
        st = g.status()
        assert st["a"]["role"] == "primary" and st["b"]["role"] == "standby"
    finally:
        g.stop()


def test_promote_with_the_witness_gone_needs_force_and_says_what_it_risks():
    """The witness and the primary are both gone. A plain ``promote`` asks the witness for the
    epoch, hears nothing, and is refused; ``--force`` promotes without it once the bounded wait
    is over, logging what that risks. The witness, back with its state file, learns epoch 2 from
    b; nothing acknowledged is lost or executed twice."""
    g = Group(("a", "b"), "sync")
    try:
        g.start_all()
        g.wait_ready()
        c = g.client(32, retry_timeout=0.05)
        try:
            n = 100 * SCALE
            acked = flow(c, 0, n)
            g.wait_for(
                lambda s: s["b"].get("last_seq") == s["a"].get("last_seq") >= n, what="b holds every order"
            )
            g.kill("witness")
            g.kill("a")
            g.wait_for(lambda s: s["b"].get("leader") == "a" and s["b"]["role"] == "standby", what="b")
            out = cli(g, "promote", "--node", "b")
            assert out.returncode == 1 and "the witness did not answer" in out.stderr, out.stderr
            assert g.status()["b"]["role"] == "standby"
            out = cli(g, "promote", "--node", "b", "--force")
            assert out.returncode == 0, out.stdout + out.stderr
            body = json.loads(out.stdout.splitlines()[-1])
            assert body["role"] == "primary" and body["epoch"] == 2
            assert body["counters"]["promotes_without_witness"] == 1
            assert "promote_forced_without_witness" in g.tail_logs(200)
            # A sync primary drops its dead standby from the in-sync set only with the witness's
            # agreement: b serves again once the witness is back and has learned epoch 2 from it.
            g.start("witness")
            g.wait_for(
                lambda s: s["witness"].get("epoch") == 2 and s["witness"].get("primary") == "b",
                what="the witness learned epoch 2 from b",
            )
            acked |= flow(c, n, n)
        finally:
            c.close()
        assert len(acked) == 2 * n
        check_nothing_lost(g, 32, acked, ("b",))
    finally:
        g.stop()
