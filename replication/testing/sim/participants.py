"""The simulated group's participants: the nodes, the witness and the clients, and what a delivery does.

For: :class:`SimNode` and :class:`SimClient` (a production machine and the
simulator's bookkeeping around it), and :class:`Participants`, which runs
them: a node's start (and restart from its journal), its periodic tick, one
step of its machine (outputs sent, or lost with a torn journal when the node
crashes in the middle of the step), its crash, its resumption after a hang;
a frame delivered to a node, the witness or a client (decoded as the driver
decodes it, and passed through the receiver's ``trust.Policy``); a client's
submits. After every step a machine runs (a node's step, each message the
witness handles, each call into a client core) the simulator calls the
machine's ``invariants()`` (never in production): a broken one is recorded
for the checker, the run goes on. Also here: the group's shape as the fault
handlers and the run loop ask for it (``primary``, ``redundant``).

Not for: the network's losses (``network``), fault kinds (``faults``,
``disk_faults``) or the order of events (``run``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...protocol import wire
from ...protocol.client_core import Done
from ...protocol.node.machine import NodeMachine
from ...protocol.session import SessionFenced
from ...protocol.witness import WitnessMachine
from . import sessions
from .check import RecordingJournal
from .clients import SimClient
from .events import DELIVER, SUBMIT, TICK
from .forge import WITNESS
from .timekeeping import node_clock

if TYPE_CHECKING:  # pragma: no cover
    from .run import Sim

MAX_INVARIANT_REPORTS = 20  # a broken invariant may fire at every step: the first ones tell


@dataclass
class SimNode:
    """One node: its journal (which outlives crashes), its machine while up, and the faults' marks on it."""

    name: str
    journal: RecordingJournal
    machine: NodeMachine | None = None
    up: bool = True
    hung: bool = False
    crash_armed: bool = False
    # switchover_crash: crash once a step has sent its Handover (the fault's state, which says what to cut)
    crash_after_handover: dict | None = None
    # switchover_step: crash in the step that handles a matching message (``crash_when(src, msg,
    # None)``) or whose outputs match (``crash_when(None, None, outputs)``); see faults.SwitchoverStep
    crash_when: Callable[[Any, Any, list | None], bool] | None = None
    backlog: list = field(default_factory=list)
    tick_gen: int = 0
    tick_at: float = float("inf")
    start_role: str = "standby"
    perturb_seq: int = 0


class Participants:
    """Runs the machines of one ``run.Sim`` (whose state it reads and writes: nodes, witness, clients)."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim

    def check_invariants(self, who: str, machine: Any) -> None:
        """Call ``machine.invariants()``; a broken one (AssertionError) is recorded for the checker."""
        try:
            machine.invariants()
        except AssertionError as exc:
            sim = self.sim
            if len(sim.invariant_failures) < MAX_INVARIANT_REPORTS:
                sim.invariant_failures.append(f"{who} at t={sim.now:.4f}: {exc}")

    # -- nodes ---------------------------------------------------------------------------

    def start(self, node: SimNode, role: str) -> None:
        """A new machine on the node's journal (a start, or a restart after a crash)."""
        sim = self.sim
        node.machine = NodeMachine(
            node.name,
            sim.names,
            node.journal,
            sim.settings,
            WITNESS,
            sim.engine_factory,
            role,
            node.perturb_seq,
            clock=node_clock(sim.schedule.seed, node.name),
        )
        node.up, node.hung, node.crash_armed, node.backlog = True, False, False, []
        node.tick_at = float("inf")
        self.schedule_tick(node, sim.now + sim.rng.uniform(0, sim.TICK))

    def schedule_tick(self, node: SimNode, t: float) -> None:
        """Tick the node at ``t`` unless it ticks sooner already (a later tick event goes stale)."""
        if t >= node.tick_at:
            return
        node.tick_gen += 1
        node.tick_at = t
        self.sim.queue.push(t, TICK, node.name, node.tick_gen)

    def on_tick(self, name: str, gen: int) -> bool:
        """A node's periodic tick (a hung node skips it); False if stale or the node is down."""
        sim = self.sim
        node = sim.nodes[name]
        if gen != node.tick_gen or not node.up:
            if gen == node.tick_gen:
                node.tick_at = float("inf")
            return False
        node.tick_at = float("inf")
        if not node.hung:
            self.step(node, lambda: node.machine.tick(sim.now))
        if node.up:
            self.schedule_tick(node, sim.now + sim.TICK)
        return True

    def step(self, node: SimNode, fn: Callable[[], list]) -> None:
        """Run one machine step and perform its outputs (or crash in the middle of it)."""
        sim = self.sim
        before = node.journal.last_seq, node.journal.base_seq
        outputs = fn()
        sim.steps += 1
        if node.crash_when is not None and node.crash_when(None, None, outputs):
            node.crash_when, node.crash_armed = None, True  # crashes below: its outputs never leave
        m = node.machine
        if m is not None and m.is_primary:
            sim.primaries.setdefault(m.epoch, set()).add(node.name)
            sim.served_at.setdefault(m.epoch, sim.now)
            if node.name == sim.corrupt:
                sim.corrupt_was_primary = True
        elif m is not None and m.role == wire.ROLE_DIVERGED and node.name not in sim.diverged:
            sim.diverged[node.name] = m.diverged_at
            sim.log(f"{node.name} declared divergence at seq {m.diverged_at}")
        if m is not None and m.is_primary and (m.damaged or m.journal_error):
            sim.bad_primaries.add(
                f"{node.name} served as primary with journal {m.damaged or m.journal_error}"
            )
        if node.crash_armed:
            j = node.journal
            j.crash()  # a failed disk: what it did not sync goes with the process (else: nothing)
            appended = j.last_seq - before[0] if j.base_seq == before[1] else 0
            if appended > 0:
                keep = sim.rng.randint(0, appended)
                j.truncate_after(before[0] + keep)
                sim.log(
                    f"{node.name} crashed mid-step: torn journal keeps {keep}/{appended} new entries, "
                    f"{len(outputs)} outputs lost"
                )
            else:
                sim.log(f"{node.name} crashed mid-step: {len(outputs)} outputs lost")
            self.crash(node)
            return
        if m is not None:
            self.check_invariants(f"node {node.name}", m)
        sim.emit(node.name, outputs)
        st = node.crash_after_handover
        if st is not None and any(
            isinstance(o, wire.Send) and isinstance(o.msg, wire.Handover) for o in outputs
        ):
            sim.log(f"{node.name} crashed right after sending its Handover")
            self.crash(node)
            st["links"] = st.pop("cut_at_handover", set())
            sim.net.cut(st["links"])

    def crash(self, node: SimNode) -> None:
        """The node's process dies: its machine is gone, its journal stays; peers may notice at once."""
        sim = self.sim
        node.journal.crash()  # (loses only what a failed disk never synced: appends are synced)
        node.up, node.machine, node.crash_armed, node.backlog = False, None, False, []
        node.crash_after_handover = None
        node.tick_gen += 1
        node.tick_at = float("inf")
        if sim.rng.random() < 0.5:  # the peers' sockets notice the connection drop
            for dest in [n for n in sim.names if n != node.name] + [WITNESS, *sim.clients]:
                sim.queue.push(
                    sim.now + sim.rng.uniform(0.0005, 0.003),
                    DELIVER,
                    node.name,
                    dest,
                    wire.PeerDown(node.name),
                )

    def resume(self, name: str) -> None:
        """A hung node runs again: its backlog first, in arrival order, then a tick."""
        node = self.sim.nodes[name]
        node.hung = False
        backlog, node.backlog = node.backlog, []
        for src, msg in backlog:
            if not node.up:
                break
            self.step(node, lambda s=src, m=msg: self.handle(node, s, m))
        if node.up:
            self.schedule_tick(node, self.sim.now)

    def handle(self, node: SimNode, src: wire.Address, msg: wire.Message) -> list:
        """One inbound message to a node's machine, a client's bundle as the driver passes it
        (a restricted client's requests screened first: ``forge.SimTrust.screen``)."""
        refused: list = []
        if type(msg) in (wire.Request, wire.Requests, wire.Query):
            allowed, refused = self.sim.trust.screen(src, node.name, msg, node.machine)  # type: ignore[union-attr]
            if allowed is None:
                return refused
            msg = allowed
        if type(msg) is wire.Requests:
            return refused + node.machine.handle_requests(src, msg.requests, self.sim.now)
        return refused + node.machine.handle(src, msg, self.sim.now)

    # -- deliveries ----------------------------------------------------------------------

    def deliver(self, src: wire.Address, dest: wire.Address, frame: Any) -> None:
        """A frame arrives at ``dest`` (unless its link was cut while it was in flight)."""
        sim = self.sim
        if sim.net.is_cut(src, dest):
            return
        # As the driver decodes: a client's bundle stays packed (a wire.RequestRun).
        msg = frame if isinstance(frame, wire.PeerDown) else wire.decode_packed(frame)
        if (dest in sim.nodes or dest == WITNESS) and not isinstance(frame, wire.PeerDown):
            src = sim.trust.admit(src, dest, msg)  # as the driver checks it (a PeerDown is its own)
            if src is None:
                return
        if dest in sim.nodes:
            node = sim.nodes[dest]
            if not node.up:
                return
            if node.hung:
                node.backlog.append((src, msg))
                return
            if node.crash_when is not None and node.crash_when(src, msg, None):
                node.crash_when, node.crash_armed = None, True  # crashes in this step
            self.step(node, lambda: self.handle(node, src, msg))
            if node.up:
                self.schedule_tick(node, sim.now + 0.00001)
        elif dest == WITNESS:
            when = sim.witness_crash_when
            if sim.witness_up and when is not None and when(src, msg, None):
                sim.witness_crash_when = None
                self.witness_crash_in_step(src, msg, saved=sim.witness_crash_saves)
            elif sim.witness_up:
                self.witness_handle(src, msg)
        elif dest in sim.clients:
            self.client_handle(sim.clients[dest], src, msg)

    def witness_handle(self, src: wire.Address, msg: wire.Message) -> None:
        sim = self.sim
        outs = sim.witness.handle(src, msg, sim.now)
        sim.witness_saved = sim.witness.durable_state()  # as its driver saves it before sending
        self.check_invariants("witness", sim.witness)
        for o in outs:  # every grant that leaves, for the checker's one-grant-per-epoch rule
            if isinstance(o.msg, wire.Vote) and o.msg.granted:
                sim.grants.setdefault(o.msg.epoch, set()).add(o.msg.node)
        sim.emit(WITNESS, outs)

    def witness_crash_in_step(self, src: wire.Address, msg: wire.Message, saved: bool) -> None:
        """The witness crashes handling ``msg``: before its driver saved the state (nothing of the
        step is left), or after (``saved``: the state file has it, no output left)."""
        sim = self.sim
        if saved:
            sim.witness.handle(src, msg, sim.now)
            sim.witness_saved = sim.witness.durable_state()
        sim.witness_up = False
        sim.log(f"witness crashed handling {type(msg).__name__} ({'after' if saved else 'before'} its save)")

    def start_witness(self, state: dict | None = None) -> None:
        """The witness starts (empty), or comes back with what its driver saved before each output."""
        sim = self.sim
        sim.witness = WitnessMachine(sim.names, sim.settings, state=state)
        sim.witness_up = True

    # -- clients --------------------------------------------------------------------------

    def client_handle(self, cl: SimClient, src: wire.Address, msg: wire.Message) -> None:
        if isinstance(msg, wire.Reply) and msg.status == wire.OK:
            cl.ok_replies.append(msg)
        self.client_out(cl, cl.core.handle(src, msg, self.sim.now))

    def client_tick(self, cl: SimClient) -> None:
        self.client_out(cl, cl.core.tick(self.sim.now))

    def client_out(self, cl: SimClient, outputs: list) -> None:
        """A client core's outputs, after one call into it: answers kept, the rest sent (and, with
        reports on, what its feed holds taken, as the application reads it)."""
        self.check_invariants(f"client {cl.core.client_id}", cl.core)
        if cl.core.wants_reports:
            self.check_invariants(
                f"report feed of client {cl.core.client_id}", sessions.FeedCheck(self.sim, cl)
            )
            outputs = outputs + sessions.take_reports(cl, self.sim.now)
        sends = []
        for o in outputs:
            if isinstance(o, Done):
                cl.done[o.request_id] = o.reply
            else:
                sends.append(o)
        self.sim.emit(cl.addr, sends)

    def client_submit(self, cl: SimClient) -> None:
        """The client's next request (or bundle), once its session is open and its window has room."""
        sim = self.sim
        s = sim.schedule
        now = sim.now
        while cl.successor:  # a restart replaced it: its submits are its successor's
            cl = sim.clients[cl.successor]
        limit = min(len(cl.commands), s.requests + (s.tail_requests if sim.tail_submitting else 0))
        if cl.next_cmd >= limit or not (sim.submitting or sim.tail_submitting):
            return
        if now < cl.start_at:  # a restarted client: not running yet
            sim.queue.push(cl.start_at, SUBMIT, cl.addr)
            return
        if not cl.core.session or cl.core.opening:
            # Each client first opens its session (faults may be under way): the open is re-sent
            # like any request, and must open exactly one session (check checks the history).
            if not cl.core.opening:
                self.client_out(cl, cl.core.open(cl.nonce or cl.core.client_id, now))  # unique per open
            sim.queue.push(now + 0.001, SUBMIT, cl.addr)
            return
        if cl.core.fenced:
            # A newer session holds the id (a twin's, or a restart's): the core refuses to send.
            try:
                cl.core.submit(cl.commands[cl.next_cmd], now)
            except SessionFenced:
                cl.fenced_submits += 1
                return
            sim.invariant_failures.append(f"client {cl.core.client_id}: a fenced core took a submit")
            return
        if len(cl.core.pending) >= s.window:
            sim.queue.push(now + 0.001, SUBMIT, cl.addr)
            return
        n = min(s.bundle, limit - cl.next_cmd, s.window - len(cl.core.pending))
        if n > 1:
            cmds = cl.commands[cl.next_cmd : cl.next_cmd + n]
            cl.next_cmd += n
            first = cl.core.submit_window(cmds, now)
            self.check_invariants(f"client {cl.core.client_id}", cl.core)
            cl.sent.update(zip(range(first, first + n), cmds, strict=True))
            cid = cl.core.client_id
            sim.net.send(now, cl.addr, cl.core.primary, wire.encode_request_window(cid, first, cmds))
            return
        cmd = cl.commands[cl.next_cmd]
        cl.next_cmd += 1
        rid, out = cl.core.submit(cmd, now)
        cl.sent[rid] = cmd
        self.client_out(cl, out)

    # -- the group's shape ----------------------------------------------------------------

    def primary(self) -> str:
        """The node serving as primary now ('' if none or several)."""
        ps = [
            n
            for n, nd in self.sim.nodes.items()
            if nd.machine is not None and nd.machine.role == wire.ROLE_PRIMARY
        ]
        return ps[0] if len(ps) == 1 else ""

    def standbys(self) -> list[str]:
        """Every node but the primary and the corrupted one (whatever their state)."""
        sim = self.sim
        p = self.primary()
        return [n for n in sim.names if n != p and n != sim.corrupt]

    def redundant(self) -> bool:
        """Every node up and one primary followed by every healthy standby of its epoch."""
        sim = self.sim
        p = self.primary()
        if not p or not sim.witness_up:
            return False
        pm = sim.nodes[p].machine
        for n, nd in sim.nodes.items():
            if (
                n == p
                or n == sim.corrupt
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
        healthy = {n: nd.machine.replica.seq for n, nd in sim.nodes.items() if n != p and n != sim.corrupt}
        if healthy and max(healthy.values()) < pm.replica.seq:
            return False
        # ... and the witness knows it: it would let a healthy standby take over (not "ran solo", and in
        # the in-sync set when the witness keeps one).
        if getattr(sim.witness, "solo", False):
            return False
        isr = getattr(sim.witness, "isr", None)
        return not healthy or isr is None or sim.schedule.mode != "sync" or any(n in isr for n in healthy)
