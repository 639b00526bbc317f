"""The simulator meets the witness's rule: one candidate per epoch.

Two standbys that lose the primary, and each other, at once both ask the
witness for the same epoch (the ``isolate_primary_split`` fault: then the
winner loses the witness too, while the loser still asks). The checker
records every grant that leaves the witness and reports an epoch granted to
two nodes, or to a node other than the one serving it, as split brain. The
last test breaks the rule on purpose and shows the checker says so.
"""

from __future__ import annotations

import logging

import replication.testing.sim.participants as sim_participants
from replication.protocol.witness import WitnessMachine
from replication.testing.sim import Fault, Schedule, Sim, check_sim, random_schedule

logging.getLogger("replication").setLevel(logging.CRITICAL)

# A drawn schedule whose only fault is isolate_primary_split (python -m replication.testing.sim --seed 384).
SPLIT_SEED = 384


class GrantsTwice(WitnessMachine):
    """A broken witness: it forgets that it granted its epoch when the next candidate asks for it.

    The same decision as ``m.epoch <= self.epoch`` weakened to ``<`` together with the
    "skips epochs" check weakened to ``>``: every other rule (the primary alive here, the
    in-sync set, a standby further ahead) still applies.
    """

    def on_vote_request(self, m, now, parked_at=None):
        if not (self.epoch > 0 and m.epoch == self.epoch and m.node != self.primary):
            return super().on_vote_request(m, now, parked_at)
        self.epoch -= 1
        vote = super().on_vote_request(m, now, parked_at)
        if vote is None or not vote.granted:
            self.epoch += 1  # parked or refused: as it was
        return vote


def test_two_candidates_for_one_epoch_get_one_grant():
    faults = (Fault("isolate_primary_split", 0.01, 0.2), Fault("isolate_primary_split", 0.03, 0.25))
    sim = Sim(Schedule(seed=7, standbys=2, requests=30, drop=0.02, reorder=0.1, faults=faults)).run()
    rep = check_sim(sim)
    assert not rep.violations, rep.violations
    assert rep.faults["isolate_primary_split"] == 2 and rep.acked == 2 * (30 + 5) and rep.converged
    # Both standbys ran: the witness refused one of them an epoch it had granted.
    assert sim.witness.counters.get("votes_denied", 0) >= 1
    assert len(sim.grants) >= 2 and all(len(g) == 1 for g in sim.grants.values())


def test_the_drawn_split_schedule_keeps_the_rule():
    sched = random_schedule(SPLIT_SEED)
    assert [f.kind for f in sched.faults] == ["isolate_primary_split"] and sched.standbys == 2
    sim = Sim(sched).run()
    rep = check_sim(sim)
    assert not rep.violations, rep.violations
    assert rep.split_brain == 0 and rep.lost == 0 and rep.converged
    assert sim.witness.counters.get("votes_denied", 0) >= 1


def test_a_witness_that_grants_an_epoch_twice_is_reported(monkeypatch):
    monkeypatch.setattr(sim_participants, "WitnessMachine", GrantsTwice)
    sim = Sim(random_schedule(SPLIT_SEED)).run()
    rep = check_sim(sim)
    twice = [e for e, g in sim.grants.items() if len(g) > 1]
    assert twice, "the broken witness never granted an epoch twice: the schedule does not exercise it"
    assert rep.split_brain >= 1
    assert any(f"the witness granted epoch {twice[0]} to" in v for v in rep.violations), rep.violations
