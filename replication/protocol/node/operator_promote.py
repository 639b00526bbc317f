"""The operator's ``matchcore promote`` on a node: a standby made primary on the operator's word.

For: ``NodeMachine`` (``OperatorPromote``, a component the node holds: an
ask outlives role changes). A standby receives ``wire.Promote`` from an operator; it first checks, from its peers' last
heartbeats, that promoting it cannot lose what the group acknowledged
(``OperatorPromote.refusal``; ``force`` overrides, logging what may be lost). Then:

- **no witness** in the group: it promotes at once (the operator is the
  tie-breaker);
- **with a witness**: it asks the witness for the next epoch like any
  candidate, with ``VoteRequest.operator`` set (``VOTE_FORCED`` for
  ``--force``), and answers the operator once the witness decided. The
  witness never grants an epoch twice, so an operator's promote can no
  longer make a second primary of an epoch the witness gave another node
  (the split brain it used to cause when it raced an automatic fail-over).
  The witness relaxes only the rules an operator is there to override
  (``witness.WitnessMachine.operator_refusal``). The node re-asks every
  ``vote_retry`` for ``promote_wait`` seconds; then, if the witness answered,
  the operator gets its last refusal; if the witness never answered, a
  forced promote goes ahead without it (logged loudly: should the witness
  be alive and only cut off from this node, it may grant the same epoch to
  another node: two primaries), and a plain one is refused.

The answer to the operator is always one ``wire.Status`` (with
``promote_refused`` when refused). Timers are data: ``OperatorAsk.since``,
``asked_at``; ``now`` is an argument. Not for: the CLI's own check of every
node's report (``cli.promote_risk``), sockets, clocks.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import trust, wire
from ..wire import Send

if TYPE_CHECKING:  # pragma: no cover
    from ..settings import Settings
    from .machine import NodeMachine

log = logging.getLogger("replication.failover")

NEVER = float("-inf")
OPERATOR = "operator"  # the node timer of an operator's promote waiting for the witness


def promote_wait(settings: Settings) -> float:
    """How long a node waits for the witness's answer to an operator's promote (seconds).

    Two heartbeat timeouts: longer than an async lease the witness echoed (``lease +
    lease_margin`` is at most a timeout plus a heartbeat, ``config``), so a forced ask
    outlives it; and a witness silent that long is as lost as a silent primary."""
    return 2 * settings.heartbeat_timeout


@dataclass(slots=True)
class OperatorAsk:
    """An operator's promote waiting for the witness."""

    src: wire.Address  # the operator's address: the answer goes there
    force: bool
    epoch: int  # the epoch asked for
    since: float  # when the Promote arrived (the wait counts from it)
    asked_at: float  # when the VoteRequest last left
    refusal: str = ""  # the witness's last refusal ("" : it has not answered)
    # The witness granted the epoch, but a lease we echoed defers the promotion: no more
    # asks, no timeout (we echo no lease while waiting, so the promise runs out, and the
    # witness re-sends the grant on our heartbeat).
    granted: bool = False


class OperatorPromote:
    """``on_promote`` and the wait for the witness (``node.operator_promote``).

    State: ``ask``, the operator's promote waiting for the witness (None: none);
    it outlives role changes, so the node holds it. Reads the node's shared state
    (and uses its ``OPERATOR`` timer) through ``node``."""

    def __init__(self, node: NodeMachine) -> None:
        self.node = node
        self.ask: OperatorAsk | None = None

    def on_promote(self, src: wire.Address, m: wire.Promote, now: float) -> list:
        """The operator's ``matchcore promote``: see the module docstring."""
        if self.node.damaged:
            log.error("promote_refused node=%s: journal damaged (%s)", self.node.name, self.node.damaged)
            return [Send(src, self.node.status_message())]
        if self.node.role != wire.ROLE_STANDBY:
            return [Send(src, self.node.status_message())]
        refusal = self.refusal(now)
        if refusal and not m.force:
            return self.refuse(src, refusal)
        if refusal:
            self.node.count("promotes_forced")
            log.error("promote_forced node=%s may_lose=%s", self.node.name, refusal)
        if not self.node.witness:
            return self.node.promote(now, "operator") + [Send(src, self.node.status_message())]
        if self.ask is not None:  # a second Promote while one waits: the first is answered
            out = self.refuse(self.ask.src, "superseded by a newer promote")
        else:
            out = []
        self.ask = OperatorAsk(src, bool(m.force), self.node.epoch + 1, now, NEVER)
        log.warning(
            "promote_asks_witness node=%s epoch=%d force=%s",
            self.node.name,
            self.node.epoch + 1,
            bool(m.force),
        )
        return out + self.ask_witness(now)

    def refuse(self, src: wire.Address, refusal: str) -> list:
        self.node.count("promotes_refused")
        log.warning("promote_refused node=%s reason=%s", self.node.name, refusal)
        body = {**self.node.status(), "promote_refused": refusal}
        return [Send(src, wire.Status(json.dumps(body, sort_keys=True).encode()))]

    def refusal(self, now: float) -> str:
        """Why an operator promotion might lose acknowledged orders ("" if it cannot, as far as we know).

        Also refused while our primary is alive: it would go on acknowledging until our
        heartbeat reaches it. A planned move is a switchover."""
        heard = [(hb.epoch, hb.role, hb.seq, hb.commit, hb.isr) for hb in self.node.peer_info.values()]
        if not heard:
            return "heard from no peer since start: what the group acknowledged is unknown here"
        needed, newer = trust.promote_gap(
            self.node.name, self.node.replica.seq, self.node.epoch, heard, self.node.settings.mode
        )
        if newer:
            return f"epoch {newer} exists (we are at {self.node.epoch}): its acknowledged orders are unknown here"
        if needed:
            return f"acknowledged up to seq {needed}, we hold {self.node.replica.seq}: {needed - self.node.replica.seq} would be lost"
        if (
            self.node.leader
            and self.node.leader != self.node.name
            and not self.node.candidacy.leader_dead(now)
        ):
            return f"primary {self.node.leader} is alive (a planned move is a switchover)"
        return ""

    def ask_witness(self, now: float) -> list:
        ask, witness = self.ask, self.node.witness
        assert ask is not None and witness  # (asked only with a witness: on_promote)
        ask.asked_at = now
        flag = wire.VOTE_FORCED if ask.force else wire.VOTE_OPERATOR
        return [
            Send(
                witness,
                wire.VoteRequest(
                    ask.epoch, self.node.replica.seq, self.node.name, self.node.replica.last_epoch, flag
                ),
            )
        ]

    def on_refused_vote(self, m: wire.Vote) -> None:
        """The witness refused our operator ask: keep the reason (we ask again until the wait ends)."""
        ask = self.ask
        if ask is not None and m.node == self.node.name and m.epoch == ask.epoch and not m.granted:
            ask.refusal = m.reason or "refused"

    def answer(self) -> list:
        """After a promotion: tell the waiting operator (whoever's grant it was)."""
        ask, self.ask = self.ask, None
        self.node.timers.clear(OPERATOR)
        return [Send(ask.src, self.node.status_message())] if ask is not None else []

    def tick(self, now: float) -> list:
        """The operator's timer: re-ask the witness, or end the wait (answer the refusal, or, forced
        with no answer, promote); then re-arm it for the next re-ask or the end of the wait."""
        out = self._step(now)
        ask = self.ask
        if ask is None or ask.granted:
            self.node.timers.clear(OPERATOR)  # (granted: the witness re-sends the grant; no timer)
        else:
            self.node.timers.arm(
                OPERATOR,
                min(
                    ask.asked_at + self.node.settings.vote_retry, ask.since + promote_wait(self.node.settings)
                ),
            )
        return out

    def _step(self, now: float) -> list:
        """Re-ask the witness, or end the wait: answer the refusal, or (forced, no answer) promote."""
        ask = self.ask
        if ask is None:
            return []
        if self.node.role != wire.ROLE_STANDBY or self.node.epoch >= ask.epoch:
            # Another node took the epoch (we follow it now), or we diverged.
            self.ask = None
            return self.refuse(
                ask.src, f"epoch {self.node.epoch} is another node's (leader {self.node.leader})"
            )
        if ask.granted:
            return []
        if now - ask.since < promote_wait(self.node.settings):
            if now - ask.asked_at >= self.node.settings.vote_retry:
                return self.ask_witness(now)
            return []
        self.ask = None
        wait_ms = promote_wait(self.node.settings) * 1000
        if ask.refusal:
            return self.refuse(ask.src, f"the witness refused: {ask.refusal}")
        if not ask.force:
            return self.refuse(
                ask.src,
                f"the witness did not answer in {wait_ms:g} ms (--force promotes without it, "
                "risking two primaries if it is alive and only cut off from this node)",
            )
        self.node.count("promotes_without_witness")
        log.error(
            "promote_forced_without_witness node=%s epoch=%d: the witness did not answer in %g ms; "
            "if it is alive and only cut off from us it may grant epoch %d to another node too "
            "(two primaries of one epoch: orders acknowledged by one of them will be lost)",
            self.node.name,
            ask.epoch,
            wait_ms,
            ask.epoch,
        )
        return self.node.promote(now, "operator_without_witness") + [
            Send(ask.src, self.node.status_message())
        ]
