"""Replicas stay equal through stops, expiry and instrument rules (issue 19), fail-over included.

A primary ``Replica`` executes a flow whose commands carry ``ts``, with DAY/GTD
orders, stops that cascade and an ``instrument`` command; a standby applies the
primary's entries. Their digests must agree after every entry, and a standby
restored from a snapshot taken in the middle of the flow (a fail-over before a
trigger cascade) must carry on with the same events and digests.
"""

from __future__ import annotations

import pytest

import matching
from benchmarks.differential import CommandGenerator
from matching import command_record
from replication.protocol import wire
from replication.protocol.replica import Replica

pytestmark = pytest.mark.skipif(matching.Engine is None, reason="native engine not built")


def _flow(n: int) -> list[bytes]:
    gen = CommandGenerator(19, instruments=2, mix="stops")
    cmds = [{"op": "instrument", "instrument": 0, "tick": 1, "band": 8, "ref_price": 1000, "ts": 1}]
    cmds += [next(gen) for _ in range(n)]
    return [wire.pack_command(command_record(c)) for c in cmds]


def _primary(commands: list[bytes]) -> tuple[Replica, list[wire.Entry], list[bytes]]:
    p = Replica()
    entries, events = [], []
    for seq, cmd in enumerate(commands, start=1):
        ev, digest = p.execute(1, seq, 7, seq, cmd)
        entries.append(wire.Entry(1, seq, 7, seq, digest, cmd))
        events.append(ev)
    return p, entries, events


def test_a_standby_keeps_the_primarys_digest_through_triggers_and_expiries():
    primary, entries, events = _primary(_flow(3000))
    kinds = {(ev[i + 60], ev[i + 61]) for ev in events for i in range(0, len(ev), 64)}
    assert (matching.codes.EV_TRIGGERED, 0) in kinds  # the flow does trigger stops,
    assert (matching.codes.EV_CANCELLED, matching.codes.R_EXPIRED) in kinds  # expire orders
    assert (matching.codes.EV_REJECTED, matching.codes.R_PRICE_BAND) in kinds  # and meet the band
    standby = Replica()
    for e in entries:
        got, ok = standby.apply_entry(e)
        assert ok, f"standby diverged at seq {e.seq}"
    assert (standby.seq, standby.digest) == (primary.seq, primary.digest)
    assert standby.engine.book_digest() == primary.engine.book_digest()


def test_a_standby_restored_mid_flow_carries_on_through_a_cascade():
    commands = _flow(3000)
    primary, entries, events = _primary(commands)
    # The first entry after seq 1000 whose events hold two triggers: a cascade.
    cascade = next(
        i
        for i, ev in enumerate(events)
        if i > 1000 and sum(ev[k + 60] == matching.codes.EV_TRIGGERED for k in range(0, len(ev), 64)) >= 2
    )
    half = Replica()
    for e in entries[:cascade]:
        assert half.apply_entry(e)[1]
    took_over = Replica.restore(half.snapshot())  # the snapshot a new primary starts from
    for seq in range(cascade + 1, len(commands) + 1):
        ev, digest = took_over.execute(2, seq, 7, seq, commands[seq - 1])
        assert (ev, digest) == (events[seq - 1], entries[seq - 1].digest), f"seq {seq}"
