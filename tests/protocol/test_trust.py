"""The authorisation policy (``replication.protocol.trust``): who may send what, in open mode and under CURVE."""

from __future__ import annotations

import pytest

from replication.protocol import trust, wire
from replication.protocol.trust import (
    ANYONE,
    CLIENT,
    NODE,
    OPERATOR,
    UNKNOWN,
    WITNESS_ROLE,
    ClientEntry,
    Identity,
    Policy,
)

CMD = b"\0" * wire.COMMAND_SIZE
NODES = ("a", "b", "c")


def sample(typ: type, sender: str, me: str) -> wire.Message:
    """A well-formed message of ``typ`` whose names are right for ``sender`` -> ``me``."""
    return {
        wire.Request: lambda: wire.Request(7, 1, CMD),
        wire.Reply: lambda: wire.Reply(7, 1),
        wire.Requests: lambda: wire.Requests((wire.Request(7, 1, CMD), wire.Request(7, 2, CMD))),
        wire.Replies: lambda: wire.Replies((wire.Reply(7, 1),)),
        wire.Entries: lambda: wire.Entries(1, 1, 0, ()),
        wire.Ack: lambda: wire.Ack(1, 1, sender),
        wire.Heartbeat: lambda: wire.Heartbeat(1, 1, sender, wire.ROLE_PRIMARY, 1, "", 0, ("c",)),
        wire.Refill: lambda: wire.Refill(1, 1, 0, sender),
        wire.Join: lambda: wire.Join(1, 1, sender, 1),
        wire.Fence: lambda: wire.Fence(2, 0, me),
        wire.SnapshotChunk: lambda: wire.SnapshotChunk(1, 1, 1, 0, 1, b"x"),
        wire.StatusRequest: lambda: wire.StatusRequest(),
        wire.Status: lambda: wire.Status(),
        wire.Switchover: lambda: wire.Switchover("b"),
        wire.Handover: lambda: wire.Handover(1, 1, sender),
        wire.Promote: lambda: wire.Promote(),
        wire.VoteRequest: lambda: wire.VoteRequest(2, 1, sender, 1),
        wire.Vote: lambda: wire.Vote(2, me, True, "granted", ("c",)),
        wire.IsrUpdate: lambda: wire.IsrUpdate(1, 1, sender, ("c",), 1),
        wire.IsrAck: lambda: wire.IsrAck(1, me, ("c",), True),
        wire.PeerDown: lambda: wire.PeerDown(sender),
        wire.Lease: lambda: wire.Lease(1, 3, sender),
        wire.ReportFetch: lambda: wire.ReportFetch(7, 1, 0),
        wire.Reports: lambda: wire.Reports(7, 1),
        wire.Query: lambda: wire.Query(7, 1, 1, wire.QUERY_OPEN_ORDERS),
        wire.QueryReply: lambda: wire.QueryReply(7, 1),
    }[typ]()


# The specification, written out: what each role may send to a node, and to the witness.
PEER_TO_NODE = {
    "Ack",
    "Heartbeat",
    "Join",
    "Refill",
    "Entries",
    "SnapshotChunk",
    "Fence",
    "Handover",
    "Lease",
    "StatusRequest",
}
EXPECT_TO_NODE = {
    NODE: PEER_TO_NODE,
    WITNESS_ROLE: {"Vote", "IsrAck", "Lease", "StatusRequest"},
    OPERATOR: {"Switchover", "Promote", "StatusRequest", "Refill"},
    CLIENT: {"Request", "Requests", "StatusRequest", "ReportFetch", "Query"},
    ANYONE: {
        "Request",
        "Requests",
        "StatusRequest",
        "ReportFetch",
        "Query",
        "Switchover",
        "Promote",
        "Refill",
    },
    UNKNOWN: set(),
}
EXPECT_TO_WITNESS = {
    NODE: {"Heartbeat", "VoteRequest", "IsrUpdate", "Lease", "StatusRequest"},
    WITNESS_ROLE: set(),
    OPERATOR: {"StatusRequest"},
    CLIENT: {"StatusRequest"},
    ANYONE: {"StatusRequest"},
    UNKNOWN: set(),
}
SENDERS = {
    NODE: Identity(NODE, "b"),
    WITNESS_ROLE: Identity(WITNESS_ROLE, "witness"),
    OPERATOR: Identity(OPERATOR, "ops"),
    CLIENT: Identity(CLIENT, "desk"),
    ANYONE: Identity(ANYONE),
    UNKNOWN: Identity(UNKNOWN, "peer:evil"),
}
ALL_TYPES = sorted(wire.MESSAGE_TYPES.values(), key=lambda t: t.TYPE)


@pytest.mark.parametrize("role", list(SENDERS))
@pytest.mark.parametrize("typ", ALL_TYPES, ids=lambda t: t.__name__)
def test_every_message_type_from_every_role_to_a_node(typ, role):
    p = Policy("a", NODES, curve=True, clients={"desk": ClientEntry()}, operators=["ops"])
    who = SENDERS[role]
    got = p.check(who, sample(typ, who.name, "a"))
    assert (got is None) == (typ.__name__ in EXPECT_TO_NODE[role]), got


@pytest.mark.parametrize("role", list(SENDERS))
@pytest.mark.parametrize("typ", ALL_TYPES, ids=lambda t: t.__name__)
def test_every_message_type_from_every_role_to_the_witness(typ, role):
    p = Policy("witness", NODES, curve=True, clients={"desk": ClientEntry()}, operators=["ops"])
    who = SENDERS[role]
    got = p.check(who, sample(typ, who.name, "witness"))
    assert (got is None) == (typ.__name__ in EXPECT_TO_WITNESS[role]), got


@pytest.mark.parametrize(
    "msg",
    [
        wire.Ack(1, 1, "c"),
        wire.Heartbeat(5, 1, "c", wire.ROLE_PRIMARY),
        wire.Join(1, 1, "c", 1),
        wire.Refill(1, 1, 0, "c"),
        wire.Handover(1, 1, "c"),
        wire.Lease(1, 3, "c"),
        wire.Fence(2, 0, "c"),  # a fence for another node, delivered here
        wire.Heartbeat(1, 1, "b", wire.ROLE_STANDBY, 0, "evil"),  # a leader that is no node
        wire.Heartbeat(1, 1, "b", wire.ROLE_PRIMARY, 0, "", 0, ("b",)),  # itself in its in-sync set
        wire.Heartbeat(1, 1, "b", wire.ROLE_PRIMARY, 0, "", 0, ("c", "c")),
    ],
    ids=lambda m: type(m).__name__,
)
def test_a_peer_speaking_for_another_name_is_refused(msg):
    p = Policy("a", NODES)
    assert p.check(p.identify(b"peer:b"), msg).code in ("name", "set")
    assert p.check(p.identify(b"peer:b"), wire.Ack(1, 1, "b")) is None


@pytest.mark.parametrize(
    "msg",
    [
        wire.IsrUpdate(1, 1, "a", ("b",) * 500, 1),  # ~1 KB of names: larger than the state slot
        wire.IsrUpdate(1, 1, "a", ("x" * 5000,), 1),  # 5 KB: one name that is no node
        wire.IsrUpdate(1, 1, "a", ("a", "b"), 1),  # the primary itself
        wire.Heartbeat(1000, 1, "a", wire.ROLE_PRIMARY, 0, "", 0, ("evil",)),
        wire.VoteRequest(2, 1, "b", 1),  # a speaking for b
    ],
    ids=["repeats", "huge-name", "itself", "unknown-member", "other-name"],
)
def test_the_witness_refuses_what_does_not_fit_its_record(msg):
    p = Policy("witness", NODES)
    assert p.check(p.identify(b"peer:a"), msg) is not None


def test_the_witness_own_messages_must_be_for_us():
    p = Policy("a", NODES)
    w = p.identify(b"peer:witness")
    assert w == Identity(WITNESS_ROLE, "witness")
    assert p.check(w, wire.Vote(2, "b", True)).code == "name"
    assert p.check(w, wire.Vote(2, "a", True, "", ("b", "zz"))).code == "set"
    assert p.check(w, wire.Vote(2, "a", True)) is None
    # A group with no witness has no witness identity.
    assert Policy("a", NODES, has_witness=False).identify(b"peer:witness").role == UNKNOWN


def test_open_mode_identities_come_from_routing_ids():
    p = Policy("a", NODES)
    assert p.mode == "open"
    assert p.identify(b"peer:b") == Identity(NODE, "b")
    assert p.identify(b"peer:evil").role == UNKNOWN
    assert p.identify(b"\x00\x80\x00\x00\x01").role == ANYONE
    fence = wire.Fence(99, 0, "a")
    assert p.check(p.identify(b"peer:evil"), fence).code == "unknown_sender"
    assert p.check(p.identify(b"\x00\x80\x00\x00\x01"), fence).code == "role"
    assert p.check(p.identify(b"peer:b"), fence) is None  # the standby's own epoch guard decides the rest


def test_curve_identities_come_from_keys_and_must_match_the_routing_id():
    p = Policy("a", NODES, curve=True, clients={"desk": ClientEntry(7)}, operators=["ops"])
    assert p.mode == "curve"
    assert p.identify(b"peer:b", "node:b") == Identity(NODE, "b")
    assert p.identify(b"peer:b", "node:c").role == UNKNOWN  # c's key, b's name
    assert p.identify(b"peer:b", "client:desk").role == UNKNOWN  # a client key claiming a peer name
    assert p.identify(b"peer:witness", "witness") == Identity(WITNESS_ROLE, "witness")
    assert p.identify(b"peer:witness", "node:b").role == UNKNOWN
    assert p.identify(b"\x00abcd", "client:desk") == Identity(CLIENT, "desk", 7)
    assert p.identify(b"\x00abcd", "operator:ops") == Identity(OPERATOR, "ops")
    assert p.identify(b"\x00abcd", "node:b").role == UNKNOWN  # a peer key used as a tool
    assert p.identify(b"\x00abcd", "client:other").role == UNKNOWN  # not in the group file
    assert p.identify(b"\x00abcd", None).role == UNKNOWN
    assert p.identify(b"\x00abcd", "operator:ops") != p.identify(b"\x00abcd", "client:desk")


def test_a_client_bound_to_a_client_id_may_use_no_other():
    p = Policy("a", NODES, curve=True, clients={"desk": ClientEntry(7), "any": ClientEntry()})
    desk, anyone = Identity(CLIENT, "desk", 7), Identity(CLIENT, "any")
    assert p.check(desk, wire.Request(7, 1, CMD)) is None
    assert p.check(desk, wire.Request(8, 1, CMD)).code == "client_id"
    mixed = wire.Requests((wire.Request(7, 1, CMD), wire.Request(8, 2, CMD)))
    assert p.check(desk, mixed).code == "client_id"
    assert p.check(anyone, mixed) is None
    # A packed bundle, as the driver decodes it.
    run = wire.decode_packed(wire.encode(mixed))
    assert isinstance(run.requests, wire.RequestRun)
    assert p.check(desk, run).code == "client_id"
    ok = wire.decode_packed(wire.encode(wire.Requests((wire.Request(7, 1, CMD), wire.Request(7, 2, CMD)))))
    assert p.check(desk, ok) is None


def test_switchover_must_name_a_node():
    p = Policy("a", NODES, curve=True, operators=["ops"])
    ops = Identity(OPERATOR, "ops")
    assert p.check(ops, wire.Switchover("b")) is None
    assert p.check(ops, wire.Switchover("evil")).code == "name"


def test_policy_for_a_group_file():
    from replication.transport import group_file as config

    doc = {
        "nodes": {"a": {"endpoint": "tcp://127.0.0.1:1", "journal": "a"}},
        "witness": {"endpoint": "tcp://127.0.0.1:2"},
        "keys_dir": "k",
        "operators": {"ops": {}},
        "clients": {"desk": {"client_id": 7, "accounts": [1, 2]}},
    }
    p = trust.policy_for(config.parse(doc), "a")
    assert p.curve and p.operators == {"ops"} and p.clients == {"desk": ClientEntry(7, (1, 2))}
    bare = trust.policy_for(config.parse({"nodes": doc["nodes"]}), "a")
    assert not bare.curve and not bare.has_witness
    assert bare.operators == {"operator"} and set(bare.clients) == {"client"}  # the implicit ones
    with pytest.raises(
        ValueError, match=r"unknown key \[clients.desk\] 'client' \(did you mean 'client_id'\?\)"
    ):
        config.parse({**doc, "clients": {"desk": {"client": 7}}})
    with pytest.raises(ValueError, match="public_key"):
        config.parse({**doc, "operators": {"ops": {"public_key": "short"}}})


@pytest.mark.parametrize(
    ("mode", "heard", "want"),
    [
        ("sync", [(1, wire.ROLE_PRIMARY, 3000, 40, ())], (3000, 0)),  # the primary acked 3,000 solo
        ("sync", [(1, wire.ROLE_PRIMARY, 3000, 40, ("c",))], (3000, 0)),  # ... or with another standby
        ("sync", [(1, wire.ROLE_PRIMARY, 120, 100, ("b",))], (0, 0)),  # we hold all our in-sync set acked
        ("sync", [(1, wire.ROLE_PRIMARY, 120, 110, ("b",))], (110, 0)),
        ("sync", [(1, wire.ROLE_STANDBY, 90, 105, ())], (105, 0)),  # a standby repeats its primary's commit
        ("async", [(1, wire.ROLE_PRIMARY, 120, 100, ("b",))], (120, 0)),  # async: its whole journal
        ("sync", [(0, wire.ROLE_PRIMARY, 500, 500, ())], (0, 0)),  # an older epoch is no news
        ("sync", [(2, wire.ROLE_PRIMARY, 50, 50, ("b",))], (0, 2)),  # a newer epoch exists
    ],
)
def test_promote_gap(mode, heard, want):
    assert trust.promote_gap("b", 100, 1, heard, mode) == want


def test_identities_are_remembered_within_a_bound():
    p = Policy("a", NODES)
    assert p.identify(b"peer:b") is p.identify(b"peer:b")
    for i in range(trust.IDENTITY_CACHE + 10):
        p.identify(i.to_bytes(5, "big"))
    assert len(p._known) <= trust.IDENTITY_CACHE
    assert p.identify(b"peer:b") == Identity(NODE, "b")


def test_an_operator_vote_request_comes_from_a_node_with_a_known_flag():
    """VoteRequest.operator: a node may flag its operator's ask (plain or forced); anything else,
    or the same request from an operator or a client connection, is refused at the witness."""
    p = Policy("witness", NODES, curve=True, clients={"desk": ClientEntry()}, operators=["ops"])
    a = p.identify(b"peer:a", "node:a")
    for flag in (wire.VOTE_ORDINARY, wire.VOTE_OPERATOR, wire.VOTE_FORCED):
        assert p.check(a, wire.VoteRequest(2, 1, "a", 1, flag)) is None
    assert p.check(a, wire.VoteRequest(2, 1, "a", 1, 3)).code == "flag"
    forced = wire.VoteRequest(2, 1, "a", 1, wire.VOTE_FORCED)
    assert p.check(p.identify(b"\x00ab", "operator:ops"), forced).code == "role"
    assert p.check(p.identify(b"\x00ab", "client:desk"), forced).code == "role"
    assert p.check(p.identify(b"peer:b", "node:b"), forced).code == "name"


def test_auth_is_curve_only_when_every_client_is_known_by_its_key():
    from replication.ops.cli import auth_line
    from replication.transport import group_file as config

    nodes = {"a": {"endpoint": "tcp://127.0.0.1:1", "journal": "a"}}
    plain = config.parse({"nodes": nodes})
    keys = config.parse({"nodes": nodes, "keys_dir": "k"})
    listed = config.parse(
        {"nodes": nodes, "keys_dir": "k", "clients": {"desk": {"client_id": 7, "accounts": [1, 2]}}}
    )
    assert [trust.policy_for(c, "a").mode for c in (plain, keys, listed)] == ["open", "open", "curve"]
    assert auth_line(plain).startswith("auth: open (no keys_dir")
    assert auth_line(keys).startswith("auth: open (no [clients] entries")
    assert auth_line(listed) == "auth: curve"
    # The identity a restricted key gets carries its accounts; the implicit client has none.
    assert trust.policy_for(listed, "a").identify(b"\x00x", "client:desk") == Identity(
        CLIENT, "desk", 7, frozenset({1, 2})
    )
    assert trust.policy_for(keys, "a").identify(b"\x00x", "client:client") == Identity(CLIENT, "client")
    with pytest.raises(ValueError, match="accounts must be non-negative"):
        config.parse({"nodes": nodes, "keys_dir": "k", "clients": {"desk": {"accounts": [-1]}}})
