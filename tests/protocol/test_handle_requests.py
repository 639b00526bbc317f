"""``NodeMachine.handle_requests`` is ``handle`` per request, exactly.

Two identical groups run in lockstep; each bundle goes to one node through
``handle_requests`` in the first group and one ``handle`` per request in the
second. Outputs (as encoded bytes, in order) and node state must agree after
every step, across roles (primary, standby, holding standby, draining
primary) and request kinds (new, re-sent after execution, already queued,
duplicated within the bundle, expired, malformed).
"""

from __future__ import annotations

from _net import cmd, group
from hypothesis import given
from hypothesis import strategies as st

from replication.protocol import wire

CLIENTS = (1, 2)
RIDS = range(1, 25)
SRCS = (b"c1", b"c2")


def _command(cid: int, rid: int, kind: str) -> bytes:
    good = cmd(cid * 1000 + rid, "buy" if (cid + rid) % 2 else "sell", 100 + rid % 3)
    return {"ok": good, "short": good[:10], "long": good + b"\0"}[kind]


def _encoded(outputs: list) -> list:
    out = []
    for o in outputs:
        if isinstance(o, wire.Publish):
            out.append(("publish", wire.encode(o.msg)))
        elif isinstance(o, wire.ReplyRun):
            out += [("send", q.dest, wire.encode(q.msg)) for q in o.sends()]
        else:
            out.append(("send", o.dest, wire.encode(o.msg)))
    return out


def _state(m) -> tuple:
    r = m.replica
    return (
        m.role,
        m.epoch,
        m.leader,
        m.drain_target,
        r.seq,
        r.digest,
        m.commit,
        [(s, wire.encode(q)) for s, q in m.pending],
        m.pending.keys() if m.is_primary else (),
        [(seq, d, wire.encode(rep), t) for seq, d, rep, t in m.waiting],
        [(s, q.client_id, q.request_id, q.command, t) for s, q, t in m.held],
        # requests_spanned names the path a bundle took (queues.PendingQueue spans), nothing else.
        sorted((k, v) for k, v in m.counters.items() if k != "requests_spanned"),
        [r.lookup(c, q) for c in CLIENTS for q in RIDS],
    )


def _pair():
    nets = []
    for _ in range(2):
        net = group("sync", dedupe_window=6)
        net.run_until(lambda net=net: net.machines["b"].joined and net.machines["a"].is_primary)
        nets.append(net)
    return nets


items = st.lists(
    st.tuples(
        st.sampled_from(CLIENTS),
        st.sampled_from(RIDS),
        st.sampled_from(("ok", "ok", "ok", "ok", "short", "long")),
    ),
    min_size=1,
    max_size=12,
)
#: The ops ``run_lockstep`` runs besides bundles: step both nets, hold the standby's acks,
#: make it suspect its leader, ask either node for a switchover (optionally with acks held).
LOCKSTEP_CONTROL = (
    st.tuples(st.just("step")),
    st.tuples(st.just("hold_acks"), st.booleans()),
    st.tuples(st.just("suspect")),
    st.tuples(st.just("switchover"), st.sampled_from(("a", "b")), st.booleans()),
)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("bundle"), st.sampled_from(("a", "b")), st.sampled_from(SRCS), items),
        st.tuples(st.just("bundle"), st.just("a"), st.sampled_from(SRCS), items),  # the first primary
        st.tuples(st.just("bundle"), st.just("a"), st.sampled_from(SRCS), items),
        *LOCKSTEP_CONTROL,
    ),
    min_size=1,
    max_size=40,
)


def run_lockstep(fast, single, program, requests_of, pack=tuple) -> None:
    """Run ``program`` on two groups in lockstep and require the same outputs and state throughout.

    ``requests_of(op)`` gives a bundle op's ``(node, src, requests)`` (None for
    the other ops): ``fast`` takes them in one ``handle_requests(src,
    pack(requests))`` call, ``single`` one ``handle`` each. The other ops step
    both nets, hold the standby's acks, make it suspect its leader, or ask
    for a switchover.
    """
    held = [False]
    for net in (fast, single):
        net.drop = lambda s, d, m: held[0] and s == "b" and isinstance(m, (wire.Ack, wire.Heartbeat))
    for op in program:
        bundle = requests_of(op)
        if bundle is not None:
            node, src, reqs = bundle
            now = fast.now
            out_f = fast.machines[node].handle_requests(src, pack(reqs), now)
            out_s: list = []
            for r in reqs:
                out_s += single.machines[node].handle(src, r, now)
            assert _encoded(out_f) == _encoded(out_s)
            fast.emit(node, out_f)
            single.emit(node, out_s)
        elif op[0] == "step":
            fast.step()
            single.step()
        elif op[0] == "hold_acks":
            held[0] = op[1]
        else:
            if op[0] == "switchover" and op[2]:
                held[0] = True  # the target's acks held: the old primary stays draining a while
            if op[0] == "suspect":  # b suspects its leader: it holds requests meanwhile
                node, src, msg = "b", "a", wire.PeerDown("a")
            else:  # a planned switchover, asked of either node (only a primary starts one)
                node, src, msg = op[1], "operator", wire.Switchover("b" if op[1] == "a" else "a")
            for net in (fast, single):
                net.emit(node, net.machines[node].handle(src, msg, net.now))
        for name in ("a", "b"):
            assert _state(fast.machines[name]) == _state(single.machines[name])
    held[0] = False
    fast.run(0.05)
    single.run(0.05)
    for name in ("a", "b"):
        assert _state(fast.machines[name]) == _state(single.machines[name])


def _bundle(op):
    if op[0] != "bundle":
        return None
    _, node, src, spec = op
    return node, src, tuple(wire.Request(c, q, _command(c, q, kind)) for c, q, kind in spec)


@given(ops)
def test_handle_requests_is_handle_per_request(program):
    run_lockstep(*_pair(), program, _bundle)


def test_bundle_on_primary_queues_new_and_passes_the_rest_through():
    (net, _) = _pair()
    a = net.machines["a"]
    good = [wire.Request(1, i, _command(1, i, "ok")) for i in (1, 2, 3)]
    bad = wire.Request(1, 4, _command(1, 4, "short"))
    out = a.handle_requests(b"c1", (good[0], good[1], good[0], bad, good[2]), net.now)
    assert out == []
    assert [(s, q.request_id) for s, q in a.pending] == [(b"c1", 1), (b"c1", 2), (b"c1", 3)]
    assert a.counters.get("requests_deduplicated") == 1 and a.counters.get("requests_malformed") == 1
    net.emit("a", out)
    net.run(0.01)
    # Executed now: a re-send gets its first result at once (its seq is committed).
    again = a.handle_requests(b"c1", (good[1], wire.Request(1, 5, _command(1, 5, "ok"))), net.now)
    assert [(o.dest, o.msg.request_id, o.msg.seq, o.msg.status) for o in again] == [(b"c1", 2, 2, wire.OK)]
    assert [q.request_id for _, q in a.pending] == [5]
    assert a.handle_requests(b"c1", (), net.now) == []


class _Timer:
    def __init__(self) -> None:
        self.started: list = []

    def on_request(self, msg: wire.Request) -> None:
        self.started.append((msg.client_id, msg.request_id))


def test_driver_feeds_a_bundle_in_one_call_and_still_times_each_request():
    from replication.transport import node_driver as node

    batched, single = _pair()
    d = object.__new__(node.NodeDriver)  # no sockets: only what _inbound reads
    d.counters, d.machine, d.reply_timer = {}, batched.machines["a"], _Timer()
    reqs = tuple(wire.Request(1, q, _command(1, q, "ok")) for q in (1, 2, 1, 3))
    out = d._inbound(b"c1", wire.encode(wire.Requests(reqs)), batched.now)
    want: list = []
    for r in reqs:
        want += single.machines["a"].handle(b"c1", r, single.now)
    assert _encoded(out) == _encoded(want)
    assert _state(batched.machines["a"]) == _state(single.machines["a"])
    assert d.reply_timer.started == [(1, 1), (1, 2), (1, 1), (1, 3)]
    # The witness's driver (its machine has no batch path) hands a bundle on one request at a time.
    from replication.transport import witness_driver

    w = object.__new__(witness_driver.WitnessDriver)  # no sockets: only what _inbound reads
    w.counters, w.machine = {}, batched.machines["witness"]
    before = w.machine.counters.get("unexpected_messages", 0)
    assert w._inbound(b"c1", wire.encode(wire.Requests(reqs)), batched.now) == []
    assert w.machine.counters["unexpected_messages"] == before + len(reqs)
