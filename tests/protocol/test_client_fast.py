"""``replication.protocol._client_fast`` against ``wire.decode``, its specification, seeded.

Valid ``Replies`` frames decode to the same replies; truncated, corrupt and
re-checksummed garbage frames are rejected with the same ``DecodeError``
reason (never another exception); other frame types are left to
``wire.decode``. ``pop_answered`` and ``gather`` match their plain loops.
"""

from __future__ import annotations

import random

import pytest

from matching import EVENT_DTYPE
from replication.protocol import _client_fast as fast  # built by every make target: missing is a failure
from replication.protocol import wire

LEADERS = ["", "a", "b", "nodé"]


def random_replies(rng: random.Random, n: int) -> tuple[wire.Reply, ...]:
    return tuple(
        wire.Reply(
            rng.choice([7, 7, 7, 8]),
            rng.randrange(1 << 64),
            rng.choice([wire.OK] * 5 + [wire.NOT_PRIMARY, wire.EXPIRED, wire.UNAVAILABLE, 200]),
            rng.randrange(1 << 32),
            rng.randrange(1 << 64),
            rng.choice(LEADERS) if rng.random() < 0.3 else "a",
            rng.randbytes(wire.EVENT_SIZE * rng.choice([0, 1, 1, 2, 3])),
        )
        for _ in range(n)
    )


def outcome(decode, frame) -> tuple:
    try:
        msg = decode(frame)
    except wire.DecodeError as exc:
        return ("rejected", exc.reason)
    return ("ok", msg.replies if isinstance(msg, wire.Replies) else msg.replies())


def same_as_wire(frame: bytes) -> None:
    if len(frame) >= wire.HEADER_SIZE and frame[3] == wire.Replies.TYPE:
        assert outcome(fast.decode_replies, frame) == outcome(wire.decode, frame)
    else:
        assert fast.decode_replies(frame) is None  # not a Replies frame: the caller uses wire.decode


@pytest.mark.parametrize("seed", range(20))
def test_valid_bundles_decode_as_wire_does(seed):
    rng = random.Random(seed)
    for n in (2, 3, 17, 200):
        frame = wire.encode(wire.Replies(random_replies(rng, n)))
        block = fast.decode_replies(frame)
        assert len(block) == n and block.replies() == wire.decode(frame).replies
        assert block.answered == 0 and block.answered_replies() == [] and block.last_answered() is None


def test_other_frames_are_left_to_wire_decode():
    for msg in (
        wire.Reply(7, 1, wire.OK, 1, 2, "a", bytes(64)),
        wire.Request(7, 1, bytes(80)),
        wire.PeerDown("a"),
    ):
        assert fast.decode_replies(wire.encode(msg)) is None
    assert fast.decode_replies(b"") is None and fast.decode_replies(b"MC\x01\x15") is None
    assert (
        fast.decode_replies(bytearray(wire.encode(wire.Replies(random_replies(random.Random(1), 2))))) is None
    )


@pytest.mark.parametrize("seed", range(10))
def test_truncated_and_corrupt_frames_are_rejected_as_wire_does(seed):
    rng = random.Random(seed)
    frame = wire.encode(wire.Replies(random_replies(rng, rng.randrange(2, 6))))
    for cut in range(len(frame)):
        same_as_wire(frame[:cut])
    same_as_wire(frame + b"\x00")
    for _ in range(300):
        bad = bytearray(frame)
        for _ in range(rng.randrange(1, 4)):
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        same_as_wire(bytes(bad))


def reframe(body: bytes) -> bytes:
    return wire._frame(wire.Replies.TYPE, 0, 0, body)


@pytest.mark.parametrize("seed", range(10))
def test_garbage_payloads_with_a_good_checksum_are_rejected_as_wire_does(seed):
    """The checksum hides most corruption; these reach the record parser."""
    rng = random.Random(seed)
    body = wire.encode(wire.Replies(random_replies(rng, rng.randrange(2, 6))))[wire.HEADER_SIZE :]
    for cut in range(len(body)):
        same_as_wire(reframe(body[:cut]))
    for _ in range(500):
        bad = bytearray(body)
        for _ in range(rng.randrange(1, 4)):
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        same_as_wire(reframe(bytes(bad)))
    for _ in range(200):
        same_as_wire(reframe(rng.randbytes(rng.randrange(200))))


def test_specific_bad_records():
    head = wire._BUNDLED_REPLY
    ok = head.pack(7, 1, 0, 1, 1, 1, 64) + b"a" + bytes(64)
    cases = {
        b"": "bad_payload",  # no replies
        head.pack(7, 1, 0, 1, 1, 2, 0) + b"\xff\xfe": "bad_payload",  # leader not UTF-8
        head.pack(7, 1, 0, 1, 1, 0, 63) + bytes(63): "bad_payload",  # not whole event records
        head.pack(7, 1, 0, 1, 1, 0, 0xFFFFFFFF): "bad_payload",  # absurd events length
        head.pack(7, 1, 0, 1, 1, 0xFFFF, 0): "bad_payload",  # absurd leader length
        ok + ok[:-1]: "bad_payload",
    }
    for body, reason in cases.items():
        assert outcome(fast.decode_replies, reframe(body)) == ("rejected", reason)
        assert outcome(wire.decode, reframe(body)) == ("rejected", reason)
    frame = reframe(ok + ok)
    for k, reason in ((0, "bad_magic"), (2, "bad_version"), (20, "bad_checksum")):
        bad = bytearray(frame)
        bad[k] ^= 0xFF
        assert outcome(fast.decode_replies, bytes(bad)) == ("rejected", reason)
    long_claim = bytearray(frame)
    long_claim[16:20] = (wire.MAX_PAYLOAD + 1).to_bytes(4, "little")
    assert outcome(fast.decode_replies, bytes(long_claim)) == ("rejected", "bad_length")


@pytest.mark.parametrize("seed", range(10))
def test_pop_answered_and_gather_match_plain_loops(seed):
    rng = random.Random(seed)
    blocks, want, pending = [], [], {}
    for _ in range(4):
        replies = random_replies(rng, rng.randrange(2, 40))
        for r in replies:
            if rng.random() < 0.8:
                pending[r.request_id] = object()
        replies += replies[:2]  # twins: late
        expect_late, expect = 0, []
        for r in replies:
            if pending.pop(r.request_id, None) is None:
                expect_late += 1
            else:
                expect.append(r)
        for r in expect:  # put back what the plain loop took, for the block to take
            pending[r.request_id] = object()
        block = fast.decode_replies(wire.encode(wire.Replies(replies)))
        assert block.pop_answered(pending) == expect_late and block.answered == len(expect)
        assert block.answered_replies() == expect
        assert block.last_answered() == (expect[-1] if expect else None)
        blocks.append(block)
        want += expect
    rid, status, epoch, seq, events = fast.gather(blocks, 5)
    assert rid.tolist() == [r.request_id for r in want] and status.tolist() == [r.status for r in want]
    assert epoch.tolist() == [r.epoch for r in want] and seq.tolist() == [r.seq for r in want]
    assert events.dtype == EVENT_DTYPE
    assert events["cmd"].tolist() == [5 + i for i, r in enumerate(want) for _ in range(len(r.events) // 64)]
    plain = b"".join(
        (5 + i).to_bytes(8, "little") + r.events[k + 8 : k + 64]
        for i, r in enumerate(want)
        for k in range(0, len(r.events), 64)
    )
    assert events.tobytes() == plain  # the records as sent, padding too, but for cmd
    empty = fast.gather([], 0)
    assert [len(a) for a in empty] == [0] * 5 and empty[4].dtype == EVENT_DTYPE


def test_all_ok():
    replies = (wire.Reply(7, 1, wire.OK, 1, 1, "a"), wire.Reply(7, 2, wire.OK, 1, 2, "a"))
    assert fast.decode_replies(wire.encode(wire.Replies(replies))).all_ok(7)
    assert not fast.decode_replies(wire.encode(wire.Replies(replies))).all_ok(8)
    mixed = replies + (wire.Reply(7, 3, wire.EXPIRED, 1, 0, "a"),)
    assert not fast.decode_replies(wire.encode(wire.Replies(mixed))).all_ok(7)
