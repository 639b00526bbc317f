"""The simulator's inputs: fault kinds, a run's :class:`Schedule`, and the seeded order flow.

For: everything a simulated run depends on, as plain data — :class:`Fault`
and :class:`Schedule`, :func:`random_schedule` (a schedule is a pure function
of its seed), and :func:`random_commands` / :func:`pack` (a client's order
flow and its wire records). Not for: running anything (``run.Sim``) or
checking a run (``check``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from ...protocol import wire

NODE_FAULTS = (
    "crash",
    "crash_mid_step",
    "hang",
    "isolate_primary",
    "isolate_primary_all",
    "cut_standby_witness",
    "partition_link",
    "switchover",
    "switchover_crash",
    "witness_crash",
)
MESSAGE_FAULTS = ("drop", "duplicate", "reorder")
# Disk faults (``journal_health``), drawn last and apart from NODE_FAULTS so that the schedules
# of seeds that draw none are what they were: a node's next journal append fails (nothing,
# half or all of it written, the sync failed), healed by the operator's restart on a good disk;
# or a node restarts to find its journal damaged mid-way, and gets its history back from a peer.
DISK_FAULTS = ("disk_fail", "corrupt_restart")
DISK_FAULT_RATE = 0.2
# A planned switchover with one of its three parties crashing at one step of the handover
# (``faults.SwitchoverStep``): "<who>:<step>", who the old primary, the target or the witness.
# Drawn from a stream of its own for half the schedules' switchovers, so a schedule without
# one is what it was.
SWITCHOVER_STEPS = (
    "old:switchover",  # handling the operator's Switchover (the drain never starts)
    "old:drain_ack",  # handling an Ack during the drain (its outputs lost, the Handover unsent)
    "old:handover_sent",  # in the step that sends the Handover (the Handover lost)
    "old:new_epoch_heartbeat",  # handling the target's first heartbeat as primary
    "old:new_epoch_entries",  # handling the new epoch's first Entries (their Ack lost)
    "target:draining_heartbeat",  # handling the draining primary's heartbeat
    "target:handover",  # handling the Handover
    "target:vote",  # handling the witness's grant (the promotion's outputs lost)
    "target:first_batch",  # in the step that sequences the new epoch's first batch
    "witness:handed_over",  # handling the old primary's heartbeat after the Handover, unsaved
    "witness:handed_over_saved",  # the same, its grant saved but never sent
    "witness:vote_request",  # handling the target's VoteRequest, its answer saved, never sent
)
SWITCHOVER_STEP_RATE = 0.5


# --- schedules ------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One node-level fault.

    ``gap`` is the virtual time after the group regained its redundancy
    (and the previous fault healed) before this one starts; ``duration``
    is how long it lasts (down, hung, cut) before it heals.
    """

    kind: str
    gap: float = 0.02
    duration: float = 0.1
    restart_as: str = "standby"  # crash kinds: the role the node restarts with
    step: str = ""  # switchover_step: one of SWITCHOVER_STEPS


@dataclass(frozen=True)
class Schedule:
    """Everything a run depends on; a run is a pure function of it."""

    seed: int
    mode: str = "sync"
    standbys: int = 1
    corrupt: bool = False  # an extra standby "c" whose engine is corrupted at ``corrupt_seq``
    corrupt_seq: int = 5
    clients: int = 2
    requests: int = 40  # per client, spread over the fault phase
    tail_requests: int = 5  # per client, after every fault healed (liveness probe)
    window: int = 8  # requests in flight per client
    # Requests a client sends per submit, as one Requests frame (ClientCore.submit_window, what
    # Client.send_many and send_batch do): the primary keeps a bundle's run of ids packed, so
    # bundles take its span path (queues.PendingQueue). 1: one Request each.
    bundle: int = 1
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    faults: tuple[Fault, ...] = ()
    catchup_lag: int = 50_000  # Settings.catchup_snapshot_lag (small values force snapshot catch-up)
    snapshot_every: int = 0
    journal_retain: int = 100_000  # Settings.journal_retain (small values compact after each snapshot)
    engine: str = "native"
    # Faults overlap: each starts ``gap`` after the previous one *started*, without waiting for
    # the group to regain its redundancy, so a fail-over can be hit by the next fault while it is
    # under way (a crash during a catch-up, a witness crash during a vote, two nodes down).
    overlap: bool = False
    # Forged peer, witness and operator messages an outsider sends during the fault phase (forge).
    forge: int = 0
    # Execution reports (``sessions``): the clients open their sessions with reports on and take
    # them as they run; ``report_window``/``order_window`` are the group's Settings (small ones
    # make a lagging client's reports GONE). ``restarts``: clients that restart during the fault
    # phase, a new core resuming from the last report seq the old one took (the old core runs on,
    # fenced); ``twins``: second clients that open a session with an id already in use.
    reports: bool = False
    report_window: int = 65536
    order_window: int = 65536
    restarts: int = 0
    twins: int = 0
    # The group's time (``timekeeping``): idle ``time`` commands every TIME_INTERVAL, GTD orders
    # and clients' bogus ``ts`` in the workload. Off: none of these, as the seeds found before
    # issue 19 ran (the nodes still stamp, with their skewed clocks, which no decision reads).
    time: bool = True

    @property
    def nodes(self) -> list[str]:
        return ["a", "b", "c"][: 1 + self.standbys + (1 if self.corrupt else 0)]

    def describe(self) -> str:
        faults = ",".join(
            f"{f.kind}(+{f.gap:.3f},{f.duration:.3f},{f.restart_as}{',' + f.step if f.step else ''})"
            for f in self.faults
        )
        return (
            f"mode={self.mode} nodes={''.join(self.nodes)} corrupt={self.corrupt}@{self.corrupt_seq} "
            f"clients={self.clients}x{self.requests}+{self.tail_requests} drop={self.drop} "
            f"dup={self.duplicate} reorder={self.reorder} catchup_lag={self.catchup_lag} "
            f"snapshot_every={self.snapshot_every} journal_retain={self.journal_retain} "
            f"bundle={self.bundle} overlap={self.overlap} forge={self.forge} faults=[{faults}]"
            + (
                f" reports(window={self.report_window},orders={self.order_window},"
                f"restarts={self.restarts},twins={self.twins})"
                if self.reports
                else ""
            )
            + ("" if self.time else " time=off")
        )


def random_schedule(seed: int, max_faults: int = 5) -> Schedule:
    """The schedule of ``seed``: fault mix, message-fault rates, group shape. Deterministic."""
    rng = random.Random(seed)
    standbys = rng.choice((1, 1, 2))
    corrupt = rng.random() < 0.2
    faults = []
    for _ in range(rng.randint(0, max_faults)):
        kind = rng.choice(NODE_FAULTS + ("crash", "crash_mid_step", "switchover"))
        faults.append(
            Fault(
                kind,
                round(rng.uniform(0.0, 0.1), 4),
                round(rng.uniform(0.005, 0.3), 4),
                rng.choice(("standby", "standby", "primary")),
            )
        )
    schedule = Schedule(
        seed=seed,
        standbys=standbys,
        corrupt=corrupt,
        corrupt_seq=rng.randint(1, 10),
        clients=rng.randint(1, 3),
        requests=rng.randint(10, 60),
        window=rng.choice((1, 4, 8, 32)),
        drop=rng.choice((0.0, 0.0, 0.01, 0.05, 0.15)),
        duplicate=rng.choice((0.0, 0.01, 0.05)),
        reorder=rng.choice((0.0, 0.05, 0.3)),
        faults=tuple(faults),
        # A corrupted standby must replay its bad seq, not skip it inside a catch-up snapshot.
        catchup_lag=50_000 if corrupt else rng.choice((50_000, 50_000, 5)),
        snapshot_every=rng.choice((0, 0, 7)),
        # Drawn last, so the draws above (and older seeds' schedules) stay as they were.
        # A corrupted standby again must replay its bad seq, not have it compacted away.
        journal_retain=100_000 if rng.random() < 0.5 or corrupt else 3,
        # Last again: half the schedules send bundles (8 and more take the packed span path).
        bundle=rng.choice((1, 1, 8, 24)),
        # Last again: a third of the schedules overlap their faults.
        overlap=rng.random() < 1 / 3,
    )
    # Then: some schedules end their fault list with a disk fault.
    if rng.random() < DISK_FAULT_RATE:
        disk = Fault(
            rng.choice(DISK_FAULTS),
            round(rng.uniform(0.0, 0.1), 4),
            round(rng.uniform(0.005, 0.3), 4),
            rng.choice(("standby", "standby", "primary")),
        )
        schedule = replace(schedule, faults=(*schedule.faults, disk))
    # Last of all: half the groups with two healthy standbys end with both losing the
    # primary, and each other, at once: two candidates for one epoch.
    if standbys == 2 and not corrupt and rng.random() < 0.5:
        split = Fault(
            "isolate_primary_split", round(rng.uniform(0.0, 0.1), 4), round(rng.uniform(0.15, 0.4), 4)
        )
        schedule = replace(schedule, faults=(*schedule.faults, split))
    # Half the switchovers crash one of their parties at one step of the handover: a stream of
    # its own, so every draw above stays as it was, and a schedule without a switchover too.
    rs = random.Random(seed * 97 + 5)
    if any(f.kind == "switchover" for f in schedule.faults):
        stepped = tuple(
            replace(f, kind="switchover_step", step=rs.choice(SWITCHOVER_STEPS))
            if f.kind == "switchover" and rs.random() < SWITCHOVER_STEP_RATE
            else f
            for f in schedule.faults
        )
        schedule = replace(schedule, faults=stepped)
    # A quarter of the schedules have an outsider forging messages: drawn from a stream of its
    # own, so every draw above (the disk and split faults' too) stays as it was.
    schedule = replace(schedule, forge=random.Random(seed * 31 + 7).choice((0, 0, 0, 24)))
    # Half the schedules run their clients with execution reports, restarts and twins: a stream
    # of its own again, so a schedule that draws none of it is what it was.
    rr = random.Random(seed * 53 + 11)
    if rr.random() < 0.5:
        schedule = replace(
            schedule,
            reports=True,
            report_window=rr.choice((65536, 65536, 3, 12)),
            order_window=rr.choice((65536, 4)),
            restarts=rr.choice((0, 1, 1, 2)),
            twins=rr.choice((0, 0, 1)),
        )
    return schedule


def without_switchover_steps(schedule: Schedule) -> Schedule:
    """``schedule`` with each ``switchover_step`` fault a plain ``switchover`` again: the fault
    list as seeds drew it before those faults existed (seeds pinned by tests then)."""
    plain = tuple(
        replace(f, kind="switchover", step="") if f.kind == "switchover_step" else f for f in schedule.faults
    )
    return replace(schedule, faults=plain)


# --- commands ----------------------------------------------------------------------------


def random_commands(rng: random.Random, client_id: int, n: int) -> list[dict]:
    """A plausible order flow for one client: limits around 100 that cross, cancels, replaces, IOC."""
    out: list[dict] = []
    live: list[int] = []
    for i in range(n):
        oid = client_id * 1_000_000 + i + 1
        r = rng.random()
        if live and r < 0.15:
            out.append({"op": "cancel", "instrument": 1, "id": live.pop(rng.randrange(len(live)))})
        elif live and r < 0.25:
            out.append(
                {
                    "op": "replace",
                    "instrument": 1,
                    "id": rng.choice(live),
                    "price": rng.randint(96, 104),
                    "qty": rng.randint(0, 20),
                }
            )
        elif r < 0.28:
            out.append({"op": "mass_cancel", "account": client_id})
        else:
            d = {
                "op": "new",
                "instrument": rng.choice((1, 1, 2)),
                "id": oid,
                "side": rng.choice(("buy", "sell")),
                "price": rng.randint(96, 104),
                "qty": rng.randint(1, 20),
                "account": client_id,
                "tif": rng.choice(("GTC", "GTC", "GTC", "IOC", "FOK")),
            }
            if d["instrument"] == 1:
                live.append(oid)
            out.append(d)
    return out


def pack(cmd: dict) -> bytes:
    """One command-log dict as the 80-byte wire record."""
    from matching.commands import command_record

    return wire.pack_command(command_record(cmd))
