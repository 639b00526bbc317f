"""The fail-over fast paths, on virtual time: witness parking, handover resume, stale refusals.

Each test drives the sans-IO machines (directly or through ``replication.testing.sim``)
with explicit ``now`` values; nothing sleeps and nothing asserts a duration.
"""

from __future__ import annotations

import logging

from replication.protocol import wire
from replication.protocol.client_core import ClientCore
from replication.protocol.settings import Settings
from replication.protocol.witness import WitnessMachine
from replication.testing.sim import Fault, Schedule, Sim, check_sim

logging.getLogger("replication").setLevel(logging.CRITICAL)


def _witness_with_primary_a(now: float) -> WitnessMachine:
    w = WitnessMachine(["a", "b"], Settings())
    w.handle("a", wire.Heartbeat(1, 10, "a", wire.ROLE_PRIMARY, 10, "a", 0, ("b",)), now)
    w.handle("b", wire.Heartbeat(1, 10, "b", wire.ROLE_STANDBY, 10, "a", 0, ()), now)
    return w


def test_witness_parks_a_vote_until_it_loses_the_primary_too():
    w = _witness_with_primary_a(0.0)
    # b lost a (its connection dropped) a moment before the witness did: no answer yet.
    assert w.handle("b", wire.VoteRequest(2, 10, "b", 1), 0.001) == []
    assert w.counters["votes_parked"] == 1 and w.epoch == 1
    # The witness's own drop of a: the parked request is granted at once.
    out = w.handle("a", wire.PeerDown("a"), 0.0015)
    assert [(o.dest, o.msg.granted, o.msg.epoch) for o in out] == [("b", True, 2)]
    assert w.epoch == 2 and w.primary == "b" and not w.parked


def test_witness_grants_a_parked_vote_on_its_own_heartbeat_timeout():
    s = Settings()
    w = _witness_with_primary_a(0.0)
    asked = s.heartbeat_timeout - 0.002  # b timed out a little earlier than the witness will
    assert w.handle("b", wire.VoteRequest(2, 10, "b", 1), asked) == []
    assert w.tick(asked + 0.001) == []  # a still counts as alive here
    out = w.tick(s.heartbeat_timeout + 0.0005)
    assert [(o.dest, o.msg.granted) for o in out] == [("b", True)]


def test_witness_forgets_a_parked_vote_the_candidate_stopped_asking_for():
    s = Settings()
    w = _witness_with_primary_a(0.0)
    assert w.handle("b", wire.VoteRequest(2, 10, "b", 1), 0.001) == []
    # Not asked again within vote_retry: the candidate gave up (its leader came back).
    assert w.tick(0.001 + s.vote_retry + 0.0001) == []
    assert not w.parked
    assert w.handle("a", wire.PeerDown("a"), 0.01) == []  # nothing granted behind its back
    assert w.epoch == 1


def test_witness_still_refuses_what_waiting_cannot_fix():
    w = _witness_with_primary_a(0.0)
    vote = w.handle("b", wire.VoteRequest(3, 10, "b", 1), 0.001)  # skips an epoch
    assert [o.msg.granted for o in vote] == [False] and not w.parked


def test_client_ignores_a_refusal_of_a_send_it_already_redirected():
    c = ClientCore(7, ["a", "b"], retry_timeout=0.02)
    rid, _ = c.submit(b"\0" * wire.COMMAND_SIZE, 0.0)
    # a refuses with a hint: the client re-sends to b at once.
    out = c.handle("a", wire.Reply(7, rid, wire.NOT_PRIMARY, 1, 0, "b"), 0.001)
    assert [o.dest for o in out] == ["b"] and c.primary == "b"
    # A second refusal of the same request from a (a duplicate, or an older send) changes nothing.
    assert c.handle("a", wire.Reply(7, rid, wire.NOT_PRIMARY, 1, 0, "b"), 0.0012) == []
    assert c.counters["stale_redirects"] == 1 and c.pending[rid].bounces == 1


def test_switchover_old_primary_follows_the_target_without_a_join_round_trip():
    resumed = 0
    for seed in range(1, 6):
        sched = Schedule(seed=seed, requests=30, faults=(Fault("switchover", 0.01, 0.05),) * 2)
        sim = Sim(sched).run()
        rep = check_sim(sim)
        assert not rep.violations, rep.violations
        assert rep.lost == rep.duplicates == rep.split_brain == 0
        resumed += sum(
            n.machine.counters.get("handover_resumes", 0) for n in sim.nodes.values() if n.machine is not None
        )
    assert resumed > 0
