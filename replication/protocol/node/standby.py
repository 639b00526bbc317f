"""Standby logic: follow the primary, apply its entries, check digests, ack, catch up.

For: the standby role of ``failover.NodeMachine`` (a mixin over its state):
joining a primary (``Join`` -> ``Fence`` says how much of our journal it
shares), truncating an unshared suffix and rebuilding, applying entries in
seq order with a small reorder buffer, comparing every digest (a mismatch is
a divergence: stop, log loudly, never promote), acking cumulatively once per
inbound batch, detecting gaps by seq and asking for refills, installing a
snapshot when we are too far behind. Not for: promotion decisions
(``failover``) or primary work (``sequencer``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from .. import wire
from ..replica import Replica, recover
from ..wire import Send
from .records import PendingHandover

if TYPE_CHECKING:  # pragma: no cover
    from .machine import NodeMachine

log = logging.getLogger("replication.standby")

REORDER_BUFFER = 65536  # future entries held while a gap is refilled
INF = float("inf")


def _epoch_starts(run, last: int) -> list[tuple[int, int]]:
    """``(epoch, seq)`` of each entry of ``run`` whose epoch is above ``last`` and every epoch
    before it: where the history notes a new epoch. O(len(run)), vectorised for an ``EntryRun``
    (a catch-up's first chunk would otherwise make an ``Entry`` per entry)."""
    if isinstance(run, wire.EntryRun):
        epochs = run.array["epoch"].astype(np.int64)
        above = np.maximum.accumulate(np.concatenate(([last], epochs)))[:-1]
        at = np.flatnonzero(epochs > above)
        return list(zip(epochs[at].tolist(), run.array["seq"][at].tolist(), strict=True))
    out = []
    for e in run:
        if e.epoch > last:
            out.append((e.epoch, e.seq))
            last = e.epoch
    return out


class StandbyMixin:
    """Standby-side handlers; see ``failover.NodeMachine`` for the shared state."""

    def _reset_standby_state(self: NodeMachine) -> None:
        self.joined = False  # the leader accepted our Join (our journal is a prefix of its)
        self.join_sent_at = -1.0
        self.future: dict[int, wire.Entry] = {}  # seq -> entry beyond a gap
        self.refill_sent_at = -1.0
        self.leader_seq = 0  # the leader's last_seq as last heard
        self.leader_commit = 0
        self.snap_parts: list[bytes] = []
        self.snap_key: tuple = ()
        self.handover: PendingHandover | None = None  # after we drained into its target
        self.handover_replies: list = []  # (dest, Reply) held until the target proves it serves

    def follow(self: NodeMachine, leader: str, epoch: int, now: float) -> list:
        """Start following ``leader`` of ``epoch``: (re)join it."""
        if epoch > self.epoch:
            self.set_epoch(epoch)
        if leader != self.leader:
            log.info(
                "follow node=%s leader=%s epoch=%d last_seq=%d", self.name, leader, epoch, self.replica.seq
            )
        self.leader = leader
        self.joined = False
        self.candidate_since = None
        self.future.clear()
        return self.refuse_held() + self.send_join(now)

    def handover_proven(self: NodeMachine, src: str, hb: wire.Heartbeat) -> bool:
        """Does ``hb`` show the node we drained into serving the next epoch from exactly our journal?

        After a switchover we hold every entry up to the handover seq and the
        target acked all of them. Its first heartbeat as primary of the next
        epoch carries its seq and chained digest: equal to ours means the same
        history, and its new epoch starts right after our last entry.
        """
        if self.handover is None:
            return False
        msg = self.handover.message
        return (
            src == self.handover.target == self.leader
            and hb.role in (wire.ROLE_PRIMARY, wire.ROLE_DRAINING)
            and self.epoch == msg.epoch
            and hb.epoch == msg.epoch + 1
            and hb.seq == msg.seq == self.replica.seq
            and hb.digest == self.replica.digest
        )

    def resume_after_handover(self: NodeMachine, src: str, hb: wire.Heartbeat, now: float) -> list:
        """Follow the switchover target in its new epoch without a Join/Fence round trip.

        Its first commits need our ack (we are in its in-sync set), so the
        Join -> Fence exchange would sit on the path of the first orders it
        accepts; :meth:`handover_proven` already shows what the Fence would
        (our journal is a prefix of the leader's). One durable meta write
        records the epoch and where it starts.
        """
        self.epoch = hb.epoch
        self.history.append((hb.epoch, hb.seq + 1))
        self.save_meta()
        log.info(
            "joined node=%s leader=%s epoch=%d at_seq=%d (after handover)", self.name, src, self.epoch, hb.seq
        )
        self.leader = src
        self.joined = True
        self.followed_epoch = self.epoch
        self.candidate_since = None
        self.future.clear()
        self.handover = None
        self.leader_seq = hb.seq
        self.leader_commit = hb.commit
        self.count("handover_resumes")
        # The target serves the next epoch (granted by the witness) from our whole journal:
        # the replies that waited on the drain are safe to release now.
        released = [Send(dest, r) for dest, r in self.handover_replies]
        self.handover_replies = []
        return released + self.refuse_held()

    def send_join(self: NodeMachine, now: float) -> list:
        if not self.leader or self.leader == self.name:
            return []
        self.join_sent_at = now
        return [
            Send(self.leader, wire.Join(self.epoch, self.replica.seq, self.name, self.replica.last_epoch))
        ]

    # -- entries -----------------------------------------------------------------------

    def on_entries(self: NodeMachine, src: wire.Address, m: wire.Entries, now: float) -> list:
        if m.epoch < self.epoch:
            self.count("stale_entries")
            return [self.heartbeat_to(src)] if isinstance(src, str) else []
        if self.role in (wire.ROLE_PRIMARY, wire.ROLE_DRAINING):
            if m.epoch > self.epoch and isinstance(src, str):
                return self.step_down(src, m.epoch, now)
            return []
        if self.role == wire.ROLE_DIVERGED:
            return []
        if m.epoch > self.epoch or src != self.leader:
            if not isinstance(src, str):
                return []
            return self.follow(src, m.epoch, now)
        self.last_heard[src] = now
        if not self.joined:
            return []  # until the leader fenced/accepted our journal, its entries may not fit on it
        self.leader_commit = max(self.leader_commit, m.commit)
        last = m.entries[-1].seq if m.entries else 0
        self.leader_seq = max(self.leader_seq, last)
        applied: list = []
        entries = m.entries
        k = self.replica.seq + 1 - entries[0].seq if entries else 0
        if 0 <= k < len(entries):
            # The usual case: the message continues our journal. Apply the run in one go.
            run = entries[k:]
            if self.future:
                for e in run:
                    self.future.pop(e.seq, None)  # early copies are not ahead any more
            self._apply_run(run, applied)
        elif k < 0:
            for e in entries:
                if len(self.future) >= REORDER_BUFFER:
                    break
                self.future[e.seq] = e
        self._apply_buffered(applied)
        out = self._finish_batch(applied)
        if self.future and self.role == wire.ROLE_STANDBY:
            out += self.request_refill(now, min(self.future) - 1)
        return out

    def _apply_run(self: NodeMachine, run, applied: list) -> bool:
        """Apply consecutive entries that continue our journal; False (diverged) at the first bad digest."""
        n = self.replica.apply_entries(run)
        if n < 0:
            # The run's last digest differs: rebuild the book as of the run's start (our
            # journal holds exactly that) and re-apply entry by entry to name the first bad seq.
            self.replica = self.rebuild()
            n = self.replica.locate_divergence(run)
        same_epoch = (
            self.history and run[-1].epoch <= self.history[-1][0] and run[0].epoch <= self.history[-1][0]
        )
        if n and not same_epoch:
            for epoch, seq in _epoch_starts(run[:n], self.history[-1][0] if self.history else -1):
                self.note_epoch_start(epoch, seq)
        if n:
            applied.append(run[:n])  # as it is: a catch-up chunk stays packed (wire.EntryRun) to the journal
        if n < len(run):
            self.diverge(run[n])
            return False
        return True

    def _apply_buffered(self: NodeMachine, applied: list) -> None:
        """Apply the entries of the reorder buffer that now continue our journal."""
        while self.role == wire.ROLE_STANDBY and self.replica.seq + 1 in self.future:
            if not self._apply(self.future.pop(self.replica.seq + 1), applied):
                break

    def _apply(self: NodeMachine, e: wire.Entry, applied: list) -> bool:
        _, ok = self.replica.apply_entry(e)
        if not ok:
            self.diverge(e)
            return False
        if not self.history or e.epoch > self.history[-1][0]:
            self.note_epoch_start(e.epoch, e.seq)
        applied.append((e,))
        return True

    def _finish_batch(self: NodeMachine, applied: list) -> list:
        """Journal what was applied (one append; ``applied`` is a list of consecutive runs) and ack it."""
        if not applied:
            return []
        self.journal.append(applied[0] if len(applied) == 1 else [e for run in applied for e in run])
        self.count("entries_applied", sum(map(len, applied)))
        # Progress at the front: the next refill chunk may be asked for at once.
        self.refill_sent_at = -1.0
        out = self.maybe_snapshot()
        out.append(Send(self.leader, wire.Ack(self.epoch, self.replica.seq, self.name, self.replica.digest)))
        if self.repairing:
            self.check_repaired()
        return out

    def diverge(self: NodeMachine, e: wire.Entry) -> None:
        self.role = wire.ROLE_DIVERGED
        self.held.clear()  # never served by this book; the clients time out and look elsewhere
        self.count("divergences")
        self.diverged_at = e.seq
        log.critical(
            "DIVERGENCE node=%s seq=%d epoch=%d primary_digest=%016x local_digest=%016x: "
            "standby stops serving and will never promote with this book",
            self.name,
            e.seq,
            e.epoch,
            e.digest,
            self.replica.digest,
        )

    def request_refill(self: NodeMachine, now: float, to_seq: int = 0) -> list:
        if now - self.refill_sent_at < self.settings.heartbeat_timeout:
            return []  # one refill outstanding at a time; re-ask after a timeout
        self.refill_sent_at = now
        self.count("refills_requested")
        log.info(
            "gap_refill node=%s from_seq=%d to_seq=%d leader=%s",
            self.name,
            self.replica.seq + 1,
            to_seq,
            self.leader,
        )
        return [Send(self.leader, wire.Refill(self.epoch, self.replica.seq + 1, to_seq, self.name))]

    # -- join answers ---------------------------------------------------------------------

    def on_fence(self: NodeMachine, src: wire.Address, m: wire.Fence, now: float) -> list:
        if m.epoch < self.epoch or not isinstance(src, str) or self.role == wire.ROLE_DIVERGED:
            return []
        if self.role in (wire.ROLE_PRIMARY, wire.ROLE_DRAINING):
            if m.epoch <= self.epoch:
                return []
            self.step_down(src, m.epoch, now)
        if self.joined and src == self.leader and m.epoch == self.epoch and self.role == wire.ROLE_STANDBY:
            # A late or duplicated answer to a Join that is no longer outstanding: our journal has
            # moved on (entries, a snapshot) since, and cutting it now could cut below what the leader
            # itself sent us.
            self.count("stale_fences")
            return []
        if m.epoch > self.epoch:
            self.set_epoch(m.epoch)
        self.leader = src
        self.last_heard[src] = now
        if m.seq >= self.replica.seq:
            if self.damaged and not self.repairing:
                self.start_repair()  # (journal_health) our Join said seq 0: the history comes from src
            if not self.joined:
                log.info(
                    "joined node=%s leader=%s epoch=%d at_seq=%d",
                    self.name,
                    src,
                    self.epoch,
                    self.replica.seq,
                )
            self.joined = True
            self.followed_epoch = self.epoch
            return self.request_refill(now) if self.leader_seq > self.replica.seq else []
        # Our journal holds a suffix the leader never had: it was never acknowledged. Cut it.
        log.warning(
            "fenced node=%s epoch=%d truncate_after=%d discarded=%d",
            self.name,
            self.epoch,
            m.seq,
            self.replica.seq - m.seq,
        )
        self.count("fenced")
        if m.seq < self.journal.base_seq:
            # The cut is inside our snapshot: nothing we hold can be rebuilt without it. Start
            # over empty; the leader's catch-up (a snapshot) gives back what it shares with us.
            self.journal.reset(0, 0, b"")
        else:
            self.journal.truncate_after(m.seq)
        self.history = [(e, s) for e, s in self.history if s <= m.seq + 1]
        self.save_meta()
        self.replica = self.rebuild()
        self.joined = False
        return self.send_join(now)

    def rebuild(self: NodeMachine) -> Replica:
        r = recover(self.journal, self.engine_factory, self.settings.dedupe_window)
        r.perturb_seq = self.perturb_seq
        return r

    def on_snapshot_chunk(self: NodeMachine, src: wire.Address, m: wire.SnapshotChunk, now: float) -> list:
        if self.role != wire.ROLE_STANDBY or src != self.leader or m.epoch < self.epoch:
            return []
        key = (m.epoch, m.seq, m.total)
        if key != self.snap_key or m.offset != sum(len(p) for p in self.snap_parts):
            if m.offset != 0:
                self.snap_key, self.snap_parts = (), []
                return []  # lost a chunk: the leader re-sends on our next Join
            self.snap_key, self.snap_parts = key, []
        self.snap_parts.append(m.data)
        if sum(len(p) for p in self.snap_parts) < m.total:
            return []
        blob = b"".join(self.snap_parts)
        self.snap_key, self.snap_parts = (), []
        try:
            r = Replica.restore(blob, self.engine_factory, self.settings.dedupe_window, self.perturb_seq)
        except ValueError as exc:
            log.warning("snapshot_rejected node=%s reason=%s", self.name, exc)
            return []
        if r.seq <= self.replica.seq and self.joined:
            return []  # older than what we hold
        self.journal.reset(r.seq, r.last_epoch, blob)
        self.repairing = self.repairing or bool(self.damaged)
        self.replica = r
        self.future = {s: e for s, e in self.future.items() if s > r.seq}
        self.joined = True
        self.followed_epoch = self.epoch
        self.count("snapshots_installed")
        log.info("snapshot_installed node=%s seq=%d bytes=%d", self.name, r.seq, len(blob))
        out = [Send(self.leader, wire.Ack(self.epoch, r.seq, self.name, r.digest))]
        # Entries buffered before the snapshot that now continue it are applied at once:
        # left in the buffer, the refill below would ask for the empty range up to them,
        # and with no new entries coming nothing would ever apply them (simulator seed 9777).
        applied: list = []
        self._apply_buffered(applied)
        out += self._finish_batch(applied)
        if self.leader_seq > self.replica.seq and self.role == wire.ROLE_STANDBY:
            out += self.request_refill(now, min(self.future) - 1 if self.future else 0)
        return out

    # -- timers -------------------------------------------------------------------------------

    def standby_tick(self: NodeMachine, now: float) -> list:
        if self.role != wire.ROLE_STANDBY or not self.leader:
            return []
        if self.repairing:
            self.check_repaired()
        if self.handover is not None:
            target, msg, sent_at = self.handover
            if self.epoch > msg.epoch or self.leader != target:
                self.handover = None
                self.handover_replies = []  # not proven: their clients re-send
            elif now - sent_at >= self.settings.join_retry:
                self.handover = self.handover._replace(sent_at=now)
                return [Send(target, msg)] + self.send_join(now)
        if not self.joined:
            if now - self.join_sent_at >= self.settings.join_retry:
                return self.send_join(now)
            return []
        if self.leader_seq > self.replica.seq:
            return self.request_refill(now, min(self.future) - 1 if self.future else 0)
        return []

    def standby_due(self: NodeMachine, now: float) -> float:
        """When :meth:`standby_tick` next acts on its own (``<= now``: at once): the handover
        re-send, the Join retry or the refill re-ask.

        Mirrors ``standby_tick`` branch by branch: change them together
        (``tests/protocol/test_node_idle_wait.py`` checks it). O(1).
        """
        if self.role != wire.ROLE_STANDBY or not self.leader:
            return INF
        due = INF
        if self.handover is not None:
            target, msg, sent_at = self.handover
            if self.epoch > msg.epoch or self.leader != target:
                return now  # forgotten at the next tick
            due = sent_at + self.settings.join_retry
        if not self.joined:
            # (send_join sends nothing to a leader that is ourselves: no timer then.)
            return min(due, self.join_sent_at + self.settings.join_retry) if self.leader != self.name else due
        if self.leader_seq > self.replica.seq:
            due = min(due, self.refill_sent_at + self.settings.heartbeat_timeout)
        return due
