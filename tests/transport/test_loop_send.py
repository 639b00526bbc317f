"""``SocketLoop.send`` encodes a message sent to several peers in one pass once (a heartbeat to
every peer and the witness), and encodes afresh in the next pass."""

from __future__ import annotations

from replication.protocol import wire
from replication.transport import loop
from replication.transport.loop import SocketLoop


class _Loop(SocketLoop):
    def run_once(self, timeout_ms: float) -> None:  # pragma: no cover - not used here
        raise AssertionError


class _Socket:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, frame: bytes, flags: int = 0) -> None:  # noqa: ARG002
        self.frames.append(frame)


class _Poller:
    def poll(self, timeout: float) -> list:  # noqa: ARG002
        return []


def _loop() -> _Loop:
    lp = _Loop.__new__(_Loop)  # no sockets: only what send() and poll() read
    lp.dealers = {"b": _Socket(), "witness": _Socket()}
    lp.counters = {}
    lp.poller = _Poller()
    return lp


def _heartbeat(seq: int) -> wire.Heartbeat:
    return wire.Heartbeat(3, seq, "a", wire.ROLE_PRIMARY, seq, "a", 0, ("b",), 3)


def test_one_message_to_every_peer_is_encoded_once_per_pass(monkeypatch):
    calls: list[wire.Message] = []
    real = wire.encode

    def counting(msg: wire.Message) -> bytes:
        calls.append(msg)
        return real(msg)

    monkeypatch.setattr(loop.wire, "encode", counting)
    lp = _loop()
    lp.poll(0)
    hb = _heartbeat(10)
    lp.send("b", hb)
    lp.send("witness", hb)
    assert calls == [hb]
    assert lp.dealers["b"].frames == lp.dealers["witness"].frames == [real(hb)]
    other = _heartbeat(11)  # another message (equal or not): encoded for itself
    lp.send("b", other)
    assert calls == [hb, other] and lp.dealers["b"].frames[-1] == real(other)
    lp.poll(0)  # the next pass forgets what it encoded
    lp.send("b", other)
    assert calls == [hb, other, other]
