"""Live-node fuzz, small: garbage frames into a serving primary through the driver's decode path.

The full run is ``python -m benchmarks.fuzz_node --frames 1000000``; this
feeds a few tens of thousands and checks the same things: nothing escapes,
every bad frame is counted by reason, the node keeps serving, and its book
is a replay of its journal.
"""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("zmq")  # the decode path under test lives in the ZeroMQ driver module

from benchmarks.fuzz_node import run  # noqa: E402


@pytest.mark.parametrize("seed", [1, 2])
def test_node_survives_garbage_and_keeps_serving(seed):
    logging.disable(logging.CRITICAL)
    try:
        res = run(20_000, seed)
    finally:
        logging.disable(logging.NOTSET)
    assert res["node_alive"] and res["node_role"] == "primary"
    assert res["good_answered"] == res["good_requests"] == 400 and res["good_wrong"] == 0
    # Answered as they came, not only by the final re-send sweep (which answers from the
    # dedupe table, and once hid a harness that missed batched replies, wire.ReplyRun).
    assert res["good_answered_live"] == 400
    assert res["audited"] > 100 and res["audit_mismatches"] == 0
    assert res["dropped"] > 15_000
    # Every kind of damage met, and counted under its own name (not only named).
    by_reason = res["dropped_by_reason"]
    for reason in ("truncated", "bad_magic", "bad_version", "bad_length", "bad_checksum", "bad_payload"):
        assert by_reason.get(reason, 0) > 0, (reason, by_reason)


def test_peer_protocol_messages_from_a_client_are_refused():
    """A forged Ack from a client address must never count as a standby's acknowledgement."""
    from replication.protocol import wire
    from replication.protocol.trust import Policy

    p = Policy("a", ["a", "b"])
    client, peer_a, peer_b = p.identify(b"\x00client"), p.identify(b"peer:a"), p.identify(b"peer:b")
    forged = wire.Ack(1, 10, "b", 0)
    assert p.check(client, forged) is not None
    assert p.check(peer_a, forged) is not None  # peer a speaking for b
    assert p.check(peer_b, forged) is None
    assert p.check(client, wire.Request(1, 1, b"\0" * wire.COMMAND_SIZE)) is None
    assert p.check(client, wire.StatusRequest()) is None
    assert p.check(client, wire.Heartbeat(1, 1, "b", wire.ROLE_PRIMARY, 1, "b", 0, ())) is not None
