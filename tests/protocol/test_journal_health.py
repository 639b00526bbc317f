"""A node whose journal fails or is damaged, sans-IO: it acknowledges nothing it did not write,
never serves or votes with a shortened history, stays up to say why, and is repaired from a peer.

On the deterministic test network (``_net``) with ``MemoryJournal``'s disk faults:
``inject`` (the next append fails: nothing, half, or all of it written and the
sync failed) and ``corrupt`` (what opening a file journal with a flipped byte
mid-journal gives). Every test checks the acknowledged replies against the
journals that survive.
"""

from __future__ import annotations

import pytest
from _net import add_client, cmd, group

from matching import ReferenceEngine
from replication.protocol import wire
from replication.protocol.node.machine import NodeMachine


def started(mode="sync", **kw):
    net = group(mode, **kw)
    c = add_client(net, b"c1", 7, ["a", "b"] if kw.get("n_standbys", 1) else ["a"])
    if kw.get("n_standbys", 1):
        net.run_until(lambda: net.machines["b"].joined and net.machines["a"].isr_confirmed == ("b",))
    else:
        net.run_until(lambda: net.machines["a"].is_primary)
    return net, c


def submit(net, c, first, n):
    for i in range(first, first + n):
        net.emit(b"c1", c.submit(cmd(i, "buy" if i % 2 else "sell", 100 + i % 5), net.now)[1])


def acked(net) -> dict[int, int]:
    """request id -> seq of every OK reply the client got."""
    return {d.request_id: d.reply.seq for d in net.done.get(b"c1", []) if d.reply.status == wire.OK}


def held(journal) -> dict[int, int]:
    """request id -> seq of every entry a journal holds (client 7's)."""
    return {e.request_id: e.seq for e in journal.read(1) if e.client_id == 7}


def restart(net, name, role="standby"):
    net.journals[name].crash()
    m = NodeMachine(name, ["a", "b"], net.journals[name], net.settings, "witness", ReferenceEngine, role)
    net.machines[name] = m
    return m


@pytest.mark.parametrize("fault", ["enospc", "short", "fsync"])
def test_a_primary_whose_disk_fails_stops_and_its_standby_takes_over(fault):
    net, c = started()
    submit(net, c, 1, 5)
    net.run_until(lambda: len(acked(net)) == 5)
    a, b = net.machines["a"], net.machines["b"]
    net.journals["a"].inject(fault)
    submit(net, c, 6, 5)
    net.run_until(lambda: not c.pending, 2.0)
    assert a.journal_error and a.status()["error"] == a.journal_error
    assert a.status()["role"] == "standby" and not a.is_primary
    assert b.is_primary and b.epoch == 2
    # Every acknowledged request is in the new primary's journal, each exactly once.
    got, on_b = acked(net), held(net.journals["b"])
    assert sorted(got) == list(range(1, 11))
    assert all(on_b[r] == s for r, s in got.items()) and len(on_b) == len(set(on_b.values()))
    # The failed node sends nothing more: no ack, no heartbeat, no vote.
    assert a.tick(net.now + 1.0) == []
    assert a.handle("b", wire.Heartbeat(2, 10, "b", wire.ROLE_PRIMARY), net.now) == []
    reply = a.handle(b"x", wire.Request(9, 1, cmd(99)), net.now)
    assert [o.msg.status for o in reply] == [wire.UNAVAILABLE]


@pytest.mark.parametrize("fault", ["enospc", "short", "fsync"])
def test_a_solo_primary_whose_disk_fails_acknowledges_nothing_it_did_not_write(fault):
    """Finding 5: solo, it acknowledged entries it never wrote. Now a crash after the fault keeps
    every acknowledged entry, and the node says why it serves no more."""
    net, c = started(n_standbys=0)
    submit(net, c, 1, 5)
    net.run_until(lambda: len(acked(net)) == 5)
    net.journals["a"].inject(fault)
    submit(net, c, 6, 5)
    net.run(0.2)
    a = net.machines["a"]
    assert a.journal_error and not a.is_primary
    got = acked(net)
    assert sorted(got) == [1, 2, 3, 4, 5]
    net.journals["a"].crash()  # the power goes: only what was synced stays
    on_a = held(net.journals["a"])
    assert all(on_a[r] == s for r, s in got.items())


def test_a_standby_whose_disk_fails_stops_acking_and_the_primary_goes_on_without_it():
    net, c = started()
    submit(net, c, 1, 5)
    net.run_until(lambda: len(acked(net)) == 5)
    a, b = net.machines["a"], net.machines["b"]
    net.journals["b"].inject("short")
    submit(net, c, 6, 20)
    net.run_until(lambda: not c.pending, 2.0)
    assert b.journal_error and "b" not in a.isr_confirmed and a.is_primary
    assert sorted(acked(net)) == list(range(1, 26))
    # b acknowledged only what it holds (synced): its last ack is within its journal.
    net.journals["b"].crash()
    assert a.acked.get("b", 0) <= net.journals["b"].last_seq


def test_a_damaged_primary_never_leads_again_with_a_shortened_history_and_is_repaired():
    """Finding 6: a byte flipped mid-journal of the last primary. It must not be elected on what
    is left; the in-sync standby takes over and the damaged node gets its history back."""
    net, c = started()
    submit(net, c, 1, 30)
    net.run_until(lambda: len(acked(net)) == 30)
    net.journals["a"].corrupt("journal: damaged entries.log at offset 900 (seq 10): bad record")
    a = restart(net, "a", "primary")
    assert a.damaged and a.replica.seq == 0 and a.led_epoch == 0
    assert a.status()["damaged"] == a.damaged
    net.run_until(lambda: net.machines["b"].is_primary, 2.0)
    b = net.machines["b"]
    assert b.epoch == 2 and not a.is_primary
    submit(net, c, 31, 5)
    net.run_until(lambda: not c.pending and not a.damaged, 2.0)
    assert a.replica.digest == b.replica.digest and net.journals["a"].read(1) == net.journals["b"].read(1)
    assert net.journals["a"].load_meta().get("damaged") is None
    got, on_b = acked(net), held(net.journals["b"])
    assert sorted(got) == list(range(1, 36)) and all(on_b[r] == s for r, s in got.items())


def test_a_damaged_node_alone_waits_and_says_why():
    """The only complete copy is damaged: no node may serve. Nothing is promoted, not even by an
    operator's promote, and the status says why."""
    net, c = started()
    submit(net, c, 1, 10)
    net.run_until(lambda: len(acked(net)) == 10)
    net.down.add("b")
    net.journals["a"].corrupt("journal: damaged entries.log at offset 300 (seq 4): bad record")
    a = restart(net, "a", "primary")
    net.run(0.5)
    assert not a.is_primary and a.damaged
    out = a.handle(b"op", wire.Promote(), net.now)
    assert not a.is_primary and "damaged" in out[0].msg.body.decode()
    assert net.machines["witness"].primary == "a" and net.machines["witness"].epoch == 1
    assert net.journals["a"]._aside is not None  # nothing dropped while it waits


def test_a_damaged_standby_rejoins_with_nothing_and_catches_up_by_snapshot():
    net, c = started(snapshot_every=7, catchup_snapshot_lag=5)
    submit(net, c, 1, 20)
    net.run_until(lambda: len(acked(net)) == 20)
    net.journals["b"].corrupt("journal: damaged snapshot.bin at offset 0: bad checksum")
    b = restart(net, "b")
    assert b.damaged
    net.run_until(lambda: not b.damaged, 2.0)
    assert b.counters.get("snapshots_installed") == 1 and b.replica.digest == net.machines["a"].replica.digest


def test_a_crash_mid_repair_comes_back_damaged():
    """Once the damaged files are replaced, the journal looks clean but holds only part of the
    history: the metadata keeps "damaged" until the node has caught up, so a restart then is
    damaged again (seq 0, no candidacy), not a node that trusts a partial journal."""
    net, c = started(catchup_snapshot_lag=10_000, refill_chunk=10)
    submit(net, c, 1, 40)
    net.run_until(lambda: len(acked(net)) == 40)
    net.journals["b"].corrupt("journal: damaged entries.log at offset 500 (seq 6): bad record")
    b = restart(net, "b")
    net.drop = lambda src, dest, msg: type(msg) is wire.Entries and msg.seq > 10  # a partial catch-up
    net.run_until(lambda: b.repairing and b.replica.seq == 10, 1.0)
    assert b.damaged and net.journals["b"].last_seq == 10 and not net.journals["b"].damage
    b = restart(net, "b")
    assert b.damaged and b.replica.seq == 0 and b.status()["damaged"]
    net.drop = None
    net.run_until(lambda: not b.damaged, 2.0)
    assert b.replica.digest == net.machines["a"].replica.digest


# -- the driver: what leaves a pass whose journal failed ------------------------------------


def _driver_over(tmp_path, machine):
    from replication.transport import node_driver as node
    from tests.transport.test_driver_replies import _Sock

    d = object.__new__(node.NodeDriver)  # no sockets: only what perform() reads
    d.counters, d.reply_timer, d.pub, d.pub_topics = {}, None, None, set()
    d.router, d.dealers = _Sock(), {"a": _Sock(), "b": _Sock(), "witness": _Sock()}
    d.machine, d.journal = machine, machine.journal
    machine.journal.defer_sync = True
    return d


def _standby_with_file_journal(tmp_path):
    """A joined standby over a FileJournal, fed entries by a primary on the test network."""
    from replication.storage.journal import FileJournal

    net, c = started()
    submit(net, c, 1, 3)
    net.run_until(lambda: len(acked(net)) == 3)
    j = FileJournal(str(tmp_path / "b"))
    j.append(net.journals["b"].read(1))
    b = NodeMachine("b", ["a", "b"], j, net.settings, "witness", ReferenceEngine, "standby")
    net.machines["b"], net.journals["b"] = b, j
    net.run_until(lambda: b.joined, 1.0)
    return net, c, b


def test_a_failed_fdatasync_in_the_driver_sends_no_ack_and_is_not_retried(tmp_path, monkeypatch):
    """The deferred fsync fails at the end of a pass: the Ack and heartbeat that pass made for
    the unsynced entries are dropped, the machine stops, and fdatasync is never called again."""
    import errno
    import os

    net, c, b = _standby_with_file_journal(tmp_path)
    d = _driver_over(tmp_path, b)
    a = net.machines["a"]
    a_out = a.handle(b"c1", wire.Request(7, 100, cmd(100)), net.now) + a.tick(net.now + 0.001)
    entries = [o for o in a_out if isinstance(o, wire.Send) and o.dest == "b" and type(o.msg) is wire.Entries]
    assert entries
    outs = b.handle("a", entries[0].msg, net.now) + b.tick(net.now + 1.0)
    assert any(type(o.msg) is wire.Ack for o in outs) and b.journal.dirty
    calls = []

    def eio(fd):
        calls.append(fd)
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fdatasync", eio)
    d.perform(outs)
    assert calls and not d.dealers["a"].sent and not d.dealers["witness"].sent
    assert b.journal_error == f"journal: EIO syncing {tmp_path / 'b' / 'entries.log'}"
    d.perform(b.tick(net.now + 2.0) + b.handle("a", entries[0].msg, net.now + 2.0))
    assert len(calls) == 1 and not d.dealers["a"].sent


def test_outputs_of_a_pass_made_before_the_journal_failed_are_dropped(tmp_path):
    """Two batches in one pass: the first appended (not yet synced) and acked, the second's append
    failed. The first Ack must not leave either: it was never synced."""
    net, c, b = _standby_with_file_journal(tmp_path)
    d = _driver_over(tmp_path, b)
    a = net.machines["a"]
    batches = []
    for rid in (100, 101):
        out = a.handle(b"c1", wire.Request(7, rid, cmd(rid)), net.now) + a.tick(net.now)
        batches += [
            o.msg for o in out if isinstance(o, wire.Send) and o.dest == "b" and type(o.msg) is wire.Entries
        ]
    outs = b.handle("a", batches[0], net.now)
    assert [type(o.msg) for o in outs] == [wire.Ack]
    b.journal.failed = "journal: ENOSPC writing entries.log"  # as a failed append leaves it
    outs += b.handle("a", batches[1], net.now)
    d.perform(outs)
    assert not d.dealers["a"].sent and b.journal_error
