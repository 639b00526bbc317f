"""The simulator's node, link and witness faults: one handler per fault kind.

For: :class:`FaultHandler` (what every fault kind answers: when it heals,
how it starts, how it heals) and the handlers of the kinds in
``schedule.NODE_FAULTS`` and of ``isolate_primary_split``:

- ``crash`` / ``crash_mid_step`` / ``hang``: a live node crashes between
  steps, crashes in its next step (its outputs never leave, its journal keeps
  a torn prefix of what the step appended), or hangs (SIGSTOP) and resumes
  with a backlog; a crashed node restarts from its journal as the fault's
  ``restart_as``;
- ``isolate_primary`` / ``isolate_primary_all``: the primary cut off from
  its peers and the witness (and from the clients too);
- ``isolate_primary_split``: the primary cut off and the two standbys from
  each other, then the winner from the witness: two candidates, one epoch;
- ``cut_standby_witness``, ``partition_link``: one standby from the
  witness, any one link;
- ``switchover``, ``switchover_crash``: a planned switchover (and its old
  primary crashing right after its Handover, the target cut off);
- ``switchover_step``: a planned switchover whose old primary, target or
  witness crashes at one step of the handover (``schedule.SWITCHOVER_STEPS``),
  in the middle of that step (its outputs never leave), and restarts;
- ``witness_crash``: the witness crashes, restarts from its state file.

``run.Sim`` keeps them, and the disk faults' (``disk_faults``), in one table
keyed by kind. With overlapping faults the group may be mid-fail-over: a
handler that finds nothing to act on says why and the fault is skipped.
Not for: message faults (``network``), or checking (``check``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from ...protocol import wire
from .events import HEAL, RESUME
from .forge import OPERATOR, WITNESS
from .schedule import Fault

if TYPE_CHECKING:  # pragma: no cover
    from .participants import SimNode
    from .run import Sim

FaultState = dict[str, Any]  # one injected fault: its kind, and what its heal needs (node, links, ...)


class FaultHandler(ABC):
    """One fault kind. Handlers hold no state: a fault's state is its ``FaultState``."""

    kind = ""
    restarts = False  # a process restart: it takes longer than failure detection (Sim.RESTART_MIN)

    def heal_at(self, sim: Sim, f: Fault) -> float:
        """When the fault heals, if it starts now."""
        if self.restarts:
            return sim.now + max(f.duration, sim.RESTART_MIN)
        return sim.now + f.duration

    @abstractmethod
    def inject(self, sim: Sim, f: Fault, st: FaultState, primary: str, heal_at: float) -> str:
        """Start the fault; '' or why it was skipped. ``primary``: the primary now ('' if none)."""

    def heal(self, sim: Sim, st: FaultState) -> None:
        """The fault's heal event (the default: its cut links come back)."""
        if "links" in st:
            sim.net.uncut(st["links"])
            sim.log(f"heal {st['kind']}")


# --- node processes --------------------------------------------------------------------


class _ProcessFault(FaultHandler):
    """A fault that strikes one live node's process (crash, crash in its next step, hang)."""

    def inject(self, sim: Sim, f: Fault, st: FaultState, primary: str, heal_at: float) -> str:
        p = primary
        if not sim.schedule.overlap:  # one fault at a time: every node is up
            live = [p] + sim.group.standbys() if p else sim.group.standbys()
        else:  # any live node but the corrupted one (a hung one may be crashed, not hung twice)
            live = [
                n
                for n in sim.names
                if n != sim.corrupt
                and sim.nodes[n].up
                and not sim.nodes[n].crash_armed
                and sim.nodes[n].crash_after_handover is None
                and not (f.kind == "hang" and sim.nodes[n].hung)
            ]
        if not live:
            return "no live node"
        target = sim.rng.choice(live)
        st["node"], st["restart_as"] = target, f.restart_as
        self.strike(sim, sim.nodes[target], "primary" if target == p else "standby", f, heal_at)
        return ""

    @abstractmethod
    def strike(self, sim: Sim, node: SimNode, role: str, f: Fault, heal_at: float) -> None:
        """Do it to ``node`` (serving as ``role``): crash it, crash it mid-step, or hang it."""

    def heal(self, sim: Sim, st: FaultState) -> None:
        node = sim.nodes[st["node"]]
        if node.up and node.crash_armed:  # armed but it never stepped: crash it now
            sim.group.crash(node)
        if node.up:  # an overlapping fault restarted it already
            sim.log(f"{node.name} is up already")
        else:
            sim._start(node, st["restart_as"])
            sim.count_fault("restart")
            sim.log(f"restart {node.name} as {st['restart_as']} (journal last_seq={node.journal.last_seq})")


class Crash(_ProcessFault):
    kind = "crash"
    restarts = True

    def strike(self, sim: Sim, node: SimNode, role: str, f: Fault, heal_at: float) -> None:
        sim.log(f"crash {node.name} ({role}); restart as {f.restart_as} at {heal_at:.4f}")
        sim.group.crash(node)


class CrashMidStep(_ProcessFault):
    kind = "crash_mid_step"
    restarts = True

    def strike(self, sim: Sim, node: SimNode, role: str, f: Fault, heal_at: float) -> None:
        sim.log(f"crash {node.name} ({role}) in its next step; restart as {f.restart_as} at {heal_at:.4f}")
        node.crash_armed = True  # Participants.step crashes it, outputs lost, journal torn


class Hang(_ProcessFault):
    kind = "hang"

    def strike(self, sim: Sim, node: SimNode, role: str, f: Fault, heal_at: float) -> None:
        sim.log(f"hang {node.name} ({role}) until {heal_at:.4f}")
        node.hung = True  # deliveries queue up in its backlog, its ticks do nothing

    def heal(self, sim: Sim, st: FaultState) -> None:
        node = sim.nodes[st["node"]]
        sim.log(f"resume {node.name} with {len(node.backlog)} queued messages")
        sim.queue.push(sim.now, RESUME, node.name)


# --- links -------------------------------------------------------------------------------


class IsolatePrimary(FaultHandler):
    """The primary cut off from its peers and the witness (``_all``: and from the clients)."""

    kind = "isolate_primary"

    def inject(self, sim: Sim, f: Fault, st: FaultState, primary: str, heal_at: float) -> str:
        p = primary
        if not p:
            return "no primary"
        others = [n for n in sim.names if n != p] + [WITNESS]
        if self.kind == "isolate_primary_all":
            others += list(sim.clients)
        st["links"] = {(p, o) for o in others} | {(o, p) for o in others}
        sim.net.cut(st["links"])
        sim.log(f"{f.kind} {p} until {heal_at:.4f}")
        return ""


class IsolatePrimaryAll(IsolatePrimary):
    kind = "isolate_primary_all"


class IsolatePrimarySplit(FaultHandler):
    """Concurrent candidates: the primary cut off from everyone, and the two standbys from each other.

    Both lose it at once, neither hears the other's promotion, and both ask the
    witness for the same epoch: it must grant it once (``check``). Then the
    winner loses the witness too, while the loser, which never heard of the new
    epoch, still asks for it (a second heal event, before the real one).
    """

    kind = "isolate_primary_split"

    def inject(self, sim: Sim, f: Fault, st: FaultState, primary: str, heal_at: float) -> str:
        p = primary
        standbys = [n for n in sim.group.standbys() if sim.nodes[n].up and not sim.nodes[n].hung]
        if not p or len(standbys) < 2:
            return "no primary with two live standbys"
        others = [n for n in sim.names if n != p] + [WITNESS]
        st["links"] = {(p, o) for o in others} | {(o, p) for o in others}
        st["links"] |= {(standbys[0], standbys[1]), (standbys[1], standbys[0])}
        st["candidates"] = standbys
        sim.net.cut(st["links"])
        sim.log(f"isolate {p}, and {standbys[0]} from {standbys[1]}, until {heal_at:.4f}")
        sim.queue.push(min(sim.now + sim.SPLIT_SECOND_CUT, heal_at), HEAL, st)
        return ""

    def heal(self, sim: Sim, st: FaultState) -> None:
        if "candidates" not in st:  # the real heal
            super().heal(sim, st)
            return
        # Phase two (the heal comes later): cut the candidate that won from the witness.
        won = [n for n in st.pop("candidates") if sim.nodes[n].machine and sim.nodes[n].machine.is_primary]
        for w in won:
            cut = {(w, WITNESS), (WITNESS, w)} - st["links"]
            st["links"] |= cut
            sim.net.cut(cut)
            sim.log(f"cut {w}, the new primary, from the witness")


class CutStandbyWitness(FaultHandler):
    kind = "cut_standby_witness"

    def inject(self, sim: Sim, f: Fault, st: FaultState, primary: str, heal_at: float) -> str:
        s = sim.rng.choice(sim.group.standbys())
        st["links"] = {(s, WITNESS), (WITNESS, s)}
        sim.net.cut(st["links"])
        sim.log(f"cut standby {s} from the witness until {heal_at:.4f}")
        return ""


class PartitionLink(FaultHandler):
    kind = "partition_link"

    def inject(self, sim: Sim, f: Fault, st: FaultState, primary: str, heal_at: float) -> str:
        ends = sim.rng.sample(sim.names + [WITNESS], 2)
        st["links"] = {(ends[0], ends[1]), (ends[1], ends[0])}
        sim.net.cut(st["links"])
        sim.log(f"cut link {ends[0]}<->{ends[1]} until {heal_at:.4f}")
        return ""


# --- switchovers --------------------------------------------------------------------------


class Switchover(FaultHandler):
    """The operator asks the primary to hand over to a standby (nothing to heal)."""

    kind = "switchover"

    def inject(self, sim: Sim, f: Fault, st: FaultState, primary: str, heal_at: float) -> str:
        p = primary
        if not p:
            return "no primary"
        target = sim.rng.choice(sim.group.standbys())
        sim.switchovers.append((target, sim.nodes[p].machine.epoch))
        sim.log(f"switchover {p} -> {target}")
        sim.net.send(sim.now, OPERATOR, p, wire.encode(wire.Switchover(target)))
        return ""


class SwitchoverCrash(FaultHandler):
    """Three faults at once: a switchover, its old primary crashing right after the Handover
    leaves, and the target cut off from the witness and the old primary.

    The target takes the next epoch from the handover; the restarted old primary
    must not be granted the same epoch by a witness that has not heard of it.
    Two heal events: the old primary's restart (the target still cut off), then
    the cut's end.
    """

    kind = "switchover_crash"

    def heal_at(self, sim: Sim, f: Fault) -> float:
        return sim.now + sim.RESTART_MIN + max(f.duration, sim.RESTART_MIN)

    def inject(self, sim: Sim, f: Fault, st: FaultState, primary: str, heal_at: float) -> str:
        p = primary
        if not p or sim.nodes[p].crash_armed or sim.nodes[p].crash_after_handover is not None:
            return "no primary"
        target = sim.rng.choice(sim.group.standbys())
        sim.nodes[p].crash_after_handover = st
        st["node"], st["restart_as"] = p, f.restart_as
        sim.queue.push(sim.now + sim.RESTART_MIN, HEAL, st)
        # Cut when the Handover leaves (Participants.step); it still reaches the target.
        st["cut_at_handover"] = {(target, WITNESS), (WITNESS, target), (target, p)}
        sim.log(f"switchover {p} -> {target}; {p} crashes after its Handover, {target} cut off")
        sim.net.send(sim.now, OPERATOR, p, wire.encode(wire.Switchover(target)))
        return ""

    def heal(self, sim: Sim, st: FaultState) -> None:
        node = sim.nodes[st["node"]]
        if node.crash_after_handover is st:
            node.crash_after_handover = None  # a drain that never handed over: nothing to crash
        if not st.get("restarted"):
            st["restarted"] = True
            if not node.up:
                sim._start(node, st["restart_as"])
                sim.count_fault("restart")
                sim.log(f"restart {node.name} as {st['restart_as']} (the target still cut off)")
            return  # the cut ends at the fault's second heal
        sim.net.uncut(st.get("links", set()))
        sim.log("heal switchover_crash (the target reachable again)")


class SwitchoverStep(FaultHandler):
    """A switchover, and one of its parties crashing in the middle of one step of the handover
    (``Fault.step``, one of ``schedule.SWITCHOVER_STEPS``); the crashed party restarts at the
    heal (a node as ``restart_as``, the witness from its state file). A step that never
    comes before the heal (the handover took another path) crashes nothing."""

    kind = "switchover_step"
    restarts = True

    def inject(self, sim: Sim, f: Fault, st: FaultState, primary: str, heal_at: float) -> str:
        p = primary
        if not p:
            return "no primary"
        who, step = f.step.split(":")
        if who == "witness" and (not sim.witness_up or sim.witness_crash_when is not None):
            return "the witness is down"
        target = sim.rng.choice(sim.group.standbys())
        victim = {"old": p, "target": target, "witness": WITNESS}[who]
        if victim != WITNESS and sim.nodes[victim].crash_when is not None:
            return f"{victim} is to crash already"
        epoch = sim.nodes[p].machine.epoch
        when = _step_matcher(step, p, target, epoch)
        st["victim"], st["restart_as"] = victim, f.restart_as
        if victim == WITNESS:
            sim.witness_crash_when = when
            sim.witness_crash_saves = step.endswith("_saved") or step == "vote_request"
        else:
            sim.nodes[victim].crash_when = when
        sim.log(f"switchover {p} -> {target}; {victim} crashes at step {step}")
        sim.net.send(sim.now, OPERATOR, p, wire.encode(wire.Switchover(target)))
        return ""

    def heal(self, sim: Sim, st: FaultState) -> None:
        victim = st["victim"]
        if victim == WITNESS:
            if sim.witness_crash_when is not None:
                sim.witness_crash_when = None
                sim.log("switchover_step: the witness's step never came")
            elif not sim.witness_up:
                sim.group.start_witness(sim.witness_saved)
                sim.log("witness restarted")
            return
        node = sim.nodes[victim]
        if node.crash_when is not None:
            node.crash_when = None
            sim.log(f"switchover_step: {victim}'s step never came")
        if node.up and node.crash_armed:  # armed in a step that had not run yet: crash it now
            sim.group.crash(node)
        if not node.up:
            sim._start(node, st["restart_as"])
            sim.count_fault("restart")
            sim.log(f"restart {node.name} as {st['restart_as']} (journal last_seq={node.journal.last_seq})")


def _step_matcher(step: str, old: str, target: str, epoch: int):
    """The predicate ``(src, msg, outputs) -> bool`` that says a step of the handover is running:
    on the message it handles (``outputs`` None) or on what it sends (``msg`` None)."""

    def sends(outputs: list | None, kind: type, dest: str | None = None, newer: bool = False) -> bool:
        return bool(outputs) and any(
            isinstance(o, wire.Send)
            and isinstance(o.msg, kind)
            and (dest is None or o.dest == dest)
            and (not newer or o.msg.epoch > epoch)
            for o in outputs  # type: ignore[union-attr]
        )

    def when(src, msg, outputs) -> bool:
        t = type(msg)
        if step == "switchover":
            return t is wire.Switchover
        if step == "drain_ack":
            return t is wire.Ack and src == target and msg.epoch == epoch
        if step == "handover_sent":
            return sends(outputs, wire.Handover)
        if step == "new_epoch_heartbeat":
            return t is wire.Heartbeat and src == target and msg.epoch > epoch
        if step == "new_epoch_entries":
            return t is wire.Entries and src == target and msg.epoch > epoch
        if step == "draining_heartbeat":
            return t is wire.Heartbeat and src == old and msg.role == wire.ROLE_DRAINING
        if step == "handover":
            return t is wire.Handover
        if step == "vote":
            return t is wire.Vote and msg.granted and msg.epoch > epoch
        if step == "first_batch":
            return sends(outputs, wire.Entries, newer=True)
        if step in ("handed_over", "handed_over_saved"):
            return (
                t is wire.Heartbeat
                and src == old
                and msg.role == wire.ROLE_STANDBY
                and msg.leader == target
                and msg.epoch == epoch
            )
        if step == "vote_request":
            return t is wire.VoteRequest and src == target and msg.epoch > epoch
        raise ValueError(f"unknown switchover step {step!r}")

    return when


# --- the witness ----------------------------------------------------------------------------


class WitnessCrash(FaultHandler):
    kind = "witness_crash"

    def inject(self, sim: Sim, f: Fault, st: FaultState, primary: str, heal_at: float) -> str:
        if not sim.witness_up:
            return "the witness is down"
        sim.witness_up = False
        sim.log(f"witness crashed; restarts from its state file at {heal_at:.4f}")
        return ""

    def heal(self, sim: Sim, st: FaultState) -> None:
        sim.group.start_witness(sim.witness_saved)
        sim.log("witness restarted")


HANDLERS: tuple[FaultHandler, ...] = (
    Crash(),
    CrashMidStep(),
    Hang(),
    IsolatePrimary(),
    IsolatePrimaryAll(),
    IsolatePrimarySplit(),
    CutStandbyWitness(),
    PartitionLink(),
    Switchover(),
    SwitchoverCrash(),
    SwitchoverStep(),
    WitnessCrash(),
)
