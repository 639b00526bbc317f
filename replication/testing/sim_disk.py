"""The simulator's disk faults (``sim_schedule.DISK_FAULTS``): a failed journal append, a damaged journal.

For: ``Sim._inject`` and ``Sim._heal`` of the two disk fault kinds, as a mixin
over ``sim.Sim``'s state. ``disk_fail``: a live node's next journal append
fails (``MemoryJournal.inject``: nothing, half, or all of it written and the
sync failed); the node must then acknowledge nothing more
(``journal_health``), and at the heal the operator restarts it on a good disk
(the crash loses what was never synced). ``corrupt_restart``: a live node
crashes and restarts to find its journal damaged mid-way
(``MemoryJournal.corrupt``); it must neither serve nor vote until a primary
has given its history back. Drawn only while another node holds everything
(the group is redundant), as otherwise the damaged node could only wait, and
the run would end unconverged. Not for: checking (``sim_check``: a damaged or
failed node serving as primary is a violation, besides lost and duplicates).
"""

from __future__ import annotations

from typing import Any

from .sim_schedule import HEAL_EVENT, Fault


class DiskFaultsMixin:
    """See the module docstring; ``self`` is a ``sim.Sim``."""

    def _inject_disk(self, f: Fault, st: dict[str, Any], p: str) -> str:
        """Start a disk fault on a live node; '' or why it was skipped (see ``DISK_FAULTS``)."""
        live = [
            n for n in self.names if n != self.corrupt and self.nodes[n].up and not self.nodes[n].crash_armed
        ]
        if f.kind == "corrupt_restart" and not self.redundant():
            return "no complete copy to repair from"  # (then a damaged node could only wait)
        if not live:
            return "no live node"
        target = self.rng.choice(live)
        if f.kind == "corrupt_restart" and p in live and self.rng.random() < 0.5:
            target = p  # the primary half the time: its loss is the one the election must not make worse
        node = self.nodes[target]
        st["node"], st["restart_as"] = target, f.restart_as
        role = "primary" if target == p else "standby"
        if f.kind == "disk_fail":
            how = self.rng.choice(("enospc", "short", "fsync"))
            node.journal.inject(how)
            self.log(
                f"disk_fail {target} ({role}): its next append fails ({how}); restart at +{f.duration:.4f}"
            )
        else:
            # Finding 6's shape: the primary's journal is damaged and it restarts while the standby
            # that holds everything is down too; that standby comes back a little later.
            isr = getattr(self.witness, "isr", None) or ()
            partners = [n for n in live if n != target and n in isr] if target == p else []
            self.log(f"crash {target} ({role}); it restarts with its journal damaged mid-way")
            self._crash(node)
            if partners:
                other = self.rng.choice(partners)
                st["partner"] = other
                self.log(f"crash {other} too; it restarts after {target}")
                self._crash(self.nodes[other])
        return ""

    def _heal_disk(self, st: dict[str, Any]) -> None:
        """The operator restarts the node on a good disk (a damaged journal stays damaged)."""
        node = self.nodes[st["node"]]
        if st["kind"] == "disk_fail":
            failed = node.machine.journal_error if node.machine is not None else ""
            if node.up:
                self._crash(node)
            self.log(
                f"restart {node.name} as {st['restart_as']} after its disk fault ({failed or 'not hit'})"
            )
        elif st.get("restarted"):  # the second heal: the partner comes back
            node = self.nodes[st["partner"]]
            if not node.up:
                self.log(f"restart {node.name} as standby")
                self._start(node, "standby")
                self.count_fault("restart")
            return
        elif node.up:
            # An overlapping fault restarted it already (undamaged). Its partner still waits for
            # the operator: it comes back as planned, or it would stay down for good (seed 4534).
            self.log(f"{node.name} is up already")
            if "partner" in st:
                st["restarted"] = True
                self._push(self.now + self.RESTART_MIN, HEAL_EVENT, st)
            return
        else:
            node.journal.corrupt(f"journal: damaged (simulated) on {node.name}")
            self.log(f"restart {node.name} as {st['restart_as']} with its journal damaged")
            if "partner" in st:
                st["restarted"] = True
                self._push(self.now + self.RESTART_MIN, HEAL_EVENT, st)
        self._start(node, st["restart_as"])
        self.count_fault("restart")
