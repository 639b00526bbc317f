"""The simulator's clients beyond one core: execution reports taken, restarts that resume, twins.

For: what a schedule with ``reports`` adds to its clients (``schedule.Schedule``):

- :func:`take_reports`: after every call into a client core, the application
  reads what its ``ReportFeed`` took (``take_gone`` first: a GONE it is told
  of goes into ``SimClient.took`` as its detail, before the reports past the
  gap), as ``Client.executions`` would;
- :func:`restart`: a client process restarts. A new ``ClientCore`` for the
  same client id, at a new address, resumes from the seq of the last report
  its chain took (``resume_from``; 0 if none) and opens a new session a little
  later; it takes over the commands not yet sent. The old core runs on (its
  requests in flight are re-sent until answered): the new session fences it,
  so its later answers must be ``FENCED`` and its submits ``SessionFenced``;
  what it still takes is checked for attribution, not counted as delivered;
- :func:`twin`: a second client, with an order flow of its own, uses a client
  id already in use: its session fences the first client's.

All their draws come from ``Sim.client_rng``, a stream of its own, so that a
schedule without reports draws what it drew before. :class:`FeedCheck` runs a
feed's invariants in the simulator's per-step check. Not for: judging what
the clients took (``check_reports``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...protocol.client_core import ClientCore
from .clients import SimClient
from .events import CLIENT_RESTART, CLIENT_TICK, CLIENT_TWIN, SUBMIT
from .schedule import pack, random_commands

if TYPE_CHECKING:  # pragma: no cover
    from .run import Sim

NONCE_STEP = 1 << 32  # the k-th open of a client id (k >= 1) has nonce client_id + k * NONCE_STEP
RESTART_DELAY = (0.0, 0.1)  # a restarted client opens its session this long (drawn) after the restart
TWIN_COMMANDS = (5, 20)  # a twin's order flow: this many commands (drawn)
# The simulated group answers a parked report fetch after REPORT_POLL (Settings.report_poll, 1 s
# by default), and a client re-sends a fetch unanswered after FETCH_TIMEOUT (2.5 s by default):
# scaled down as the request timeouts are, so that a lost fetch costs a run less than its length.
REPORT_POLL = 0.1
FETCH_TIMEOUT = 0.25


class FeedCheck:
    """A client's ``ReportFeed`` as the simulator's per-step invariant check calls it: the seqs
    of its ready reports are ordered in sync mode only (async may take reports back)."""

    def __init__(self, sim: Sim, cl: SimClient) -> None:
        self.feed = cl.core.feed
        self.ordered = sim.schedule.mode == "sync"

    def invariants(self) -> None:
        self.feed.invariants(ordered_seqs=self.ordered)


def new_core(sim: Sim, client_id: int, resume_from: int | None) -> ClientCore:
    """A client core as the simulator runs it: its timeouts scaled to the simulated group's
    (requests re-sent after 50 ms, a report fetch after ``FETCH_TIMEOUT``), reports on if the
    schedule has them."""
    core = ClientCore(
        client_id, sim.names, 1, retry_timeout=0.05, reports=sim.schedule.reports, resume_from=resume_from
    )
    core.feed.fetch_timeout = FETCH_TIMEOUT
    return core


def take_reports(cl: SimClient, now: float) -> list:
    """The application reads its feed: a GONE's detail (if told), then the reports taken. Returns
    the feed's outputs (a fetch resumed). O(reports)."""
    feed = cl.core.feed
    detail, out = feed.take_gone(now)
    if detail:
        cl.took.append(detail)
    records, more = feed.take(now)
    cl.took += records
    return out + more


def last_seq(took: list[bytes | str]) -> int:
    """The seq of the last report in ``took`` (0: none). O(len)."""
    for item in reversed(took):
        if isinstance(item, bytes):
            return int.from_bytes(item[:8], "little")
    return 0


def schedule_events(sim: Sim, start: float, span: float) -> None:
    """Queue the schedule's restarts and twins over the fault phase (``Sim.client_rng``); none
    without reports (``replace(schedule, reports=False)`` runs a seed as it ran before them)."""
    s, rng = sim.schedule, sim.client_rng
    if not s.reports:
        return
    firsts = [cl.addr for cl in sim.clients.values()]
    for _ in range(s.restarts):
        sim.queue.push(start + rng.uniform(0, span), CLIENT_RESTART, rng.choice(firsts))
    for _ in range(s.twins):
        cid = sim.clients[rng.choice(firsts)].core.client_id
        sim.queue.push(start + rng.uniform(0, span), CLIENT_TWIN, cid)


def _opens(sim: Sim, client_id: int) -> int:
    """How many clients of the simulation use ``client_id`` (the next open's index)."""
    return sum(1 for c in sim.clients.values() if c.core.client_id == client_id)


def _add(sim: Sim, cl: SimClient) -> None:
    sim.clients[cl.addr] = cl
    sim.queue.push(sim.now + sim.client_rng.uniform(0, sim.CLIENT_TICK), CLIENT_TICK, cl.addr)


def restart(sim: Sim, addr: bytes) -> None:
    """The current client of ``addr``'s chain restarts (see the module docstring). Its old core
    runs on: an open it still has in flight is re-sent until answered (so every open the
    history holds is one a client was told), and may then fence the new core in turn."""
    old = sim.clients[addr]
    while old.successor:
        old = sim.clients[old.successor]
    cid = old.core.client_id
    chain = old.chain or old.addr
    resume = last_seq(_chain_took(sim, chain))
    k = _opens(sim, cid)
    core = new_core(sim, cid, resume)
    new = SimClient(
        f"client{cid}.{k}".encode(),
        core,
        old.commands,
        next_cmd=old.next_cmd,
        nonce=cid + k * NONCE_STEP,
        chain=chain,
        resume_from=resume,
        start_at=sim.now + sim.client_rng.uniform(*RESTART_DELAY),
    )
    old.retired, old.took_live, old.successor = True, len(old.took), new.addr
    _add(sim, new)
    # Submits of its own for every command left (the tail's too): the old client's may have gone
    # by while it was fenced (a fenced client's submit sends nothing). Spare ones send nothing.
    for _ in range(1 + len(new.commands) - new.next_cmd):
        sim.queue.push(new.start_at + sim.client_rng.uniform(0, 0.05), SUBMIT, new.addr)
    sim.log(f"client {cid} restarts as {new.addr.decode()}, resuming after seq {resume}")


def twin(sim: Sim, client_id: int) -> None:
    """A second client with ``client_id`` (its own order flow) opens a session: it fences the
    client that held the id."""
    rng = sim.client_rng
    k = _opens(sim, client_id)
    flow = random_commands(rng, client_id, rng.randint(*TWIN_COMMANDS))
    core = new_core(sim, client_id, None)
    cl = SimClient(
        f"client{client_id}.{k}".encode(), core, [pack(c) for c in flow], nonce=client_id + k * NONCE_STEP
    )
    cl.chain = cl.addr
    _add(sim, cl)
    for _ in range(len(cl.commands)):
        sim.queue.push(sim.now + rng.uniform(0, 0.05), SUBMIT, cl.addr)
    sim.log(f"client {client_id} gets a twin {cl.addr.decode()}")


def _chain_took(sim: Sim, chain: bytes) -> list[bytes | str]:
    """What a chain's clients took while each was its current one, in chain order."""
    out: list[bytes | str] = []
    for cl in chain_members(sim, chain):
        out += cl.took[: cl.took_live] if cl.retired else cl.took
    return out


def chain_members(sim: Sim, chain: bytes) -> list[SimClient]:
    """The clients of one chain (a first client and its restarts), in order."""
    cl = sim.clients[chain]
    out = [cl]
    while cl.successor:
        cl = sim.clients[cl.successor]
        out.append(cl)
    return out
