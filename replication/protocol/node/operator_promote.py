"""The operator's ``matchcore promote`` on a node: a standby made primary on the operator's word.

For: ``NodeMachine`` (a mixin over the node's shared state: an ask outlives role changes). A standby receives
``wire.Promote`` from an operator; it first checks, from its peers' last
heartbeats, that promoting it cannot lose what the group acknowledged
(``promote_refusal``; ``force`` overrides, logging what may be lost). Then:

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


class OperatorPromoteMixin:
    """``on_promote`` and the wait for the witness; see ``NodeMachine`` for the shared state."""

    operator_ask: OperatorAsk | None = None

    def on_promote(self: NodeMachine, src: wire.Address, m: wire.Promote, now: float) -> list:
        """The operator's ``matchcore promote``: see the module docstring."""
        if self.damaged:
            log.error("promote_refused node=%s: journal damaged (%s)", self.name, self.damaged)
            return [Send(src, self.status_message())]
        if self.role != wire.ROLE_STANDBY:
            return [Send(src, self.status_message())]
        refusal = self.promote_refusal(now)
        if refusal and not m.force:
            return self.refuse_promote(src, refusal)
        if refusal:
            self.count("promotes_forced")
            log.error("promote_forced node=%s may_lose=%s", self.name, refusal)
        if not self.witness:
            return self.promote(now, "operator") + [Send(src, self.status_message())]
        if self.operator_ask is not None:  # a second Promote while one waits: the first is answered
            out = self.refuse_promote(self.operator_ask.src, "superseded by a newer promote")
        else:
            out = []
        self.operator_ask = OperatorAsk(src, bool(m.force), self.epoch + 1, now, NEVER)
        log.warning(
            "promote_asks_witness node=%s epoch=%d force=%s", self.name, self.epoch + 1, bool(m.force)
        )
        return out + self.ask_witness_for_operator(now)

    def refuse_promote(self: NodeMachine, src: wire.Address, refusal: str) -> list:
        self.count("promotes_refused")
        log.warning("promote_refused node=%s reason=%s", self.name, refusal)
        body = {**self.status(), "promote_refused": refusal}
        return [Send(src, wire.Status(json.dumps(body, sort_keys=True).encode()))]

    def promote_refusal(self: NodeMachine, now: float) -> str:
        """Why an operator promotion might lose acknowledged orders ("" if it cannot, as far as we know).

        Also refused while our primary is alive: it would go on acknowledging until our
        heartbeat reaches it. A planned move is a switchover."""
        heard = [(hb.epoch, hb.role, hb.seq, hb.commit, hb.isr) for hb in self.peer_info.values()]
        if not heard:
            return "heard from no peer since start: what the group acknowledged is unknown here"
        needed, newer = trust.promote_gap(self.name, self.replica.seq, self.epoch, heard, self.settings.mode)
        if newer:
            return f"epoch {newer} exists (we are at {self.epoch}): its acknowledged orders are unknown here"
        if needed:
            return f"acknowledged up to seq {needed}, we hold {self.replica.seq}: {needed - self.replica.seq} would be lost"
        if self.leader and self.leader != self.name and not self.leader_dead(now):
            return f"primary {self.leader} is alive (a planned move is a switchover)"
        return ""

    def ask_witness_for_operator(self: NodeMachine, now: float) -> list:
        ask = self.operator_ask
        assert ask is not None
        ask.asked_at = now
        flag = wire.VOTE_FORCED if ask.force else wire.VOTE_OPERATOR
        return [
            Send(
                self.witness,
                wire.VoteRequest(ask.epoch, self.replica.seq, self.name, self.replica.last_epoch, flag),
            )
        ]

    def on_operator_vote(self: NodeMachine, m: wire.Vote) -> None:
        """The witness refused our operator ask: keep the reason (we ask again until the wait ends)."""
        ask = self.operator_ask
        if ask is not None and m.node == self.name and m.epoch == ask.epoch and not m.granted:
            ask.refusal = m.reason or "refused"

    def answer_operator(self: NodeMachine) -> list:
        """After a promotion: tell the waiting operator (whoever's grant it was)."""
        ask, self.operator_ask = self.operator_ask, None
        self.timers.clear(OPERATOR)
        return [Send(ask.src, self.status_message())] if ask is not None else []

    def operator_tick(self: NodeMachine, now: float) -> list:
        """The operator's timer: re-ask the witness, or end the wait (answer the refusal, or, forced
        with no answer, promote); then re-arm it for the next re-ask or the end of the wait."""
        out = self._operator_step(now)
        ask = self.operator_ask
        if ask is None or ask.granted:
            self.timers.clear(OPERATOR)  # (granted: the witness re-sends the grant; no timer)
        else:
            self.timers.arm(
                OPERATOR,
                min(ask.asked_at + self.settings.vote_retry, ask.since + promote_wait(self.settings)),
            )
        return out

    def _operator_step(self: NodeMachine, now: float) -> list:
        """Re-ask the witness, or end the wait: answer the refusal, or (forced, no answer) promote."""
        ask = self.operator_ask
        if ask is None:
            return []
        if self.role != wire.ROLE_STANDBY or self.epoch >= ask.epoch:
            # Another node took the epoch (we follow it now), or we diverged.
            self.operator_ask = None
            return self.refuse_promote(
                ask.src, f"epoch {self.epoch} is another node's (leader {self.leader})"
            )
        if ask.granted:
            return []
        if now - ask.since < promote_wait(self.settings):
            if now - ask.asked_at >= self.settings.vote_retry:
                return self.ask_witness_for_operator(now)
            return []
        self.operator_ask = None
        wait_ms = promote_wait(self.settings) * 1000
        if ask.refusal:
            return self.refuse_promote(ask.src, f"the witness refused: {ask.refusal}")
        if not ask.force:
            return self.refuse_promote(
                ask.src,
                f"the witness did not answer in {wait_ms:g} ms (--force promotes without it, "
                "risking two primaries if it is alive and only cut off from this node)",
            )
        self.count("promotes_without_witness")
        log.error(
            "promote_forced_without_witness node=%s epoch=%d: the witness did not answer in %g ms; "
            "if it is alive and only cut off from us it may grant epoch %d to another node too "
            "(two primaries of one epoch: orders acknowledged by one of them will be lost)",
            self.name,
            ask.epoch,
            wait_ms,
            ask.epoch,
        )
        return self.promote(now, "operator_without_witness") + [Send(ask.src, self.status_message())]
