"""A node's status report: what ``matchcore status`` prints for it.

For: ``report(node)``, the dictionary ``NodeMachine.status`` returns (and
``wire.Status`` carries as JSON): the node's role, epoch, seq, digest,
commit, leader and lag, the in-sync set, the lease, the last promotion's
timings, the journal's health and the counters. Its keys are what tools
read (``ops/cli``, benchmarks): renaming one breaks them. Not for:
deciding anything (the machine never reads its own report back), sockets
or clocks (the lease is reported as of the last tick).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import wire
from .primary import PrimaryRole

if TYPE_CHECKING:  # pragma: no cover
    from .machine import NodeMachine


def report(node: NodeMachine) -> dict[str, Any]:
    """The node's status, as ``matchcore status`` prints it. O(peers + counters)."""
    role = node.current_role
    if isinstance(role, PrimaryRole):
        best = max((role.acked.get(p, 0) for p in node.peers), default=node.replica.seq)
        lag = node.replica.seq - best
    else:
        lag = max(0, role.leader_seq - node.replica.seq)
    return {
        "node": node.name,
        "role": wire.ROLE_NAMES[node.role],
        "epoch": node.epoch,
        "last_seq": node.replica.seq,
        "digest": f"{node.replica.digest:016x}",
        "commit": role.commit if isinstance(role, PrimaryRole) else role.leader_commit,
        "leader": node.leader,
        "lag": lag,
        "mode": node.settings.mode,
        "solo": node.solo,
        "isr": list(node.isr_confirmed) if node.is_primary else [],
        "witness_solo": node.solo,  # kept for tools written before the ISR: same as "solo"
        "joined": node.joined,
        "promotion_ms": node.promotion_ms,
        "candidacy_ms": node.candidacy_ms,
        "epoch_start_seq": node.history[-1][1] if node.history else 1,
        "diverged_at": node.diverged_at,
        "error": node.journal_error,
        "damaged": node.damaged,
        "lease": role.lease.status(node.ticked_at) if type(role) is PrimaryRole else "none",
        "counters": dict(sorted(node.counters.items())),
    }
