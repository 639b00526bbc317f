"""A seeded, in-process simulator that runs the production node logic under faults.

For: proving replicas never diverge. It runs the very ``NodeMachine``,
``WitnessMachine`` and ``ClientCore`` state machines the ZeroMQ driver runs,
with ``journal.MemoryJournal`` and a real engine, over a virtual network and
a virtual clock: one event queue ordered by (time, sequence number), no
wall clock, no sleeping, and one ``random.Random`` owned by the simulator
(the machines never see it). Every message goes through the wire codec, as
in production, and every step a machine takes is followed by a call to its
``invariants()``. Faults: messages dropped, duplicated, reordered and
delayed; links cut and healed; nodes crashed between steps or in the middle
of one and restarted from their journals; hung nodes; the witness crashed
and restarted from its state file; planned switchovers (one whose old
primary crashes after its Handover); a standby whose engine is deliberately
corrupted; disk faults; an outsider forging messages. Node faults come one
at a time, each after the group has its redundancy back, or, in schedules
with ``overlap``, each a little after the previous one started, so that
cascades happen; message faults run all the time. ``check`` then verifies
safety and liveness.

The modules, one role each:

- ``schedule``: the inputs — fault kinds, :class:`Fault`, :class:`Schedule`
  (a pure function of its seed: :func:`random_schedule`), the order flow;
- ``events``: the event queue (virtual time, ties in push order);
- ``network``: frames through the codec, lost, duplicated, reordered, cut;
- ``participants``: the nodes, the witness and the clients, and a delivery
  (``clients``: one client's record);
- ``faults`` and ``disk_faults``: one handler per fault kind;
- ``forge``: every delivery through ``trust.Policy``, and the outsider;
- ``sessions``: the clients' execution reports, restarts that resume, twins;
- ``run``: :class:`Sim`, the run loop, :func:`run_schedule`;
- ``check``: the checker (:func:`check_sim`, :class:`Report`), and
  ``check_reports``: its rules for sessions and execution reports;
- ``__main__``: ``python -m replication.testing.sim``.

Not for: timing figures (virtual time says nothing about real latency), or
the ZeroMQ driver (see ``replication.testing.chaos`` for real processes).

Every run is a pure function of its :class:`Schedule`, so any failure
replays with ``python -m replication.testing.sim --seed S``.
"""

from .check import Report, check_sim
from .forge import OPERATOR, WITNESS
from .participants import SimClient, SimNode
from .run import FAULT_HANDLERS, Sim, SimFailure, run_schedule
from .schedule import (
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
    "DISK_FAULTS",
    "FAULT_HANDLERS",
    "MESSAGE_FAULTS",
    "NODE_FAULTS",
    "OPERATOR",
    "WITNESS",
    "Fault",
    "Report",
    "Schedule",
    "Sim",
    "SimClient",
    "SimFailure",
    "SimNode",
    "check_sim",
    "pack",
    "random_commands",
    "random_schedule",
    "run_schedule",
]
