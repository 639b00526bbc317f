"""``Client.send_batch`` / ``poll_batch`` and the C reply decoder against the object paths.

A ROUTER socket in the test stands in for the primary: it checks the bytes a
window goes out as and answers with scripted frames (bundles, a lone reply, a
twin, an expired request). Each test runs with the C decoder and with
``wire.decode`` alone; both must give the same answers, in arrival order,
through ``poll_batch``, ``poll_replies``, ``poll`` and ``wait``.
"""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest

zmq = pytest.importorskip("zmq")

from matching import EVENT_DTYPE, Engine, command_array, commands, events_from_array  # noqa: E402
from replication.client import group_client as client_mod  # noqa: E402
from replication.client.group_client import Client, pack_commands  # noqa: E402
from replication.protocol import wire  # noqa: E402

CMDS = [
    commands.new_order_dict(1, 1, "sell", 100, 10, "limit", "GTC", 0, False, 0, "none"),
    commands.new_order_dict(1, 2, "sell", 101, 10, "limit", "GTC", 0, False, 0, "none"),
    commands.new_order_dict(1, 3, "buy", 101, 15, "limit", "GTC", 0, False, 0, "none"),
    commands.cancel_dict(1, 9),
    commands.cancel_dict(1, 2),
]
FIRST = 100


@pytest.fixture(params=["c", "python"])
def pair(request, monkeypatch):
    if request.param == "python":
        monkeypatch.setattr(client_mod, "decode_replies", None)
    else:
        assert client_mod.decode_replies is not None, "replication.protocol._client_fast is not built"
    router = zmq.Context.instance().socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    c = Client({"a": f"tcp://127.0.0.1:{port}"}, client_id=7, first_request_id=FIRST, retry_timeout=5.0)
    try:
        yield c, router
    finally:
        c.close()
        router.close(0)


@functools.cache
def event_bytes() -> list[bytes]:
    # Computed once: the padding bytes of apply_batch's records are not defined, and
    # the answers the node sends must equal the ones the test expects byte for byte.
    ev = Engine().apply_batch(command_array(CMDS))
    return [ev[ev["cmd"] == i].tobytes() for i in range(len(CMDS))]


def expected() -> list[wire.Reply]:
    evs = event_bytes()
    out = [wire.Reply(7, FIRST + i, wire.OK, 1, 10 + i, "a", evs[i]) for i in range(len(CMDS))]
    out[3] = wire.Reply(7, FIRST + 3, wire.EXPIRED, 1, 0, "a")
    return out


def serve(router) -> None:
    """Take the window's frame, check its bytes, answer in four frames."""
    ident, frame = router.recv_multipart()
    assert frame == wire.encode_request_window(7, FIRST, pack_commands(CMDS))
    r = expected()
    for msg in (
        wire.Replies((r[0], r[1], r[0])),  # all OK: the fast path; r[0] again is a late twin
        r[2],  # a lone Reply
        wire.Replies((r[3], r[4])),  # an EXPIRED in the bundle: the general path
    ):
        router.send_multipart([ident, wire.encode(msg)])


def collect(poll, want: int) -> list:
    got: list = []
    deadline = time.monotonic() + 10
    while len(got) < want and time.monotonic() < deadline:
        got += poll()
    return got


def rows(batch) -> list[tuple]:
    """A ReplyBatch as (request id, status, epoch, seq, event fields with cmd zeroed) rows."""
    assert len(batch.request_id) == len(batch.status) == len(batch.epoch) == len(batch.seq) == len(batch)
    out = []
    for i in range(len(batch)):
        ev = batch.events[batch.events["cmd"] == i].copy()
        ev["cmd"] = 0
        out.append(
            (
                int(batch.request_id[i]),
                int(batch.status[i]),
                int(batch.epoch[i]),
                int(batch.seq[i]),
                ev.tolist(),
            )
        )
    assert sorted(batch.events["cmd"].tolist()) == batch.events["cmd"].tolist()  # grouped by row, in order
    return out


def reply_row(r: wire.Reply) -> tuple:
    ev = np.frombuffer(r.events, EVENT_DTYPE).copy()
    ev["cmd"] = 0
    return (r.request_id, r.status, r.epoch, r.seq, ev.tolist())


def test_send_batch_and_poll_batch(pair):
    c, router = pair
    ids = c.send_batch(command_array(CMDS))
    assert ids == range(FIRST, FIRST + len(CMDS)) and c.in_flight == len(CMDS)
    serve(router)
    got = collect(lambda: rows(c.poll_batch(0.05)), len(CMDS))
    assert got == [reply_row(r) for r in expected()]
    assert c.in_flight == 0 and c.core.counters == {"late_replies": 1}
    assert c.last_reply == expected()[-1]
    assert len(c.poll_batch()) == 0


def test_send_batch_takes_dicts_and_the_object_paths_see_the_same_answers(pair):
    c, router = pair
    assert c.send_batch(CMDS) == range(FIRST, FIRST + len(CMDS))
    serve(router)
    assert collect(lambda: c.poll_replies(0.05), len(CMDS)) == expected()
    assert c.last_reply == expected()[-1]


def test_wait_and_poll_find_answers_kept_in_blocks(pair):
    c, router = pair
    c.send_batch(command_array(CMDS))
    serve(router)
    want = expected()
    assert c.wait(FIRST + 1) == events_from_array(np.frombuffer(want[1].events, EVENT_DTYPE))
    assert c.wait(FIRST + 4) == events_from_array(np.frombuffer(want[4].events, EVENT_DTYPE))
    with pytest.raises(client_mod.RequestExpired):
        c.poll()
    # The expired request raised once; the others are still there, in arrival order.
    assert [rid for rid, _ in c.poll()] == [FIRST, FIRST + 2] and c.poll() == []


def test_send_batch_refuses_other_dtypes(pair):
    c, _ = pair
    with pytest.raises(TypeError):
        c.send_batch(np.zeros(3, np.int64))
    assert c.send_batch(command_array([])) == range(FIRST, FIRST) and c.in_flight == 0
