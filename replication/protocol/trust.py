"""Who may send what: the group's authorisation policy, pure and sans-IO.

For: deciding, for every inbound message, whether its sender may send it.
The ZeroMQ drivers (``replication.transport.loop``) and the simulator (``replication.testing.sim``)
both call it, so the rule is tested once and runs the same everywhere:

1. ``Policy.identify`` turns what the transport knows about a sender (its
   ZeroMQ routing id and, under CURVE, the ZAP ``User-Id`` bound to its key)
   into an :class:`Identity`: a node, the witness, an operator, a client, or
   ``unknown`` (refused everything).
2. ``Policy.check`` accepts a message, or refuses it with a :class:`Refusal`
   (a short code for the counters and a sentence for the log).

The rules (docs/operations.md "Security" and "Entitlements"):

- peer messages (``Ack``, ``Heartbeat``, ``Join``, ``Entries``, ...) only
  from nodes, and the witness's own (``Vote``, ``IsrAck``) only from the
  witness; every name a message carries as its sender must be the sender's
  own, a name it carries for its recipient must be the recipient's, and the
  names in an in-sync set are distinct nodes of the group;
- operator commands (``Switchover``, ``Promote``) only from operators;
- requests, report fetches and queries only from clients, and a client whose
  ``[clients.NAME]`` entry fixes a ``client_id`` only with that id (one whose
  entry lists ``accounts`` then has its requests and queries screened:
  ``entitlement``);
- ``StatusRequest`` from anyone the transport admitted;
- nothing else (``Reply``, ``Status``, ``PeerDown``, ...) from anyone.

Open mode (no ``keys_dir``) has no keys to go by: it trusts its network. A
routing id ``peer:NAME`` is node NAME only when NAME is a node of the group
file (``peer:evil`` is unknown, refused everything); any other connection is
``anyone``, who may send what clients and operators send. Under CURVE the
identity is the key's (``transport.curve.ZapAuthenticator``), and a routing id
``peer:NAME`` must be that key's own name.

Not for: sockets, clocks or logging (the driver counts and logs refusals), or
the protocol rules the machines apply to what is accepted (an accepted
``Fence`` of an old epoch is still ignored by ``standby.on_fence``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from . import wire

PEER_PREFIX = b"peer:"
WITNESS = "witness"

# Roles of an identity.
NODE = "node"
WITNESS_ROLE = "witness"
OPERATOR = "operator"
CLIENT = "client"
ANYONE = "anyone"  # open mode, a connection that is not a peer: client and operator rights
UNKNOWN = "unknown"
ROLES = (NODE, WITNESS_ROLE, OPERATOR, CLIENT, ANYONE, UNKNOWN)
# Identities remembered per (routing id, User-Id): a frame's sender is looked up, not re-derived
# (the derivation costs a few microseconds, per ack). Cleared when full: a client's routing id
# is per connection, so the set of senders is not bounded by the group file.
IDENTITY_CACHE = 4096

# What each role may send to a node ...
_CLIENT_TO_NODE = frozenset({wire.Request, wire.Requests, wire.StatusRequest, wire.ReportFetch, wire.Query})
_OPERATOR_TO_NODE = frozenset({wire.Switchover, wire.Promote, wire.StatusRequest, wire.Refill})
TO_NODE: dict[str, frozenset] = {
    NODE: frozenset(
        {
            wire.Ack,
            wire.Heartbeat,
            wire.Join,
            wire.Refill,
            wire.Entries,
            wire.SnapshotChunk,
            wire.Fence,
            wire.Handover,
            wire.Lease,  # async: the primary's ask, a standby's echo
            wire.StatusRequest,
        }
    ),
    WITNESS_ROLE: frozenset({wire.Vote, wire.IsrAck, wire.Lease, wire.StatusRequest}),
    OPERATOR: _OPERATOR_TO_NODE,
    CLIENT: _CLIENT_TO_NODE,
    ANYONE: _CLIENT_TO_NODE | _OPERATOR_TO_NODE,
    UNKNOWN: frozenset(),
}
# ... and to the witness.
_ANY_STATUS = frozenset({wire.StatusRequest})
TO_WITNESS: dict[str, frozenset] = {
    NODE: frozenset({wire.Heartbeat, wire.VoteRequest, wire.IsrUpdate, wire.Lease, wire.StatusRequest}),
    WITNESS_ROLE: frozenset(),
    OPERATOR: _ANY_STATUS,
    CLIENT: _ANY_STATUS,
    ANYONE: _ANY_STATUS,
    UNKNOWN: frozenset(),
}

# Messages whose ``node`` field names their sender, and those whose ``node`` names their recipient.
SENDER_NAMED = frozenset(
    {
        wire.Ack,
        wire.Heartbeat,
        wire.Join,
        wire.Refill,
        wire.VoteRequest,
        wire.IsrUpdate,
        wire.Handover,
        wire.Lease,
    }
)
RECIPIENT_NAMED = frozenset({wire.Fence, wire.Vote, wire.IsrAck})
# VoteRequest.operator: a node says its operator asked (it checked the Promote's sender: an
# operator). The witness cannot check that itself; a node's key is trusted that far.
OPERATOR_FLAGS = frozenset({wire.VOTE_ORDINARY, wire.VOTE_OPERATOR, wire.VOTE_FORCED})


@dataclass(frozen=True, slots=True)
class Identity:
    """Who sent a message, as far as the transport can tell.

    ``role`` is one of ``ROLES``; ``name`` the node's, operator's or client's
    name in the group file (``"witness"`` for the witness, the routing id's
    text for ``unknown``); ``client_id`` the only client id a client may use
    (0: any); ``accounts`` the only accounts it may trade (empty: any), which
    ``entitlement`` enforces.
    """

    role: str
    name: str = ""
    client_id: int = 0
    accounts: frozenset[int] = frozenset()

    def __str__(self) -> str:
        return f"{self.role}:{self.name}" if self.name else self.role


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a message was refused: ``code`` for counters (``refused_<code>``), ``detail`` for the log."""

    code: str
    detail: str


@dataclass(frozen=True, slots=True)
class ClientEntry:
    """A ``[clients.NAME]`` table: the client id its key is bound to (0: any) and its accounts."""

    client_id: int = 0
    accounts: tuple[int, ...] = ()


class Policy:
    """The authorisation rules of one receiver (a node, or the witness). Deterministic, no I/O.

    Parameters
    ----------
    me : str
        The receiver: a node name, or ``"witness"``.
    nodes : iterable of str
        The group's node names.
    has_witness : bool
        Whether the group file has a witness.
    curve : bool
        Whether identities come from CURVE keys (``keys_dir``) or, open mode, from routing ids.
    clients : dict
        ``[clients.NAME]`` name -> ``ClientEntry``.
    operators : iterable of str
        ``[operators.NAME]`` names.
    listed_clients : bool
        Whether ``clients`` are the group file's own ``[clients.NAME]`` entries (False: the
        implicit ``client`` stands in, any client id, any account: ``mode`` is then ``open``).
    """

    def __init__(
        self,
        me: str,
        nodes: Iterable[str],
        has_witness: bool = True,
        curve: bool = False,
        clients: dict[str, ClientEntry] | None = None,
        operators: Iterable[str] = (),
        listed_clients: bool = True,
    ) -> None:
        self.me = me
        self.nodes = frozenset(nodes)
        self.has_witness = has_witness
        self.curve = curve
        self.clients = dict(clients or {})
        self.operators = frozenset(operators)
        self.listed_clients = listed_clients
        self.allowed = TO_WITNESS if me == WITNESS else TO_NODE
        self._known: dict[tuple[bytes, str | None], Identity] = {}

    @property
    def mode(self) -> str:
        """What ``status`` shows as ``auth``: ``"curve"`` when every client is known by its key
        (``keys_dir`` and ``[clients]`` entries), else ``"open"`` (docs/operations.md "Entitlements")."""
        return "curve" if self.curve and self.listed_clients else "open"

    # -- who is it -----------------------------------------------------------------------

    def identify(self, routing_id: bytes, user_id: str | None = None) -> Identity:
        """The sender of a frame, from its routing id and (CURVE) its key's ZAP User-Id. O(1)."""
        key = (routing_id, user_id)
        who = self._known.get(key)
        if who is None:
            if len(self._known) >= IDENTITY_CACHE:
                self._known.clear()
            who = self._known[key] = self._identify(routing_id, user_id)
        return who

    def _identify(self, routing_id: bytes, user_id: str | None) -> Identity:
        peer = (
            routing_id[len(PEER_PREFIX) :].decode("utf-8", "replace")
            if routing_id.startswith(PEER_PREFIX)
            else None
        )
        if not self.curve:
            if peer is None:
                return Identity(ANYONE)
            return self._peer_identity(peer)
        key = self._key_identity(user_id or "")
        if peer is None:
            # Nodes and the witness always connect with their peer routing id: a peer key
            # without one is someone using a peer's key as a tool, with no peer rights.
            return key if key.role in (OPERATOR, CLIENT) else Identity(UNKNOWN, str(user_id))
        named = self._peer_identity(peer)
        if named.role == UNKNOWN or named != key:
            return Identity(UNKNOWN, f"peer:{peer[:32]} with key {user_id}")
        return named

    def _peer_identity(self, peer: str) -> Identity:
        if peer in self.nodes:
            return Identity(NODE, peer)
        if peer == WITNESS and self.has_witness:
            return Identity(WITNESS_ROLE, WITNESS)
        return Identity(UNKNOWN, "peer:" + peer[:32])

    def _key_identity(self, user_id: str) -> Identity:
        """A ZAP User-Id (``transport.curve.user_ids``) as an identity; anything unexpected is unknown."""
        role, _, name = user_id.partition(":")
        if role == NODE and name in self.nodes:
            return Identity(NODE, name)
        if user_id == WITNESS and self.has_witness:
            return Identity(WITNESS_ROLE, WITNESS)
        if role == OPERATOR and name in self.operators:
            return Identity(OPERATOR, name)
        if role == CLIENT and name in self.clients:
            entry = self.clients[name]
            return Identity(CLIENT, name, entry.client_id, frozenset(entry.accounts))
        return Identity(UNKNOWN, user_id[:64])

    # -- may it send this ----------------------------------------------------------------

    def check(self, who: Identity, msg: wire.Message) -> Refusal | None:
        """None if ``who`` may send ``msg`` to this receiver, else why not. O(names in msg)."""
        typ = type(msg)
        if typ not in self.allowed.get(who.role, ()):
            if who.role == UNKNOWN:
                return Refusal("unknown_sender", f"{typ.__name__} from an unknown sender {who.name}")
            return Refusal("role", f"{typ.__name__} is not for a {who.role} to send")
        if who.role == NODE:
            return self._check_names(who.name, msg)
        if who.role == WITNESS_ROLE and typ in RECIPIENT_NAMED:
            if msg.node != self.me:  # type: ignore[attr-defined]
                return Refusal("name", f"{typ.__name__} from the witness names {msg.node[:32]!r}, not us")  # type: ignore[attr-defined]
            return self._check_set(getattr(msg, "isr", None) or getattr(msg, "members", None) or ())
        if typ is wire.Switchover and msg.target not in self.nodes:  # type: ignore[attr-defined]
            return Refusal("name", f"switchover to {msg.target[:32]!r}, not a node of the group")  # type: ignore[attr-defined]
        if who.client_id and typ in (wire.Request, wire.Requests, wire.ReportFetch, wire.Query):
            return self._check_client_id(who, msg)
        return None

    def _check_names(self, sender: str, msg: wire.Message) -> Refusal | None:
        """A node's message: the names it carries are the sender's, the recipient's, or nodes'."""
        typ = type(msg)
        if typ in SENDER_NAMED and msg.node != sender:  # type: ignore[attr-defined]
            return Refusal("name", f"{typ.__name__} from {sender} names {msg.node[:32]!r}")  # type: ignore[attr-defined]
        if typ in RECIPIENT_NAMED and msg.node != self.me:  # type: ignore[attr-defined]
            return Refusal("name", f"{typ.__name__} from {sender} is for {msg.node[:32]!r}, not {self.me}")  # type: ignore[attr-defined]
        if typ is wire.Heartbeat:
            if msg.leader and msg.leader not in self.nodes:  # type: ignore[attr-defined]
                return Refusal("name", f"heartbeat from {sender} names leader {msg.leader[:32]!r}")  # type: ignore[attr-defined]
            return self._check_set(msg.isr, sender)  # type: ignore[attr-defined]
        if typ is wire.IsrUpdate:
            return self._check_set(msg.members, sender)  # type: ignore[attr-defined]
        if typ is wire.VoteRequest and msg.operator not in OPERATOR_FLAGS:  # type: ignore[attr-defined]
            return Refusal("flag", f"vote request from {sender} with operator flag {msg.operator}")  # type: ignore[attr-defined]
        return None

    def _check_set(self, names: tuple[str, ...], sender: str = "") -> Refusal | None:
        """An in-sync set: distinct nodes of the group, never its primary (the sender).

        So it always fits the witness's record (``witness_state.SLOT_SIZE``).
        """
        if not names:
            return None  # the common case: a standby's heartbeat, a solo primary's
        if len(names) != len(set(names)) or not set(names) <= self.nodes - {sender}:
            return Refusal("set", f"in-sync set of {len(names)} names that are not distinct other nodes")
        return None

    def _check_client_id(self, who: Identity, msg: wire.Message) -> Refusal | None:
        if type(msg) in (wire.Request, wire.ReportFetch, wire.Query):
            ids = {msg.client_id}  # type: ignore[attr-defined]
        elif isinstance(msg.requests, wire.RequestRun):  # type: ignore[attr-defined]
            ids = {int(i) for i in set(msg.requests.array["client_id"].tolist())}  # type: ignore[attr-defined]
        else:
            ids = {r.client_id for r in msg.requests}  # type: ignore[attr-defined]
        if ids - {who.client_id}:
            return Refusal("client_id", f"client {who.name} may use client id {who.client_id} only")
        return None


def promote_gap(
    me: str, my_seq: int, my_epoch: int, heard: Iterable[tuple[int, int, int, int, tuple]], mode: str
) -> tuple[int, int]:
    """What promoting node ``me`` would lose, from what the group told it: ``(needed_seq, newer_epoch)``.

    ``heard`` holds ``(epoch, role, seq, commit, isr)`` of the nodes' last
    heartbeats (or status reports). Acknowledged are: a sync primary's
    ``commit`` (every member of its in-sync set ``isr`` acked it) if ``me``
    is in that set; otherwise its whole journal (solo, a reply leaves once
    its own copy is written), as in async mode. A standby's ``commit``
    repeats its primary's. ``needed_seq`` is the highest of these at our
    epoch or later (0 if we hold it: a promotion below it loses the
    difference); ``newer_epoch`` the highest epoch above ours (0: none),
    whose acknowledged entries we cannot count at all. O(len(heard)).

    A heartbeat is as old as it is: a primary that shrank its in-sync set
    and acknowledged more before its next heartbeat left is not seen here;
    the witness's record is (``matchcore promote`` checks it too).
    """
    needed, newer = 0, 0
    for epoch, role, seq, commit, isr in heard:
        if epoch < my_epoch:
            continue
        if epoch > my_epoch:
            newer = max(newer, epoch)
        leads = role in (wire.ROLE_PRIMARY, wire.ROLE_DRAINING)
        acked = seq if leads and (mode == "async" or me not in isr) else commit
        needed = max(needed, acked)
    return (needed if needed > my_seq else 0), newer


def policy_for(cfg, me: str) -> Policy:  # noqa: ANN001 - a config.GroupConfig (no import cycle)
    """The policy of receiver ``me`` (a node name or ``"witness"``) in the group file ``cfg``.

    Without ``[operators]`` (``[clients]``) tables the implicit operator ``operator`` (client
    ``client``, any client id and account) stands in, as in ``transport.curve.user_ids``; the
    policy's ``mode`` is then ``open``. O(identities).
    """
    clients = {n: ClientEntry(s.client_id, s.accounts) for n, s in cfg.clients.items()} or {
        "client": ClientEntry()
    }
    return Policy(
        me,
        cfg.nodes,
        bool(cfg.witness),
        bool(cfg.keys_dir),
        clients,
        list(cfg.operators) or ["operator"],
        listed_clients=bool(cfg.clients),
    )
