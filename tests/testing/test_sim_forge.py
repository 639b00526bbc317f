"""The simulator's outsider (``replication.testing.sim.forge``): forged messages pass the same trust policy.

Virtual time only. Every delivery to a node or the witness is checked by
``trust.Policy``; the checker holds two rules: none of the group's own
messages is refused, and no forgery is admitted.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from replication.protocol import trust, wire
from replication.testing.sim import Fault, Schedule, Sim, check_sim, random_schedule, run_schedule

logging.getLogger("replication").setLevel(logging.CRITICAL)

FAULTS = (Fault("crash", 0.01, 0.15), Fault("switchover", 0.02, 0.05), Fault("isolate_primary", 0.02, 0.1))
FORGED = Schedule(seed=11, standbys=2, requests=30, drop=0.02, reorder=0.1, faults=FAULTS, forge=80)


def test_forgeries_are_all_refused_and_change_nothing():
    rep = run_schedule(FORGED)  # raises SimFailure on any violation
    assert rep.forged_refused > 0 and rep.forged_refused == rep.faults["forge"]
    assert rep.acked == 2 * (30 + 5) and rep.lost == rep.duplicates == rep.split_brain == 0
    # A refused forgery reaches no machine, and the outsider draws from its own stream:
    # the run is the same as without it.
    quiet = run_schedule(replace(FORGED, forge=0))
    assert quiet.faults == {k: n for k, n in rep.faults.items() if k != "forge"}
    assert (quiet.acked, quiet.history, quiet.steps, quiet.virtual_time) == (
        rep.acked,
        rep.history,
        rep.steps,
        rep.virtual_time,
    )


def test_random_schedules_with_an_outsider():
    seeds = [s for s in range(1, 40) if random_schedule(s).forge][:3]
    assert seeds, "some schedules have an outsider"
    for s in seeds:
        assert run_schedule(random_schedule(s)).forged_refused > 0


def test_checker_catches_an_admitted_forgery(monkeypatch):
    """A policy that admits everything: the forgeries reach the machines and the checker says so."""
    sched = replace(FORGED, seed=15)
    assert run_schedule(sched).forged_refused > 0  # with the policy: every rule holds
    monkeypatch.setattr(trust.Policy, "check", lambda self, who, msg: None)
    rep = check_sim(Sim(sched).run())
    assert any(v.startswith("trust: a forgery was admitted") for v in rep.violations), rep.violations
    assert rep.lost > 0  # and they do harm: acknowledged orders lost (this seed: 19)


def test_checker_catches_a_refused_message_of_the_group(monkeypatch):
    """A policy that refuses the standbys' acks: the checker names the refused message."""
    real = trust.Policy.check

    def no_acks(self, who, msg):
        return trust.Refusal("role", "no acks") if type(msg) is wire.Ack else real(self, who, msg)

    monkeypatch.setattr(trust.Policy, "check", no_acks)
    rep = check_sim(Sim(replace(FORGED, forge=0, faults=())).run())
    assert any(v.startswith("trust: the group's own message refused: Ack") for v in rep.violations)


def test_a_client_key_restricted_to_an_account_is_screened_by_every_node():
    """The clients' key may trade account 1 only (client 1's orders): client 2's orders and mass
    cancels are answered NOT_ENTITLED, never sequenced; its cancels of orders never placed pass
    to the engine (unknown_order). Through crashes and a switchover every rule of the checker holds."""
    from matching import EVENT_DTYPE, codes
    from replication.testing.sim.forge import SimTrust

    sched = replace(FORGED, forge=0, clients=2, bundle=4)  # bundles: packed runs screened too
    sim = Sim(sched)
    sim.trust = SimTrust(sim.names, sched.seed, accounts=(1,))
    rep = check_sim(sim.run())
    assert not rep.violations, rep.violations
    one, two = sim.clients[b"client1"], sim.clients[b"client2"]
    assert one.done and all(r.status == wire.OK for r in one.done.values())
    refused = [r for r in two.done.values() if r.status == wire.NOT_ENTITLED]
    assert refused, "client 2's orders were refused"
    for r in refused:
        (ev,) = np.frombuffer(r.events, dtype=EVENT_DTYPE).tolist()
        assert (ev[8], ev[9]) == (codes.EV_REJECTED, codes.R_NOT_ENTITLED)
    # Nothing client 2 was refused is in the history; what it sent and was sequenced touches no account.
    history = sim.registry.chain(sim.nodes[sim.primary() or sim.names[0]].journal)
    assert {e.client_id for e in history} >= {1}
    for e in history:
        if e.client_id == 2:
            op = e.command[44]
            assert op in (codes.OP_CANCEL, codes.OP_REPLACE, 0xF0), (
                e
            )  # a cancel/replace of no live order, or its open


def test_the_simulators_screen_refuses_a_query_of_another_account():
    from types import SimpleNamespace

    from replication.protocol.replica import Replica
    from replication.testing.sim.forge import SimTrust

    st = SimTrust(["a", "b"], 1, accounts=(1,))
    replica = SimpleNamespace(replica=Replica())  # the node machine: screen reads its replica
    theirs = wire.Query(1, 0, 4, wire.QUERY_OPEN_ORDERS, account=2, has_account=True)
    allowed, answers = st.screen(b"client1", "a", theirs, replica)
    assert allowed is None and [(s.dest, s.msg.status) for s in answers] == [(b"client1", wire.NOT_ENTITLED)]
    mine = wire.Query(1, 0, 5, wire.QUERY_OPEN_ORDERS, account=1, has_account=True)
    assert st.screen(b"client1", "a", mine, replica) == (mine, [])
    # An unrestricted key (the default) is never screened.
    assert SimTrust(["a", "b"], 1).screen(b"client1", "a", theirs, replica) == (theirs, [])
