"""The two-hop floor: what a sync round trip costs in bare pyzmq, with no replication logic.

A ``sync`` order makes two network round trips in a row: client -> primary
-> standby -> primary -> client. The one-hop floor (``groups.Echo``) is a
single client -> echo -> client round trip. This module builds the shape of
the sync path out of the same bare parts, so a run can show how much of the
replicated latency the machine charges before any replication code runs:

- a **relay** process (the primary's stand-in): a ROUTER for the client and a
  DEALER to the next hop, in the node driver's loop shape (poll, drain,
  send). A client frame goes on to the echo resized to one journal entry's
  ``Entries`` frame; the echo's answer (an ``Ack``'s size) comes back to the
  client resized to a one-event ``Reply``;
- an **echo** process (the standby's stand-in): ``groups.echo_server``.

Each process does only what pyzmq needs to move a frame: no decode, no
engine, no journal, no witness. Run as ``python -m benchmarks.twohop relay
ENDPOINT UPSTREAM FORWARD_BYTES REPLY_BYTES`` it *is* the relay.

Not a target of its own: the issue's targets are multiples of the one-hop
floor. This one says what part of the gap the machine's per-hop cost alone
explains.
"""

from __future__ import annotations

import sys

from . import groups


def frame_sizes() -> tuple[int, int]:
    """Encoded sizes of a one-entry ``Entries`` frame and of an ``Ack`` (the standby's hop)."""
    from replication.protocol import wire

    entry = wire.Entry(1, 1 << 20, 7, 1 << 50, 1 << 63, bytes(80))
    forward = wire.encode(wire.Entries(1, 1 << 20, 1 << 20, (entry,)))
    ack = wire.encode(wire.Ack(1, 1 << 20, "b", 1 << 63))
    return len(forward), len(ack)


def relay_server(endpoint: str, upstream: str, forward_bytes: int, reply_bytes: int) -> int:
    """ROUTER at ``endpoint`` relaying every frame to a DEALER at ``upstream`` and the answers back.

    Frames start with an 8-byte tag (the request's index) that the echo keeps;
    the relay remembers which client sent each tag, as a primary remembers
    whose reply waits on which seq. Runs until SIGTERM.
    """
    import zmq

    running = groups.until_sigterm()
    ctx = zmq.Context()
    front = groups.bare_socket(ctx, zmq.ROUTER)
    back = groups.bare_socket(ctx, zmq.DEALER)
    front.bind(endpoint)
    back.connect(upstream)
    forward_pad = bytes(max(0, forward_bytes - 8))
    reply_pad = bytes(max(0, reply_bytes - 8))
    waiting: dict[bytes, bytes] = {}  # tag -> client identity
    poller = zmq.Poller()
    poller.register(front, zmq.POLLIN)
    poller.register(back, zmq.POLLIN)
    while running[0]:
        ready = dict(poller.poll(100))
        if front in ready:
            for _ in range(4096):
                try:
                    ident, frame = front.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                except ValueError:
                    continue
                tag = frame[:8]
                try:
                    back.send(tag + forward_pad, zmq.NOBLOCK)
                except zmq.Again:
                    continue  # the echo is not connected yet: the client's start-up probe re-sends
                waiting[tag] = ident
        if back in ready:
            for _ in range(4096):
                try:
                    frame = back.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                tag = frame[:8]
                ident = waiting.pop(tag, None)
                if ident is not None:
                    front.send_multipart([ident, tag + reply_pad], zmq.NOBLOCK)
    front.close(0)
    back.close(0)
    ctx.term()
    return 0


class TwoHop(groups.Echo):
    """Client -> relay -> echo -> relay -> client, each in its own process; ``Echo``'s client API.

    Parameters
    ----------
    request_bytes, reply_bytes : int
        The client's frame sizes, as for the one-hop floor.
    """

    def __init__(self, request_bytes: int, reply_bytes: int) -> None:
        from replication.testing.harness import free_ports

        forward, ack = frame_sizes()
        self.upstream, self.upstream_proc = groups.start_echo_server(ack)
        endpoint = f"tcp://127.0.0.1:{free_ports(1)[0]}"
        relay = [
            sys.executable,
            "-m",
            f"{__package__}.twohop",
            "relay",
            endpoint,
            self.upstream,
            str(forward),
            str(reply_bytes),
        ]
        try:
            super().__init__(request_bytes, reply_bytes, server=(endpoint, relay))
        except BaseException:
            groups.stop(self.upstream_proc)
            raise

    def close(self) -> None:
        """Stop the relay (and close the socket), then the echo behind it."""
        try:
            super().close()
        finally:
            groups.stop(self.upstream_proc)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.twohop relay ENDPOINT UPSTREAM FORWARD_BYTES REPLY_BYTES``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 5 or args[0] != "relay":
        print(
            f"usage: python -m {__package__}.twohop relay ENDPOINT UPSTREAM FORWARD_BYTES REPLY_BYTES",
            file=sys.stderr,
        )
        return 2
    return relay_server(args[1], args[2], int(args[3]), int(args[4]))


if __name__ == "__main__":
    sys.exit(main())
