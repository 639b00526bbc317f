"""The standby role: follow the primary, apply its entries, check digests, ack, catch up.

For: ``StandbyRole``, the role object a ``NodeMachine`` holds while it follows
a primary or looks for one (built at each role change, owning the
standby's state: the join, the reorder buffer, the snapshot being received,
the requests held while running for primary, a handover waiting for its
proof); and ``DivergedRole``, what a standby becomes when a digest differs.
The standby's work: joining a primary (``Join`` -> ``Fence`` says how much of our journal it
shares), truncating an unshared suffix and rebuilding, applying entries in
seq order with a small reorder buffer, comparing every digest (a mismatch is
a divergence: stop, log loudly, never promote), acking cumulatively once per
inbound batch, detecting gaps by seq and asking for refills, installing a
snapshot when we are too far behind, and deciding when to run for primary
(``check_leader``). Not for: the candidacy and promotion themselves
(``machine``) or primary work (``primary``).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from .. import wire
from ..replica import Replica
from ..timers import Timers
from ..wire import Send
from .records import HeldRequest, PendingHandover

if TYPE_CHECKING:  # pragma: no cover
    from .machine import NodeMachine

log = logging.getLogger("replication.standby")

# The standby's timers (``self.timers``).
JOIN = "join"  # the Join's retry, armed when it is sent, cleared once joined
REFILL = "refill"  # the refill's re-ask, armed while joined and behind the leader
HANDOVER = "handover"  # after a switchover: the Handover's re-send, until the target serves
LEADER = "leader"  # check_leader: the leader's silence, no leader for a timeout, a candidacy's next ask
REORDER_BUFFER = 65536  # future entries held while a gap is refilled
INF = float("inf")
NEVER = float("-inf")


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


class StandbyRole:
    """The standby's state and handlers; the node's shared state is ``self.node``.

    Built by the node at each role change; what the role before hands over
    comes in as arguments: the requests held while running for primary
    (``held``), and after a switchover the Handover to re-send and the replies
    that wait for the target's proof (``handover``, ``handover_replies``).
    """

    code = wire.ROLE_STANDBY

    def __init__(
        self,
        node: NodeMachine,
        held: deque[HeldRequest] | None = None,
        handover: PendingHandover | None = None,
        handover_replies: list | None = None,
    ) -> None:
        self.node = node
        # What our heartbeat says as ``commit``: our seq when we became a standby (a standby
        # commits nothing; the field is the primary's).
        self.commit = node.replica.seq
        self.joined = False  # the leader accepted our Join (our journal is a prefix of its)
        self.join_sent_at = -1.0
        self.future: dict[int, wire.Entry] = {}  # seq -> entry beyond a gap
        self.refill_sent_at = -1.0
        self.leader_seq = 0  # the leader's last_seq as last heard
        self.leader_commit = 0
        self.snap_parts: list[bytes] = []
        self.snap_key: tuple = ()
        self.handover = handover  # after we drained into its target
        self.handover_replies: list = handover_replies or []  # (dest, Reply) until the target proves it
        # Client requests that reached us while we ran for primary: served if we
        # promote (the first replies need no client re-send), refused otherwise.
        self.held: deque[HeldRequest] = held if held is not None else deque()
        self.timers = Timers()  # JOIN, REFILL, HANDOVER, LEADER
        if handover is not None:
            self.timers.arm(HANDOVER, handover.sent_at + node.settings.join_retry)

    @property
    def active(self) -> bool:
        """Still the node's role (a divergence mid-batch replaces it)."""
        return self.node.current_role is self

    def handlers(self) -> dict:
        """Message type -> handler ``(src, msg, now) -> outputs`` (the node's table adds the rest)."""
        return {
            wire.Request: self.on_request,
            wire.Entries: self.on_entries,
            wire.Fence: self.on_fence,
            wire.SnapshotChunk: self.on_snapshot_chunk,
        }

    def refuse_all(self, reply) -> list:
        """The role ends: an answer (``reply(request)``) for every request held."""
        out = [Send(h.src, reply(h.request)) for h in self.held]
        self.held.clear()
        return out

    def on_request(self, src: wire.Address, m: wire.Request, now: float) -> list:
        """Held while we run for primary (or may soon), else refused with the leader we know."""
        if self.hold_request(src, m, now):
            return []
        node = self.node
        node.count("requests_refused")
        return [
            Send(src, wire.Reply(m.client_id, m.request_id, wire.NOT_PRIMARY, node.epoch, 0, node.leader))
        ]

    def on_heartbeat(self, src: str, hb: wire.Heartbeat, now: float) -> list:
        node = self.node
        if hb.epoch > node.epoch:
            leader = src if hb.role in (wire.ROLE_PRIMARY, wire.ROLE_DRAINING) else hb.leader
            if leader and leader != node.name:
                node.want_primary = False
                if self.handover_proven(src, hb):
                    return self.resume_after_handover(src, hb, now)
                return self.follow(leader, hb.epoch, now)
            return []
        if hb.epoch < node.epoch:
            return node.tell_news(src, hb)
        if hb.role in (wire.ROLE_PRIMARY, wire.ROLE_DRAINING):
            node.want_primary = False
            if src != node.leader:
                return self.follow(src, hb.epoch, now)
            self.leader_seq = max(self.leader_seq, hb.seq)
            self.leader_commit = max(self.leader_commit, hb.commit)
        return []

    def follow(self, leader: str, epoch: int, now: float) -> list:
        """Start following ``leader`` of ``epoch``: (re)join it."""
        if epoch > self.node.epoch:
            self.node.set_epoch(epoch)
        if leader != self.node.leader:
            log.info(
                "follow node=%s leader=%s epoch=%d last_seq=%d",
                self.node.name,
                leader,
                epoch,
                self.node.replica.seq,
            )
        self.node.leader = leader
        self.joined = False
        self.node.candidacy.since = None
        self.future.clear()
        return self.refuse_held() + self.send_join(now)

    def handover_proven(self, src: str, hb: wire.Heartbeat) -> bool:
        """Does ``hb`` show the node we drained into serving the next epoch from exactly our journal?

        After a switchover we hold every entry up to the handover seq and the
        target acked all of them. Its first heartbeat as primary of the next
        epoch carries its last entry, (epoch, seq), and chained digest: all equal
        to ours means the same history, and its new epoch starts right after our
        last entry. The digest alone would not do: it proves the same books, and a
        request re-sent to a newer epoch's primary is sequenced again at the same
        seq with an equal digest, so a target still on an older epoch's suffix
        would pass, and we would skip the Fence that cuts our suffix to its
        history (simulator seeds 6114, 6877).
        """
        if self.handover is None:
            return False
        msg = self.handover.message
        return (
            src == self.handover.target == self.node.leader
            and hb.role in (wire.ROLE_PRIMARY, wire.ROLE_DRAINING)
            and self.node.epoch == msg.epoch
            and hb.epoch == msg.epoch + 1
            and hb.seq == msg.seq == self.node.replica.seq
            and hb.digest == self.node.replica.digest
            and hb.last_epoch == self.node.replica.last_epoch
        )

    def resume_after_handover(self, src: str, hb: wire.Heartbeat, now: float) -> list:
        """Follow the switchover target in its new epoch without a Join/Fence round trip.

        Its first commits need our ack (we are in its in-sync set), so the
        Join -> Fence exchange would sit on the path of the first orders it
        accepts; :meth:`handover_proven` already shows what the Fence would
        (our journal is a prefix of the leader's). One durable meta write
        records the epoch and where it starts.
        """
        self.node.epoch = hb.epoch
        self.node.history.append((hb.epoch, hb.seq + 1))
        self.node.save_meta()
        log.info(
            "joined node=%s leader=%s epoch=%d at_seq=%d (after handover)",
            self.node.name,
            src,
            self.node.epoch,
            hb.seq,
        )
        self.node.leader = src
        self.joined = True
        self.timers.clear(JOIN)
        self.node.followed_epoch = self.node.epoch
        self.node.candidacy.since = None
        self.future.clear()
        self.handover = None
        self.timers.clear(HANDOVER)
        self.leader_seq = hb.seq
        self.leader_commit = hb.commit
        self.node.count("handover_resumes")
        # The target serves the next epoch (granted by the witness) from our whole journal:
        # the replies that waited on the drain are safe to release now.
        released = [Send(dest, r) for dest, r in self.handover_replies]
        self.handover_replies = []
        return released + self.refuse_held()

    def send_join(self, now: float) -> list:
        if not self.node.leader or self.node.leader == self.node.name:
            return []
        self.join_sent_at = now
        self.timers.arm(JOIN, now + self.node.settings.join_retry)
        return [
            Send(
                self.node.leader,
                wire.Join(
                    self.node.epoch, self.node.replica.seq, self.node.name, self.node.replica.last_epoch
                ),
            )
        ]

    # -- entries -----------------------------------------------------------------------

    def on_entries(self, src: wire.Address, m: wire.Entries, now: float) -> list:
        if m.epoch < self.node.epoch:
            return self.node.stale_entries(src)
        if m.epoch > self.node.epoch or src != self.node.leader:
            if not isinstance(src, str):
                return []
            return self.follow(src, m.epoch, now)
        self.node.last_heard[src] = now
        if not self.joined:
            return []  # until the leader fenced/accepted our journal, its entries may not fit on it
        self.leader_commit = max(self.leader_commit, m.commit)
        last = m.entries[-1].seq if m.entries else 0
        self.leader_seq = max(self.leader_seq, last)
        applied: list = []
        entries = m.entries
        k = self.node.replica.seq + 1 - entries[0].seq if entries else 0
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
        if self.future and self.active:
            out += self.request_refill(now, min(self.future) - 1)
        return out

    def _apply_run(self, run, applied: list) -> bool:
        """Apply consecutive entries that continue our journal; False (diverged) at the first bad digest."""
        n = self.node.replica.apply_entries(run)
        if n < 0:
            # The run's last digest differs: rebuild the book as of the run's start (our
            # journal holds exactly that) and re-apply entry by entry to name the first bad seq.
            self.node.replica = self.node.rebuild()
            n = self.node.replica.locate_divergence(run)
        same_epoch = (
            self.node.history
            and run[-1].epoch <= self.node.history[-1][0]
            and run[0].epoch <= self.node.history[-1][0]
        )
        if n and not same_epoch:
            for epoch, seq in _epoch_starts(run[:n], self.node.history[-1][0] if self.node.history else -1):
                self.node.note_epoch_start(epoch, seq)
        if n:
            applied.append(run[:n])  # as it is: a catch-up chunk stays packed (wire.EntryRun) to the journal
        if n < len(run):
            self.node.diverge(run[n])
            return False
        return True

    def _apply_buffered(self, applied: list) -> None:
        """Apply the entries of the reorder buffer that now continue our journal."""
        while self.active and self.node.replica.seq + 1 in self.future:
            if not self._apply(self.future.pop(self.node.replica.seq + 1), applied):
                break

    def _apply(self, e: wire.Entry, applied: list) -> bool:
        _, ok = self.node.replica.apply_entry(e)
        if not ok:
            self.node.diverge(e)
            return False
        if not self.node.history or e.epoch > self.node.history[-1][0]:
            self.node.note_epoch_start(e.epoch, e.seq)
        applied.append((e,))
        return True

    def _finish_batch(self, applied: list) -> list:
        """Journal what was applied (one append; ``applied`` is a list of consecutive runs) and ack it."""
        if not applied:
            return []
        self.node.journal.append(applied[0] if len(applied) == 1 else [e for run in applied for e in run])
        self.node.count("entries_applied", sum(map(len, applied)))
        # Progress at the front: the next refill chunk may be asked for at once.
        self.refill_sent_at = -1.0
        out = self.node.maybe_snapshot()
        out.append(
            Send(
                self.node.leader,
                wire.Ack(self.node.epoch, self.node.replica.seq, self.node.name, self.node.replica.digest),
            )
        )
        if self.node.repairing:
            self.node.journal_health.check_repaired(self)
        return out

    def request_refill(self, now: float, to_seq: int = 0) -> list:
        if now - self.refill_sent_at < self.node.settings.heartbeat_timeout:
            return []  # one refill outstanding at a time; re-ask after a timeout
        self.refill_sent_at = now
        self.node.count("refills_requested")
        log.info(
            "gap_refill node=%s from_seq=%d to_seq=%d leader=%s",
            self.node.name,
            self.node.replica.seq + 1,
            to_seq,
            self.node.leader,
        )
        return [
            Send(
                self.node.leader,
                wire.Refill(self.node.epoch, self.node.replica.seq + 1, to_seq, self.node.name),
            )
        ]

    # -- join answers ---------------------------------------------------------------------

    def on_fence(self, src: wire.Address, m: wire.Fence, now: float) -> list:
        if m.epoch < self.node.epoch or not isinstance(src, str):
            return []
        if self.joined and src == self.node.leader and m.epoch == self.node.epoch:
            # A late or duplicated answer to a Join that is no longer outstanding: our journal has
            # moved on (entries, a snapshot) since, and cutting it now could cut below what the leader
            # itself sent us.
            self.node.count("stale_fences")
            return []
        if m.epoch > self.node.epoch:
            self.node.set_epoch(m.epoch)
        self.node.leader = src
        self.node.last_heard[src] = now
        if m.seq >= self.node.replica.seq:
            if self.node.damaged and not self.node.repairing:
                self.node.journal_health.start_repair()  # (journal_health) our Join said seq 0: the history comes from src
            if not self.joined:
                log.info(
                    "joined node=%s leader=%s epoch=%d at_seq=%d",
                    self.node.name,
                    src,
                    self.node.epoch,
                    self.node.replica.seq,
                )
            self.joined = True
            self.timers.clear(JOIN)
            self.node.followed_epoch = self.node.epoch
            return self.request_refill(now) if self.leader_seq > self.node.replica.seq else []
        # Our journal holds a suffix the leader never had: it was never acknowledged. Cut it.
        log.warning(
            "fenced node=%s epoch=%d truncate_after=%d discarded=%d",
            self.node.name,
            self.node.epoch,
            m.seq,
            self.node.replica.seq - m.seq,
        )
        self.node.count("fenced")
        if m.seq < self.node.journal.base_seq:
            # The cut is inside our snapshot: nothing we hold can be rebuilt without it. Start
            # over empty; the leader's catch-up (a snapshot) gives back what it shares with us.
            self.node.journal.reset(0, 0, b"")
        else:
            self.node.journal.truncate_after(m.seq)
        self.node.history = [(e, s) for e, s in self.node.history if s <= m.seq + 1]
        self.node.save_meta()
        self.node.replica = self.node.rebuild()
        self.joined = False
        return self.send_join(now)

    def on_snapshot_chunk(self, src: wire.Address, m: wire.SnapshotChunk, now: float) -> list:
        if src != self.node.leader or m.epoch < self.node.epoch:
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
            s = self.node.settings
            r = Replica.restore(
                blob,
                self.node.engine_factory,
                s.dedupe_window,
                self.node.perturb_seq,
                s.report_window,
                s.order_window,
            )
        except ValueError as exc:
            log.warning("snapshot_rejected node=%s reason=%s", self.node.name, exc)
            return []
        if r.seq <= self.node.replica.seq and self.joined:
            return []  # older than what we hold
        self.node.journal.reset(r.seq, r.last_epoch, blob)
        self.node.journal_health.repairing = self.node.repairing or bool(self.node.damaged)
        self.node.replica = r
        self.future = {s: e for s, e in self.future.items() if s > r.seq}
        self.joined = True
        self.timers.clear(JOIN)
        self.node.followed_epoch = self.node.epoch
        self.node.count("snapshots_installed")
        log.info("snapshot_installed node=%s seq=%d bytes=%d", self.node.name, r.seq, len(blob))
        out = [Send(self.node.leader, wire.Ack(self.node.epoch, r.seq, self.node.name, r.digest))]
        # Entries buffered before the snapshot that now continue it are applied at once:
        # left in the buffer, the refill below would ask for the empty range up to them,
        # and with no new entries coming nothing would ever apply them (simulator seed 9777).
        applied: list = []
        self._apply_buffered(applied)
        out += self._finish_batch(applied)
        if self.leader_seq > self.node.replica.seq and self.active:
            out += self.request_refill(now, min(self.future) - 1 if self.future else 0)
        return out

    # -- running for primary ------------------------------------------------------------------

    def check_leader(self, now: float) -> list:
        """Run for promotion when the leader we followed this epoch is gone (and the like); arm the
        leader timer for when this next acts on its own (:meth:`_leader_step`)."""
        out, due = self._leader_step(now)
        self.timers.arm(LEADER, due)
        return out

    def _leader_step(self, now: float) -> tuple[list, float]:
        """:meth:`check_leader`'s decision: its outputs, and when it next acts by itself (INF: only
        after a message; a candidacy's next step is ``Candidacy.due``)."""
        node = self.node
        if node.damaged:
            return (self.refuse_held() if self.held else []), INF  # never a candidate (journal_health)
        if node.want_primary and node.followed_epoch != node.epoch and not node.leader:
            return node.candidacy.run(now, "start"), node.candidacy.due(now, True)
        start = node.want_primary and node.followed_epoch != node.epoch
        if not node.leader and node.candidacy.followers_waiting(now):
            # We were this epoch's primary (crashed, restarted as a standby) and live
            # standbys still follow us: nobody else may hold our epoch's history.
            return node.candidacy.run(now, "followers_waiting"), node.candidacy.due(now, start)
        if not node.leader and node.led_epoch == node.epoch > 0 and node.followed_epoch != node.epoch:
            # We were this epoch's primary and restarted (say the whole group did, with
            # us started as a standby): ask. The witness refuses while a primary lives,
            # and a newer epoch's heartbeat makes us follow it instead.
            return node.candidacy.run(now, "restarted_last_primary"), node.candidacy.due(now, start)
        unled = self._unled_due()
        if unled <= now:
            # We follow nobody in our epoch, and no node has claimed to lead it (or a later
            # one) for a heartbeat timeout: say we stepped down to an epoch whose primary
            # then restarted as a standby. Ask; the witness decides (and refuses while a
            # primary lives, or a node that holds more may take over).
            return node.candidacy.run(now, "leaderless"), node.candidacy.due(now, False)
        if not node.leader or node.followed_epoch != node.epoch or not node.candidacy.leader_dead(now):
            if (
                node.candidacy.since is not None
                and node.leader
                and not node.candidacy.leader_dead(now)
                and not node.candidacy.handed_over_to_us()
            ):
                log.info("candidacy_dropped node=%s leader=%s is back", node.name, node.leader)
                node.candidacy.since = None
            out = self.refuse_held() if self.held and not self._may_hold() else []
            # Next: no leader in our epoch for a timeout (unled), or our leader's silence.
            if not node.leader or node.followed_epoch != node.epoch:
                return out, unled
            return out, node.candidacy.leader_dead_at()
        out = node.candidacy.run(now, "primary_lost")
        if self.held and now - self.held[0].since > node.settings.heartbeat_timeout:
            out += self.refuse_held()  # a long candidacy: let the clients look elsewhere
        due = node.candidacy.due(now, False)
        if self.held:
            due = min(due, self.held[0].since + node.settings.heartbeat_timeout)  # refused after (>)
        return out, due

    def _unled_due(self) -> float:
        """When a standby that follows nobody in its epoch may run for primary (INF: it does follow).

        A heartbeat timeout after the latest of: it last heard a node claim to lead its
        epoch or a later one; it became a standby (started, stepped down, handed over);
        after a handover, it last heard its target (which asks the witness meanwhile). Never in
        epoch 0 (a new group waits for the node started as primary). O(peers).
        """
        if self.node.epoch == 0 or self.node.followed_epoch == self.node.epoch:
            return INF
        last = self.node.standby_since
        if self.handover is not None:  # our switchover's target: not while it is alive (it asks)
            last = max(last, self.node.last_heard.get(self.handover.target, NEVER))
        for p in self.node.peers:  # list order: deterministic
            hb = self.node.peer_info.get(p)
            if (
                hb is not None
                and hb.epoch >= self.node.epoch
                and hb.role in (wire.ROLE_PRIMARY, wire.ROLE_DRAINING)
            ):
                last = max(last, self.node.last_heard.get(p, NEVER))
        return last + self.node.settings.heartbeat_timeout

    def _may_hold(self) -> bool:
        """Running for primary, suspecting the leader, or the leader hands over to us (switchover)."""
        return (
            self.node.candidacy.since is not None
            or self.node.candidacy.suspecting()
            or self.node.candidacy.handed_over_to_us()
        )

    def hold_request(self, src: wire.Address, m: wire.Request, now: float) -> bool:
        """While running for primary (or suspecting the leader), keep a client request to serve it once promoted."""
        if len(self.held) >= 4 * self.node.settings.max_batch:
            return False
        if not self._may_hold():
            return False
        self.held.append(HeldRequest(src, m, now))
        self.node.count("requests_held")
        return True

    def refuse_held(self) -> list:
        out = []
        while self.held:
            h = self.held.popleft()
            m = h.request
            self.node.count("requests_refused")
            out.append(
                Send(
                    h.src,
                    wire.Reply(
                        m.client_id, m.request_id, wire.NOT_PRIMARY, self.node.epoch, 0, self.node.leader
                    ),
                )
            )
        return out

    # -- timers -------------------------------------------------------------------------------

    def standby_tick(self, now: float) -> list:
        """The standby's timers: the handover re-send, the Join retry, the refill re-ask; then the
        refill timer is armed while we are behind (the other two are armed where they are sent)."""
        out = self._standby_step(now)
        self._arm_refill()
        return out

    def _arm_refill(self) -> None:
        """Joined and behind the leader: the refill is asked again a timeout after the last ask."""
        if self.joined and self.leader_seq > self.node.replica.seq:
            self.timers.arm(REFILL, self.refill_sent_at + self.node.settings.heartbeat_timeout)
        else:
            self.timers.clear(REFILL)

    def _standby_step(self, now: float) -> list:
        if not self.node.leader:
            return []
        if self.node.repairing:
            self.node.journal_health.check_repaired(self)
        if self.handover is not None:
            target, msg, sent_at = self.handover
            if self.node.epoch > msg.epoch or self.node.leader != target:
                self.handover = None
                self.handover_replies = []  # not proven: their clients re-send
                self.timers.clear(HANDOVER)
            elif now - sent_at >= self.node.settings.join_retry:
                self.handover = self.handover._replace(sent_at=now)
                self.timers.arm(HANDOVER, now + self.node.settings.join_retry)
                return [Send(target, msg)] + self.send_join(now)
        if not self.joined:
            if now - self.join_sent_at >= self.node.settings.join_retry:
                return self.send_join(now)
            return []
        if self.leader_seq > self.node.replica.seq:
            return self.request_refill(now, min(self.future) - 1 if self.future else 0)
        return []


class DivergedRole:
    """Terminal: a digest differed, the book is wrong. Never serves, never promotes, never votes.

    Keeps what the standby it replaces last knew of its leader (``status``
    and the heartbeat report it); answers requests ``UNAVAILABLE`` and tells
    nodes of older epochs the news, nothing else.
    """

    code = wire.ROLE_DIVERGED

    def __init__(self, node: NodeMachine, was: StandbyRole) -> None:
        self.node = node
        self.commit, self.joined = was.commit, was.joined
        self.leader_seq, self.leader_commit = was.leader_seq, was.leader_commit
        self.timers = Timers()  # none: a diverged node waits for nothing

    def handlers(self) -> dict:
        """Message type -> handler ``(src, msg, now) -> outputs`` (the node's table adds the rest)."""
        return {wire.Request: self.on_request, wire.Entries: self.on_entries}

    def refuse_all(self, reply) -> list:
        """The role ends: nothing waits on a diverged node."""
        return []

    def on_request(self, src: wire.Address, m: wire.Request, now: float) -> list:
        node = self.node
        node.count("requests_refused")
        return [
            Send(src, wire.Reply(m.client_id, m.request_id, wire.UNAVAILABLE, node.epoch, 0, node.leader))
        ]

    def on_heartbeat(self, src: str, hb: wire.Heartbeat, now: float) -> list:
        return self.node.tell_news(src, hb) if hb.epoch < self.node.epoch else []

    def on_entries(self, src: wire.Address, m: wire.Entries, now: float) -> list:
        return self.node.stale_entries(src) if m.epoch < self.node.epoch else []
