"""The replication codec: every message round-trips; every kind of bad frame is a DecodeError."""

from __future__ import annotations

import random
import struct
import zlib

import pytest

from replication.protocol import wire
from replication.protocol.wire import DecodeError, Entry

CMD = bytes(range(80))
EV = bytes(64) * 2
E1 = Entry(3, 10, 7, 99, 0xDEADBEEFCAFEF00D, CMD)
E2 = Entry(3, 11, 7, 100, 1, bytes(80))

SAMPLES = [
    wire.Request(7, 1 << 63, CMD),
    wire.Reply(7, 5, wire.OK, 2, 44, "a", EV),
    wire.Reply(7, 5, wire.NOT_PRIMARY, 2, 0, "b", b""),
    wire.Entries(3, 10, 9, (E1, E2)),
    wire.Entries(3, 10, 9, (E1, E2), (EV, b"")),
    wire.Entries(3, 1, 0, ()),
    wire.Ack(3, 11, "b", 123),
    wire.Heartbeat(3, 11, "a", wire.ROLE_PRIMARY, 10, "a", 77, ("b", "c")),
    wire.Refill(3, 5, 0, "b"),
    wire.Join(3, 8, "b", 2),
    wire.Fence(4, 8, "a"),
    wire.SnapshotChunk(3, 100, 2, 10, 30, b"x" * 20),
    wire.StatusRequest(),
    wire.Status(b'{"role": "primary"}'),
    wire.Switchover("b"),
    wire.Handover(3, 12, "a"),
    wire.Promote(),
    wire.VoteRequest(4, 12, "b", 3),
    wire.Vote(4, "b", True, "primary silent"),
    wire.IsrUpdate(4, 12, "b", ("a", "c")),
    wire.IsrUpdate(4, 12, "b", ()),
    wire.IsrAck(4, "b", ("a",), True),
    wire.PeerDown("a"),
    wire.Lease(4, 99, "witness"),
    wire.ReportFetch(7, 3, 41),
    wire.ReportFetch(7, 3, 0, 1234, True),
    wire.Reports(7, 3, wire.OK, 42, "", "", b"r" * 128),
    wire.Reports(7, 3, wire.GONE, 9, "", "past the window", b""),
    wire.Query(7, 3, 5, wire.QUERY_ORDER, 1, 99),
    wire.Query(7, 3, 6, wire.QUERY_OPEN_ORDERS, 0, 0, 4, True),
    wire.QueryReply(7, 5, wire.OK, "", b'{"status": "open"}'),
    wire.QueryReply(7, 6, wire.NOT_PRIMARY, "b"),
    wire.Reply(7, 6, wire.BUSY, 2, 0, "a", b""),
    wire.Requests((wire.Request(7, 1, CMD), wire.Request(7, 2, bytes(80)))),
    wire.Replies(
        (wire.Reply(7, 5, wire.OK, 2, 44, "a", EV), wire.Reply(7, 6, wire.NOT_PRIMARY, 2, 0, "bé", b""))
    ),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(msg):
    assert wire.decode(wire.encode(msg)) == msg


def test_every_type_has_a_sample():
    assert {type(m) for m in SAMPLES} == set(wire.MESSAGE_TYPES.values())


def test_entry_pack():
    assert Entry.unpack(E1.pack()) == E1
    with pytest.raises(DecodeError):
        Entry.unpack(b"short")


def _reframe(frame: bytes, **kw) -> bytes:
    """Rebuild a frame with some header fields replaced and a valid checksum."""
    magic, ver, typ, epoch, seq, length, _ = wire.HEADER.unpack_from(frame)
    fields = dict(magic=magic, ver=ver, typ=typ, epoch=epoch, seq=seq, length=length)
    fields.update(kw)
    body = kw.get("body", frame[wire.HEADER_SIZE :])
    head = wire.HEADER.pack(
        fields["magic"], fields["ver"], fields["typ"], fields["epoch"], fields["seq"], fields["length"], 0
    )[:20]
    return head + struct.pack("<I", zlib.crc32(body, zlib.crc32(head))) + body


GOOD = wire.encode(wire.Entries(3, 10, 9, (E1, E2)))


@pytest.mark.parametrize(
    "frame, reason",
    [
        (b"", "truncated"),
        (GOOD[:10], "truncated"),
        (GOOD[:-1], "truncated"),
        (GOOD + b"x", "bad_length"),
        (_reframe(GOOD, magic=b"XX"), "bad_magic"),
        (_reframe(GOOD, ver=99), "bad_version"),
        (_reframe(GOOD, typ=200), "unknown_type"),
        (_reframe(GOOD, length=1 << 31), "bad_length"),
        (GOOD[:30] + bytes([GOOD[30] ^ 1]) + GOOD[31:], "bad_checksum"),
        (_reframe(GOOD, seq=11), "bad_payload"),  # entries no longer consecutive from header seq
        (_reframe(wire.encode(wire.Ack(1, 1, "x")), body=b"\x05\x00ab", length=4), "bad_payload"),
    ],
)
def test_rejects(frame, reason):
    with pytest.raises(DecodeError) as info:
        wire.decode(frame)
    assert info.value.reason == reason


def test_absurd_entry_count():
    body = struct.pack("<QIB", 0, 1 << 30, 0)
    frame = _reframe(GOOD, body=body, length=len(body))
    with pytest.raises(DecodeError) as info:
        wire.decode(frame)
    assert info.value.reason == "bad_length"


def test_random_garbage_only_raises_decode_error():
    rng = random.Random(1)
    frames = [wire.encode(m) for m in SAMPLES]
    valid = set(frames)
    refused = 0
    for _ in range(3000):
        f = bytearray(rng.choice(frames))
        for _ in range(rng.randint(1, 4)):
            op = rng.randint(0, 2)
            if op == 0 and f:
                f[rng.randrange(len(f))] ^= 1 << rng.randrange(8)
            elif op == 1:
                f = f[: rng.randrange(len(f) + 1)]
            else:
                f += bytes([rng.randrange(256)])
        try:
            wire.decode(bytes(f))
        except DecodeError:
            refused += 1
            continue
        # Decoded: then the damage undid itself (a bit flipped twice); a flipped bit, a cut or
        # an extra byte anywhere else is caught by the length or the checksum.
        undone = bytes(f) in valid
        assert undone, f"damaged frame decoded: {bytes(f).hex()}"
    assert refused > 2500


def test_garbage_with_valid_checksum_only_raises_decode_error():
    rng = random.Random(2)
    for typ in wire.MESSAGE_TYPES:
        for n in range(0, 40):
            body = bytes(rng.randrange(256) for _ in range(n))
            frame = _reframe(GOOD, typ=typ, body=body, length=len(body))
            try:
                msg = wire.decode(frame)
            except DecodeError:
                continue
            assert type(msg).TYPE == typ  # what decodes is a message of the type the frame names


def test_command_layout_matches_engine_dtype():
    import numpy as np

    from matching.codes import COMMAND_DTYPE
    from matching.commands import command_record

    rec = command_record(
        {
            "op": "new",
            "instrument": 3,
            "id": 9,
            "side": "sell",
            "price": 101,
            "qty": 7,
            "tif": "IOC",
            "account": 5,
            "display_qty": 2,
            "stp": "cancel_both",
        }
    )
    packed = wire.pack_command(rec)
    expected = np.zeros(1, dtype=COMMAND_DTYPE)  # zeros: NumPy leaves a padded dtype's gaps uninitialised
    expected[0] = tuple(rec)
    assert packed == expected.tobytes()
    assert wire.unpack_command(packed) == tuple(rec)


def _frame(typ: int, body: bytes) -> bytes:
    head = wire.HEADER.pack(wire.MAGIC, wire.VERSION, typ, 0, 0, len(body), 0)[:20]
    return head + struct.pack("<I", zlib.crc32(body, zlib.crc32(head))) + body


@pytest.mark.parametrize(
    "body",
    [b"", bytes(71), bytes(73)],
    ids=["empty", "short-record", "trailing-bytes"],
)
def test_requests_bundle_rejects_partial_records(body):
    with pytest.raises(DecodeError) as exc:
        wire.decode(_frame(wire.Requests.TYPE, body))
    assert exc.value.reason == "bad_payload"


def test_replies_bundle_rejects_bad_records():
    good = wire.encode(wire.Replies((wire.Reply(7, 5, wire.OK, 2, 44, "a", EV),) * 2))
    body = good[wire.HEADER_SIZE :]
    for bad in (b"", body[:-1], body + b"x", body[:40]):
        with pytest.raises(DecodeError):
            wire.decode(_frame(wire.Replies.TYPE, bad))
    # An events length that is not a whole number of records.
    head = struct.pack("<QQBIQHI", 7, 5, 0, 2, 44, 0, 63) + bytes(63)
    with pytest.raises(DecodeError):
        wire.decode(_frame(wire.Replies.TYPE, head))


@pytest.mark.parametrize("n", [0, 1, 5, wire.RUN_MIN - 1, wire.RUN_MIN, 300])
def test_entry_run_build_packs_as_entries_do(n):
    """The primary's batch packing: the same bytes as packing each ``Entry``, on either side of RUN_MIN."""
    rng = random.Random(n)
    entries = [
        Entry(
            7,
            (1 << 40) + i,
            rng.choice([0, 1, (1 << 64) - 1]),
            rng.getrandbits(64),
            rng.getrandbits(64),
            rng.randbytes(wire.COMMAND_SIZE),
        )
        for i in range(n)
    ]
    run = wire.EntryRun.build(
        7,
        1 << 40,
        [e.client_id for e in entries],
        [e.request_id for e in entries],
        [e.digest for e in entries],
        b"".join(e.command for e in entries),
    )
    assert run.raw == wire.pack_entries(entries) and run == entries
    with pytest.raises(ValueError):
        wire.EntryRun.build(7, 1, [1], [1, 2], [0], bytes(wire.COMMAND_SIZE))


def test_published_entries_encode_alike_from_a_run_or_a_tuple():
    entries = [Entry(2, 10 + i, 3, i, i * 7, bytes([i]) * wire.COMMAND_SIZE) for i in range(4)]
    events = tuple(bytes([i]) * (wire.EVENT_SIZE * i) for i in range(4))
    as_tuple = wire.Entries(2, 10, 9, tuple(entries), events)
    as_run = wire.Entries(2, 10, 9, wire.EntryRun(wire.pack_entries(entries)), events)
    assert wire.encode(as_run) == wire.encode(as_tuple)
    assert wire.decode(wire.encode(as_run)) == as_tuple
    with pytest.raises(ValueError):
        wire.Entries(2, 10, 9, tuple(entries), events[:3]).payload()
