"""A request the group refuses ``not_entitled`` comes back from the client as a ``Rejected`` event."""

from __future__ import annotations

import pytest

pytest.importorskip("zmq")

from matching.commands import command_record  # noqa: E402
from matching.events import Rejected  # noqa: E402
from replication.client.group_client import Client  # noqa: E402
from replication.protocol import entitlement, wire  # noqa: E402
from replication.testing.harness import free_ports  # noqa: E402


def test_a_not_entitled_reply_is_a_result_with_its_rejected_event():
    (port,) = free_ports(1)
    c = Client({"a": f"tcp://127.0.0.1:{port}"}, client_id=7, first_request_id=1)
    try:
        new = wire.pack_command(
            command_record(
                {"op": "new", "instrument": 3, "id": 11, "side": "buy", "price": 5, "qty": 1, "account": 2}
            )
        )
        refusal = entitlement.refusal(wire.Request(7, 2, new))
        c.results[1] = wire.Reply(7, 1, wire.OK, 1, 5, "a", b"")
        c.results[2] = refusal
        assert c.poll() == [(1, []), (2, [Rejected(3, 11, "not_entitled")])]
        c.results[3] = wire.Reply(7, 3, wire.NOT_ENTITLED, events=refusal.events)
        assert c.wait(3, timeout=0.1) == [Rejected(3, 11, "not_entitled")]
        c.results[4] = wire.Reply(7, 4, wire.NOT_ENTITLED, events=refusal.events)
        batch = c.poll_batch()
        assert list(batch.status) == [wire.NOT_ENTITLED] and list(batch.events["id"]) == [11]
    finally:
        c.close()
