"""``NodeMachine.idle_wait`` / ``timer_due``: an idle node sleeps until its next timer, and no timer is late.

``timer_due`` is the earliest deadline armed in the node's and its role's
timers (``protocol.timers``: each armed by the logic that waits, as it
decides; ``tests/protocol/test_timers.py`` tests them one by one). The
property that matters, stated exactly: after a tick, ``timer_due(now)`` is a
lower bound on when ``tick`` next does anything by itself. Then a node ticked only
after a message or once ``timer_due`` has come (what the driver does) gives
the very outputs, and passes through the very states, of a node ticked
every 0.1 ms. The randomised test runs the project's fault simulator
(``replication.testing.sim``: loss, duplication, reordering, crashes mid-step,
hangs, partitions, switchovers, a witness restart, clients) with every node
ticked every 0.1 ms, and checks that each tick the lazy schedule would have
skipped returned nothing and changed no state — so the lazy run *is* the
eager run (up to 1 ns of float rounding at a due time).

Then one test per timer, in every role: ``timer_due`` names it exactly, a
node driven only at the times it names fires it on time (within the
driving loop's 1 µs step, for the ``>`` timeouts), and ``idle_wait`` — the
driver's whole-millisecond, rounded-up wait — fires it less than 1 ms late.
No wall clock anywhere.
"""

from __future__ import annotations

import logging
import math
from collections import deque

import pytest
from _net import add_client, cmd, group, settings
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from matching import ReferenceEngine
from replication.protocol import wire
from replication.protocol.node.machine import IDLE_CAP, NodeMachine
from replication.protocol.node.standby import DivergedRole
from replication.storage.journal import MemoryJournal
from replication.testing.sim import NODE_FAULTS, Fault, Schedule, Sim

logging.getLogger("replication").setLevel(logging.CRITICAL)

EPS = 1e-9  # float rounding at a due time (``x + T`` against ``now - x >= T``)
STEP = 1e-6  # the driving loop's step past a ``>`` timeout (due, but firing only just after)

# -- the lazy schedule is the eager one: checked inside the fault simulator -------------

# Not the machine's behaviour: bookkeeping for idle_wait (the last tick's time), or
# fixed at construction.
UNCHECKED = frozenset({"ticked_at", "replica", "journal", "_handlers", "settings", "engine_factory"})


def _frozen(v):
    if isinstance(v, (deque, list)):
        return tuple(v)
    if isinstance(v, dict):
        return dict(v)
    if isinstance(v, set):
        return frozenset(v)
    return v  # numbers, strings, tuples, messages (treated as immutable everywhere)


def state(m: NodeMachine) -> dict:
    """Everything ``tick`` could change: every attribute (one level deep), the replica's position."""
    s = {k: _frozen(v) for k, v in vars(m).items() if k not in UNCHECKED}
    s["replica"] = (m.replica.seq, m.replica.digest, m.replica.last_epoch)
    s["journal"] = (m.journal.last_seq, m.journal.base_seq)
    return s


class LazyCheck:
    """Wraps one machine's ``handle``/``tick``: every tick the lazy schedule skips must be a no-op.

    The lazy schedule ticks after any message (the driver's pass) and at the
    first tick at or after ``timer_due``; the eager one (the simulator's,
    every ``Sim.TICK``) ticks always. By induction the two see the same
    states, so it is enough to check, in the one eager run, that each tick
    the lazy schedule would skip leaves the machine exactly as it was.
    """

    def __init__(self, m: NodeMachine, stats: dict) -> None:
        self.m, self.stats = m, stats
        self.tick, self.handle = m.tick, m.handle
        self.wake = -math.inf
        self.must_tick = True  # a new machine's first pass
        m.tick, m.handle = self.checked_tick, self.checked_handle

    def checked_handle(self, src, msg, now):
        self.must_tick = True
        return self.handle(src, msg, now)

    def checked_tick(self, now):
        m = self.m
        if self.must_tick or now >= self.wake - EPS:
            out = self.tick(now)
            self.must_tick = False
            due = m.timer_due(now)
            self.wake = due
            self.stats["passes"] += 1
            check_rounding(m, now, due)
            return out
        before = state(m)
        out = self.tick(now)
        self.stats["skipped"] += 1
        after = state(m)
        if out or after != before:
            changed = sorted(k for k in after if after[k] != before.get(k))
            raise AssertionError(
                f"{m.name} ({wire.ROLE_NAMES[m.role]}) acted at t={now:.7f} before its timer_due "
                f"{self.wake:.7f}: outputs {[type(getattr(o, 'msg', o)).__name__ for o in out]}, "
                f"changed {changed}"
            )
        return out


def check_rounding(m: NodeMachine, now: float, due: float) -> None:
    """``idle_wait()`` (the driver's: whole ms, after the last tick) against the exact ``due``."""
    w = m.idle_wait()
    assert m.idle_wait(now) == w  # no argument: the last tick's time
    assert w * 1000.0 == round(w * 1000.0), w  # whole ms: the driver's poll truncates
    exact = due - now
    if exact <= 0:
        assert w == 0.0
    else:
        capped = min(exact, IDLE_CAP)
        assert capped - EPS <= w < capped + 0.001, (w, exact)  # never early (no spin), < 1 ms late
    assert w <= min(IDLE_CAP, math.ceil(m.settings.heartbeat_interval * 1000.0 - 1e-6) / 1000.0)


class LazyCheckSim(Sim):
    """The fault simulator, its nodes ticked every ``tick`` (eager) and each wrapped in a ``LazyCheck``."""

    SETTLE_BOUND = 1.0  # virtual seconds: the property needs no convergence, only bounded runs
    LIVENESS_BOUND = 0.3

    def __init__(self, schedule: Schedule, tick: float, timings: dict) -> None:
        self.TICK = tick
        self.stats = {"passes": 0, "skipped": 0}
        self._timings = timings
        super().__init__(schedule)

    def _start(self, node, role: str) -> None:
        if not hasattr(self, "_timed"):  # Sim.__init__ made self.settings just before the first start
            for k, v in self._timings.items():
                setattr(self.settings, k, v)
            self._timed = True
        super()._start(node, role)
        LazyCheck(node.machine, self.stats)


ms = st.integers(min_value=0, max_value=60).map(lambda n: n / 1000)


@st.composite
def lazy_runs(draw):
    faults = draw(
        st.lists(
            st.builds(
                Fault,
                kind=st.sampled_from(NODE_FAULTS),
                gap=ms,
                duration=st.integers(min_value=2, max_value=120).map(lambda n: n / 1000),
                restart_as=st.sampled_from(("standby", "primary")),
            ),
            max_size=3,
        ),
        label="faults",
    )
    schedule = Schedule(
        seed=draw(st.integers(min_value=0, max_value=2**32 - 1), label="seed"),
        mode=draw(st.sampled_from(("sync", "async"))),
        standbys=draw(st.integers(min_value=1, max_value=2)),
        clients=draw(st.integers(min_value=1, max_value=2)),
        requests=draw(st.integers(min_value=2, max_value=20)),
        tail_requests=2,
        window=draw(st.sampled_from((1, 8))),
        drop=draw(st.sampled_from((0.0, 0.05))),
        duplicate=draw(st.sampled_from((0.0, 0.05))),
        reorder=draw(st.sampled_from((0.0, 0.3))),
        faults=tuple(faults),
        catchup_lag=draw(st.sampled_from((50_000, 5))),
        snapshot_every=draw(st.sampled_from((0, 7))),
    )
    timings = {
        "suspect_timeout": draw(st.sampled_from((0.0, 0.0013))),
        "join_retry": draw(st.sampled_from((0.05, 0.0071))),
        "switchover_timeout": draw(st.sampled_from((3.0, 0.0123))),
        "heartbeat_timeout": draw(st.sampled_from((0.04, 0.0157))),
    }
    return schedule, timings


EXAMPLES = max(10, hsettings.default.max_examples // 6)


@hsettings(max_examples=EXAMPLES)
@given(lazy_runs())
def test_ticking_only_when_idle_wait_allows_changes_nothing(run):
    """Fault-simulator runs ticked every 0.1 ms: every tick the lazy schedule skips is a no-op."""
    schedule, timings = run
    sim = LazyCheckSim(schedule, 0.0001, timings).run()
    assert sim.stats["passes"] > 0
    # Not vacuous: most eager ticks are ones the lazy schedule skips (it wakes per message or timer).
    assert sim.stats["skipped"] > sim.stats["passes"], sim.stats


@pytest.mark.parametrize("tick", [0.0001, 0.00037])
def test_a_fault_heavy_fixed_schedule(tick):
    """Every fault kind once, lossy network: a fixed run (ticks on and off the millisecond grid)."""
    faults = tuple(Fault(k, 0.01, 0.03, "primary" if i % 2 else "standby") for i, k in enumerate(NODE_FAULTS))
    schedule = Schedule(
        seed=7, standbys=2, requests=30, drop=0.05, duplicate=0.05, reorder=0.3, faults=faults
    )
    sim = LazyCheckSim(schedule, tick, {"suspect_timeout": 0.0013, "switchover_timeout": 0.0123}).run()
    assert sim.stats["skipped"] > sim.stats["passes"] > 100, sim.stats


def test_groups_without_a_witness():
    """The simulator always has a witness: a pair without one (operator promotions), and a group of one."""
    net = group("sync", witness=False)
    net.dt = 0.0001
    stats = {"passes": 0, "skipped": 0}
    for m in list(net.machines.values()):
        LazyCheck(m, stats)
    c = add_client(net, b"c1", 7, ["a", "b"])
    net.run(0.02)
    net.emit("operator", [wire.Send("a", wire.Promote())])
    net.run_until(lambda: net.machines["b"].joined)
    for i in range(1, 6):
        net.emit(b"c1", c.submit(cmd(i), net.now)[1])
    net.run(0.01)
    net.down.add("a")
    net.run(0.1)  # b's candidacy has no witness to ask: it waits
    net.emit("operator", [wire.Send("b", wire.Promote())])
    net.run(0.01)
    assert net.machines["b"].role == wire.ROLE_PRIMARY and net.machines["b"].replica.seq == 5
    assert stats["skipped"] > stats["passes"], stats
    solo = NodeMachine("a", ["a"], MemoryJournal(), settings(), None, ReferenceEngine, "primary")
    assert solo.timer_due(0.0) <= 0.0  # a group of one starts alone, at once
    solo.tick(0.0)
    assert solo.is_primary and solo.idle_wait() == 0.005


# -- one test per timer ------------------------------------------------------------------


def drive(m: NodeMachine, t0: float, t1: float, inbound=(), rounded: bool = False, after=None) -> list:
    """Run ``m`` as the driver would from ``t0`` to ``t1``: a pass per message and per timer.

    ``inbound``: ``(time, src, msg)`` handled at those times, each followed by
    a tick (one pass). Between messages the next pass comes ``timer_due``
    after the last (exact; ``STEP`` past a ``>`` timeout that is due but not
    yet past), or with ``rounded`` ``idle_wait`` after it (the driver's
    whole milliseconds; a 0 becomes ``STEP``, the next pass). ``after(t)``
    is called after each pass. Returns ``[(t, output)]``.
    """
    msgs = deque(sorted(inbound, key=lambda x: x[0]))
    out: list = []
    t = t0
    while t <= t1:
        while msgs and msgs[0][0] <= t:
            _, src, msg = msgs.popleft()
            out += [(t, o) for o in m.handle(src, msg, t)]
        out += [(t, o) for o in m.tick(t)]
        if after is not None:
            after(t)
        wait = m.idle_wait() if rounded else m.timer_due(t) - t
        nxt = t + max(wait, STEP)
        t = min(nxt, msgs[0][0]) if msgs else nxt
    return out


def sent(out: list, kind: type, dest=None) -> list[float]:
    """Times at which ``kind`` messages (to ``dest``) left."""
    return [
        t
        for t, o in out
        if isinstance(o, wire.Send) and isinstance(o.msg, kind) and (dest is None or o.dest == dest)
    ]


def on_time(got: list[float], expected: list[float]) -> bool:
    """Each time at its expected time or just after (``drive``'s ``STEP`` per ``>`` timeout or float
    rounding at a due time, accumulated along a chain of re-sends), never before."""
    assert len(got) == len(expected), (got, expected)
    for g, e in zip(got, expected, strict=True):
        assert e - EPS <= g <= e + 10 * STEP, (got, expected)
    return True


def hb(
    src: str, role: int, epoch: int = 1, seq: int = 0, leader: str = "a", digest: int = 0
) -> wire.Heartbeat:
    return wire.Heartbeat(epoch, seq, src, role, 0, leader, digest)


def joined_standby(**kw) -> NodeMachine:
    """Standby b following primary a (epoch 1), joined at t=0, its first heartbeat sent at t=0."""
    b = NodeMachine("b", ["a", "b"], MemoryJournal(), settings(**kw), "witness", ReferenceEngine, "standby")
    b.handle("a", hb("a", wire.ROLE_PRIMARY), 0.0)
    b.handle("a", wire.Fence(1, 0, "b"), 0.0)
    b.tick(0.0)
    assert b.joined and b.leader == "a" and b.hb_sent_at == 0.0
    return b


def primary(mode: str = "sync", **kw) -> NodeMachine:
    """Primary a of epoch 1 with standby b in its in-sync set (granted at t=0), heartbeats sent at t=0."""
    a = NodeMachine(
        "a", ["a", "b"], MemoryJournal(), settings(mode=mode, **kw), "witness", ReferenceEngine, "primary"
    )
    assert a.idle_wait() == 0.0  # never ticked: the driver's first pass comes at once
    assert a.timer_due(0.0) <= 0.0  # the start candidacy acts at once
    a.tick(0.0)
    a.handle("witness", wire.Vote(1, "a", True, "granted", ("b",)), 0.0)
    assert a.role == wire.ROLE_PRIMARY and a.isr == ["b"]
    assert a.idle_wait(0.0) == 0.0  # a message since the last tick: its pass's tick re-arms the timers
    assert a.tick(0.0) == []
    return a


def b_alive(a: NodeMachine, until: float, every: float = 0.005, start: float = 0.0) -> list:
    """b's heartbeats to a (a standby of a at a's seq 0, so not acking anything later)."""
    d = a.replica.digest
    n = int(round((until - start) / every))
    return [(start + i * every, "b", hb("b", wire.ROLE_STANDBY, digest=d)) for i in range(n + 1)]


def request(i: int) -> wire.Request:
    return wire.Request(9, i, cmd(i))


def test_heartbeat_is_the_only_timer_of_an_idle_pair():
    a = primary()
    b = joined_standby()
    for m in (a, b):
        assert m.timer_due(0.0013) == pytest.approx(0.005)
        assert m.idle_wait(0.0013) == 0.004  # 3.7 ms rounded up to whole ms
        assert m.tick(0.005 - EPS * 10) == []
        assert m.tick(0.005)  # the heartbeat
    # 100 ms with the peer's heartbeats arriving: the heartbeat keeps its beat, nothing else leaves
    a = primary()
    out = drive(a, 0.0, 0.1005, b_alive(a, 0.1, start=0.0021))
    assert on_time(sent(out, wire.Heartbeat, "b"), [0.005 * i for i in range(1, 21)])
    assert {type(o.msg) for _, o in out} == {wire.Heartbeat}


def test_idle_driver_wakes_about_twice_per_heartbeat_interval_not_every_ms():
    """Counted passes of a driven idle primary: ~2 per heartbeat interval instead of one per ms."""
    a = primary()
    passes = 0
    t, msgs = 0.0, deque(b_alive(a, 1.0, start=0.0021))
    while t < 1.0:
        while msgs and msgs[0][0] <= t:
            a.handle(msgs[0][1], msgs.popleft()[2], t)
        a.tick(t)
        passes += 1
        t = min(t + max(a.idle_wait(), STEP), msgs[0][0]) if msgs else t + max(a.idle_wait(), STEP)
    assert passes <= 2 * 200 + 5, passes  # vs ~1000 with the former fixed 1 ms poll


def test_leader_silence_runs_for_primary_just_after_the_timeout():
    b = joined_standby()
    b.handle("a", hb("a", wire.ROLE_PRIMARY), 0.012)  # heard last at 12 ms
    assert {type(o.msg) for o in b.tick(0.05)} == {wire.Heartbeat}  # to a and the witness
    # silence (> 40 ms after 12 ms) comes before the 55 ms heartbeat
    assert b.timer_due(0.0501) == pytest.approx(0.052)
    out = drive(joined_standby(), 0.0, 0.06, [(0.012, "a", hb("a", wire.ROLE_PRIMARY))])
    votes = sent(out, wire.VoteRequest)
    assert votes and 0.052 < votes[0] <= 0.052 + STEP
    late = drive(joined_standby(), 0.0, 0.06, rounded=True)
    assert 0.04 < sent(late, wire.VoteRequest)[0] < 0.04 + 0.001


@pytest.mark.parametrize("grace", [0.0, 0.0013])
def test_disconnect_grace(grace):
    b = joined_standby(suspect_timeout=grace)
    out = drive(b, 0.0, 0.02, [(0.0102, "a", wire.PeerDown("a"))])
    votes = sent(out, wire.VoteRequest)
    assert on_time(votes[:1], [0.0102 + grace])  # in the PeerDown's own pass when there is no grace
    out = drive(
        joined_standby(suspect_timeout=grace), 0.0, 0.02, [(0.0102, "a", wire.PeerDown("a"))], rounded=True
    )
    assert 0.0102 + grace <= sent(out, wire.VoteRequest)[0] < 0.0102 + grace + 0.001


def test_vote_retries_after_silence_and_soon_after_a_refusal():
    b = joined_standby()
    deny = wire.Vote(2, "b", False, "a primary is alive here")
    out = drive(b, 0.0, 0.03, [(0.001, "a", wire.PeerDown("a")), (0.0123, "witness", deny)])
    votes = sent(out, wire.VoteRequest)
    # asked at the drop, re-asked every vote_retry, then vote_retry_refused after the refusal
    assert on_time(votes[:5], [0.001, 0.006, 0.011, 0.0123 + 0.001, 0.0123 + 0.001 + 0.005])


def test_join_is_retried():
    b = NodeMachine("b", ["a", "b"], MemoryJournal(), settings(join_retry=0.0071), "witness", ReferenceEngine)
    beats = [(0.002 + 0.005 * i, "a", hb("a", wire.ROLE_PRIMARY)) for i in range(8)]  # no Fence ever
    joins = sent(drive(b, 0.0, 0.035, beats), wire.Join)
    assert on_time(joins, [0.002, 0.0091, 0.0162, 0.0233, 0.0304])


def test_refill_is_asked_again_after_a_timeout():
    b = joined_standby(heartbeat_timeout=0.0157)
    beats = [(0.001 + 0.005 * i, "a", hb("a", wire.ROLE_PRIMARY, seq=10)) for i in range(8)]  # a is ahead
    refills = sent(drive(b, 0.0, 0.036, beats), wire.Refill)
    assert on_time(refills, [0.001, 0.0167, 0.0324])


def test_isr_drops_a_standby_that_stops_acking_then_re_proposes_until_answered():
    a = primary()
    out = drive(a, 0.0, 0.06, [(0.0031, b"c", request(1)), *b_alive(a, 0.06)])
    assert sent(out, wire.Entries, "b") == [0.0031]
    updates = sent(out, wire.IsrUpdate)
    # no ack progress for heartbeat_timeout after the reply started waiting (>=), then every vote_retry
    assert on_time(updates[:3], [0.0431, 0.0481, 0.0531])


def test_isr_drops_a_silent_standby_just_after_its_heartbeat_timeout():
    a = primary()
    last_beat = [(0.0021, "b", hb("b", wire.ROLE_STANDBY, digest=a.replica.digest))]
    out = drive(a, 0.0, 0.05, [*last_beat, (0.0153, b"c", request(1))])
    updates = sent(out, wire.IsrUpdate)
    assert 0.0421 < updates[0] <= 0.0421 + STEP  # silent more than 40 ms, before 15.3 + 40 ms of ack silence


def test_switchover_drain_times_out_back_to_primary():
    a = primary(switchover_timeout=0.0123)
    roles: list = []
    inbound = [(0.001, b"c", request(1)), (0.002, b"op", wire.Switchover("b")), *b_alive(a, 0.03)]
    drive(a, 0.0, 0.03, inbound, after=lambda t: roles.append((t, a.role)))
    assert (0.002, wire.ROLE_DRAINING) in roles
    back = [t for t, r in roles if r == wire.ROLE_PRIMARY and t > 0.002]
    assert 0.0143 < back[0] <= 0.0143 + STEP  # strictly past drain start + switchover_timeout


def test_handover_is_re_sent_until_the_target_serves():
    a = primary(join_retry=0.0071)
    inbound = [
        (0.001, b"c", request(1)),
        (0.002, b"op", wire.Switchover("b")),
        (0.0035, "b", wire.Ack(1, 1, "b", 0)),  # b holds everything: hand over
        *[(0.004 + 0.005 * i, "b", hb("b", wire.ROLE_STANDBY)) for i in range(5)],  # b never serves
    ]
    out = drive(a, 0.0, 0.025, inbound)
    assert a.role == wire.ROLE_STANDBY
    assert on_time(sent(out, wire.Handover, "b"), [0.0035, 0.0106, 0.0177, 0.0248])


def test_held_requests_are_refused_after_a_long_candidacy():
    b = joined_standby(heartbeat_timeout=0.0157)
    out = drive(b, 0.0, 0.04, [(0.001, "a", wire.PeerDown("a")), (0.0021, b"c", request(1))])
    assert b.candidate_since == 0.001 and not b.held
    refused = [t for t, o in out if isinstance(o.msg, wire.Reply) and o.msg.status == wire.NOT_PRIMARY]
    assert len(refused) == 1 and 0.0021 + 0.0157 < refused[0] <= 0.0021 + 0.0157 + STEP


def test_queued_work_and_a_granted_candidacy_need_no_wait():
    a = primary(mode="async")
    a.tick(0.001)
    a.handle("witness", wire.Lease(1, a.lease_stamp, "witness"), 0.001)  # async: its lease first
    a.handle(b"c", request(1), 0.002)
    assert a.timer_due(0.002) <= 0.002 and a.idle_wait(0.002) == 0.0  # pending: the next batch at once
    a.tick(0.002)
    assert not a.pending and a.idle_wait() == 0.003
    # a standby that lost its leader starts its candidacy in the very next pass
    b = joined_standby()
    b.handle("a", wire.PeerDown("a"), 0.002)
    assert b.idle_wait(0.002) == 0.0


def test_a_diverged_standby_only_heartbeats():
    b = joined_standby()
    b._enter(DivergedRole(b, b.current_role))
    beats = sent(drive(b, 0.0, 0.1005), wire.Heartbeat, "a")
    assert on_time(beats, [0.005 * i for i in range(1, 21)])


def test_idle_wait_is_capped_and_in_whole_milliseconds():
    b = joined_standby(heartbeat_interval=0.5, heartbeat_timeout=2.0)
    assert b.idle_wait(0.0) == IDLE_CAP  # nothing due for 0.5 s: still wakes every 50 ms
    b = joined_standby()
    for now in (0.0, 0.00049, 0.0005, 0.0010001, 0.0049, 0.005):
        w = b.idle_wait(now)
        assert w * 1000.0 == int(w * 1000.0) and 0.005 - now <= w + EPS < 0.005 - now + 0.001 + EPS
