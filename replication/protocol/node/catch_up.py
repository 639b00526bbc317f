"""A primary's catch-up of the nodes that follow it: joins, refills and snapshots.

For: ``CatchUp``, a component ``PrimaryRole`` owns (``role.catch_up``),
built afresh at each promotion. A standby asks to follow with ``wire.Join``
(its last entry's epoch and seq): the primary finds how much of that journal
its own history shares (``common_prefix``: each epoch has one primary, so
two journals agree up to the last entry they share by epoch and seq) and
fences the rest (``wire.Fence``), or accepts it and sends what it lacks
at once. What a node lacks goes as windows of journal chunks (up to
``REFILL_WINDOW`` chunks of ``Settings.refill_chunk`` entries in flight,
topped up by each ``wire.Refill`` it sends as it progresses: ``on_refill``),
or as a snapshot when the journal no longer holds the entries or the node is
too far behind (``catchup_snapshot_lag``). Chunks are the journal's bytes as
they are (``wire.EntryRun``).

Not for: the standby's side (``standby``), sequencing, sockets or clocks.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .. import wire
from ..wire import Send
from .records import RefillWindow

if TYPE_CHECKING:  # pragma: no cover
    from .primary import PrimaryRole

log = logging.getLogger("replication.sequencer")

SNAPSHOT_CHUNK = 512 * 1024
# Refill chunks in flight to one catching-up node (see ``CatchUp.send``). Its driver applies every chunk
# that has arrived in one pass and asks for more only at the end, after its journal fsync: each
# window costs the node an fsync and a round trip of idling, so windows are big (16 x 2048
# entries: a pass of about 10 ms of applying at ~300 ns an entry, far below the heartbeat timeout).
REFILL_WINDOW = 16


class CatchUp:
    """Joins and refills served by one primary in one epoch; the role is ``self.role``, the node ``self.node``."""

    def __init__(self, role: PrimaryRole) -> None:
        self.role = role
        self.node = role.node
        self.refill_sent: dict[wire.Address, RefillWindow] = {}  # chunks in flight, by node

    def on_join(self, src: str, m: wire.Join, now: float) -> list:
        """A standby asks to follow: fence its unshared suffix, or accept it and start its catch-up."""
        t = self.common_prefix(m.last_epoch, m.seq)
        if t < m.seq:
            log.info(
                "fence node=%s epoch=%d their_last=(%d,%d) truncate_after=%d",
                m.node,
                self.node.epoch,
                m.last_epoch,
                m.seq,
                t,
            )
            self.node.count("fences_sent")
            return [Send(src, wire.Fence(self.node.epoch, t, m.node))]
        out = [Send(src, wire.Fence(self.node.epoch, m.seq, m.node)), self.node.heartbeat_to(src)]
        return out + self.send(src, m.seq + 1)

    def common_prefix(self, last_epoch: int, seq: int) -> int:
        """The highest seq <= ``seq`` up to which a node whose last entry is (``last_epoch``, ``seq``) agrees with us.

        Seqs never repeat within an epoch and each epoch has one primary, so
        two journals agree up to the last entry they share by (epoch, seq):
        ``min(seq, last seq we hold of epoch last_epoch)``.
        """
        if seq == 0:
            return 0
        mine = self.node.journal.entry(seq)
        if mine is not None and mine.epoch == last_epoch:
            return seq
        # Otherwise the epoch history says where the joiner's epoch ended for us: where the
        # next epoch we know of began.
        end = self.node.replica.seq
        for epoch, first in self.node.history:
            if epoch > last_epoch:
                end = first - 1
                break
        t = max(0, min(seq, end))
        # The history holds every epoch that began above our journal's base (we applied or
        # sequenced those entries), but not always those that began at or below it: a
        # snapshot we installed skipped them, and ``trimmed_history`` drops them. If the
        # joiner's epoch did not begin above the base, the epoch after it may be one of
        # those, and then it ended earlier than ``end``: agreeing that far would keep a
        # stale suffix the next entries cannot fit (a divergence). Below the base, the
        # joiner's catch-up is a snapshot, which replaces its whole journal.
        base = self.node.journal.base_seq
        if base and seq <= base and last_epoch and last_epoch == self.node.journal.base_epoch():
            # The joiner's last entry is of the epoch of our snapshot's last entry, at or below
            # it: that epoch's primary sequenced both, so its journal is a prefix of our history.
            # (Cutting it below the base would take committed entries from an in-sync node.)
            return seq
        if base and t >= base and not any(e == last_epoch and first > base for e, first in self.node.history):
            t = base - 1
        elif not base and not any(e == last_epoch for e, _ in self.node.history):
            # We hold no entry of the joiner's epoch: our line skipped it (we were granted a
            # later epoch holding only older entries, as async mode or a cascade of
            # fail-overs allows). Where that epoch began in the joiner's journal is unknown
            # here, and the next epoch we know of may begin after it: keep nothing we cannot
            # vouch for. (Above, a base means the same cut ends in a snapshot.)
            t = 0
        return t

    def send(self, dest: wire.Address, from_seq: int, to_seq: int = 0) -> list:
        """Send ``dest`` entries from ``from_seq`` (up to ``to_seq``; 0 = to the end), or a snapshot
        if we lack them or it is far behind.

        Up to ``REFILL_WINDOW`` chunks of ``refill_chunk`` entries go at once, so
        the node applies one chunk while the next are on the wire; each Refill
        it sends as it progresses tops the window up (see :meth:`on_refill`).
        Chunks are the journal's bytes as they are (an ``EntryRun``): no
        ``Entry`` is made or packed on the way. O(window).
        """
        return self._send_entries(dest, from_seq, from_seq, to_seq, True)

    def _send_entries(
        self, dest: wire.Address, asked: int, start: int, to_seq: int, fresh: bool = False
    ) -> list:
        """Chunks ``start ..`` of the window that begins at ``asked``; remembers what is in flight
        (``fresh``: sent unasked, with the Fence that accepted a Join)."""
        sent = self.refill_sent
        last = self.node.replica.seq
        if asked > last:
            sent.pop(dest, None)
            return []
        if asked <= self.node.journal.base_seq or last - asked > self.node.settings.catchup_snapshot_lag:
            sent.pop(dest, None)
            return self.send_snapshot(dest)
        chunk = self.node.settings.refill_chunk
        stop = min(last, asked - 1 + REFILL_WINDOW * chunk)
        if to_seq > 0:
            stop = min(stop, to_seq)
        out = []
        seq = start
        while seq <= stop:
            run = self.node.journal.read_run(seq, min(chunk, stop - seq + 1))
            if not len(run):
                break
            out.append(
                Send(dest, wire.Entries(self.node.epoch, seq, self.role.commit, run), needs_sync=False)
            )
            seq += len(run)
            self.node.count("refill_entries_sent", len(run))
        sent[dest] = RefillWindow(self.node.epoch, asked, max(seq - 1, start - 1), fresh)
        return out

    def send_snapshot(self, dest: wire.Address) -> list:
        blob = self.node.replica.snapshot()
        seq, last_epoch = self.node.replica.seq, self.node.replica.last_epoch
        self.node.count("snapshots_sent")
        log.info("snapshot_send to=%s seq=%d bytes=%d", dest, seq, len(blob))
        out = []
        for off in range(0, max(len(blob), 1), SNAPSHOT_CHUNK):
            out.append(
                Send(
                    dest,
                    wire.SnapshotChunk(
                        self.node.epoch, seq, last_epoch, off, len(blob), blob[off : off + SNAPSHOT_CHUNK]
                    ),
                )
            )
        return out

    def on_refill(self, src: wire.Address, m: wire.Refill, now: float) -> list:
        """Serve a Refill: a catching-up node that progressed into the chunks in flight gets only
        the chunks that top its window up; any other ask (a gap, a re-ask after a lost chunk,
        a new node) gets the window from the seq it asked for."""
        if m.epoch > self.node.epoch:
            return []
        self.node.count("refills_served")
        start = m.seq
        prev = self.refill_sent.get(src)
        if m.to_seq == 0 and prev is not None and prev.epoch == self.node.epoch:
            if prev.with_fence and m.seq == prev.asked:
                # Its first ask crossed the window we sent with its Fence (on_join): that window is
                # on the wire. Sending it twice costs both nodes; a lost window is asked for again
                # after the node's timeout, and that second ask gets it.
                self.refill_sent[src] = prev._replace(with_fence=False)
                return []
            if prev.asked < m.seq <= prev.sent_to + 1:
                start = prev.sent_to + 1  # m.seq .. prev.sent_to are on the wire already
        return self._send_entries(src, m.seq, start, m.to_seq)
