"""The checker of a finished simulation: safety and liveness, from what clients saw and nodes kept.

For: turning one ``run.Sim`` run into a :class:`Report` — the figures
(acknowledged, lost, executed twice, divergences caught, split brain) and a
list of violations, empty when the run kept every rule:

- every acknowledged request is in the surviving primary's history exactly
  once, at the seq its reply named, and its reply's events are the events a
  fresh engine replaying that history produces for it (``sync`` mode; in
  ``async`` mode losses are counted, not violations — that is what async
  trades away — but bounded: no epoch acknowledges after a later epoch began
  serving, the async lease's promise, see ``replication.protocol.node.lease``);
- no request is executed twice; the history is self-consistent (replaying it
  gives every entry's recorded digest); no request answered ``not_entitled``
  is in it;
- at most one node serves as primary in any epoch, the witness grants each
  epoch to at most one candidate (and to none other than the node that serves
  it), and no two journals ever
  held different entries for one (epoch, seq) or one entry on two different
  predecessors;
- every node's journal and book agree with the primary's chained digest at
  every seq both hold;
- the corrupted standby (if any) declared divergence at exactly its first
  bad entry and never served as primary; no other node diverged;
- every machine's ``invariants()`` held after each of its steps (the
  simulator calls them: ``participants``);
- in schedules with execution reports: every report a client took is its
  own, exactly once, in order, equal to what the replay attributes to its
  client id, skipping only past a GONE it was told of; fencing never lets a
  fenced session's request run (``check_reports``);
- the primaries' stamps along the history never decrease and are never a
  client's own ``ts``; entries of client id 0 are ``time`` commands
  (``timekeeping.check_stamps``);
- liveness: after every fault healed the group converged (one primary,
  every healthy standby level with it, every request answered) within the
  simulator's virtual-time bound.

Also here: the history registry (``RecordingJournal`` reports every append
to a ``Registry``) from which the full history behind a snapshot-installed
journal is rebuilt. Not for: running anything (``run``), or checking real
processes (``chaos``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...protocol import wire
from ...protocol.replica import Replica
from ...protocol.reports import ReportBookPy
from ...protocol.session import is_open_entry, opened_id
from ...storage.journal import MemoryJournal
from .check_reports import check_fencing, check_reports, check_sessions
from .timekeeping import check_stamps, count_expired

if TYPE_CHECKING:  # pragma: no cover
    from .clients import SimClient
    from .run import Sim


# --- the history registry ------------------------------------------------------------


class RecordingJournal(MemoryJournal):
    """A ``MemoryJournal`` that reports every append to the simulator's history registry."""

    def __init__(self, name: str, registry: Registry) -> None:
        super().__init__("batch")
        self.name = name
        self.registry = registry

    def append(self, entries: list[wire.Entry]) -> None:
        pred = self.last_epoch if self.last_seq else 0
        super().append(entries)
        for e in entries:
            self.registry.record(self.name, e, pred)
            pred = e.epoch


@dataclass
class Registry:
    """Every entry any node ever journaled, by (epoch, seq), with the epoch of the entry before it.

    Two different entries for one (epoch, seq), or one entry appended on top
    of two different predecessors, are safety violations (two primaries in an
    epoch, or a journal that is not a prefix of the history it claims).
    """

    entries: dict[tuple[int, int], wire.Entry] = field(default_factory=dict)
    pred: dict[tuple[int, int], int] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)

    def record(self, node: str, e: wire.Entry, pred_epoch: int) -> None:
        key = (e.epoch, e.seq)
        old = self.entries.get(key)
        if old is None:
            self.entries[key] = e
            self.pred[key] = pred_epoch
            return
        if old != e:
            self.conflicts.append(f"two entries for epoch {e.epoch} seq {e.seq} (node {node})")
        elif self.pred[key] != pred_epoch:
            self.conflicts.append(
                f"entry ({e.epoch},{e.seq}) on node {node} follows epoch {pred_epoch}, "
                f"elsewhere epoch {self.pred[key]}"
            )

    def chain(self, journal: MemoryJournal) -> list[wire.Entry]:
        """The full history (seq 1 ..) a journal stands for, reaching past its snapshot base via the registry."""
        head: list[wire.Entry] = []
        seq, epoch = journal.base_seq, journal.last_epoch if journal.last_seq == journal.base_seq else None
        if seq:
            if epoch is None:
                first = journal.entry(seq + 1)
                epoch = self.pred.get((first.epoch, first.seq), 0) if first is not None else 0
            while seq > 0:
                e = self.entries.get((epoch, seq))
                if e is None:
                    raise KeyError(f"history lost: no entry ({epoch},{seq}) anywhere")
                head.append(e)
                epoch = self.pred[(epoch, seq)]
                seq -= 1
            head.reverse()
        return head + journal.read(journal.base_seq + 1)


# --- the check ---------------------------------------------------------------------------


@dataclass
class Report:
    """What one schedule showed; ``violations`` is empty when every rule held."""

    seed: int
    violations: list[str] = field(default_factory=list)
    acked: int = 0
    lost: int = 0
    acked_past_lease: int = 0  # async: epochs that acknowledged after a later epoch began serving
    duplicates: int = 0
    expired: int = 0
    divergences: int = 0  # divergences caught (the corrupted standby's, as designed)
    split_brain: int = 0
    history: int = 0  # entries in the surviving primary's history
    faults: dict[str, int] = field(default_factory=dict)
    virtual_time: float = 0.0
    steps: int = 0
    converged: bool = False
    switchovers: int = 0  # plain switchovers asked for
    switchovers_landed: int = 0  # ... whose target led the next epoch (not a rule: faults may abort one)
    forged_refused: int = 0  # the outsider's forgeries, every one refused by trust.Policy
    time_entries: int = 0  # the primaries' idle time commands in the history (timekeeping)
    orders_expired: int = 0  # GTD orders the history expired (cancelled, reason expired)
    stops_triggered: int = 0  # stop orders the history triggered
    reports: dict | None = None  # schedules with reports: check_reports.ReportFigures

    def as_dict(self) -> dict:
        extra = {} if self.reports is None else {"reports": self.reports}
        return extra | {
            "seed": self.seed,
            "violations": self.violations,
            "acked": self.acked,
            "lost": self.lost,
            "acked_past_lease": self.acked_past_lease,
            "duplicates": self.duplicates,
            "expired": self.expired,
            "divergences": self.divergences,
            "split_brain": self.split_brain,
            "history": self.history,
            "faults": dict(sorted(self.faults.items())),
            "virtual_time": round(self.virtual_time, 6),
            "steps": self.steps,
            "converged": self.converged,
            "switchovers": self.switchovers,
            "switchovers_landed": self.switchovers_landed,
            "forged_refused": self.forged_refused,
            "time_entries": self.time_entries,
            "orders_expired": self.orders_expired,
            "stops_triggered": self.stops_triggered,
        }


def _reference_node(sim: Sim) -> str:
    """The surviving primary, or (no single primary) the healthy node furthest ahead."""
    p = sim.primary()
    if p:
        return p
    best, key = sim.names[0], (-1, -1)
    for n, nd in sim.nodes.items():
        if n == sim.corrupt:
            continue
        k = (nd.journal.last_epoch, nd.journal.last_seq)
        if k > key:
            best, key = n, k
    return best


def check_sim(sim: Sim) -> Report:
    """Check one finished simulation. O(history + replies)."""
    rep = Report(sim.schedule.seed, faults=dict(sim.faults_injected), virtual_time=sim.now, steps=sim.steps)
    rep.switchovers = len(sim.switchovers)
    rep.switchovers_landed = sum(1 for t, e in sim.switchovers if t in sim.primaries.get(e + 1, ()))
    v = rep.violations
    strict = sim.schedule.mode == "sync"
    if sim.settle_failed:
        v.append(f"liveness: {sim.settle_failed}")
    # Every machine's own invariants() held after each of its steps (participants).
    v += [f"invariant: {x}" for x in sim.invariant_failures]
    # Trust: the group's own messages all pass the policy, and no forgery does (forge).
    rep.forged_refused = sim.trust.refused
    v += [f"trust: the group's own message refused: {x}" for x in sim.trust.legit_refused[:3]]
    v += [f"trust: a forgery was admitted: {x}" for x in sim.trust.forged_admitted[:3]]
    rep.converged = not sim.settle_failed and sim.converged()
    if not sim.settle_failed and not rep.converged:
        v.append(
            f"liveness: not converged {sim.LIVENESS_BOUND}s (virtual) after every fault healed; "
            f"roles {roles(sim)}"
        )

    # The surviving history, and a fresh replay of it.
    ref = _reference_node(sim)
    try:
        chain = sim.registry.chain(sim.nodes[ref].journal)
    except KeyError as exc:
        v.append(f"history: {exc}")
        return rep
    rep.history = len(chain)
    replica = Replica(sim.engine_factory)
    # The plain-Python book, the specification: the nodes run the C one when it is built, so
    # the reports they served are checked against an independent implementation.
    replica.reports = ReportBookPy()
    events_at: list[bytes] = []
    for i, e in enumerate(chain):
        if e.seq != i + 1:
            v.append(f"history: entry {i + 1} has seq {e.seq}")
            break
        events, digest = replica.execute(e.epoch, e.seq, e.client_id, e.request_id, e.command)
        if digest != e.digest:
            v.append(
                f"history: replaying seq {e.seq} gives digest {digest:016x}, the journal says {e.digest:016x}"
            )
            break
        events_at.append(events)

    # The sequencer's stamps: never decreasing, never a client's own; client id 0 is time's.
    v += check_stamps(chain, sim.now)
    rep.time_entries = sum(1 for e in chain if not e.client_id)
    rep.orders_expired, rep.stops_triggered = count_expired(events_at)

    seq_of: dict[tuple[int, int], int] = {}
    for e in chain:
        if e.client_id:
            key = (e.client_id, e.request_id)
            if key in seq_of:
                rep.duplicates += 1
                v.append(f"duplicate: request {key} executed at seq {seq_of[key]} and {e.seq}")
            else:
                seq_of[key] = e.seq

    # What clients were told. Clients of one id: a client, the clients its restarts made, a twin.
    by_id: dict[int, list[SimClient]] = {}
    for cl in sim.clients.values():
        by_id.setdefault(cl.core.client_id, []).append(cl)
    for cid, clients in by_id.items():
        if len(clients) > 1:
            continue  # a restart's or a twin's: check_reports.check_sessions
        # One open per client, re-sent through any fault, opens one session: the one it was told
        # (async may lose an acknowledged open at a fail-over, as any acknowledged entry).
        cl = clients[0]
        opens = [e.request_id for e in chain if e.client_id == cid and is_open_entry(e.request_id)]
        told = [opened_id(cl.core.session)] if cl.core.session and not cl.core.opening else []
        if opens != told and (strict or len(opens) > 1 or not set(opens) <= set(told)):
            v.append(f"session: client {cid} was told session {cl.core.session}, the history opened {opens}")
        if cl.core.fenced:
            v.append(f"session: client {cid} was fenced, though no other client has its id")
    for cl in sim.clients.values():
        cid = cl.core.client_id
        for rid, reply in sorted(cl.done.items()):
            if reply.status == wire.EXPIRED:
                rep.expired += 1
                continue
            if reply.status == wire.NOT_ENTITLED:  # refused before sequencing: never in a history
                if (cid, rid) in seq_of:
                    v.append(
                        f"entitlement: request ({cid},{rid}) refused not_entitled, executed at seq {seq_of[cid, rid]}"
                    )
                continue
            if reply.status == wire.FENCED:
                continue  # never executed (check_reports.check_fencing)
            rep.acked += 1
            if (cid, rid) not in seq_of:
                rep.lost += 1
                if strict:
                    v.append(
                        f"lost: request ({cid},{rid}) acknowledged at seq {reply.seq} epoch {reply.epoch} "
                        f"by {reply.leader}, not in {ref}'s history"
                    )
        for reply in cl.ok_replies:
            seq = seq_of.get((cid, reply.request_id))
            if seq is None:
                continue  # counted above if it was the final answer
            if reply.seq != seq:
                if strict:
                    v.append(
                        f"reply: ({cid},{reply.request_id}) told seq {reply.seq}, history has it at {seq}"
                    )
                else:
                    # async: the execution this reply described was lost at a fail-over and the
                    # re-sent request ran again (once) in the surviving history.
                    rep.lost += 1
            elif seq <= len(events_at) and reply.events != events_at[seq - 1]:
                if not strict and reply.epoch != chain[seq - 1].epoch:
                    # async: as above, but the request ran again at the very seq of the lost
                    # execution, on another history (a reply answered from the dedupe table
                    # in a later epoch carries the entry's own events: it never comes here).
                    rep.lost += 1
                else:
                    v.append(
                        f"reply: ({cid},{reply.request_id}) events differ from the history's at seq {seq}"
                    )

    # Sessions and execution reports (check_reports): fencing, and what each client took.
    if sim.schedule.reports:
        reopened = check_sessions(by_id, chain, strict, v)
        fenced_replies = check_fencing(sim, chain, seq_of, strict, v)
        if len(events_at) == len(chain):  # (a history that does not replay is a violation above)
            figures = check_reports(sim, replica.reports, seq_of, strict, v)
            figures.fenced_replies, figures.reopened = fenced_replies, reopened
            figures.fenced = sum(1 for cl in sim.clients.values() if cl.core.fenced)
            rep.reports = figures.as_dict()

    # Async: the lease bounds what a fail-over loses. No reply of an epoch may leave after a
    # later epoch began (an old primary stops acknowledging when its lease runs out, and no node
    # serves a newer epoch before that): what is lost was acknowledged before the next epoch existed.
    # Counted from when the later epoch's primary first served, not from the witness's grant: a
    # grantee may have echoed the old primary after it asked (its candidacy dropped when the old
    # primary came back, or it restarted and promised from its start), so the old primary's lease
    # may run past the grant; the grantee then defers the grant until its own promise is over
    # (node.candidacy.Candidacy.on_vote), which is what bounds the loss (seeds 4221, 8766 --overlap on --mode async).
    if not strict:
        for epoch, acked_at in sorted(sim.last_ack_at.items()):
            later = [(t, e) for e, t in sim.served_at.items() if e > epoch and t <= acked_at]
            if later:
                t, e = min(later)
                rep.acked_past_lease += 1
                v.append(
                    f"lease: epoch {epoch} acknowledged at t={acked_at:.4f}, after epoch {e} began serving "
                    f"at t={t:.4f} (granted at t={sim.granted_at.get(e, float('nan')):.4f})"
                )

    # Split brain.
    for epoch, names in sorted(sim.primaries.items()):
        if len(names) > 1:
            rep.split_brain += 1
            v.append(f"split brain: epoch {epoch} served by {sorted(names)}")
    # The witness's rule: one candidate per epoch, and none that another node already serves
    # (a handover target takes its epoch without a vote). Checked on the grants themselves,
    # whether or not the second grantee got to serve.
    for epoch, granted in sorted(sim.grants.items()):
        claimants = granted | sim.primaries.get(epoch, set())
        if len(claimants) > 1:
            rep.split_brain += 1
            v.append(
                f"split brain: the witness granted epoch {epoch} to {sorted(granted)}, "
                f"served by {sorted(sim.primaries.get(epoch, ()))}"
            )
    for c in sim.registry.conflicts:
        rep.split_brain += 1
        v.append(f"split brain: {c}")
    v.extend(f"journal: {b}" for b in sorted(sim.bad_primaries))

    # Every node against the history, seq by seq.
    for n, nd in sim.nodes.items():
        for e in nd.journal.read(nd.journal.base_seq + 1):
            if e.seq <= len(chain) and e.digest != chain[e.seq - 1].digest:
                v.append(
                    f"divergence undetected: {n} journal seq {e.seq} digest {e.digest:016x} "
                    f"!= {chain[e.seq - 1].digest:016x}"
                )
                break
        m = nd.machine
        if m is not None and m.role != wire.ROLE_DIVERGED and 0 < m.replica.seq <= len(chain):
            if m.replica.digest != chain[m.replica.seq - 1].digest:
                v.append(
                    f"divergence undetected: {n} book at seq {m.replica.seq} digest {m.replica.digest:016x}"
                )

    # Divergence: caught where it happened, only where it was planted.
    for n, at in sorted(sim.diverged.items()):
        if n != sim.corrupt:
            v.append(f"divergence: healthy node {n} diverged at seq {at}")
        elif at != sim.schedule.corrupt_seq:
            v.append(
                f"divergence: corrupted {n} caught at seq {at}, first bad entry {sim.schedule.corrupt_seq}"
            )
        else:
            rep.divergences += 1
    if sim.corrupt:
        if sim.corrupt not in sim.diverged:
            v.append(f"divergence: corrupted {sim.corrupt} never caught")
        if sim.corrupt_was_primary:
            v.append(f"divergence: corrupted {sim.corrupt} served as primary")
    return rep


def roles(sim: Sim) -> dict[str, str]:
    """Node -> role name (or down/hung), for messages."""
    out = {}
    for n, nd in sim.nodes.items():
        if not nd.up or nd.machine is None:
            out[n] = "down"
        else:
            m = nd.machine
            out[n] = f"{wire.ROLE_NAMES[m.role]}/e{m.epoch}/s{m.replica.seq}" + ("/hung" if nd.hung else "")
    return out
