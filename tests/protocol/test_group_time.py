"""The group's time (``protocol.group_time``): the sequencer's stamp and the idle ``time`` command.

The primary stamps every command it sequences with its clock (``ts``), one
stamp per batch, never below the last applied entry's, so the group's time
never decreases across batches, a clock that goes back, or a fail-over to a
node whose clock is behind; a client's own ``ts`` is overwritten. A primary
that has sequenced nothing for ``time_interval`` sequences a ``time``
command (client id 0, no reply), none while requests flow, so a GTD order
expires at most that late. Standbys apply the stamped records as they are:
journals and digests stay equal. No wall clock: the machines' clocks are
the in-process network's ``now`` (``virtual_clock``), shifted where a test
needs two clocks to disagree.
"""

from __future__ import annotations

import numpy as np
import pytest
from _net import add_client, cmd, group

from matching import ReferenceEngine
from matching.codes import EV_CANCELLED, EVENT_DTYPE, R_EXPIRED
from matching.commands import command_record
from replication.protocol import wire
from replication.protocol.group_time import (
    TS_MAX,
    is_time_command,
    next_stamp,
    stamp_commands,
    stamp_of,
    time_command,
    virtual_clock,
)
from replication.protocol.replica import Replica

SECOND = 1_000_000_000
DT = 1_000_000  # the test network's step (1 ms), in ns


def started(**kw):
    net = group("sync", **kw)
    net.run_until(lambda: net.machines["b"].joined)
    return net


def entries(net, node="a"):
    return list(net.journals[node].read(1))


def stamps(net, node="a"):
    return [stamp_of(e.command) for e in entries(net, node)]


def packed(d: dict) -> bytes:
    return wire.pack_command(command_record(d))


def submit_all(net, c, commands, addr=b"c1"):
    for command in commands:
        net.emit(addr, c.submit(command, net.now)[1])
    net.run_until(lambda: not c.pending, 1.0)


def same_everywhere(net):
    a, b = net.machines["a"], net.machines["b"]
    net.run_until(lambda: b.replica.seq == a.replica.seq, 1.0)
    assert entries(net, "b") == entries(net, "a")
    assert b.replica.digest == a.replica.digest


# -- the records ------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 5, 40])  # one, the per-record loop, NumPy
def test_stamping_sets_every_ts_and_nothing_else(n):
    commands = b"".join(
        packed({"op": "new", "instrument": 1, "id": i + 1, "side": "buy", "price": 100, "qty": 1, "ts": i})
        for i in range(n)
    )
    out = stamp_commands(commands, 123456789)
    assert len(out) == len(commands)
    for i in range(n):
        rec, was = out[80 * i : 80 * (i + 1)], commands[80 * i : 80 * (i + 1)]
        assert stamp_of(rec) == 123456789
        assert rec[:56] + rec[64:] == was[:56] + was[64:]


def test_the_time_command_is_what_the_command_log_makes_of_it():
    assert time_command(42) == packed({"op": "time", "ts": 42})
    assert is_time_command(time_command(0)) and not is_time_command(cmd(1))


def test_a_stamp_never_goes_below_the_last_applied_or_out_of_int64():
    assert next_stamp(10, 5) == 10
    assert next_stamp(5, 10) == 10  # the clock is behind: the group's time stays
    assert next_stamp(-3, 0) == 0
    assert next_stamp(1 << 70, 0) == TS_MAX


# -- the primary's stamp ------------------------------------------------------------------


def test_every_batch_is_stamped_with_the_primary_clock_and_stamps_never_decrease():
    net = started()
    c = add_client(net, b"c1", 7, ["a", "b"])
    for k in range(5):
        submit_all(net, c, [cmd(10 * k + i + 1) for i in range(3)])
        net.run(0.01)
    s = stamps(net)
    assert len(s) == 15 and s == sorted(s)
    assert len(set(s)) == 5  # one stamp per batch of three
    assert all(0 < t <= virtual_clock(net.now) for t in s)  # the clock at the batch (its now)
    same_everywhere(net)


def test_a_client_ts_is_overwritten():
    net = started()
    c = add_client(net, b"c1", 7, ["a", "b"])
    sent = [
        packed({"op": "new", "instrument": 1, "id": 1, "side": "buy", "price": 100, "qty": 1, "ts": 1 << 62}),
        packed({"op": "new", "instrument": 1, "id": 2, "side": "buy", "price": 100, "qty": 1, "ts": 1}),
    ]
    submit_all(net, c, sent)
    got = entries(net)
    assert [stamp_of(e.command) for e in got] != [1 << 62, 1]
    assert all(0 < stamp_of(e.command) <= virtual_clock(net.now) for e in got)
    # Only the ts changed: the rest of each command is the client's.
    assert [e.command for e in got] == [
        stamp_commands(x, stamp_of(e.command)) for x, e in zip(sent, got, strict=True)
    ]
    assert net.machines["a"].replica.last_ts == stamp_of(got[-1].command)
    same_everywhere(net)


def test_a_clock_that_goes_back_does_not_take_the_group_time_with_it():
    net = started()
    net.machines["a"].clock = lambda now: 100 * SECOND - virtual_clock(now)
    c = add_client(net, b"c1", 7, ["a", "b"])
    for k in range(4):
        submit_all(net, c, [cmd(k + 1)])
        net.run(0.01)
    s = stamps(net)
    assert len(s) == 4 and len(set(s)) == 1 and s[0] > 99 * SECOND  # the first batch's, kept


def test_a_promoted_standby_with_a_slower_clock_continues_from_the_old_primary_time():
    net = started()
    net.machines["a"].clock = lambda now: virtual_clock(now) + 5 * SECOND  # b's is 5 s behind
    c = add_client(net, b"c1", 7, ["a", "b"])
    submit_all(net, c, [cmd(i) for i in range(1, 6)])
    before = stamps(net)[-1]
    assert before > 5 * SECOND
    net.run_until(lambda: net.machines["b"].replica.seq == 5, 1.0)
    net.down.add("a")
    b = net.machines["b"]
    net.run_until(lambda: b.role == wire.ROLE_PRIMARY, 2.0)
    assert b.replica.last_ts == before  # what it applied tells it the time
    submit_all(net, c, [cmd(i) for i in range(6, 11)])
    after = stamps(net, "b")[5:]
    assert len(after) == 5 and after == [before] * 5  # b's own clock has not caught up: the time stays
    b.clock = lambda now: virtual_clock(now) + 6 * SECOND  # now past it: its own again
    submit_all(net, c, [cmd(11)])
    assert stamps(net, "b")[-1] == virtual_clock(net.now) + 6 * SECOND > before


def test_the_time_survives_a_snapshot():
    net = started()
    c = add_client(net, b"c1", 7, ["a", "b"])
    submit_all(net, c, [cmd(1), cmd(2)])
    r = net.machines["a"].replica
    assert Replica.restore(r.snapshot(), ReferenceEngine).last_ts == r.last_ts == stamps(net)[-1] > 0


# -- the idle time command ---------------------------------------------------------------


def time_entries(net, node="a"):
    return [e for e in entries(net, node) if e.client_id == 0]


def test_an_idle_primary_sequences_a_time_command_every_interval():
    net = started(time_interval=0.05)
    net.run(0.5)
    got = time_entries(net)
    assert len(got) >= 9
    assert all(is_time_command(e.command) and e.request_id == 0 for e in got)
    assert len(got) == len(entries(net))  # nothing else was sequenced
    gaps = np.diff([stamp_of(e.command) for e in got])
    assert ((gaps >= 50 * DT - 1) & (gaps <= 51 * DT + 1)).all(), gaps  # the interval, within a tick
    assert not net.done  # answered to nobody
    assert net.machines["a"].counters["time_commands"] == len(got)
    same_everywhere(net)


def test_no_time_command_while_requests_flow_and_the_first_one_an_interval_after():
    net = started(time_interval=0.05)
    c = add_client(net, b"c1", 7, ["a", "b"])
    for i in range(1, 26):  # one request every 20 ms for half a second
        net.emit(b"c1", c.submit(cmd(i), net.now)[1])
        net.run(0.02)
    net.run_until(lambda: not c.pending, 1.0)
    net.run(0.1)
    es = entries(net)
    last_request = max(k for k, e in enumerate(es) if e.client_id == 7)
    assert all(e.client_id == 7 for e in es[: last_request + 1])  # none while busy
    first_time = es[last_request + 1]
    assert is_time_command(first_time.command)
    gap = stamp_of(first_time.command) - stamp_of(es[last_request].command)
    assert 50 * DT - 1 <= gap <= 51 * DT + 1
    same_everywhere(net)


def test_a_time_interval_of_zero_sequences_none():
    net = started(time_interval=0.0)
    net.run(0.5)
    assert not time_entries(net) and "time_commands" not in net.machines["a"].counters


def test_an_idle_group_expires_a_gtd_order_within_the_interval():
    net = started(time_interval=0.05)
    c = add_client(net, b"c1", 7, ["a", "b"])
    expire = virtual_clock(net.now) + 20 * DT
    gtd = {"op": "new", "instrument": 1, "id": 1, "side": "buy", "price": 100, "qty": 5, "account": 7}
    submit_all(net, c, [packed(gtd | {"tif": "GTD", "expire_ts": expire})])
    net.run(0.2)
    replay = Replica(ReferenceEngine)
    expired_at = []
    for e in entries(net):
        events, digest = replay.execute(e.epoch, e.seq, e.client_id, e.request_id, e.command)
        assert digest == e.digest
        ev = np.frombuffer(events, dtype=EVENT_DTYPE)
        if ((ev["kind"] == EV_CANCELLED) & (ev["reason"] == R_EXPIRED) & (ev["id"] == 1)).any():
            expired_at.append(e)
    assert len(expired_at) == 1
    e = expired_at[0]
    assert is_time_command(e.command) and e.client_id == 0
    assert expire <= stamp_of(e.command) <= expire + 51 * DT  # no later than the interval (and a tick)
    same_everywhere(net)
