"""The client's batch paths against the one-by-one ones they stand for, sans-IO and seeded.

``ClientCore.submit_window`` (one timer item per window) must leave the same
state and give the same later ``tick`` outputs as one ``submit`` per command;
``ClientCore.handle_replies`` the same state and outputs as one ``handle`` per
reply; ``wire.encode_request_window`` the same bytes as ``wire.encode``.
"""

from __future__ import annotations

import random

import pytest

from replication.protocol import wire
from replication.protocol.client_core import ClientCore, Done

NODES = ["a", "b", "c"]


def cmd(i: int) -> bytes:
    return bytes([i % 256]) * wire.COMMAND_SIZE


def state(c: ClientCore) -> tuple:
    return (
        c.request_state(),
        c.primary,
        c.next_id,
        c.heard_at,
        c.suspect_until,
        c.counters,
    )


def random_reply(rng: random.Random, c: ClientCore, clean: bool = False) -> tuple[str, wire.Reply]:
    """A reply to a pending, answered or unknown id; ``clean``: an OK to this client."""
    ids = list(c.pending) or [c.next_id - 1]
    rid = rng.choice(ids + [ids[0] - 1, c.next_id + 5])  # pending, answered already, unknown
    src = rng.choice(NODES)
    status = rng.choice([wire.OK] * 6 + [wire.EXPIRED, wire.NOT_PRIMARY, wire.UNAVAILABLE])
    leader = rng.choice(["", *NODES]) if status != wire.OK else src
    cid = 7 if rng.random() < 0.95 else 8
    if clean:
        status, cid = wire.OK, 7
    return src, wire.Reply(cid, rid, status, 1, rid, leader, bytes([rid % 256]) * 64 * (rid % 3))


def handle_bundle(c: ClientCore, src: str, bundle: list, now: float, done: dict) -> list:
    """What ``Client`` does with a bundle: the C decoder's block, else ``handle_replies``."""
    from replication.protocol._client_fast import decode_replies

    block = decode_replies(wire.encode(wire.Replies(tuple(bundle))))
    if c.handle_answered(src, block, now):
        done.update((r.request_id, r) for r in block.answered_replies())
        return []
    return c.handle_replies(src, block.replies(), now, done)


def run(seed: int, batched: bool | str) -> list:
    """A seeded history of windows, reply bundles, hints and ticks; every output it gave."""
    rng = random.Random(seed)
    c = ClientCore(7, NODES, first_request_id=1000, retry_timeout=0.05)
    now, log = 0.0, []
    for _ in range(60):
        now += rng.choice([0.0, 0.001, 0.01, 0.03, 0.06])
        op = rng.random()
        if op < 0.3:
            cmds = [cmd(rng.randrange(256)) for _ in range(rng.randrange(0, 12))]
            if batched:
                first = c.submit_window(cmds, now)
                log.append(("window", c.primary, list(range(first, first + len(cmds)))))
            else:
                outs = [c.submit(x, now) for x in cmds]
                log.append(("window", c.primary, [rid for rid, _ in outs]))
        elif op < 0.7:
            src = rng.choice(NODES + ["x"])
            clean = rng.random() < 0.5
            bundle = [random_reply(rng, c, clean)[1] for _ in range(rng.randrange(1, 8))]
            if batched == "block":
                done: dict[int, wire.Reply] = {}
                outs = handle_bundle(c, src, bundle, now, done)
                log.append(("replies", list(done.items()), outs))
            elif batched:
                done = {}
                outs = c.handle_replies(src, bundle, now, done)
                log.append(("replies", list(done.items()), outs))
            else:
                outs = [o for r in bundle for o in c.handle(src, r, now)]
                got = [(o.request_id, o.reply) for o in outs if isinstance(o, Done)]
                log.append(("replies", got, [o for o in outs if not isinstance(o, Done)]))
        elif op < 0.8:
            log.append(("down", c.handle("x", wire.PeerDown(rng.choice(NODES)), now)))
        else:
            log.append(("tick", c.tick(now)))
        log.append(state(c))
    log.append(("drain", c.tick(now + 10.0), state(c)))
    return log


@pytest.mark.parametrize("seed", range(40))
def test_batch_paths_behave_as_one_by_one(seed):
    assert run(seed, batched=True) == run(seed, batched=False)


@pytest.mark.parametrize("seed", range(40))
def test_decoded_bundles_behave_as_one_by_one(seed):
    assert run(seed, batched="block") == run(seed, batched=False)


def test_submit_window_arms_one_timer_and_resends_each_request():
    one, many = ClientCore(7, NODES, 10, 0.05), ClientCore(7, NODES, 10, 0.05)
    for i in range(5):
        one.submit(cmd(i), 1.0)
    assert many.submit_window([cmd(i) for i in range(5)], 1.0) == 10 and len(many.timers) == 1
    assert many.request_state() == one.request_state() and many.next_id == one.next_id == 15
    many.handle("a", wire.Reply(7, 12, wire.OK), 1.01)
    one.handle("a", wire.Reply(7, 12, wire.OK), 1.01)
    # a answered 12 at 1.01: the others are slow, not lost; each is re-sent alone to a.
    outs = many.tick(1.055)
    assert outs == one.tick(1.055)
    assert [(o.dest, o.msg.request_id) for o in outs] == [("a", 10), ("a", 11), ("a", 13), ("a", 14)]
    assert many.submit_window([], 2.0) == 15 and len(many.timers) == 4  # nothing armed


def test_one_request_of_a_window_gets_its_own_state_and_the_rest_keep_theirs():
    c = ClientCore(7, NODES, 1, 0.05)
    c.submit_window([cmd(i) for i in range(4)], 0.0)
    assert len({id(p) for p in c.pending.values()}) == 1  # one shared state object
    outs = c.handle("a", wire.Reply(7, 3, wire.NOT_PRIMARY, 1, 0, "b"), 0.01)  # follow b at once
    assert [(o.dest, o.msg.command) for o in outs] == [("b", cmd(i)) for i in range(4)]
    st = c.request_state()
    assert [st[r][4] for r in (1, 2, 3, 4)] == [0, 0, 1, 0]  # only 3 bounced
    c.submit_window([cmd(i) for i in range(4, 8)], 0.02)
    c.handle("b", wire.Reply(7, 5, wire.OK), 0.03)
    outs = c.tick(0.07)  # b answers: each unanswered request of the window is re-sent alone
    assert [o.msg.request_id for o in outs if o.msg.request_id > 4] == [6, 7, 8]
    st = c.request_state()
    assert [st[r][5] for r in (6, 7, 8)] == [1, 1, 1] and st[6][4] == 0
    assert len({id(p) for p in c.pending.values()}) == 7


def test_submit_records_is_submit_window():
    a, b = ClientCore(7, NODES, 5, 0.05), ClientCore(7, NODES, 5, 0.05)
    cmds = [cmd(i) for i in range(6)]
    assert a.submit_records(b"".join(cmds), 1.0) == b.submit_window(cmds, 1.0) == 5
    assert a.request_state() == b.request_state() and a.timers == b.timers
    assert a.tick(1.05) == b.tick(1.05) and a.request_state() == b.request_state()
    with pytest.raises(ValueError):
        a.submit_records(bytes(wire.COMMAND_SIZE + 1), 2.0)


def test_primary_lost_mid_window_keeps_the_rest_armed():
    c = ClientCore(7, NODES, 1, 0.05)
    c.submit_window([cmd(i) for i in range(4)], 0.0)
    outs = c.tick(0.05)  # a never answered: fail over to b with all four
    assert c.primary == "b" and [o.msg.request_id for o in outs] == [1, 2, 3, 4]
    assert (0.05, 2, 4) in c.timers  # the rest of the window's item, now stale (re-armed)
    assert c.tick(0.06) == []


def test_handle_replies_fast_path_and_fallback():
    c = ClientCore(7, NODES, 1, 0.05)
    c.submit_window([cmd(i) for i in range(4)], 0.0)
    done: dict[int, wire.Reply] = {}
    bundle = [
        wire.Reply(7, 2, wire.OK, 1, 1, "b"),
        wire.Reply(7, 1, wire.EXPIRED, 1, 0, "b"),
        wire.Reply(7, 2, wire.OK, 1, 1, "b"),  # a twin: late
        wire.Reply(8, 3, wire.OK, 1, 2, "b"),  # not ours
        wire.Reply(7, 4, wire.OK, 1, 3, "b"),
    ]
    assert c.handle_replies("b", bundle, 0.01, done) == []
    assert list(done) == [2, 1, 4] and done[1].status == wire.EXPIRED
    assert c.primary == "b" and list(c.pending) == [3] and c.heard_at["b"] == 0.01
    assert c.counters == {"late_replies": 1, "unexpected_messages": 1, "foreign_replies": 1}


def test_encode_request_window_is_wire_encode():
    from replication.client.group_client import MAX_BUNDLE

    cmds = [cmd(i) for i in range(MAX_BUNDLE)]
    for n in (1, 2, 7, MAX_BUNDLE):
        reqs = [wire.Request(7, (1 << 50) + i, cmds[i]) for i in range(n)]
        want = wire.encode(reqs[0] if n == 1 else wire.Requests(tuple(reqs)))
        got = wire.encode_request_window(7, 1 << 50, cmds[:n])
        assert got == want
        assert wire.decode(got) == wire.decode(want)


def test_pack_commands_is_pack_command():
    from matching import commands
    from replication.client.group_client import pack_commands

    d = commands.new_order_dict(1, 5, "buy", 100, 10, "limit", "GTC", 0, False, 0, "none")
    rec = commands.command_record(d)
    assert pack_commands([d, tuple(rec), rec]) == [wire.pack_command(commands.command_record(d))] * 3


def test_encode_request_records_is_encode_request_window():
    cmds = [bytes(range(i, i + wire.COMMAND_SIZE)) for i in range(40)]
    for first in (1, 1 << 50, (1 << 64) - 40):
        for n in (1, 2, 39, 40):
            assert wire.encode_request_records(7, first, b"".join(cmds[:n])) == wire.encode_request_window(
                7, first, cmds[:n]
            )
    for bad in (b"", bytes(wire.COMMAND_SIZE + 1)):
        with pytest.raises(ValueError):
            wire.encode_request_records(7, 1, bad)
    with pytest.raises(ValueError):
        wire.encode_request_records(7, (1 << 64) - 1, bytes(2 * wire.COMMAND_SIZE))
