"""The simulator's trust layer: every delivery passes ``trust.Policy``, and an outsider forges messages.

For: ``run.Sim``. The simulated group runs as under CURVE: each delivery to
a node or the witness is checked by that receiver's ``trust.Policy``, with
the identity the transport would report (a node's key and ``peer:NAME``
routing id, the witness's, the operator's, a client's). A schedule with
``forge > 0`` also has an outsider who, at random moments of the fault
phase, sends forged peer, witness and operator messages built from the
group's current epoch: with a client key, with a client key claiming a
peer's routing id, or with one node's key claiming another node's name.
Two rules are recorded for ``check``: no message of the group itself is
ever refused, and no forgery is ever admitted. The clients' key may be
restricted to some accounts (``accounts``): a node then screens their
requests as its driver does (``screen``, with ``protocol.entitlement``),
answering what they may not send ``NOT_ENTITLED``. Not for: a compromised node
key speaking as itself (the policy admits it by design), or sockets.

The outsider draws from its own random stream, and a refused forgery
reaches no machine, so a run with forgeries is the run without them plus
the refusals.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from ...protocol import entitlement, trust, wire

WITNESS = "witness"
OPERATOR = "operator"


@dataclass(frozen=True)
class Forged:
    """Where a forged frame comes from, as the transport reports it: routing id and ZAP User-Id."""

    routing_id: bytes
    user_id: str

    def __str__(self) -> str:
        return f"{self.routing_id!r} with key {self.user_id}"


class SimTrust:
    """The receivers' policies, the outsider, and what broke the two rules.

    ``accounts``: the only accounts the clients' key may trade (empty: any, the default).
    """

    def __init__(self, names: list[str], seed: int, accounts: tuple[int, ...] = ()) -> None:
        self.names = list(names)
        clients = {"client": trust.ClientEntry(0, accounts)}
        self.policies = {
            n: trust.Policy(n, self.names, True, curve=True, clients=clients, operators=[OPERATOR])
            for n in [*self.names, WITNESS]
        }
        self.rng = random.Random(seed * 7 + 3)
        self.refused = 0  # forgeries refused
        self.legit_refused: list[str] = []
        self.forged_admitted: list[str] = []

    def identity(self, src: object, dest: str) -> trust.Identity:
        """What ``dest``'s driver would know about ``src``."""
        p = self.policies[dest]
        if isinstance(src, Forged):
            return p.identify(src.routing_id, src.user_id)
        if src in self.names:
            return p.identify(b"peer:" + str(src).encode(), f"node:{src}")
        if src == WITNESS:
            return p.identify(b"peer:witness", WITNESS)
        if src == OPERATOR:
            return p.identify(b"\x00operator", "operator:operator")
        return p.identify(bytes(src), "client:client")  # type: ignore[arg-type]

    def admit(self, src: object, dest: str, msg: wire.Message) -> wire.Address | None:
        """The address the machine sees for an admitted message, or None (refused). O(names in msg)."""
        who = self.identity(src, dest)
        refusal = self.policies[dest].check(who, msg)
        if isinstance(src, Forged):
            if refusal is None:
                self.forged_admitted.append(f"{type(msg).__name__} from {src} to {dest}")
            else:
                self.refused += 1
                return None
        elif refusal is not None:
            self.legit_refused.append(f"{type(msg).__name__} from {src!r} to {dest}: {refusal.detail}")
            return None
        if who.role in (trust.NODE, trust.WITNESS_ROLE):
            return who.name
        return src.routing_id if isinstance(src, Forged) else src  # type: ignore[return-value]

    def screen(
        self, src: wire.Address, dest: str, msg: wire.Message, machine: Any
    ) -> tuple[wire.Message | None, list[wire.Send]]:
        """A message admitted to node ``dest`` (whose ``Replica`` is ``replica``), as its driver
        hands it on: a restricted client's request, bundle or query loses what it may not send,
        each answered ``NOT_ENTITLED`` (sends to ``src``), and what it may send only if an order
        is still unknown when sequenced is registered with the machine. Anything else is
        returned as it is."""
        replica = machine.replica
        if type(msg) not in (wire.Request, wire.Requests, wire.Query):
            return msg, []
        who = self.identity(src, dest)
        if not who.accounts:
            return msg, []
        if type(msg) is wire.Query:

            def known_order_account(order_id: int) -> int | None:
                state = replica.reports.order(order_id)  # a live or recently ended order
                return None if state is None else state.account

            answer = entitlement.screen_query(who.accounts, msg, known_order_account)
            return (msg, []) if answer is None else (None, [wire.Send(src, answer)])
        allowed, refused = entitlement.screen(who.accounts, msg, replica.order_account)  # type: ignore[arg-type]
        deferred = entitlement.unknown_targets(allowed, replica.order_account)
        if deferred:
            machine.defer_entitlement(deferred, who.accounts)
        return allowed, [wire.Send(src, reply) for reply in refused]

    def forgery(self, epoch: int, seq: int) -> tuple[Forged, str, wire.Message]:
        """One forged message for the group at ``epoch``/``seq``: (source, receiver, message)."""
        rng = self.rng
        dest = rng.choice([*self.names, WITNESS])
        others = [n for n in self.names if n != dest] or self.names
        victim = rng.choice(others)  # the node the forgery speaks for
        key_holder = rng.choice([n for n in self.names if n != victim])  # never the victim's own key
        src = rng.choice(
            (
                Forged(b"\x00forger", "client:client"),
                Forged(b"peer:" + victim.encode(), "client:client"),
                Forged(b"peer:" + victim.encode(), f"node:{key_holder}"),
            )
        )
        msg = rng.choice(
            (
                wire.Fence(epoch + 1, 0, dest),
                wire.Heartbeat(epoch + 999, seq + 10**6, victim, wire.ROLE_PRIMARY, seq + 10**6),
                wire.Promote(),
                wire.Promote(True),
                wire.Switchover(victim),
                wire.Ack(epoch, seq + 10**6, victim),
                wire.IsrUpdate(epoch, seq, victim, (victim,) * 300, 10**6),
                wire.VoteRequest(epoch + 1, seq + 10**6, victim, epoch),
                wire.Vote(epoch + 1, dest, True, "forged"),
                wire.Handover(epoch, seq, victim),
                wire.Join(epoch, 0, victim, 0),
            )
        )
        return src, dest, msg
