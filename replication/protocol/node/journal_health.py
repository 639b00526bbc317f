"""What a node does when its journal goes bad: a failed disk, or damage found on open.

For: the two journal states of ``NodeMachine`` (``JournalHealth``, a
component the node holds, over its shared state; sans-IO like the rest, so the simulator runs it too; the role
changes it makes go through ``NodeMachine._enter``):

- **failed** (``error``, the node's ``journal_error``): a write or an fdatasync failed while
  running (ENOSPC, EIO; ``diskio.JournalFailed``). Nothing not known durable
  may be acknowledged, and a failed fdatasync is never retried, so the node
  stops for good (until an operator frees the disk and restarts it): no Ack,
  no heartbeat (a heartbeat is an ack too), no reply released, no vote. It
  refuses what waited (``UNAVAILABLE``: the clients go elsewhere) and keeps
  answering ``status`` with the error. A primary thus falls silent, exactly
  like a crashed one: the witness and an in-sync standby notice within a
  heartbeat timeout and the standby takes over with every acknowledged entry
  (sync mode: each reply waited for its ack). Stepping down by a message
  instead would save that timeout but needs a durable epoch write, which a
  failed disk cannot give; silence needs nothing.
- **damaged** (``damaged``): opening found corruption that is not a torn last
  record, or replay found an entry whose digest is wrong
  (``diskio.JournalDamaged``). The node holds nothing as far as the group can
  tell: an empty replica (its seq 0 counts for no election), no candidacy, no
  operator promote, no handover, no led-epoch privilege; and while it follows
  nobody it sends nothing, so peers see it as down. It rejoins the first
  primary it hears with ``Join(seq 0)``; when that primary accepts, the
  damaged files are replaced (``journal.reset``: the only write a damaged
  journal takes) and the history comes back by the usual catch-up (snapshot
  and tail). ``damaged`` is kept in the metadata until the node has caught up
  with its leader, so a crash mid-repair comes back damaged.

Not for: detecting the faults (``journal``, ``diskio``), or any I/O.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .. import wire
from ..journal_api import JournalDamaged, JournalFailed, JournalFault
from ..replica import Replica
from ..wire import Send
from .standby import StandbyRole

if TYPE_CHECKING:  # pragma: no cover
    from .machine import NodeMachine
    from .standby import DivergedRole

log = logging.getLogger("replication.journal_health")


class JournalHealth:
    """Failed and damaged journals (``node.journal_health``); see the module docstring.

    State: ``error`` (failed: why), ``damaged`` (why), ``repairing`` (the damaged
    files were replaced; catching up). The node shows ``error`` and ``damaged``
    as ``journal_error`` and ``damaged``. Reads and changes the node's shared
    state (replica, history, role) through ``node``."""

    def __init__(self, node: NodeMachine) -> None:
        self.node = node
        self.error = ""
        self.damaged = ""
        self.repairing = False

    # -- start -----------------------------------------------------------------------------

    def open_replica(self, meta: dict) -> Replica:
        """The replica to start with: rebuilt from the journal, or empty if the journal is damaged
        (now, or still repairing when the node stopped: ``meta["damaged"]``)."""
        reason = getattr(self.node.journal, "damage", "") or str(meta.get("damaged", ""))
        if not reason:
            try:
                return self.node.rebuild()
            except JournalDamaged as exc:
                reason = str(exc)
        self.damaged = reason
        return self.node.fresh_replica()

    def announce_damage(self) -> None:
        """Log the damage (one line) and record it durably, with nothing the node could claim by it."""
        self.node.history, self.node.led_epoch = [], 0
        log.error(
            "journal_damaged node=%s epoch=%d error=%r: this node holds nothing until a primary gives "
            "its history back (no vote, no promotion)",
            self.node.name,
            self.node.epoch,
            self.damaged,
        )
        try:
            self.node.save_meta()
        except JournalFailed as exc:
            self.journal_failed(str(exc))

    # -- while running ----------------------------------------------------------------------

    def on_journal_fault(self, exc: JournalFault) -> list:
        """A handler or a tick hit a journal fault: its outputs are gone; act on it."""
        if isinstance(exc, JournalFailed):
            return self.journal_failed(str(exc))
        if not self.damaged:  # e.g. a rebuild after a Fence met an entry that replays wrong
            self.damaged, self.repairing = str(exc), False
            self.node.replica = self.node.fresh_replica()
            self.node.leader = ""
            # A fresh standby (our seq is 0 now); requests held while running for primary stay
            # held (a damaged node refuses them at its next tick).
            old = self.node.current_role
            self.node._enter(StandbyRole(self.node, old.held if type(old) is StandbyRole else None))
            self.announce_damage()
        return []

    def journal_failed(self, reason: str) -> list:
        """Stop acknowledging for good; refuse what waited; stay up for ``status``. O(waiting)."""
        if self.error:
            return []
        self.error = reason
        log.error(
            "journal_failed node=%s role=%s epoch=%d last_seq=%d error=%r: this node stops acknowledging "
            "(no ack, reply or vote); it stays up to report status",
            self.node.name,
            wire.ROLE_NAMES[self.node.role],
            self.node.epoch,
            self.node.replica.seq,
            reason,
        )
        self.node.count("journal_failures")
        out = self.node.current_role.refuse_all(self.unavailable)
        self.node.leader = ""
        self.node._enter(StandbyRole(self.node))
        return out

    def unavailable(self, m: wire.Request) -> wire.Reply:
        return wire.Reply(m.client_id, m.request_id, wire.UNAVAILABLE, self.node.epoch, 0, "")

    def failed_answer(self, src: wire.Address, msg: wire.Message) -> list:
        """All a node with a failed journal still answers: ``status``, and requests (refused)."""
        if type(msg) is wire.StatusRequest:
            return [Send(src, self.node.status_message())]
        if type(msg) is wire.Request:
            return [Send(src, self.unavailable(msg))]
        return []

    # -- repair -----------------------------------------------------------------------------

    def start_repair(self) -> None:
        """A primary accepted our Join at seq 0: replace the damaged files, then catch up as usual."""
        self.node.journal.reset(0, 0, b"")
        self.node.history = []
        self.repairing = True
        log.warning(
            "journal_repair node=%s leader=%s epoch=%d: catching up from it",
            self.node.name,
            self.node.leader,
            self.node.epoch,
        )

    def check_repaired(self, standby: StandbyRole | DivergedRole) -> None:
        """Caught up with the leader after a repair: no longer damaged (durably). O(1)."""
        if self.repairing and standby.joined and self.node.replica.seq >= standby.leader_seq > 0:
            was, self.damaged, self.repairing = self.damaged, "", False
            self.node.save_meta()
            log.warning(
                "journal_repaired node=%s leader=%s last_seq=%d was=%r",
                self.node.name,
                self.node.leader,
                self.node.replica.seq,
                was,
            )
