"""The machines say which outputs may leave before the journal's sync (``wire.Send.needs_sync``).

Only the primary's ``Entries`` may (the batch it sequenced, and refills to a
node catching up): its fdatasync then overlaps the standby's journal write
and round trip, and the standby acks only what it journaled itself. Every
other Send — replies, acks, heartbeats, votes, fences — may acknowledge a seq
and waits for the sync. The ZeroMQ node driver goes by the mark alone.
"""

from __future__ import annotations

from _net import add_client, cmd, group

from replication.protocol import wire


def _recording(net) -> list:
    """Every Send any machine of ``net`` makes from now on."""
    sends: list = []
    emit = net.emit

    def recording(src, outputs) -> None:
        sends.extend(o for o in outputs if isinstance(o, wire.Send))
        emit(src, outputs)

    net.emit = recording
    return sends


def test_only_entries_leave_before_the_sync_through_a_join_an_outage_and_a_catch_up():
    net = group("sync", n_standbys=2)
    sends = _recording(net)
    c = add_client(net, b"c1", 7, ["a", "b", "c"])
    a = net.machines["a"]
    net.run_until(lambda: a.is_primary and net.machines["b"].joined and net.machines["c"].joined)
    for i in range(1, 11):
        net.emit(b"c1", c.submit(cmd(i), net.now)[1])
    net.run(0.2)
    net.down.add("c")  # c misses entries: dropped from the in-sync set, it catches up on return
    for i in range(11, 31):
        net.emit(b"c1", c.submit(cmd(i), net.now)[1])
    net.run(3 * net.settings.heartbeat_timeout)
    net.down.discard("c")
    net.run_until(lambda: net.journals["c"].last_seq == a.replica.seq and a.replica.seq >= 30)
    assert a.counters.get("refill_entries_sent", 0) > 0  # the catch-up path ran too
    kinds = {type(o.msg) for o in sends}
    assert {wire.Entries, wire.Ack, wire.Heartbeat, wire.Reply} <= kinds, kinds
    for o in sends:
        assert o.needs_sync == (type(o.msg) is not wire.Entries), o
