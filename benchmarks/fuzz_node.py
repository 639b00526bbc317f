"""Live-node fuzz: millions of random and mutated frames into a serving primary, through the driver's decode path.

For: showing that bad input on the wire — truncated frames, wrong version,
bad checksums, absurd lengths, unknown types, checksum-valid garbage
payloads — is dropped and counted per reason while the node keeps serving:
good client requests interleaved with the garbage are all answered, and at
the end the node's book equals a fresh replay of its own journal. Frames go
through ``replication.transport.node_driver.NodeDriver._inbound`` (the very function the ZeroMQ
loop calls per frame) with the sockets left out; the clock is virtual.
Not for: speed figures of the decoder (the rate is printed for scale only).

    python -m benchmarks.fuzz_node --frames 1000000 [--seed 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import struct
import sys
import time
import zlib
from typing import Any

from replication.protocol import wire
from replication.protocol.node.machine import NodeMachine
from replication.protocol.settings import Settings
from replication.protocol.trust import Policy
from replication.storage.journal import MemoryJournal

CLIENT = b"fuzz-client"
GOOD_EVERY = 50  # one good client request per this many frames
# Noise comes from client addresses. In an open group a client address may send operator commands
# (Switchover, Promote: the group trusts its network, see replication.protocol.trust), so a well-formed Switchover
# could hand the primary over. That is an attack, not a bad frame, so the noise never re-seals a frame as
# one of those types (nor as an Ack, which trust.Policy refuses from a client anyway).
PRIVILEGED = {wire.Switchover.TYPE, wire.Promote.TYPE, wire.Ack.TYPE}
UNPRIVILEGED = sorted(t for t in wire.MESSAGE_TYPES if t not in PRIVILEGED)


class _Inbound:
    """The state ``NodeDriver._inbound`` reads, without sockets (a stand-in ``self``)."""

    def __init__(self, machine: NodeMachine) -> None:
        self.machine = machine
        self.name = machine.name
        self.counters: dict[str, int] = {}
        self._last_drop_log = 0.0
        self.reply_timer = None  # metrics off, as in a driver started without --metrics-port
        self.policy = Policy(machine.name, [machine.name, *machine.peers], bool(machine.witness))

    def count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def _refuse(self, who: Any, msg: wire.Message, refusal: Any, now: float) -> None:  # noqa: ARG002
        self.count(f"refused_{refusal.code}")  # as the driver counts it (its log line left out)

    def _deliver_requests(self, src: wire.Address, requests: Any, now: float) -> list:
        return self.machine.handle_requests(src, requests, now)  # as the node driver hands a bundle on


def _dropped(drv: _Inbound) -> int:
    return sum(n for k, n in drv.counters.items() if k.startswith("decode_"))


def serving_primary(engine_factory: Any = None) -> NodeMachine:
    """A primary (async mode, one absent peer) promoted through a hand-fed witness vote."""
    import matching

    factory = engine_factory or (matching.Engine if matching.Engine is not None else matching.ReferenceEngine)
    m = NodeMachine(
        "a",
        ["a", "b"],
        MemoryJournal(),
        # The async lease (replication.protocol.node.lease) is granted once, below, for the whole run: the
        # fuzz target has no live witness to renew it, and what is fuzzed here is the inbound path.
        Settings(mode="async", snapshot_every=0, lease=1e9),
        "witness",
        factory,
        "primary",
    )
    m.tick(0.0)
    m.handle("witness", wire.Vote(1, "a", True, "granted"), 0.0)
    m.handle("witness", wire.Lease(1, m.lease_stamp, "witness"), 0.0)  # the echo of its first ask
    assert m.is_primary and m.lease_held(0.0), "could not promote the fuzz target"
    return m


def _samples(rng: random.Random) -> list[bytes]:
    """Good frames of every type (the seeds of mutation)."""
    from replication.testing.sim import pack, random_commands

    cmds = [pack(c) for c in random_commands(rng, 9, 16)]
    e = wire.Entry(1, 5, 9, 9, 123, cmds[0])
    msgs: list[wire.Message] = [
        wire.Request(9, 1, cmds[1]),
        wire.Reply(9, 1, wire.OK, 1, 2, "a", bytes(128)),
        wire.Requests((wire.Request(9, 2, cmds[2]), wire.Request(9, 3, cmds[3]))),
        wire.Replies(
            (wire.Reply(9, 1, wire.OK, 1, 2, "a", bytes(64)), wire.Reply(9, 2, wire.NOT_PRIMARY, 1, 0, "b"))
        ),
        wire.Entries(1, 5, 4, (e, e._replace(seq=6))),
        wire.Heartbeat(1, 3, "b", wire.ROLE_STANDBY, 3, "a", 77),
        wire.Refill(1, 1, 0, "b"),
        wire.Join(1, 0, "b", 0),
        wire.Fence(1, 0, "b"),
        wire.SnapshotChunk(1, 3, 1, 0, 16, bytes(16)),
        wire.StatusRequest(),
        wire.Status(b"{}"),
        wire.Handover(1, 3, "a"),
        wire.VoteRequest(2, 3, "b", 1),
        wire.Vote(1, "b", False, "no"),
    ]
    return [wire.encode(m) for m in msgs]


def mutate(rng: random.Random, frame: bytes) -> bytes:
    """One damaged frame: bit flips, cuts, insertions, overwrites, header fields, or pure noise."""
    how = rng.randrange(8)
    f = bytearray(frame)
    if how == 0:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(64)))
    if how == 1:
        return bytes(f[: rng.randrange(len(f))])
    if how == 2:
        f += bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8)))
    elif how == 3:
        struct.pack_into("<B", f, 2, rng.choice((0, 2, 9, 255)))  # version
    elif how == 4:
        struct.pack_into("<I", f, 16, rng.choice((len(f), 1 << 27, 1 << 31, 0)))  # length
    elif how == 5:
        f[0:2] = rng.choice((b"XX", b"\0\0", b"CM"))
    else:
        for _ in range(rng.randint(1, 4)):
            f[rng.randrange(len(f))] ^= 1 << rng.randrange(8)
    if rng.random() < 0.3 and len(f) >= wire.HEADER_SIZE:
        # Re-seal the checksum so the damage reaches the payload parsers.
        if rng.random() < 0.5 or f[3] in PRIVILEGED:
            f[3] = rng.choice(UNPRIVILEGED)
        body = bytes(f[wire.HEADER_SIZE :])
        struct.pack_into("<I", f, 16, len(body))
        struct.pack_into("<I", f, 20, zlib.crc32(body, zlib.crc32(bytes(f[:20]))))
    return bytes(f)


def run(frames: int, seed: int = 1) -> dict[str, Any]:
    """Feed ``frames`` frames; return the figures. Raises ``AssertionError`` if the node misbehaved."""
    from replication.protocol.replica import Replica
    from replication.testing.sim import pack, random_commands
    from replication.transport.node_driver import NodeDriver

    rng = random.Random(seed)
    node = serving_primary()
    drv = _Inbound(node)
    inbound = NodeDriver._inbound
    samples = _samples(rng)
    sources: list[wire.Address] = [b"noise-1", b"noise-2", CLIENT]
    good_cmds = [pack(c) for c in random_commands(rng, 7, 4096)]
    now = 0.0
    sent_good: dict[int, bytes] = {}
    replies: dict[int, wire.Reply] = {}
    audited = audit_mismatch = 0
    for i in range(frames):
        now += 1e-5
        if i % GOOD_EVERY == 0:
            rid = len(sent_good) + 1
            cmd = good_cmds[rid % len(good_cmds)]
            sent_good[rid] = cmd
            frame, src = wire.encode(wire.Request(7, rid, cmd)), CLIENT
        else:
            frame, src = mutate(rng, rng.choice(samples)), rng.choice(sources)
        if i % 97 == 1:  # audit a sample: a frame is counted as dropped exactly when it does not decode
            before = _dropped(drv)
            try:
                wire.decode(frame)
                bad = 0
            except wire.DecodeError:
                bad = 1
            outs = inbound(drv, src, frame, now)
            audit_mismatch += (_dropped(drv) - before) != bad
            audited += 1
        else:
            outs = inbound(drv, src, frame, now)
        if i % 64 == 0:
            outs = outs + node.tick(now)
        for r in _client_replies(outs):
            if r.client_id == 7 and r.status == wire.OK:
                replies.setdefault(r.request_id, r)
    # Drain: a fuzzed Switchover may have started a drain that aborts after its timeout.
    for k in range(1, 100):
        for r in _client_replies(node.tick(now + k * node.settings.switchover_timeout / 10)):
            replies.setdefault(r.request_id, r)
    answered_live = len(replies)
    # Every good request that was refused while draining is re-sent once the node serves again.
    now += 10 * node.settings.switchover_timeout
    for rid, cmd in sent_good.items():
        if rid not in replies:
            for r in _client_replies(
                inbound(drv, CLIENT, wire.encode(wire.Request(7, rid, cmd)), now) + node.tick(now)
            ):
                if r.status == wire.OK:
                    replies.setdefault(r.request_id, r)
    alive = node.is_primary
    dropped = {k[len("decode_") :]: v for k, v in sorted(drv.counters.items()) if k.startswith("decode_")}
    # Correctness: the book is exactly a replay of the node's journal; every good reply matches it.
    replay = Replica(node.engine_factory)
    events_at: dict[int, bytes] = {}
    for e in node.journal.read(1):
        events_at[e.seq], digest = replay.execute(e.epoch, e.seq, e.client_id, e.request_id, e.command)
        assert digest == e.digest, f"journal seq {e.seq} does not replay to its digest"
    assert replay.digest == node.replica.digest, "node book differs from a replay of its journal"
    wrong = sum(1 for r in replies.values() if events_at.get(r.seq) != r.events)
    return {
        "frames": frames,
        "good_requests": len(sent_good),
        "good_answered": sum(1 for rid in sent_good if rid in replies),
        "good_answered_live": answered_live,  # before the re-send sweep (re-sends answer from the dedupe table)
        "good_wrong": wrong,
        "dropped": sum(dropped.values()),
        "dropped_by_reason": dropped,
        "decoded_garbage_handled": frames - sum(dropped.values()) - len(sent_good),
        "audited": audited,
        "audit_mismatches": audit_mismatch,
        "node_alive": alive,
        "node_role": wire.ROLE_NAMES[node.role],
        "journal_entries": node.journal.last_seq,
        "node_counters": dict(sorted(node.counters.items())),
    }


def _client_replies(outs: list) -> list:
    """The replies among a node's outputs to ``CLIENT``: single ``Send``s and ``ReplyRun``s (a
    sequenced batch's replies, one ``Send`` each in meaning)."""
    from replication.protocol import wire

    got = []
    for o in outs:
        if isinstance(o, wire.Send) and o.dest == CLIENT and isinstance(o.msg, wire.Reply):
            got.append(o.msg)
        elif isinstance(o, wire.ReplyRun) and o.dest == CLIENT:
            got += o.replies()
    return got


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog=f"python -m {__package__}.fuzz_node", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    logging.disable(logging.CRITICAL)  # one warning per bad frame class per second is the driver's job
    t0 = time.perf_counter()
    res = run(args.frames, args.seed)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    good = (
        res["node_alive"]
        and res["good_answered"] == res["good_requests"]
        and not res["good_wrong"]
        and not res["audit_mismatches"]
    )
    if args.json:
        print(json.dumps(res, sort_keys=True))
    else:
        print(
            f"frames             {res['frames']:>10}   ({res['frames'] / max(res['seconds'], 1e-9):,.0f}/s)"
        )
        print(f"dropped            {res['dropped']:>10}")
        for k, n in res["dropped_by_reason"].items():
            print(f"  {k:<17}{n:>10}")
        print(f"garbage decoded    {res['decoded_garbage_handled']:>10}   (valid frames from noise: handled)")
        print(
            f"good requests      {res['good_requests']:>10}   answered {res['good_answered']}, "
            f"wrong {res['good_wrong']}"
        )
        print(
            f"count audit        {res['audited']:>10}   frames re-decoded, {res['audit_mismatches']} miscounted"
        )
        print(
            f"node alive         {res['node_alive']!s:>10}   role {res['node_role']}, "
            f"journal {res['journal_entries']} entries"
        )
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
