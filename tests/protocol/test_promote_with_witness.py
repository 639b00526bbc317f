"""The operator's ``Promote`` sent to a standby of a group that has a witness (sans-IO).

``Promote`` makes a standby primary of the next epoch at once, without asking
the witness. Whatever the moment it arrives, two rules must hold: no epoch
is ever served by two primaries, and no entry a client was told about is
lost (it stays in the surviving history exactly once).
"""

from __future__ import annotations

import pytest
from _net import add_client, cmd, group

from replication.protocol import wire

NODES = ("a", "b", "c")


def watch_primaries(net) -> dict:
    """Record, after every step of every node, which nodes serve as primary of which epoch."""
    seen: dict[int, set[str]] = {}
    for name in [n for n in net.machines if n in NODES]:
        m = net.machines[name]

        def wrap(fn, m=m, name=name):
            def step(*args):
                out = fn(*args)
                if m.is_primary:
                    seen.setdefault(m.epoch, set()).add(name)
                return out

            return step

        m.handle, m.tick = wrap(m.handle), wrap(m.tick)
    return seen


def submit(net, c, first, n):
    for i in range(first, first + n):
        net.emit(b"c1", c.submit(cmd(i, "buy" if i % 2 else "sell", 100 + i % 3), net.now)[1])


def acknowledged(net) -> set[int]:
    return {d.request_id for d in net.done.get(b"c1", []) if d.reply.status == wire.OK}


def history_ids(net, name) -> list[int]:
    return [e.request_id for e in net.journals[name].read(1) if e.client_id == 7]


def assert_nothing_lost(net, primary):
    ids = history_ids(net, primary)
    assert len(ids) == len(set(ids)), "a request executed twice"
    assert acknowledged(net) <= set(ids), sorted(acknowledged(net) - set(ids))


def test_promote_a_standby_while_the_primary_serves():
    net = group("sync")
    seen = watch_primaries(net)
    c = add_client(net, b"c1", 7, ["a", "b"])
    net.run_until(lambda: net.machines["b"].joined)
    submit(net, c, 1, 10)
    net.run_until(lambda: not c.pending, 1.0)
    # b refuses a plain Promote while a is alive (test_promote_guard): forced, the rules still hold.
    net.emit("operator", [wire.Send("b", wire.Promote(force=True))])
    submit(net, c, 11, 10)
    net.run_until(lambda: not c.pending, 1.0)
    net.run(0.05)
    a, b, w = net.machines["a"], net.machines["b"], net.machines["witness"]
    assert b.role == wire.ROLE_PRIMARY and b.epoch == 2
    assert a.role == wire.ROLE_STANDBY and a.leader == "b" and a.replica.digest == b.replica.digest
    assert (w.epoch, w.primary) == (2, "b")  # learned from b's heartbeats
    assert seen == {1: {"a"}, 2: {"b"}}
    assert acknowledged(net) == set(range(1, 21))
    assert_nothing_lost(net, "b")


def test_promote_the_in_sync_standby_of_a_dead_primary():
    net = group("sync", n_standbys=2)
    seen = watch_primaries(net)
    c = add_client(net, b"c1", 7, list(NODES))
    net.run_until(lambda: net.machines["b"].joined and net.machines["c"].joined)
    submit(net, c, 1, 10)
    net.run_until(lambda: not c.pending, 1.0)
    net.down.add("a")
    net.emit("operator", [wire.Send("b", wire.Promote())])  # before anyone notices a is gone
    submit(net, c, 11, 10)
    net.run_until(lambda: not c.pending, 1.0)
    net.run(0.2)  # long past the heartbeat timeout: c and the witness had every chance to run
    b, cc, w = net.machines["b"], net.machines["c"], net.machines["witness"]
    assert b.role == wire.ROLE_PRIMARY and cc.role == wire.ROLE_STANDBY and cc.leader == "b"
    assert w.epoch == b.epoch == cc.epoch and w.primary == "b"
    assert all(len(names) == 1 for names in seen.values()), seen
    assert acknowledged(net) == set(range(1, 21))
    assert_nothing_lost(net, "b")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_promote_while_the_witness_elects_another_standby(mode):
    """a dies; c runs and the witness grants it epoch 2; the operator's Promote reaches b
    while that grant is on its way (b cannot reach the witness, so it never asks itself)."""
    net = group(mode, n_standbys=2)
    seen = watch_primaries(net)
    c = add_client(net, b"c1", 7, list(NODES))
    net.run_until(lambda: net.machines["b"].joined and net.machines["c"].joined)
    submit(net, c, 1, 10)
    net.run_until(lambda: not c.pending, 1.0)
    net.down.add("a")
    promoted = []

    def drop(src, dest, msg):
        if isinstance(msg, wire.Vote) and msg.granted and not promoted:
            promoted.append(msg.node)
            net.queue.append(("operator", "b", wire.Promote()))
        return {src, dest} == {"b", "witness"}

    net.drop = drop
    net.run_until(lambda: promoted, 1.0)
    assert promoted == ["c"]
    submit(net, c, 11, 10)
    net.run(0.3)
    net.drop = None  # everyone reachable again: the group must end with one primary
    net.run_until(lambda: not c.pending, 2.0)
    net.run(0.5)
    roles = {n: net.machines[n].role for n in ("b", "c")}
    primaries = [n for n in ("b", "c") if roles[n] == wire.ROLE_PRIMARY]
    assert len(primaries) == 1, roles
    assert acknowledged(net) == set(range(1, 21))
    assert_nothing_lost(net, primaries[0])
    assert all(len(names) == 1 for names in seen.values()), seen


def promote_during_fail_over(mode, force, k, cut):
    """a dies; the operator's Promote reaches b right after the k-th message the witness sends
    or receives from then on; b cut off from the witness (``cut``) for the first 0.3 s."""
    net = group(mode, n_standbys=2)
    seen = watch_primaries(net)
    c = add_client(net, b"c1", 7, list(NODES))
    net.run_until(lambda: net.machines["b"].joined and net.machines["c"].joined)
    submit(net, c, 1, 10)
    net.run_until(lambda: not c.pending, 1.0)
    net.down.add("a")
    count = [0]

    def drop(src, dest, msg):
        if "witness" in (src, dest):
            if count[0] == k:
                net.queue.append(("operator", "b", wire.Promote(force)))
            count[0] += 1
        return cut and {src, dest} == {"b", "witness"}

    net.drop = drop
    net.run(0.1)
    submit(net, c, 11, 10)
    net.run(0.2)
    net.drop = None
    net.run_until(lambda: not c.pending, 2.0)
    net.run(0.3)
    assert count[0] > k  # the Promote was sent
    return net, seen


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("force", [False, True])
def test_a_promote_at_any_moment_of_a_fail_over_makes_one_primary_per_epoch(mode, force):
    """The race above, swept over the moment the Promote arrives (before, during and after c's
    candidacy and grant; the witness reachable or cut off from b). Whatever the moment, and even
    forced, each epoch has one primary, the group ends with one, and nothing acknowledged is lost
    (but forced with the witness cut off, the one case documented to risk it)."""
    for k in range(0, 40, 3):
        for cut in (False, True):
            net, seen = promote_during_fail_over(mode, force, k, cut)
            where = f"k={k} cut={cut}"
            assert all(len(names) == 1 for names in seen.values()), (where, seen)
            primaries = [n for n in ("b", "c") if net.machines[n].role == wire.ROLE_PRIMARY]
            assert len(primaries) == 1, where
            ids = history_ids(net, primaries[0])
            assert len(ids) == len(set(ids)), where
            if not (force and cut):
                assert acknowledged(net) <= set(ids), where
