"""A seeded, in-process simulator that runs the production node logic under faults.

For: proving replicas never diverge. It runs the very ``NodeMachine``,
``WitnessMachine`` and ``ClientCore`` state machines the ZeroMQ driver runs,
with ``journal.MemoryJournal`` and a real engine, over a virtual network and
a virtual clock: one event queue ordered by (time, sequence number), no
wall clock, no sleeping, and one ``random.Random`` owned by the simulator
(the machines never see it). Every message goes through the wire codec, as
in production. Faults: messages dropped, duplicated, reordered and delayed;
links cut and healed (the primary isolated from its peers, or from everyone;
a standby cut off from the witness; any one link; the primary isolated and
two standbys from each other, so both run for one epoch); nodes crashed between
steps or in the middle of one (the step's outputs never leave and its
journal keeps a torn prefix of what it appended) and restarted from their
journals; hung nodes (SIGSTOP, then SIGCONT with a backlog); the witness
crashed and restarted empty; planned switchovers; a standby whose engine is
deliberately corrupted; disk faults (``sim_disk``: a failed journal append
or sync, a journal damaged mid-way on restart). Node faults come one at a time, each after the group
has its redundancy back (the failure model a primary + standby + witness
group is built for), or, in schedules with ``overlap``, each a little after
the previous one started, so that cascades happen (the new primary crashing
while it catches up or promotes, two nodes down at once, the witness lost in
the middle of a vote); message faults run all the time. ``sim_check`` then
verifies safety and liveness.

Not for: timing figures (virtual time says nothing about real latency), or
the ZeroMQ driver (see ``replication.testing.chaos`` for real processes).

Every run is a pure function of its :class:`Schedule`; a schedule is a pure
function of its seed (:func:`random_schedule`), so any failure replays with
``python -m replication.testing.sim_cli --seed S``.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..protocol import wire
from ..protocol.client_core import ClientCore, Done
from ..protocol.node.machine import NodeMachine
from ..protocol.settings import Settings
from ..protocol.witness import WitnessMachine
from .sim_check import RecordingJournal, Registry
from .sim_disk import DiskFaultsMixin
from .sim_forge import SimTrust
from .sim_schedule import (  # the schedule's names are the simulator's API too (tests, sim_cli)
    DISK_FAULTS,
    MESSAGE_FAULTS,
    NODE_FAULTS,
    Fault,
    Schedule,
    pack,
    random_commands,
    random_schedule,
)

__all__ = [
    "MESSAGE_FAULTS",
    "NODE_FAULTS",
    "OPERATOR",
    "WITNESS",
    "Fault",
    "Schedule",
    "Sim",
    "SimClient",
    "SimFailure",
    "SimNode",
    "pack",
    "random_commands",
    "random_schedule",
    "run_schedule",
]

WITNESS = "witness"
OPERATOR = "operator"
# Event kinds on the queue (defined with the schedule, which the fault mixins share).
from .sim_schedule import EVENT_KINDS  # noqa: E402

_DELIVER, _TICK, _SUBMIT, _CTICK, _FAULT, _HEAL, _RESUME, _FORGE = EVENT_KINDS


class SimFailure(AssertionError):
    """A schedule broke an invariant; the message carries the seed, the violations and the fault log."""

    def __init__(self, schedule: Schedule, violations: list[str], fault_log: list[str]) -> None:
        self.schedule = schedule
        self.violations = violations
        self.fault_log = fault_log
        lines = [
            f"simulation failed: seed={schedule.seed} (replay: python -m replication.testing.sim_cli --seed {schedule.seed})"
        ]
        lines += [f"  violation: {v}" for v in violations[:20]]
        lines.append(f"  schedule: {schedule.describe()}")
        lines += [f"  fault: {f}" for f in fault_log[-40:]]
        super().__init__("\n".join(lines))


# --- participants ---------------------------------------------------------------------


@dataclass
class SimNode:
    name: str
    journal: RecordingJournal
    machine: NodeMachine | None = None
    up: bool = True
    hung: bool = False
    crash_armed: bool = False
    # switchover_crash: crash once a step has sent its Handover (the fault's state, which says what to cut)
    crash_after_handover: dict | None = None
    backlog: list = field(default_factory=list)
    tick_gen: int = 0
    tick_at: float = float("inf")
    start_role: str = "standby"
    perturb_seq: int = 0


@dataclass
class SimClient:
    addr: bytes
    core: ClientCore
    commands: list[bytes]
    next_cmd: int = 0
    sent: dict[int, bytes] = field(default_factory=dict)  # request id -> command
    done: dict[int, wire.Reply] = field(default_factory=dict)  # request id -> final reply (OK or EXPIRED)
    ok_replies: list[wire.Reply] = field(default_factory=list)  # every OK reply received, late twins too


class Sim(DiskFaultsMixin):
    """One simulated group under one :class:`Schedule`.

    Parameters
    ----------
    schedule : Schedule
    commands : list of dict, optional
        Command-log dicts the clients send round-robin (default: a seeded
        random flow per client).
    engine_factory : callable, optional
        Overrides ``schedule.engine`` (``matching.Engine`` or ``matching.ReferenceEngine``).
    """

    TICK = 0.005  # periodic tick (= heartbeat interval); an inbound message adds a tick right after it
    CLIENT_TICK = 0.002
    WARMUP = 0.05
    SETTLE_BOUND = 10.0  # virtual seconds to regain redundancy before a fault counts as a liveness failure
    LIVENESS_BOUND = 30.0
    # A crashed node stays down at least this long (a real restart takes longer). Faster restarts used
    # to hit a liveness gap (the survivor kept hearing its restarted ex-primary, a leaderless standby,
    # and never ran: seed 47 with a 5 ms restart), closed by the 'leaderless' candidacy; seeds 1..600
    # pass with 5 ms. The minimum stays, so that every seed keeps its history.
    RESTART_MIN = 0.1
    # isolate_primary_split: when the candidate that won loses the witness (after the
    # candidates' detection, heartbeat_timeout, and their vote).
    SPLIT_SECOND_CUT = 0.08

    def __init__(
        self,
        schedule: Schedule,
        commands: list[dict] | None = None,
        engine_factory: Callable[[], Any] | None = None,
    ) -> None:
        import matching

        self.schedule = schedule
        self.rng = random.Random(schedule.seed * 2 + 1)
        if engine_factory is None:
            native = schedule.engine == "native" and matching.Engine is not None
            engine_factory = matching.Engine if native else matching.ReferenceEngine
        self.engine_factory = engine_factory
        self.settings = Settings(
            mode=schedule.mode,
            snapshot_every=schedule.snapshot_every,
            catchup_snapshot_lag=schedule.catchup_lag,
            journal_retain=schedule.journal_retain,
        )
        self.now = 0.0
        self._queue: list = []
        self._n = 0
        self.registry = Registry()
        self.names = schedule.nodes
        self.corrupt = self.names[-1] if schedule.corrupt else ""
        self.nodes: dict[str, SimNode] = {}
        for i, name in enumerate(self.names):
            node = SimNode(
                name,
                RecordingJournal(name, self.registry),
                start_role="primary" if i == 0 else "standby",
                perturb_seq=schedule.corrupt_seq if name == self.corrupt else 0,
            )
            self.nodes[name] = node
            self._start(node, node.start_role)
        self.witness: WitnessMachine | None = WitnessMachine(self.names, self.settings)
        self.witness_saved: dict | None = None  # the witness's state file
        self.witness_up = True
        self.clients: dict[bytes, SimClient] = {}
        for k in range(schedule.clients):
            cid = k + 1
            total = schedule.requests + schedule.tail_requests
            if commands:
                cmds = [pack(commands[(k + j * schedule.clients) % len(commands)]) for j in range(total)]
            else:
                cmds = [pack(c) for c in random_commands(self.rng, cid, total)]
            addr = f"client{cid}".encode()
            self.clients[addr] = SimClient(addr, ClientCore(cid, self.names, 1, retry_timeout=0.05), cmds)
        # Directed links that lose everything, counted: overlapping faults may cut one link twice.
        self.cut: Counter[tuple[str, str]] = Counter()
        self.drop, self.duplicate, self.reorder = schedule.drop, schedule.duplicate, schedule.reorder
        self.fault_log: list[str] = []
        self.faults_injected: dict[str, int] = {}
        self.primaries: dict[int, set[str]] = {}  # epoch -> nodes seen serving as primary of it
        self.grants: dict[int, set[str]] = {}  # epoch -> nodes the witness granted it to (sim_check)
        self.last_ack_at: dict[int, float] = {}  # epoch -> when an OK reply of it last left a node
        self.granted_at: dict[int, float] = {}  # epoch -> when the witness first granted it
        self.served_at: dict[int, float] = {}  # epoch -> when a node first served as its primary
        self.switchovers: list[tuple[str, int]] = []  # (target, epoch it was asked in): plain switchovers
        self.diverged: dict[str, int] = {}  # node -> seq at which it declared divergence
        self.corrupt_was_primary = False
        self.bad_primaries: set[str] = set()  # a damaged or failed journal never serves
        self.steps = 0
        self.submitting = False
        self.tail_submitting = False
        self.settle_failed = ""
        # Every delivery to a node or the witness passes trust.Policy; an outsider forges (sim_forge).
        self.trust = SimTrust(self.names, schedule.seed)
        self.trace: Any = None  # sim_golden.Trace: every frame sent, when a golden trace is recorded

    # -- queue ------------------------------------------------------------------------

    def _push(self, t: float, kind: int, a: Any = None, b: Any = None, c: Any = None) -> None:
        self._n += 1
        heapq.heappush(self._queue, (t, self._n, kind, a, b, c))

    def count_fault(self, kind: str, n: int = 1) -> None:
        self.faults_injected[kind] = self.faults_injected.get(kind, 0) + n

    def log(self, text: str) -> None:
        self.fault_log.append(f"t={self.now:.4f} {text}")

    # -- nodes ---------------------------------------------------------------------------

    def _start(self, node: SimNode, role: str) -> None:
        node.machine = NodeMachine(
            node.name,
            self.names,
            node.journal,
            self.settings,
            WITNESS,
            self.engine_factory,
            role,
            node.perturb_seq,
        )
        node.up, node.hung, node.crash_armed, node.backlog = True, False, False, []
        node.tick_at = float("inf")
        self._schedule_tick(node, self.now + self.rng.uniform(0, self.TICK))

    def _schedule_tick(self, node: SimNode, t: float) -> None:
        if t >= node.tick_at:
            return
        node.tick_gen += 1
        node.tick_at = t
        self._push(t, _TICK, node.name, node.tick_gen)

    def _step(self, node: SimNode, fn: Callable[[], list]) -> None:
        """Run one machine step and perform its outputs (or crash in the middle of it)."""
        before = node.journal.last_seq, node.journal.base_seq
        outputs = fn()
        self.steps += 1
        m = node.machine
        if m is not None and m.is_primary:
            self.primaries.setdefault(m.epoch, set()).add(node.name)
            self.served_at.setdefault(m.epoch, self.now)
            if node.name == self.corrupt:
                self.corrupt_was_primary = True
        elif m is not None and m.role == wire.ROLE_DIVERGED and node.name not in self.diverged:
            self.diverged[node.name] = m.diverged_at
            self.log(f"{node.name} declared divergence at seq {m.diverged_at}")
        if m is not None and m.is_primary and (m.damaged or m.journal_error):
            self.bad_primaries.add(
                f"{node.name} served as primary with journal {m.damaged or m.journal_error}"
            )
        if node.crash_armed:
            j = node.journal
            j.crash()  # a failed disk: what it did not sync goes with the process (else: nothing)
            appended = j.last_seq - before[0] if j.base_seq == before[1] else 0
            if appended > 0:
                keep = self.rng.randint(0, appended)
                j.truncate_after(before[0] + keep)
                self.log(
                    f"{node.name} crashed mid-step: torn journal keeps {keep}/{appended} new entries, "
                    f"{len(outputs)} outputs lost"
                )
            else:
                self.log(f"{node.name} crashed mid-step: {len(outputs)} outputs lost")
            self._crash(node)
            return
        self._emit(node.name, outputs)
        st = node.crash_after_handover
        if st is not None and any(
            isinstance(o, wire.Send) and isinstance(o.msg, wire.Handover) for o in outputs
        ):
            self.log(f"{node.name} crashed right after sending its Handover")
            self._crash(node)
            st["links"] = st.pop("cut_at_handover", set())
            self._cut(st["links"])

    def _crash(self, node: SimNode) -> None:
        node.journal.crash()  # (loses only what a failed disk never synced: appends are synced)
        node.up, node.machine, node.crash_armed, node.backlog = False, None, False, []
        node.crash_after_handover = None
        node.tick_gen += 1
        node.tick_at = float("inf")
        if self.rng.random() < 0.5:  # the peers' sockets notice the connection drop
            for dest in [n for n in self.names if n != node.name] + [WITNESS, *self.clients]:
                self._push(
                    self.now + self.rng.uniform(0.0005, 0.003),
                    _DELIVER,
                    node.name,
                    dest,
                    wire.PeerDown(node.name),
                )

    # -- network --------------------------------------------------------------------------

    def _emit(self, src: wire.Address, outputs: Iterable) -> None:
        trace = self.trace
        for o in outputs:
            if isinstance(o, wire.Send):
                self._note(o.msg)
                frame = wire.encode(o.msg)
                if trace is not None:
                    trace.frame(self.now, src, o.dest, frame)
                self._send(src, o.dest, frame)
            elif isinstance(o, wire.ReplyRun):  # means one Send per reply: delivered so, in order
                for r in o.replies():
                    self._note(r)
                    frame = wire.encode(r)
                    if trace is not None:
                        trace.frame(self.now, src, o.dest, frame)
                    self._send(src, o.dest, frame)
            elif trace is not None and isinstance(o, wire.Publish):
                trace.frame(self.now, src, o.topic.decode(), wire.encode(o.msg))
            # Publish: no subscriber in the simulation; Done is handled by the client loop.

    def _note(self, msg: wire.Message) -> None:
        """For the checker's lease rule: when each epoch last acknowledged, when each was granted."""
        t = type(msg)
        if t is wire.Reply and msg.status == wire.OK:
            self.last_ack_at[msg.epoch] = self.now
        elif t is wire.Vote and msg.granted:
            self.granted_at.setdefault(msg.epoch, self.now)

    def _send(self, src: wire.Address, dest: wire.Address, frame: bytes) -> None:
        rng = self.rng
        if (src, dest) in self.cut:
            return
        if self.drop and rng.random() < self.drop:
            self.count_fault("drop")
            return
        copies = 1
        if self.duplicate and rng.random() < self.duplicate:
            self.count_fault("duplicate")
            copies = 2
        for _ in range(copies):
            delay = rng.uniform(0.00002, 0.0002)
            if self.reorder and rng.random() < self.reorder:
                self.count_fault("reorder")
                delay += rng.uniform(0.0, 0.005)
            self._push(self.now + delay, _DELIVER, src, dest, frame)

    def _deliver(self, src: wire.Address, dest: wire.Address, frame: Any) -> None:
        if (src, dest) in self.cut:
            return
        # As the driver decodes: a client's bundle stays packed (a wire.RequestRun).
        msg = frame if isinstance(frame, wire.PeerDown) else wire.decode_packed(frame)
        if (dest in self.nodes or dest == WITNESS) and not isinstance(frame, wire.PeerDown):
            src = self.trust.admit(src, dest, msg)  # as the driver checks it (a PeerDown is its own)
            if src is None:
                return
        if dest in self.nodes:
            node = self.nodes[dest]
            if not node.up:
                return
            if node.hung:
                node.backlog.append((src, msg))
                return
            self._step(node, lambda: self._handle(node, src, msg))
            if node.up:
                self._schedule_tick(node, self.now + 0.00001)
        elif dest == WITNESS:
            if self.witness_up:
                outs = self.witness.handle(src, msg, self.now)
                self.witness_saved = self.witness.durable_state()  # as its driver saves it before sending
                for o in outs:  # every grant that leaves, for the checker's one-grant-per-epoch rule
                    if isinstance(o.msg, wire.Vote) and o.msg.granted:
                        self.grants.setdefault(o.msg.epoch, set()).add(o.msg.node)
                self._emit(WITNESS, outs)
        elif dest in self.clients:
            self._client_handle(self.clients[dest], src, msg)

    def _handle(self, node: SimNode, src: wire.Address, msg: wire.Message) -> list:
        """One inbound message to a node's machine, a client's bundle as the driver passes it."""
        if type(msg) is wire.Requests:
            return node.machine.handle_requests(src, msg.requests, self.now)
        return node.machine.handle(src, msg, self.now)

    # -- clients --------------------------------------------------------------------------

    def _client_handle(self, cl: SimClient, src: wire.Address, msg: wire.Message) -> None:
        if isinstance(msg, wire.Reply) and msg.status == wire.OK:
            cl.ok_replies.append(msg)
        self._client_out(cl, cl.core.handle(src, msg, self.now))

    def _client_out(self, cl: SimClient, outputs: list) -> None:
        sends = []
        for o in outputs:
            if isinstance(o, Done):
                cl.done[o.request_id] = o.reply
            else:
                sends.append(o)
        self._emit(cl.addr, sends)

    def _client_submit(self, cl: SimClient) -> None:
        limit = self.schedule.requests + (self.schedule.tail_requests if self.tail_submitting else 0)
        if cl.next_cmd >= limit or not (self.submitting or self.tail_submitting):
            return
        if not cl.core.session or cl.core.opening:
            # Each client first opens its session (faults may be under way): the open is re-sent
            # like any request, and must open exactly one session (sim_check checks the history).
            if not cl.core.opening:
                self._client_out(cl, cl.core.open(cl.core.client_id, self.now))  # a nonce unique per open
            self._push(self.now + 0.001, _SUBMIT, cl.addr)
            return
        if len(cl.core.pending) >= self.schedule.window:
            self._push(self.now + 0.001, _SUBMIT, cl.addr)
            return
        n = min(self.schedule.bundle, limit - cl.next_cmd, self.schedule.window - len(cl.core.pending))
        if n > 1:
            cmds = cl.commands[cl.next_cmd : cl.next_cmd + n]
            cl.next_cmd += n
            first = cl.core.submit_window(cmds, self.now)
            cl.sent.update(zip(range(first, first + n), cmds, strict=True))
            cid = cl.core.client_id
            self._send(cl.addr, cl.core.primary, wire.encode_request_window(cid, first, cmds))
            return
        cmd = cl.commands[cl.next_cmd]
        cl.next_cmd += 1
        rid, out = cl.core.submit(cmd, self.now)
        cl.sent[rid] = cmd
        self._client_out(cl, out)

    # -- faults ----------------------------------------------------------------------------

    def primary(self) -> str:
        """The node serving as primary now ('' if none or several)."""
        ps = [
            n
            for n, nd in self.nodes.items()
            if nd.machine is not None and nd.machine.role == wire.ROLE_PRIMARY
        ]
        return ps[0] if len(ps) == 1 else ""

    def redundant(self) -> bool:
        """Every node up and one primary followed by every healthy standby of its epoch."""
        p = self.primary()
        if not p or not self.witness_up:
            return False
        pm = self.nodes[p].machine
        for n, nd in self.nodes.items():
            if (
                n == p
                or n == self.corrupt
                and nd.machine is not None
                and nd.machine.role == wire.ROLE_DIVERGED
            ):
                continue
            m = nd.machine
            if (
                not nd.up
                or nd.hung
                or m is None
                or m.role != wire.ROLE_STANDBY
                or not m.joined
                or m.leader != p
                or m.epoch != pm.epoch
            ):
                return False
        # A healthy standby holds every entry (a diverged standby's earlier acks do not count, and a
        # primary that ran solo released replies no standby had yet).
        healthy = {n: nd.machine.replica.seq for n, nd in self.nodes.items() if n != p and n != self.corrupt}
        if healthy and max(healthy.values()) < pm.replica.seq:
            return False
        # ... and the witness knows it: it would let a healthy standby take over (not "ran solo", and in
        # the in-sync set when the witness keeps one).
        if getattr(self.witness, "solo", False):
            return False
        isr = getattr(self.witness, "isr", None)
        return not healthy or isr is None or self.schedule.mode != "sync" or any(n in isr for n in healthy)

    def _standbys(self) -> list[str]:
        p = self.primary()
        return [n for n in self.names if n != p and n != self.corrupt]

    def _cut(self, links: set[tuple[str, str]]) -> None:
        self.cut.update(links)

    def _uncut(self, links: set[tuple[str, str]]) -> None:
        self.cut.subtract(links)
        self.cut = +self.cut  # drop the links no fault cuts any more

    def _inject(self, f: Fault) -> float:
        """Start fault ``f``; return when it heals (its heal event is queued).

        With overlapping faults the group may be mid-fail-over: a fault that
        needs what is not there (a primary to isolate, a live node to crash,
        a witness to crash) is skipped, logged and counted as ``skipped``.
        """
        p = self.primary()
        rng = self.rng
        heal_at = self.now + f.duration
        if f.kind in ("crash", "crash_mid_step", "corrupt_restart"):
            # A process restart takes longer than failure detection (see RESTART_MIN).
            heal_at = self.now + max(f.duration, self.RESTART_MIN)
        st: dict[str, Any] = {"kind": f.kind}
        skip = ""
        if f.kind in ("crash", "crash_mid_step", "hang"):
            if not self.schedule.overlap:  # one fault at a time: every node is up
                live = [p] + self._standbys() if p else self._standbys()
            else:  # any live node but the corrupted one (a hung one may be crashed, not hung twice)
                live = [
                    n
                    for n in self.names
                    if n != self.corrupt
                    and self.nodes[n].up
                    and not self.nodes[n].crash_armed
                    and self.nodes[n].crash_after_handover is None
                    and not (f.kind == "hang" and self.nodes[n].hung)
                ]
            if not live:
                skip = "no live node"
            else:
                target = rng.choice(live)
                node = self.nodes[target]
                st["node"], st["restart_as"] = target, f.restart_as
                role = "primary" if target == p else "standby"
                if f.kind == "crash":
                    self.log(f"crash {target} ({role}); restart as {f.restart_as} at {heal_at:.4f}")
                    self._crash(node)
                elif f.kind == "crash_mid_step":
                    self.log(
                        f"crash {target} ({role}) in its next step; restart as {f.restart_as} at {heal_at:.4f}"
                    )
                    node.crash_armed = True
                else:
                    self.log(f"hang {target} ({role}) until {heal_at:.4f}")
                    node.hung = True
        elif f.kind in ("isolate_primary", "isolate_primary_all"):
            if not p:
                skip = "no primary"
            else:
                others = [n for n in self.names if n != p] + [WITNESS]
                if f.kind == "isolate_primary_all":
                    others += list(self.clients)
                st["links"] = {(p, o) for o in others} | {(o, p) for o in others}
                self._cut(st["links"])
                self.log(f"{f.kind} {p} until {heal_at:.4f}")
        elif f.kind == "isolate_primary_split":
            # Concurrent candidates: the primary cut off from everyone, and the two standbys from
            # each other, so both lose it at once, neither hears the other's promotion, and both
            # ask the witness for the same epoch: it must grant it once (sim_check).
            standbys = [n for n in self._standbys() if self.nodes[n].up and not self.nodes[n].hung]
            if not p or len(standbys) < 2:
                skip = "no primary with two live standbys"
            else:
                others = [n for n in self.names if n != p] + [WITNESS]
                st["links"] = {(p, o) for o in others} | {(o, p) for o in others}
                st["links"] |= {(standbys[0], standbys[1]), (standbys[1], standbys[0])}
                st["candidates"] = standbys
                self._cut(st["links"])
                self.log(f"isolate {p}, and {standbys[0]} from {standbys[1]}, until {heal_at:.4f}")
                # Then the winner loses the witness too, while the loser, which never heard of
                # the new epoch, still asks for it (see _heal).
                self._push(min(self.now + self.SPLIT_SECOND_CUT, heal_at), _HEAL, st)
        elif f.kind == "cut_standby_witness":
            s = rng.choice(self._standbys())
            st["links"] = {(s, WITNESS), (WITNESS, s)}
            self._cut(st["links"])
            self.log(f"cut standby {s} from the witness until {heal_at:.4f}")
        elif f.kind == "partition_link":
            ends = rng.sample(self.names + [WITNESS], 2)
            st["links"] = {(ends[0], ends[1]), (ends[1], ends[0])}
            self._cut(st["links"])
            self.log(f"cut link {ends[0]}<->{ends[1]} until {heal_at:.4f}")
        elif f.kind == "switchover":
            if not p:
                skip = "no primary"
            else:
                target = rng.choice(self._standbys())
                self.switchovers.append((target, self.nodes[p].machine.epoch))
                self.log(f"switchover {p} -> {target}")
                self._send(OPERATOR, p, wire.encode(wire.Switchover(target)))
        elif f.kind == "switchover_crash":
            # Three faults at once: a switchover, its old primary crashing right after the
            # Handover leaves, and the target cut off from the witness and the old primary.
            # The target takes the next epoch from the handover; the restarted old primary
            # must not be granted the same epoch by a witness that has not heard of it.
            if not p or self.nodes[p].crash_armed or self.nodes[p].crash_after_handover is not None:
                skip = "no primary"
            else:
                target = rng.choice(self._standbys())
                self.nodes[p].crash_after_handover = st
                st["node"], st["restart_as"] = p, f.restart_as
                # The old primary restarts while the target is still cut off (two _HEAL
                # events: the restart, then the cut's end).
                self._push(self.now + self.RESTART_MIN, _HEAL, st)
                heal_at = self.now + self.RESTART_MIN + max(f.duration, self.RESTART_MIN)
                # Cut when the Handover leaves (see _step); it still reaches the target.
                st["cut_at_handover"] = {(target, WITNESS), (WITNESS, target), (target, p)}
                self.log(f"switchover {p} -> {target}; {p} crashes after its Handover, {target} cut off")
                self._send(OPERATOR, p, wire.encode(wire.Switchover(target)))
        elif f.kind in DISK_FAULTS:
            skip = self._inject_disk(f, st, p)
        elif f.kind == "witness_crash":
            if not self.witness_up:
                skip = "the witness is down"
            else:
                self.witness_up = False
                self.log(f"witness crashed; restarts from its state file at {heal_at:.4f}")
        if skip:
            self.count_fault("skipped")
            self.log(f"{f.kind} skipped: {skip}")
            return self.now
        self.count_fault(f.kind)
        self._push(heal_at, _HEAL, st)
        return heal_at

    def _heal(self, st: dict[str, Any]) -> None:
        kind = st.get("kind")
        if kind == "isolate_primary_split" and "candidates" in st:
            # Phase two (the heal comes later): cut the candidate that won from the witness.
            won = [
                n for n in st.pop("candidates") if self.nodes[n].machine and self.nodes[n].machine.is_primary
            ]
            for w in won:
                cut = {(w, WITNESS), (WITNESS, w)} - st["links"]
                st["links"] |= cut
                self._cut(cut)
                self.log(f"cut {w}, the new primary, from the witness")
            return
        if kind in DISK_FAULTS:
            self._heal_disk(st)
        elif kind == "switchover_crash" and "node" in st:
            node = self.nodes[st["node"]]
            if node.crash_after_handover is st:
                node.crash_after_handover = None  # a drain that never handed over: nothing to crash
            if not st.get("restarted"):
                st["restarted"] = True
                if not node.up:
                    self._start(node, st["restart_as"])
                    self.count_fault("restart")
                    self.log(f"restart {node.name} as {st['restart_as']} (the target still cut off)")
                return  # the cut ends at the fault's second _HEAL
            self._uncut(st.get("links", set()))
            self.log("heal switchover_crash (the target reachable again)")
        elif kind in ("crash", "crash_mid_step"):
            node = self.nodes[st["node"]]
            if node.up and node.crash_armed:  # armed but it never stepped: crash it now
                self._crash(node)
            if node.up:  # an overlapping fault restarted it already
                self.log(f"{node.name} is up already")
            else:
                self._start(node, st["restart_as"])
                self.count_fault("restart")
                self.log(
                    f"restart {node.name} as {st['restart_as']} (journal last_seq={node.journal.last_seq})"
                )
        elif kind == "hang":
            node = self.nodes[st["node"]]
            self.log(f"resume {node.name} with {len(node.backlog)} queued messages")
            self._push(self.now, _RESUME, node.name)
        elif "links" in st:
            self._uncut(st["links"])
            self.log(f"heal {kind}")
        elif kind == "witness_crash":
            # It comes back with what its driver saved before each of its outputs.
            self.witness = WitnessMachine(self.names, self.settings, state=self.witness_saved)
            self.witness_up = True
            self.log("witness restarted")

    def _resume(self, node: SimNode) -> None:
        node.hung = False
        backlog, node.backlog = node.backlog, []
        for src, msg in backlog:
            if not node.up:
                break
            self._step(node, lambda s=src, m=msg: self._handle(node, s, m))
        if node.up:
            self._schedule_tick(node, self.now)

    # -- main loop --------------------------------------------------------------------------

    def _run_until(self, t_end: float, stop: Callable[[], bool] | None = None) -> bool:
        """Process events up to ``t_end``; return True as soon as ``stop()`` holds (checked per event)."""
        q = self._queue
        while q and q[0][0] <= t_end:
            t, _, kind, a, b, c = heapq.heappop(q)
            self.now = t
            if kind == _DELIVER:
                self._deliver(a, b, c)
            elif kind == _TICK:
                node = self.nodes[a]
                if b != node.tick_gen or not node.up:
                    if b == node.tick_gen:
                        node.tick_at = float("inf")
                    continue
                node.tick_at = float("inf")
                if not node.hung:
                    self._step(node, lambda n=node: n.machine.tick(self.now))
                if node.up:
                    self._schedule_tick(node, self.now + self.TICK)
            elif kind == _SUBMIT:
                self._client_submit(self.clients[a])
            elif kind == _CTICK:
                cl = self.clients[a]
                self._client_out(cl, cl.core.tick(self.now))
                self._push(self.now + self.CLIENT_TICK, _CTICK, a)
            elif kind == _HEAL:
                self._heal(a)
            elif kind == _RESUME:
                self._resume(self.nodes[a])
            elif kind == _FORGE:
                self._forge()
            if stop is not None and stop():
                return True
        self.now = max(self.now, t_end)
        return stop() if stop is not None else False

    def _forge(self) -> None:
        """The outsider sends one forged message, built from the group's newest epoch, straight in."""
        machines = [nd.machine for nd in self.nodes.values() if nd.machine is not None]
        if not machines:
            return  # every node is down: nobody to forge to
        epoch = max(m.epoch for m in machines)
        seq = max(m.replica.seq for m in machines)
        src, dest, msg = self.trust.forgery(epoch, seq)
        self.count_fault("forge")
        self._deliver(src, dest, wire.encode(msg))

    def _schedule_submits(self, start: float, span: float, count: int) -> None:
        for cl in self.clients.values():
            for _ in range(count):
                self._push(start + self.rng.uniform(0, span), _SUBMIT, cl.addr)

    def run(self) -> Sim:
        """Warm up, inject the faults (one at a time, or overlapping), heal, then wait for convergence."""
        s = self.schedule
        for cl in self.clients.values():
            self._push(self.rng.uniform(0, self.CLIENT_TICK), _CTICK, cl.addr)
        ready = self._run_until(self.now + self.SETTLE_BOUND, self._warm)
        if not ready:
            self.settle_failed = "the group never formed (no primary with joined standbys)"
            return self
        self.submitting = True
        span = max(0.05, sum(f.gap + f.duration for f in s.faults))
        self._schedule_submits(self.now, span, s.requests)
        for _ in range(s.forge):  # the outsider's own random stream: the other draws stay as they were
            self._push(self.now + self.trust.rng.uniform(0, span), _FORGE)
        if s.overlap:
            last_heal = self.now
            for f in s.faults:
                self._run_until(self.now + f.gap)
                last_heal = max(last_heal, self._inject(f))
            self._run_until(last_heal)  # every heal event processed
        for f in () if s.overlap else s.faults:
            if not self._run_until(self.now + self.SETTLE_BOUND, self.redundant):
                self.settle_failed = f"redundancy not restored within {self.SETTLE_BOUND}s before {f.kind}"
                return self
            self._run_until(self.now + f.gap)
            if not self.redundant():  # something moved during the gap (e.g. a late switchover): wait again
                if not self._run_until(self.now + self.SETTLE_BOUND, self.redundant):
                    self.settle_failed = (
                        f"redundancy not restored within {self.SETTLE_BOUND}s before {f.kind}"
                    )
                    return self
            heal_at = self._inject(f)
            self._run_until(heal_at)  # the heal event itself is processed here
        self._run_until(self.now + 0.001)
        self.drop = self.duplicate = self.reorder = 0.0  # the network heals too
        self.tail_submitting = True
        self._schedule_submits(self.now, 0.02, s.tail_requests)
        self._run_until(self.now + self.LIVENESS_BOUND, self.converged)
        return self

    def _warm(self) -> bool:
        if not self.redundant():
            return False
        if self.corrupt:  # the corrupted standby must reach its bad seq before faults start
            m = self.nodes[self.corrupt].machine
            if m.role != wire.ROLE_DIVERGED:
                if (
                    self.nodes[self.names[0]].machine.replica.seq < self.schedule.corrupt_seq
                    and not self.submitting
                ):
                    self.submitting = True
                    self._schedule_submits(self.now, 0.01, self.schedule.corrupt_seq)
                return False
        return True

    def converged(self) -> bool:
        """Liveness: every request answered, one primary, every healthy standby equal to it."""
        for cl in self.clients.values():
            if cl.core.pending or cl.next_cmd < min(len(cl.commands), self._quota()):
                return False
        if not self.redundant():
            return False
        pm = self.nodes[self.primary()].machine
        for nd in self.nodes.values():
            m = nd.machine
            if m.role == wire.ROLE_STANDBY and (
                m.replica.seq != pm.replica.seq or m.replica.digest != pm.replica.digest
            ):
                return False
        return True

    def _quota(self) -> int:
        s = self.schedule
        return s.requests + (s.tail_requests if self.tail_submitting else 0)


def run_schedule(schedule: Schedule, commands: list[dict] | None = None, check: bool = True) -> Any:
    """Run one schedule and check it; return the ``sim_check.Report`` (``SimFailure`` if it broke a rule)."""
    from .sim_check import check_sim

    sim = Sim(schedule, commands).run()
    report = check_sim(sim)
    if check and report.violations:
        raise SimFailure(schedule, report.violations, sim.fault_log)
    return report
