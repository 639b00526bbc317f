"""The simulator's disk faults (``schedule.DISK_FAULTS``): a failed journal append, a damaged journal.

For: the two disk fault handlers, in ``run.Sim``'s table beside the others
(``faults``). ``disk_fail``: a live node's next journal append fails
(``MemoryJournal.inject``: nothing, half, or all of it written and the sync
failed); the node must then acknowledge nothing more (``journal_health``),
and at the heal the operator restarts it on a good disk (the crash loses
what was never synced). ``corrupt_restart``: a live node crashes and
restarts to find its journal damaged mid-way (``MemoryJournal.corrupt``); it
must neither serve nor vote until a primary has given its history back.
Drawn only while another node holds everything (the group is redundant), as
otherwise the damaged node could only wait, and the run would end
unconverged. Not for: checking (``check``: a damaged or failed node serving
as primary is a violation, besides lost and duplicates).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .events import HEAL
from .faults import FaultHandler, FaultState
from .schedule import Fault

if TYPE_CHECKING:  # pragma: no cover
    from .run import Sim


def _live_target(sim: Sim) -> list[str]:
    """The nodes a disk fault may strike: up, not about to crash, not the corrupted one."""
    return [n for n in sim.names if n != sim.corrupt and sim.nodes[n].up and not sim.nodes[n].crash_armed]


class DiskFail(FaultHandler):
    """A live node's next journal append fails; the operator restarts it on a good disk."""

    kind = "disk_fail"

    def inject(self, sim: Sim, f: Fault, st: FaultState, primary: str, heal_at: float) -> str:
        live = _live_target(sim)
        if not live:
            return "no live node"
        target = sim.rng.choice(live)
        st["node"], st["restart_as"] = target, f.restart_as
        role = "primary" if target == primary else "standby"
        how = sim.rng.choice(("enospc", "short", "fsync"))
        sim.nodes[target].journal.inject(how)
        sim.log(f"disk_fail {target} ({role}): its next append fails ({how}); restart at +{f.duration:.4f}")
        return ""

    def heal(self, sim: Sim, st: FaultState) -> None:
        node = sim.nodes[st["node"]]
        failed = node.machine.journal_error if node.machine is not None else ""
        if node.up:
            sim.group.crash(node)
        sim.log(f"restart {node.name} as {st['restart_as']} after its disk fault ({failed or 'not hit'})")
        sim._start(node, st["restart_as"])
        sim.count_fault("restart")


class CorruptRestart(FaultHandler):
    """A live node (the primary half the time) crashes and restarts with its journal damaged mid-way.

    Finding 6's shape: when the primary's journal is damaged, the standby that
    holds everything crashes too, and comes back a little after it (a second
    heal event).
    """

    kind = "corrupt_restart"
    restarts = True

    def inject(self, sim: Sim, f: Fault, st: FaultState, primary: str, heal_at: float) -> str:
        p = primary
        live = _live_target(sim)
        if not sim.redundant():
            return "no complete copy to repair from"  # (then a damaged node could only wait)
        if not live:
            return "no live node"
        target = sim.rng.choice(live)
        if p in live and sim.rng.random() < 0.5:
            target = p  # the primary half the time: its loss is the one the election must not make worse
        st["node"], st["restart_as"] = target, f.restart_as
        role = "primary" if target == p else "standby"
        isr = getattr(sim.witness, "isr", None) or ()
        partners = [n for n in live if n != target and n in isr] if target == p else []
        sim.log(f"crash {target} ({role}); it restarts with its journal damaged mid-way")
        sim.group.crash(sim.nodes[target])
        if partners:
            other = sim.rng.choice(partners)
            st["partner"] = other
            sim.log(f"crash {other} too; it restarts after {target}")
            sim.group.crash(sim.nodes[other])
        return ""

    def heal(self, sim: Sim, st: FaultState) -> None:
        node = sim.nodes[st["node"]]
        if st.get("restarted"):  # the second heal: the partner comes back
            partner = sim.nodes[st["partner"]]
            if not partner.up:
                sim.log(f"restart {partner.name} as standby")
                sim._start(partner, "standby")
                sim.count_fault("restart")
            return
        if node.up:
            # An overlapping fault restarted it already (undamaged). Its partner still waits for
            # the operator: it comes back as planned, or it would stay down for good (seed 4534).
            sim.log(f"{node.name} is up already")
            if "partner" in st:
                st["restarted"] = True
                sim.queue.push(sim.now + sim.RESTART_MIN, HEAL, st)
            return
        node.journal.corrupt(f"journal: damaged (simulated) on {node.name}")
        sim.log(f"restart {node.name} as {st['restart_as']} with its journal damaged")
        if "partner" in st:
            st["restarted"] = True
            sim.queue.push(sim.now + sim.RESTART_MIN, HEAL, st)
        sim._start(node, st["restart_as"])
        sim.count_fault("restart")


HANDLERS: tuple[FaultHandler, ...] = (DiskFail(), CorruptRestart())
