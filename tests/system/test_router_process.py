"""``replication.Router`` against two real groups on loopback.

Two groups (primary, standby, witness each; ``replication.testing.harness.Group``) on
distinct ports, one routes file over them, and a router sending orders for
instruments of both: each group must have executed exactly the commands of
its own instruments, in order — its nodes' ``last_seq`` and digest equal a
local ``matching`` engine's replay of just those commands, after the
router's session open there — and a mass
cancel without an instrument must reach both. Every process is stopped and
every temp dir removed whatever happens. Nothing here asserts a duration.
"""

from __future__ import annotations

import time

import pytest

zmq = pytest.importorskip("zmq")

import numpy as np  # noqa: E402

import matching  # noqa: E402
from matching import commands  # noqa: E402
from replication import Router  # noqa: E402
from replication.protocol.session import open_command  # noqa: E402
from replication.testing.harness import Group  # noqa: E402
from replication.transport.group_file import pub_endpoint  # noqa: E402

pytestmark = pytest.mark.timeout(120)

G1, G2 = (1, 2), (3, 4)  # the instruments of each group


def ports_of(g: Group) -> set[str]:
    eps = [*g.endpoints.values(), *([g.witness_endpoint] if g.witness_endpoint else [])]
    return {e.rsplit(":", 1)[1] for ep in eps for e in (ep, pub_endpoint(ep))}


@pytest.fixture
def two_groups():
    made: list[Group] = []
    try:
        # No idle time commands (time_interval_ms = 0): the tests count each group's seqs.
        made.append(Group(("a", "b"), "sync", extra={"time_interval_ms": 0}))
        made.append(Group(("a", "b"), "sync", extra={"time_interval_ms": 0}))
        # Group picks its ports when it is made and binds them later: two groups of one
        # process never share one (demo.free_ports remembers what it handed out).
        assert not ports_of(made[0]) & ports_of(made[1])
        for g in made:
            g.start_all()
        for g in made:
            g.wait_ready()
        yield made
    finally:
        for g in made:
            g.stop()


def flow(n: int) -> list[dict]:
    """Orders over both groups' instruments, crossing and with cancels and replaces."""
    out: list[dict] = []
    for i in range(n):
        instrument = 1 + i % 4
        if i % 9 == 8:
            out.append(commands.cancel_dict(instrument, i - 3))
        elif i % 11 == 10:
            out.append(commands.replace_dict(instrument, i - 7, qty=1))
        else:
            side = "buy" if (i // 4) % 2 == 0 else "sell"
            out.append(
                commands.new_order_dict(
                    instrument, i, side, 100 + (i * 7) % 5, 1 + i % 6, account=1 + (i // 8) % 2
                )
            )
    return out


def local_engine():
    return matching.Engine() if matching.Engine is not None else matching.ReferenceEngine()


def test_router_sends_each_instrument_to_its_group_and_mass_cancel_to_both(two_groups, tmp_path):
    g1, g2 = two_groups
    routes = tmp_path / "routes.toml"
    routes.write_text(
        f'[groups.g1]\nconfig = "{g1.path}"\ninstruments = {list(G1)}\n'
        f'[groups.g2]\nconfig = "{g2.path}"\ninstruments = {list(G2)}\n'
    )
    engines = {"g1": local_engine(), "g2": local_engine()}
    expect_seen: dict[int, list] = {}
    sent: dict[str, int] = {"g1": 0, "g2": 0}

    def expect(cmd: dict) -> list:
        """The events of ``cmd`` on the local twin of every group it goes to, in group order."""
        names = ["g1", "g2"] if cmd["op"] == "mass_cancel" and "instrument" not in cmd else []
        names = names or ["g1" if cmd["instrument"] in G1 else "g2"]
        out = []
        for name in names:
            if not sent[name]:
                # The router's first command to a group opens its session there: one entry, the
                # same effect on the digest whatever the open's nonce (replication.protocol.session).
                engines[name].apply_batch(np.frombuffer(open_command(1), dtype=matching.COMMAND_DTYPE).copy())
                sent[name] += 1
            sent[name] += 1
            out += engines[name].apply(cmd)
        expect_seen[id(cmd)] = out
        return out

    cmds = flow(80)
    with Router.from_file(str(routes), client_id=21, retry_timeout=0.02) as r:
        with pytest.raises(ValueError, match="instrument 5 is served by no group"):
            r.submit(instrument=5, id=1, side="buy", price=1, qty=1)
        # blocking calls, one by one
        for cmd in cmds[:20]:
            assert r.apply(cmd) == expect(cmd), cmd
        # pipelined across both groups
        assert r.submit_many(cmds[20:], window=8) == [expect(c) for c in cmds[20:]]
        # a mass cancel without an instrument reaches both groups
        mass = commands.mass_cancel_dict(account=1)
        events = r.mass_cancel(account=1)
        assert events == expect(mass)
        assert {e.instrument for e in events} == set(G1 + G2)
        assert all(e.reason == "mass_cancel" for e in events)
        # Execution reports from both groups: every event of the router's orders once (a trade
        # between two of its orders once per side), each group's in seq order.
        want = [e for c in cmds for e in expect_seen[id(c)]] + events
        reports: list[dict] = []
        deadline = time.monotonic() + 20
        while len(reports) < len(want) + sum(type(e).__name__ == "Trade" for e in want):
            assert time.monotonic() < deadline, f"{len(reports)} reports"
            reports += r.executions(timeout=0.2)
        assert r.executions(timeout=0.3) == []
        for name in ("g1", "g2"):
            seqs = [d["seq"] for d in reports if d["group"] == name]
            assert seqs and seqs == sorted(seqs), name
        assert sorted(d["id"] for d in reports if d["event"] == "accepted") == sorted(
            e.id for e in want if type(e).__name__ == "Accepted"
        )
        resting = r.open_orders()
        assert {(o["group"], o["id"]) for o in resting} == {
            ("g1" if o["instrument"] in G1 else "g2", o["id"]) for o in resting
        }
        if resting:
            one = resting[0]
            assert r.order(one["instrument"], one["id"])["status"] == "open"

    for g, name in ((g1, "g1"), (g2, "g2")):
        n, digest = sent[name], matching.digest_hex(engines[name].digest)
        st = g.wait_for(
            lambda s, n=n: s["a"].get("last_seq") == n and s["b"].get("last_seq") == n,
            timeout=20,
            what=f"{name} at seq {n}",
        )
        assert st["a"]["role"] == "primary"
        assert st["a"]["digest"] == st["b"]["digest"] == digest, name
