"""Fuzzing the wire decoder with hypothesis: random, mutated and checksum-valid garbage frames.

Whatever the bytes, ``wire.decode`` either returns a message or raises
``DecodeError`` with a known reason — never another exception, never a
hang. A frame it does accept is canonical enough to survive a re-encode.
The seeded loops in ``test_wire.py`` cover the same ground with fixed
inputs; these let hypothesis search and shrink.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from replication.protocol import wire
from replication.protocol.wire import DecodeError, Entry

REASONS = {
    "truncated",
    "bad_magic",
    "bad_version",
    "bad_length",
    "bad_checksum",
    "unknown_type",
    "bad_payload",
}

u8 = st.integers(0, 255)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
names = st.text(max_size=12)
commands = st.binary(min_size=80, max_size=80)
event_blobs = st.integers(0, 3).flatmap(lambda n: st.binary(min_size=64 * n, max_size=64 * n))


@st.composite
def entries_messages(draw) -> wire.Entries:
    seq = draw(st.integers(0, 2**63))
    n = draw(st.integers(0, 4))
    es = tuple(Entry(draw(u32), seq + i, draw(u64), draw(u64), draw(u64), draw(commands)) for i in range(n))
    events = tuple(draw(event_blobs) for _ in es) if es and draw(st.booleans()) else ()
    return wire.Entries(draw(u32), seq, draw(u64), es, events)


def _field(name: str, typ: str) -> st.SearchStrategy:
    """A value for one message field, from its annotation (the codec's field widths by name)."""
    if typ == "int":
        return (
            u32
            if name in ("epoch", "last_epoch")
            else u8
            if name in ("role", "status", "operator", "kind")
            else u64
        )
    if typ == "bool":
        return st.booleans()
    if typ == "str":
        return names
    if typ == "bytes":
        return commands if name == "command" else event_blobs if name == "events" else st.binary(max_size=64)
    if typ.startswith("tuple[str"):
        return st.lists(st.text("abcxyz", min_size=1, max_size=3), max_size=3).map(tuple)
    return st.just(())


def _builds(cls: type) -> st.SearchStrategy:
    if cls is wire.Entries:
        return entries_messages()
    fields = [f for f in dataclasses.fields(cls)]
    return st.builds(cls, *[_field(f.name, str(f.type)) for f in fields])


# Built from the codec's own type table, so a message added to ``wire`` is fuzzed without editing this file.
messages = st.one_of([_builds(cls) for _, cls in sorted(wire.MESSAGE_TYPES.items())])


def decode_or_reason(frame: bytes) -> wire.Message | str:
    """The decoded message, or the DecodeError reason; any other exception fails the test."""
    try:
        msg = wire.decode(frame)
    except DecodeError as exc:
        assert exc.reason in REASONS, exc.reason
        return exc.reason
    again = wire.decode(wire.encode(msg))  # whatever was accepted re-encodes to the same message
    assert again == msg
    return msg


def reframe(typ: int, epoch: int, seq: int, body: bytes) -> bytes:
    """A frame with a valid header and checksum around an arbitrary payload."""
    head = wire.HEADER.pack(wire.MAGIC, wire.VERSION, typ, epoch, seq, len(body), 0)[:20]
    return head + struct.pack("<I", zlib.crc32(body, zlib.crc32(head))) + body


@given(st.binary(max_size=300))
def test_random_bytes(frame):
    decode_or_reason(frame)


@given(st.binary(max_size=300))
def test_random_bytes_behind_a_good_header(body):
    decode_or_reason(wire.MAGIC + bytes([wire.VERSION]) + body)


@given(messages)
def test_every_generated_message_encodes_and_decodes_or_is_refused(msg):
    decode_or_reason(wire.encode(msg))


@settings(max_examples=max(150, settings.default.max_examples * 2))
@given(messages, st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2**16), u8), min_size=1, max_size=6))
def test_mutated_frames(msg, mutations):
    """Bit flips, cuts, insertions and overwrites anywhere in a good frame."""
    f = bytearray(wire.encode(msg))
    for op, where, byte in mutations:
        i = where % (len(f) + 1)
        if op == 0 and f:
            f[i % len(f)] ^= 1 << (byte % 8)
        elif op == 1:
            del f[i:]
        elif op == 2:
            f[i:i] = bytes([byte])
        elif f:
            f[i % len(f)] = byte
    decode_or_reason(bytes(f))


@settings(max_examples=max(150, settings.default.max_examples * 2))
@given(
    messages,
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2**16), u8), min_size=1, max_size=6),
    u32,
    u64,
    st.integers(0, 40),
)
def test_mutated_payloads_with_valid_checksums(msg, mutations, epoch, seq, typ):
    """The checksum passes, so every payload parser meets the damage: lengths, counts, text, flags."""
    body = bytearray(msg.payload())
    for op, where, byte in mutations:
        i = where % (len(body) + 1)
        if op == 0 and body:
            body[i % len(body)] ^= 1 << (byte % 8)
        elif op == 1:
            del body[i:]
        elif op == 2:
            body[i:i] = bytes([byte])
        elif body:
            body[i % len(body)] = byte
    decode_or_reason(reframe(typ if typ in wire.MESSAGE_TYPES else msg.TYPE, epoch, seq, bytes(body)))


@given(u8, u8, u32, u64, u32, st.binary(max_size=64))
def test_any_header_fields(ver, typ, epoch, seq, length, body):
    """Absurd lengths, unknown versions and types, with and without a matching checksum."""
    head = wire.HEADER.pack(wire.MAGIC, ver, typ, epoch, seq, length, 0)[:20]
    for crc in (0, zlib.crc32(body, zlib.crc32(head))):
        decode_or_reason(head + struct.pack("<I", crc) + body)
