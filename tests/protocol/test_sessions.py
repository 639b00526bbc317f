"""Client sessions, sans-IO: ids without a clock, one live session per client id, fencing.

The rules of ``replication.protocol.session`` as the client core, the primary and
every replica apply them: an open is sequenced and replicated (standbys,
replay, snapshots and fail-over all reach the same session table), a
re-sent open opens nothing, a request of an older session is answered
``FENCED`` and never executed, and a client never takes a reply that does
not answer a request of its own session.
"""

from __future__ import annotations

import numpy as np
import pytest
from _net import add_client, cmd, group

from replication import SessionFenced
from replication.protocol import wire
from replication.protocol.client_core import ClientCore
from replication.protocol.group_time import stamp_commands, stamp_of
from replication.protocol.replica import EXPIRED, Replica, recover
from replication.protocol.session import (
    OPEN_REQUEST,
    SESSION_SHIFT,
    Held,
    first_id,
    is_open_entry,
    next_session,
    nonce_of,
    open_command,
    opened_id,
    session_of,
    stale,
)
from replication.storage.journal import MemoryJournal


def started(mode="sync", **kw):
    net = group(mode, **kw)
    net.run_until(lambda: net.machines["b"].joined)
    return net


def opened(net, addr, client_id, nonce, nodes=("a", "b")):
    """A client core at ``addr`` with its session open."""
    c = add_client(net, addr, client_id, list(nodes))
    net.emit(addr, c.open(nonce, net.now))
    net.run_until(lambda: not c.opening, 1.0)
    return c


def send(net, addr, c, ids):
    rids = []
    for i in ids:
        rid, outs = c.submit(cmd(i), net.now)
        net.emit(addr, outs)
        rids.append(rid)
    return rids


def done(net, addr):
    return {d.request_id: d.reply for d in net.done.get(addr, [])}


def journal_keys(net, node="a"):
    j = net.journals[node]
    return [(e.client_id, e.request_id) for e in j.read(1)]


class Sink:
    """A client address that keeps every message it gets."""

    def __init__(self):
        self.got = []

    def handle(self, src, m, now):
        self.got.append(m)
        return []

    def tick(self, now):
        return []


# -- the pure rules ------------------------------------------------------------------------


def test_ids_and_open_command():
    assert first_id(3) == (3 << SESSION_SHIFT) | 1 and session_of(first_id(3)) == 3
    assert is_open_entry(opened_id(2)) and not is_open_entry(0) and not is_open_entry(first_id(2))
    assert nonce_of(open_command(0xDEADBEEF)) == 0xDEADBEEF
    assert nonce_of(cmd(1)) == 0 and nonce_of(b"") == 0  # an engine command is never an open
    with pytest.raises(ValueError):
        open_command(0)
    # Above the current session, the floor's and the newest remembered id's sessions.
    assert next_session(None, 0, 0) == 1
    assert next_session(Held(4, 1), first_id(2), first_id(6) + 5) == 7
    assert stale(Held(2, 1), first_id(1)) and not stale(Held(2, 1), first_id(2)) and not stale(None, 5)


def test_open_command_is_a_no_op_both_engines_agree_on():
    import matching

    out = []
    for make in (matching.Engine, matching.ReferenceEngine):
        for nonce in (77, 2**64 - 1):
            e = make()
            e.submit(instrument=1, id=5, side="buy", price=10, qty=1)
            before = e.depth(1)
            ev = e.apply_batch(np.frombuffer(open_command(nonce), dtype=matching.COMMAND_DTYPE).copy())
            assert len(ev) == 1 and int(ev["kind"][0]) == 2 and e.depth(1) == before  # a reject, nothing else
            out.append((e.digest, e.book_digest()))
    assert len(set(out)) == 1  # either engine, any nonce: the same digests (a local replay can match)


# -- the client core ---------------------------------------------------------------------------


def test_client_core_opens_then_numbers_from_its_session():
    c = ClientCore(7, ["a", "b"])
    outs = c.open(99, 0.0)
    assert [o.msg for o in outs] == [wire.Request(7, OPEN_REQUEST, open_command(99))]
    with pytest.raises(RuntimeError):
        c.submit(cmd(1), 0.0)  # not before the open is answered
    # A refusal of the open (a standby) redirects it like any request.
    outs = c.handle("a", wire.Reply(7, OPEN_REQUEST, wire.NOT_PRIMARY, 1, 0, "b"), 0.005)
    assert [(o.dest, o.msg.request_id) for o in outs] == [("b", OPEN_REQUEST)] and c.opening == 99
    event = bytes(64)
    c.handle("b", wire.Reply(7, opened_id(3), wire.OK, 1, 1, "b", event), 0.01)
    assert c.opening == 0 and c.session == 3 and not c.pending and c.primary == "b"
    rid, _ = c.submit(cmd(1), 0.02)
    assert rid == first_id(3)
    # The open's twin is late; a reply of another session or an id never sent is foreign.
    c.handle("a", wire.Reply(7, opened_id(3), wire.OK, 1, 1, "a", event), 0.03)
    c.handle("a", wire.Reply(7, first_id(2), wire.OK, 1, 2, "a"), 0.03)
    c.handle("a", wire.Reply(7, first_id(3) + 5, wire.OK, 1, 2, "a"), 0.03)
    assert c.counters["late_replies"] == 1 and c.counters["foreign_replies"] == 2
    assert list(c.pending) == [rid]  # none of them answered it


def test_client_core_bundle_never_takes_another_sessions_reply():
    c = ClientCore(7, ["a", "b"], first_id(4))
    first = c.submit_window([cmd(i) for i in range(3)], 0.0)
    got: dict = {}
    bundle = [wire.Reply(7, first_id(3) + i, wire.OK, 1, 10 + i, "a") for i in range(3)]
    c.handle_replies("a", bundle, 0.01, got)
    assert got == {} and c.counters == {"foreign_replies": 3} and len(c.pending) == 3
    c.handle_replies("a", [wire.Reply(7, first + 1, wire.OK, 1, 20, "a")], 0.01, got)
    assert list(got) == [first + 1]


def test_client_core_decoded_bundle_of_another_session_is_no_answer():
    fast = pytest.importorskip("replication.protocol._client_fast")
    c = ClientCore(7, ["a", "b"], first_id(4))
    first = c.submit_window([cmd(i) for i in range(3)], 0.0)
    # Another session's replies, and one of ours: the C path must not take the bundle whole.
    theirs = [wire.Reply(7, first_id(3) + i, wire.OK, 1, 10 + i, "a") for i in range(2)]
    block = fast.decode_replies(
        wire.encode(wire.Replies((*theirs, wire.Reply(7, first, wire.OK, 1, 12, "a"))))
    )
    assert not c.handle_answered("a", block, 0.01) and len(c.pending) == 3
    got: dict = {}
    c.handle_replies("a", block.replies(), 0.01, got)
    assert list(got) == [first] and c.counters == {"foreign_replies": 2}
    block = fast.decode_replies(wire.encode(wire.Replies(tuple(theirs))))
    assert not c.handle_answered("a", block, 0.02) and len(c.pending) == 2


def test_client_core_open_answered_inside_a_bundle():
    c = ClientCore(7, ["a", "b"])
    c.open(3, 0.0)
    got: dict = {}
    c.handle_replies("a", [wire.Reply(7, opened_id(2), wire.OK, 1, 5, "a", bytes(64))], 0.01, got)
    assert got == {} and c.session == 2 and not c.opening and not c.pending


def test_client_core_fenced_reply_fences_the_session():
    c = ClientCore(7, ["a", "b"], first_id(2))
    rid, _ = c.submit(cmd(1), 0.0)
    rid2, _ = c.submit(cmd(2), 0.0)
    outs = c.handle("a", wire.Reply(7, rid, wire.FENCED, 1, 0, "a"), 0.01)
    assert c.fenced and outs[0].request_id == rid and outs[0].reply.status == wire.FENCED
    assert list(c.pending) == [rid2]  # still re-sent: its fate (first result or FENCED) is learnt
    with pytest.raises(SessionFenced, match="client id 7"):
        c.submit(cmd(3), 0.02)
    assert [o.msg.request_id for o in c.tick(0.2)] == [rid2]


# -- the primary and the replicas ---------------------------------------------------------------


def test_newer_session_fences_the_older_and_replicas_agree():
    net = started("sync")
    old = opened(net, b"c1", 7, 111)
    send(net, b"c1", old, [1, 2])
    net.run(0.01)
    assert old.session == 1 and sorted(done(net, b"c1")) == [first_id(1), first_id(1) + 1]
    new = opened(net, b"c2", 7, 222)
    assert new.session == 2
    (rid,) = send(net, b"c1", old, [3])
    net.run(0.01)
    assert done(net, b"c1")[rid].status == wire.FENCED and old.fenced
    send(net, b"c2", new, [4])
    net.run(0.01)
    a, b = net.machines["a"], net.machines["b"]
    keys = journal_keys(net)
    assert (7, rid) not in keys and (7, first_id(2)) in keys  # the fenced one was never executed
    assert keys == [
        (7, opened_id(1)),
        (7, first_id(1)),
        (7, first_id(1) + 1),
        (7, opened_id(2)),
        (7, first_id(2)),
    ]
    assert a.replica.sessions == b.replica.sessions == {7: Held(2, 222)}
    assert a.counters["requests_fenced"] == 1 and b.replica.digest == a.replica.digest
    # Replay of the journal reaches the same table (no clock, no randomness in sequencing).
    again = recover(net.journals["a"], a.engine_factory)
    assert again.sessions == a.replica.sessions and again.digest == a.replica.digest


def test_request_of_older_session_is_fenced_in_a_bundle_too():
    net = started("async")
    opened(net, b"c1", 7, 1)
    opened(net, b"c2", 7, 2)
    a = net.machines["a"]
    seq = a.replica.seq
    sink = net.machines[b"x"] = Sink()
    records = b"".join(cmd(i) for i in range(40))
    run = wire.decode_packed(wire.encode_request_records(7, first_id(1) + 10, records)).requests
    net.emit(b"x", a.handle_requests(b"x", run, net.now))
    loose = tuple(wire.Request(7, first_id(1) + 60 + i, cmd(i)) for i in range(3))
    net.emit(b"x", a.handle_requests(b"x", loose, net.now))
    net.run(0.005)
    assert a.replica.seq == seq and len(sink.got) == 43
    assert {m.status for m in sink.got} == {wire.FENCED}


def test_request_that_arrives_while_a_newer_open_is_queued_is_fenced():
    net = started("async")
    old = opened(net, b"c1", 7, 1)
    new = add_client(net, b"c2", 7, ["a", "b"])
    net.emit(b"c2", new.open(2, net.now))
    rid, outs = old.submit(cmd(1), net.now)
    net.emit(b"c1", outs)
    net.deliver_all()  # both reach the primary before it sequences either
    net.run(0.005)
    assert done(net, b"c1")[rid].status == wire.FENCED and new.session == 2
    assert (7, rid) not in journal_keys(net)


def test_resent_open_opens_nothing():
    net = started("sync")
    c = add_client(net, b"c1", 7, ["a", "b"])
    outs = c.open(5, net.now)
    net.emit(b"c1", outs + outs)  # twice at once: the second is queued already
    net.run_until(lambda: not c.opening, 1.0)
    sink = net.machines[b"x"] = Sink()
    net.emit(b"x", outs)  # and again once executed: its first result, no new session
    net.run(0.01)
    a = net.machines["a"]
    assert [k for k in journal_keys(net) if is_open_entry(k[1])] == [(7, opened_id(1))]
    assert sink.got[0].request_id == opened_id(1) and sink.got[0].status == wire.OK
    assert a.replica.sessions == {7: Held(1, 5)}


def test_resent_open_across_failover_keeps_its_session():
    net = started("sync")
    c = add_client(net, b"c1", 7, ["a", "b"])
    # The open is sequenced and replicated, but its reply never reaches the client.
    net.drop = lambda s, d, m: s == "a" and d == b"c1"
    net.emit(b"c1", c.open(9, net.now))
    net.run_until(lambda: net.machines["b"].replica.sessions.get(7) == Held(1, 9), 1.0)
    net.drop = None
    net.down.add("a")
    net.run_until(lambda: net.machines["b"].is_primary and not c.opening, 2.0)
    assert c.session == 1  # the new primary answered the re-sent open with its first result
    (rid,) = send(net, b"c1", c, [1])
    net.run_until(lambda: rid in done(net, b"c1"), 1.0)
    b = net.machines["b"]
    assert done(net, b"c1")[rid].status == wire.OK and b.replica.sessions == {7: Held(1, 9)}
    assert [k for k in journal_keys(net, "b") if is_open_entry(k[1])] == [(7, opened_id(1))]


def test_failover_keeps_the_fence():
    net = started("sync")
    old = opened(net, b"c1", 7, 1)
    opened(net, b"c2", 7, 2)
    net.down.add("a")
    net.run_until(lambda: net.machines["b"].is_primary, 2.0)
    (rid,) = send(net, b"c1", old, [1])
    net.run_until(lambda: rid in done(net, b"c1"), 2.0)
    assert done(net, b"c1")[rid].status == wire.FENCED
    assert (7, rid) not in journal_keys(net, "b")


def test_new_session_ids_stay_above_the_dedupe_floor():
    net = started("async", dedupe_window=4)
    c1 = opened(net, b"c1", 7, 1)
    rids = send(net, b"c1", c1, range(10))
    net.run(0.01)
    a = net.machines["a"]
    assert a.replica.lookup(7, rids[0]) is EXPIRED  # evicted: the window still works with the new ids
    c2 = opened(net, b"c2", 7, 2)
    (rid,) = send(net, b"c2", c2, [50])
    net.run(0.01)
    assert done(net, b"c2")[rid].status == wire.OK
    # A re-send of session 1's oldest request: still EXPIRED, never executed again.
    sink = net.machines[b"x"] = Sink()
    net.emit(b"x", [wire.Send("a", wire.Request(7, rids[0], cmd(0)))])
    net.run(0.005)
    assert sink.got[0].status == wire.EXPIRED


def test_snapshot_round_trip_keeps_sessions():
    r = Replica(dedupe_window=8)
    r.execute(1, 1, 7, opened_id(1), open_command(11))
    r.execute(1, 2, 7, first_id(1), cmd(1))
    r.execute(1, 3, 8, opened_id(3), open_command(12))
    r.execute(1, 4, 7, opened_id(2), open_command(13))
    assert r.sessions == {7: Held(2, 13), 8: Held(3, 12)}
    blob = r.snapshot()
    r2 = Replica.restore(blob)
    assert r2.sessions == r.sessions and r2.snapshot() == blob and r2.digest == r.digest


def test_batch_and_run_paths_learn_sessions_like_one_by_one():
    cids = [7, 8, 7, 9] * 20
    rids = [opened_id(1), first_id(1), first_id(1), opened_id(4)] * 20
    rids = [r + (i // 4) * (1 << SESSION_SHIFT) if is_open_entry(r) else r + i for i, r in enumerate(rids)]
    cmds = [open_command(100 + i) if is_open_entry(r) else cmd(i) for i, r in enumerate(rids)]
    one = Replica()
    for i in range(len(cids)):
        one.execute(1, i + 1, cids[i], rids[i], cmds[i])
    batch = Replica()
    run, _, _ = batch.execute_batch(1, cids, rids, b"".join(cmds))
    small = Replica()
    small.execute_batch(1, cids[:5], rids[:5], b"".join(cmds[:5]))
    assert small.sessions == {7: Held(2, 104), 9: Held(4, 103)}
    follower = Replica()
    assert follower.apply_entries(run) == len(cids)  # the standby's packed path
    listed = Replica()
    assert listed.apply_entries(tuple(run)) == len(cids)  # the list path
    assert one.sessions == batch.sessions == follower.sessions == listed.sessions
    assert one.sessions[7] == Held(20, 176) and one.sessions[9] == Held(23, 179)


def test_requests_without_a_session_work_until_the_id_opens_one():
    net = started("async")
    legacy = add_client(net, b"c1", 7, ["a", "b"], first=1)
    (rid,) = send(net, b"c1", legacy, [1])
    net.run(0.005)
    assert done(net, b"c1")[rid].status == wire.OK
    opened(net, b"c2", 7, 3)
    (rid,) = send(net, b"c1", legacy, [2])
    net.run(0.005)
    assert done(net, b"c1")[rid].status == wire.FENCED  # session 0 is older than session 1


def test_open_with_a_forged_counter_zero_id_is_refused():
    net = started("async")
    a = net.machines["a"]
    sink = net.machines[b"x"] = Sink()
    net.emit(b"x", [wire.Send("a", wire.Request(7, opened_id(5), open_command(1)))])
    net.emit(b"x", [wire.Send("a", wire.Request(7, OPEN_REQUEST, cmd(1)))])  # not an open's command
    net.run(0.005)
    assert a.replica.seq == 0 and not a.replica.sessions and a.counters["requests_malformed"] == 2
    assert sink.got == []  # dropped and counted, as any malformed request


def test_recover_from_snapshot_and_tail_keeps_sessions():
    net = started("async")
    opened(net, b"c1", 7, 1)
    a = net.machines["a"]
    j = MemoryJournal()
    j.append(net.journals["a"].read(1))
    at = j.last_seq
    j.save_snapshot(at, a.replica.last_epoch, a.replica.snapshot())
    opened(net, b"c2", 8, 2)  # after the snapshot: learnt from the tail
    j.append(net.journals["a"].read(at + 1))
    j.compact(at)
    assert j.base_seq == at  # the first open is in the snapshot only
    r = recover(j, a.engine_factory)
    assert r.sessions == a.replica.sessions == {7: Held(1, 1), 8: Held(1, 2)}


def test_drop_copy_of_an_open_replays_to_the_groups_digest():
    """The subscriber prints an open as ``session_open``; ``matchcore replay`` of those lines
    (a command it rejects, as the engine rejected the open) reaches the group's digest."""
    import matching
    from matching.commands import command_record
    from replication.transport.subscriber import entry_json

    r = Replica()
    run, _, _ = r.execute_batch(
        1, [7, 7, 8], [opened_id(1), first_id(1), opened_id(1)], open_command(9) + cmd(1) + open_command(4)
    )
    lines = [entry_json(e, None)["command"] for e in run]
    assert lines[0] == lines[2] == {"op": "session_open", "session": 1}
    local = matching.ReferenceEngine()
    for d in lines:
        local.apply_batch(np.array([tuple(command_record(d))], dtype=matching.COMMAND_DTYPE))
    assert local.digest == r.digest


def test_a_lost_open_still_gives_the_next_session_a_higher_number():
    """Async may lose an acknowledged open at a fail-over; its client goes on in that session. The
    next open of the id must still be above it (the dedupe table's ids say so) and fence it."""
    net = started("async")
    lost = add_client(net, b"c1", 7, ["a", "b"], first=first_id(3))  # as if session 3's open was lost
    (rid,) = send(net, b"c1", lost, [1])
    net.run(0.005)
    assert done(net, b"c1")[rid].status == wire.OK and not net.machines["a"].replica.sessions
    assert opened(net, b"c2", 7, 5).session == 4
    (rid,) = send(net, b"c1", lost, [2])
    net.run(0.005)
    assert done(net, b"c1")[rid].status == wire.FENCED


@pytest.mark.parametrize("seed", range(6))
def test_three_processes_one_id_under_loss_and_duplication(seed):
    """Three client cores with one id open in turn while the network drops and duplicates client
    traffic: every request executes at most once, a fenced one never, every OK reply is its own
    request's first result, and the sessions are the ones the primary handed out, in order."""
    net, cores = _three_processes(seed)
    statuses = [d.reply.status for c in cores for d in net.done.get(c, [])]
    assert wire.FENCED in statuses and statuses.count(wire.OK) >= 40  # both outcomes were exercised


def _three_processes(seed):
    import random

    rng = random.Random(seed)
    net = started("sync")
    net.drop = lambda s, d, m: isinstance(m, (wire.Request, wire.Reply)) and rng.random() < 0.2
    deliver = net.emit

    def emit(src, outputs):  # duplicate some client messages
        deliver(src, outputs)
        twins = [o for o in outputs if isinstance(o, wire.Send) and isinstance(o.msg, wire.Request)]
        deliver(src, [o for o in twins if rng.random() < 0.2])

    net.emit = emit
    cores, sent = {}, {}
    for k, addr in enumerate((b"p1", b"p2", b"p3")):
        c = cores[addr] = add_client(net, addr, 7, ["a", "b"])
        net.emit(addr, c.open(100 + k, net.now))
        for _ in range(rng.randint(0, 30)):  # earlier processes keep sending meanwhile
            for other, oc in cores.items():
                if other != addr and not oc.opening and not oc.fenced:
                    rid, outs = oc.submit(cmd(len(sent) + 1), net.now)
                    sent[(other, rid)] = len(sent) + 1
                    net.emit(other, outs)
            net.step()
        net.run_until(lambda c=c: not c.opening, 2.0)
        for _ in range(20):
            rid, outs = c.submit(cmd(len(sent) + 1), net.now)
            sent[(addr, rid)] = len(sent) + 1
            net.emit(addr, outs)
    net.drop = None
    net.run_until(lambda: all(not c.pending for c in cores.values()), 5.0)
    assert [cores[a].session for a in (b"p1", b"p2", b"p3")] == [1, 2, 3]
    entries = [e for e in net.journals["a"].read(1) if e.client_id == 7]
    by_rid = {e.request_id: e for e in entries}
    assert len(by_rid) == len(entries)  # nothing executed twice
    replay = Replica(net.machines["a"].engine_factory)
    events_at = {}
    for e in net.journals["a"].read(1):
        events_at[e.seq], _ = replay.execute(e.epoch, e.seq, e.client_id, e.request_id, e.command)
    for addr in cores:
        for d in net.done.get(addr, []):
            e = by_rid.get(d.request_id)
            if d.reply.status == wire.FENCED:
                assert e is None  # never executed
            else:
                # (the journaled command carries the primary's stamp in its ts: group_time)
                sent_cmd = stamp_commands(cmd(sent[(addr, d.request_id)]), stamp_of(e.command))
                assert d.reply.status == wire.OK and e.command == sent_cmd
                assert d.reply.seq == e.seq and d.reply.events == events_at[e.seq]
    assert [e.request_id for e in entries if is_open_entry(e.request_id)] == [opened_id(s) for s in (1, 2, 3)]
    current = 0
    for e in entries:  # in journal order, nothing of a session older than the last one opened
        assert session_of(e.request_id) >= current
        current = max(current, session_of(e.request_id))
    assert all(c.counters.get("foreign_replies", 0) == 0 for c in cores.values())
    return net, cores


def test_snapshot_of_version_1_restores_and_a_bad_session_table_is_refused():
    import struct
    import zlib

    from replication.protocol.replica import SNAP_HEAD

    r = Replica()
    r.execute(1, 1, 7, 5, cmd(1))
    blob = r.snapshot()
    book = len(r.reports.pack()) + 8  # version 3 on: earlier sessions (none: a count) and the report book
    body = bytearray(blob[: -4 - book])
    struct.pack_into("<B", body, 4, 1)  # version 1: no session table after the dedupe table
    v1 = bytes(body[:-8])  # (its table of 0 sessions: one u64)
    old = Replica.restore(v1 + struct.pack("<I", zlib.crc32(v1)))
    assert old.sessions == {} and old.results == r.results and old.digest == r.digest
    body = bytearray(blob[: -4 - book])
    struct.pack_into("<B", body, 4, 2)
    struct.pack_into("<Q", body, len(body) - 8, 1 << 40)  # claims more sessions than it holds
    with pytest.raises(ValueError, match="session table"):
        Replica.restore(bytes(body) + struct.pack("<I", zlib.crc32(bytes(body))))
    assert SNAP_HEAD.unpack_from(blob)[1] == 3
