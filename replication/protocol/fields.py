"""How a message's fields become payload bytes and back: the lowest part of the wire codec.

For: ``DecodeError`` (the one failure of decoding, with a short ``reason``
for the counters), ``Reader`` (bounds-checked reads from a payload: every
overrun is a ``DecodeError``), the little-endian integer structs, and the
field codecs ``FIELD_CODECS`` that ``messages.Message.LAYOUT`` names. Not
for: frames (``codec``), records (``records``) or any message's own layout
(``messages``). Everything here is reached as ``wire.X`` by the rest of the code.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any


class DecodeError(ValueError):
    """A frame that cannot be decoded; ``reason`` is a short counter key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class Reader:
    """Bounds-checked reads from a payload; every overrun is a DecodeError."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise DecodeError("bad_payload", "field runs past the end of the payload")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, st: struct.Struct) -> tuple:
        return st.unpack(self.take(st.size))

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return U32.unpack(self.take(4))[0]

    def u64(self) -> int:
        return U64.unpack(self.take(8))[0]

    def text(self) -> str:
        n = U16.unpack(self.take(2))[0]
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("bad_payload", "text is not UTF-8") from exc

    def blob(self) -> bytes:
        return self.take(self.u32())

    def done(self) -> None:
        if self.pos != len(self.buf):
            raise DecodeError("bad_payload", f"{len(self.buf) - self.pos} trailing bytes")


U16 = struct.Struct("<H")
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")


def pack_text(s: str) -> bytes:
    b = s.encode("utf-8")
    return U16.pack(len(b)) + b


def pack_blob(b: bytes) -> bytes:
    return U32.pack(len(b)) + bytes(b)


def pack_names(names: tuple[str, ...]) -> bytes:
    return pack_text(",".join(names))


def read_names(r: Reader) -> tuple[str, ...]:
    return tuple(m for m in r.text().split(",") if m)


# Field codecs of ``Message.LAYOUT``: name -> (encode value, decode from a Reader).
# A codec name ending in "?" marks an optional trailing field (see Message.payload).
FIELD_CODECS: dict[str, tuple[Callable[[Any], bytes], Callable[[Reader], Any]]] = {
    "text": (pack_text, Reader.text),
    "u8": (lambda v: bytes([v]), Reader.u8),
    "bool": (lambda v: bytes([int(v)]), lambda r: bool(r.u8())),
    "u32": (U32.pack, Reader.u32),
    "u64": (U64.pack, Reader.u64),
    "blob": (pack_blob, Reader.blob),
    "names": (pack_names, read_names),
}
