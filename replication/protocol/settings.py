"""The timing and behaviour settings a node machine and the witness run with.

For: :class:`Settings` (times in seconds, counts, the replication ``mode``)
and the allowed values of ``mode`` and ``fsync``. The group file
(``transport.group_file``) fills them from TOML; the simulator builds them
directly. Not for: reading files or checking a group file's keys.
"""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("sync", "async")
FSYNC_POLICIES = ("none", "batch", "always")


@dataclass
class Settings:
    """What a node machine needs besides its peers; times in seconds."""

    mode: str = "sync"
    heartbeat_interval: float = 0.005
    heartbeat_timeout: float = 0.040
    # A dropped connection (pyzmq EVENT_DISCONNECTED) arrives as soon as the peer's
    # process is gone, so any wait after it only delays the fail-over. No grace by
    # default: the witness must agree (it parks the vote until it sees the primary
    # gone too), so a false alarm costs a refused vote, and a heartbeat that still
    # arrives drops the candidacy. (A 1 ms grace cost ~1.5 ms per fail-over.)
    suspect_timeout: float = 0.0
    fsync: str = "batch"
    snapshot_every: int = 100_000
    journal_retain: int = 100_000  # entries kept behind the latest snapshot (-1: never compact)
    dedupe_window: int = 4096
    report_window: int = 65536  # execution reports kept per client id (reports.ReportBook)
    order_window: int = 65536  # ended orders kept for queries, over all clients
    report_poll: float = (
        1.0  # a parked report fetch is answered empty after this (the client's liveness check)
    )
    max_batch: int = 1024
    refill_chunk: int = 2048
    catchup_snapshot_lag: int = 50_000  # a joiner further behind than this gets a snapshot
    switchover_timeout: float = 3.0
    vote_retry: float = 0.005
    # After a refused vote, the first few re-asks come this soon: the witness usually
    # refuses only because its own evidence (the same connection drop, or the same
    # heartbeat silence) reaches it a little later than ours.
    vote_retry_refused: float = 0.001
    join_retry: float = 0.05
    witness_grace: float = 0.0  # witness: refuse votes this long after start (learn from heartbeats)
    # Async mode: how long an echo of a lease ask lets the primary acknowledge (see the module
    # docstring; ``node.lease.LeasePromise.on_ask``). Supporters promise this plus lease_margin.
    lease: float = 0.030
    lease_margin: float = 0.005  # one heartbeat: room for the clocks' rates to differ
    max_in_flight: int = 4096  # per client connection: requests queued (received, not sequenced)
    # A primary that has sequenced nothing this long sequences a ``time`` command (0: never), so a
    # GTD order expires at most this late (``group_time``; the group file's ``time_interval_ms``).
    time_interval: float = 1.0
