"""Frames: the one codec for everything replication puts on a socket or in a journal.

For: the frame header and its limits, ``encode`` / ``decode`` of one
message (``decode_packed``: a ``Requests`` bundle kept packed), and the
hot paths that frame without a message object per order
(``encode_request_window``, ``encode_request_records``, ``encode_replies``).
Not for: sockets, timing or any protocol decision; the payload of each
message is its class's (``messages``). Reached as ``wire.X`` by the rest of
the code.

Frame layout (little-endian, 24-byte header then payload)::

    magic  2s  b"MC"
    ver    u8  VERSION
    type   u8  message type code
    epoch  u32
    seq    u64
    length u32 payload length
    crc    u32 zlib.crc32 of header[:20] + payload

``decode`` raises ``DecodeError`` (with a short machine-readable ``reason``)
for anything wrong; it never raises anything else on arbitrary bytes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from itertools import repeat

import numpy as np

from .fields import U32, DecodeError, Reader
from .messages import MESSAGE_TYPES, Message, Replies, Reply, Request, RequestRun, Requests
from .outputs import ReplyRun
from .records import COMMAND_SIZE, ENTRY, REQUEST, REQUEST_DTYPE

MAGIC = b"MC"
VERSION = 1
HEADER = struct.Struct("<2sBBIQII")
HEADER_SIZE = HEADER.size  # 24
# Absurd-length guard of the decoder: no frame is bigger. It is this large for what a node *sends*:
# one reply carries all its command's events (a mass cancel of a large account), and a published
# batch all its batch's. What a node *accepts* is far smaller: see MAX_INBOUND_FRAME.
MAX_PAYLOAD = 64 * 1024 * 1024
# The largest frame a node's or the witness's sockets accept (ZeroMQ's MAXMSGSIZE on every socket a
# driver opens, so a bigger one is never even buffered: ZeroMQ drops it and disconnects its sender).
# The biggest legitimate inbound frames: a snapshot chunk (node.catch_up.SNAPSHOT_CHUNK, 512 KiB), an
# Entries message of a batch or a refill chunk (``transport.group_file`` keeps max_batch and refill_chunk entries
# within MAX_INBOUND_ENTRIES), a client's Requests bundle (client.MAX_BUNDLE = 1,024 requests of
# 96 bytes). 2 MiB leaves room above all of them.
MAX_INBOUND_FRAME = 2 * 1024 * 1024
# Entries per Entries message a node may send a peer (a batch, a refill chunk): they must fit
# MAX_INBOUND_FRAME with room for the header (``transport.group_file`` refuses a larger max_batch or refill_chunk).
MAX_INBOUND_ENTRIES = (MAX_INBOUND_FRAME - 4096) // ENTRY.size

# --- frames ------------------------------------------------------------------------


def encode(msg: Message) -> bytes:
    """Frame one message.

    Parameters
    ----------
    msg : Message
        Any message dataclass of this module.

    Returns
    -------
    bytes
        Header + payload, checksummed. O(payload).
    """
    epoch, seq = msg.header_epoch_seq()
    return make_frame(msg.TYPE, epoch, seq, msg.payload())


def make_frame(type_: int, epoch: int, seq: int, body: bytes) -> bytes:
    head = HEADER.pack(MAGIC, VERSION, type_, epoch, seq, len(body), 0)[:20]
    crc = zlib.crc32(body, zlib.crc32(head))
    return head + U32.pack(crc) + body


def encode_request_window(client_id: int, first: int, commands: Sequence[bytes]) -> bytes:
    """The frame of one client's requests ``first, first + 1, ...`` carrying ``commands``:
    byte for byte :func:`encode` of their ``Requests`` (of their ``Request`` if there is
    one), without a ``Request`` object per order (the client's pipelined path). O(n)."""
    if len(commands) == 1:
        return encode(Request(client_id, first, commands[0]))
    ids = range(first, first + len(commands))
    return make_frame(Requests.TYPE, 0, 0, b"".join(map(REQUEST.pack, repeat(client_id), ids, commands)))


def encode_request_records(client_id: int, first: int, records: bytes) -> bytes:
    """:func:`encode_request_window` of the 80-byte command records packed back to back in
    ``records`` (e.g. a ``COMMAND_DTYPE`` array's bytes): the same frame, byte for byte,
    laid out by NumPy rather than a pack per order. O(n)."""
    n, odd = divmod(len(records), COMMAND_SIZE)
    if odd or not n:
        raise ValueError(f"{len(records)} bytes is not a positive whole number of command records")
    if first < 0 or first + n > 1 << 64:
        raise ValueError("request ids out of the u64 range")
    if n == 1:
        return encode(Request(client_id, first, bytes(records)))
    body = np.empty(n, REQUEST_DTYPE)
    body["client_id"] = client_id
    body["request_id"] = np.arange(n, dtype=np.uint64)
    body["request_id"] += np.uint64(first)
    body["command"] = np.frombuffer(records, REQUEST_DTYPE["command"])
    return make_frame(Requests.TYPE, 0, 0, body.tobytes())


def decode(frame: bytes) -> Message:
    """Decode one frame made by :func:`encode`.

    Parameters
    ----------
    frame : bytes
        Untrusted bytes.

    Returns
    -------
    Message

    Raises
    ------
    DecodeError
        With ``reason`` one of ``truncated``, ``bad_magic``, ``bad_version``,
        ``bad_length``, ``bad_checksum``, ``unknown_type``, ``bad_payload``.
        No other exception escapes for any input.
    """
    typ, epoch, seq, body = _open_frame(frame)
    if typ == 1 and len(body) == REQUEST.size:  # fast path: the hot inbound message
        return Request(*REQUEST.unpack(body))
    return _decode_payload(typ, epoch, seq, body)


def decode_packed(frame: bytes) -> Message:
    """:func:`decode`, except that a ``Requests`` frame keeps its records packed: its
    ``requests`` is a ``RequestRun`` (equal to the tuple ``decode`` gives), so a bundle
    costs no ``Request`` object per order. Raises ``DecodeError`` exactly where ``decode``
    does. O(frame)."""
    typ, epoch, seq, body = _open_frame(frame)
    if typ == Requests.TYPE:
        if not body or len(body) % REQUEST.size:
            raise DecodeError("bad_payload", "not a whole number of request records")
        return Requests(RequestRun(body))
    if typ == 1 and len(body) == REQUEST.size:
        return Request(*REQUEST.unpack(body))
    return _decode_payload(typ, epoch, seq, body)


def _open_frame(frame: bytes) -> tuple[int, int, int, bytes]:
    """``(type, epoch, seq, payload)`` of a frame whose header, length and checksum hold."""
    try:
        frame = bytes(frame)
    except TypeError as exc:
        raise DecodeError("bad_payload", "not bytes") from exc
    if len(frame) < HEADER_SIZE:
        raise DecodeError("truncated", f"{len(frame)} bytes")
    magic, ver, typ, epoch, seq, length, crc = HEADER.unpack_from(frame)
    if magic != MAGIC:
        raise DecodeError("bad_magic")
    if ver != VERSION:
        raise DecodeError("bad_version", str(ver))
    if length > MAX_PAYLOAD:
        raise DecodeError("bad_length", f"{length} bytes claimed")
    if len(frame) - HEADER_SIZE < length:
        raise DecodeError("truncated", f"{len(frame) - HEADER_SIZE} of {length} payload bytes")
    if len(frame) - HEADER_SIZE > length:
        raise DecodeError("bad_length", "trailing bytes after payload")
    body = frame[HEADER_SIZE:]
    if zlib.crc32(body, zlib.crc32(frame[:20])) != crc:
        raise DecodeError("bad_checksum")
    return typ, epoch, seq, body


def _decode_payload(typ: int, epoch: int, seq: int, body: bytes) -> Message:
    cls = MESSAGE_TYPES.get(typ)
    if cls is None:
        raise DecodeError("unknown_type", str(typ))
    r = Reader(body)
    try:
        msg = cls.from_payload(r, epoch, seq)
    except DecodeError:
        raise
    except (struct.error, ValueError, TypeError, IndexError) as exc:  # defensive: never leak these
        raise DecodeError("bad_payload", str(exc)) from exc
    r.done()
    return msg


def encode_replies(items: Sequence[Reply | ReplyRun]) -> bytes:
    """The frame of these replies (``Reply`` messages and runs, in order) to one client: byte
    for byte :func:`encode` of the lone reply, or of the ``Replies`` bundle of them all. O(bytes)."""
    from ..native.fastpath import pack_reply_run

    n = sum([len(x) if isinstance(x, ReplyRun) else 1 for x in items])
    if n == 1:
        return encode(next(r for x in items for r in (x.replies() if isinstance(x, ReplyRun) else [x])))
    parts = []
    for x in items:
        if not isinstance(x, ReplyRun):
            parts.append(Replies((x,)).payload())
        elif len(x):
            c = x.cols
            leader = c.leader.encode("utf-8")
            parts.append(
                pack_reply_run(
                    c.client_ids, c.request_ids, x.lo, x.hi, c.epoch, c.first_seq, leader, c.events, c.offsets
                )
            )
    return make_frame(Replies.TYPE, 0, 0, b"".join(parts))
