"""A Fence that should not be obeyed changes nothing (standby.py ``on_fence``'s guard).

A Fence tells a node "epoch E rules: cut your journal after seq S". Obeying a
stale one (a deposed primary's, of an older epoch) or one from an address that
is not a peer (a client's) would cut acknowledged entries of the newer epoch.
Each test brings a three-node group through a fail-over, delivers the bad
Fence to the standby of the new epoch, and checks that nothing moved: the
journal, its last seq and digest, the epoch, the role, the leader, the history.
"""

from __future__ import annotations

from _net import add_client, cmd, group

from replication.protocol import wire


def failed_over():
    """Nodes a, b, c and a witness; 10 entries in epoch 1, then a is lost, and 10 more
    entries in epoch 2 under whichever standby the witness elected. Returns the net,
    the new primary's name and the standby's."""
    net = group("sync", n_standbys=2)
    c = add_client(net, b"c1", 7, ["a", "b", "c"])
    net.run_until(lambda: net.machines["b"].joined and net.machines["c"].joined)
    for i in range(1, 11):
        net.emit(b"c1", c.submit(cmd(i, "buy" if i % 2 else "sell", 100 + i % 3), net.now)[1])
    net.run_until(lambda: not c.pending, 1.0)
    net.down.add("a")
    net.run_until(lambda: any(net.machines[n].role == wire.ROLE_PRIMARY for n in "bc"), 2.0)
    primary = next(n for n in "bc" if net.machines[n].role == wire.ROLE_PRIMARY)
    standby = "c" if primary == "b" else "b"
    net.run_until(lambda: net.machines[standby].joined and net.machines[standby].epoch == 2, 1.0)
    for i in range(11, 21):
        net.emit(b"c1", c.submit(cmd(i, "sell" if i % 2 else "buy", 100 + i % 3), net.now)[1])
    net.run_until(lambda: not c.pending, 1.0)
    net.run(0.02)
    assert net.machines[standby].replica.seq == 20 and len(net.done[b"c1"]) == 20
    return net, primary, standby


def state(net, name):
    m = net.machines[name]
    return {
        "journal": list(net.journals[name].read(1)),
        "seq": m.replica.seq,
        "digest": m.replica.digest,
        "epoch": m.epoch,
        "role": m.role,
        "leader": m.leader,
        "joined": m.joined,
        "history": list(m.history),
    }


def deliver(net, src, dest, msg):
    """Hand ``msg`` to ``dest`` as if it came from ``src``, then let the group run on."""
    net.emit(dest, net.machines[dest].handle(src, wire.decode(wire.encode(msg)), net.now))
    net.run(0.05)


def test_a_late_fence_from_the_deposed_primary_changes_nothing():
    net, primary, standby = failed_over()
    before = state(net, standby)
    assert before["epoch"] == 2 and before["leader"] == primary and before["role"] == wire.ROLE_STANDBY
    # a, primary of epoch 1, answers a Join long gone: "cut everything after seq 0".
    deliver(net, "a", standby, wire.Fence(1, 0, standby))
    assert state(net, standby) == before
    assert "fenced" not in net.machines[standby].counters


def test_a_fence_from_a_client_address_changes_nothing():
    net, primary, standby = failed_over()
    before = state(net, standby)
    # The current epoch, but from a client's address: not a peer, so not a leader.
    deliver(net, b"c1", standby, wire.Fence(2, 0, standby))
    assert state(net, standby) == before
    assert "fenced" not in net.machines[standby].counters
