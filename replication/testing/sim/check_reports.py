"""The checker's rules for sessions and execution reports, from the surviving history.

For: :func:`check_reports`, called by ``check.check_sim`` with the history
it replayed (the replay's ``Replica`` fed its own ``ReportBook``: each client
id's expected reports, numbered from 1, the same on every node since they
follow the journal). For each chain of clients (a first client and the
clients its restarts made, ``sessions``), in order:

- every report a client took is its own client id's expected report, byte
  for byte: the reports of one client are consecutive numbers, from the
  first report after its session's open (or after its ``resume_from`` seq),
  never a duplicate, never reordered, never another client's, never one of an
  entry the history does not hold; a client skips forward only right after a
  GONE it was told of (the application reads a GONE before the reports taken
  after it: ``sessions.take_reports``);
- across a chain, what each client took while it was current continues
  past what its predecessor took (exactly once over the restarts).

And :func:`check_fencing`: a request answered ``FENCED`` was never executed;
a fenced client's id has a newer session in the history; no entry of a
session follows the open of a newer session of its client id.

In ``async`` mode a fail-over may take back acknowledged entries, and with
them reports a client took: past a client's first report that differs from
the history, the rest is counted (``lost``), not judged, as lost replies
are; a report that is another client's is a violation in both modes. Not for:
replies (``check``), or running anything.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...protocol import wire
from ...protocol.reports import ReportBookPy
from ...protocol.session import SESSION_SHIFT, is_open_entry, nonce_of, opened_id

if TYPE_CHECKING:  # pragma: no cover
    from .clients import SimClient
    from .run import Sim


@dataclass
class ReportFigures:
    """What the clients took, over one run."""

    taken: int = 0  # reports the clients took while current
    gone: int = 0  # GONE answers the clients were told of
    skipped: int = 0  # reports skipped past a GONE
    lost: int = 0  # async: clients whose reports left the history at a fail-over
    restarts: int = 0
    twins: int = 0
    fenced: int = 0  # clients fenced by a newer session
    fenced_replies: int = 0
    reopened: int = 0  # sessions an open re-sent after a newer one opened opened again (see check_sessions)

    def as_dict(self) -> dict:
        return dict(vars(self))


def expected_reports(book: ReportBookPy) -> dict[int, list[bytes]]:
    """Client id -> its reports, report ``n`` at index ``n - 1`` (the book keeps them all)."""
    out = {}
    for cid in book.clients:
        first, records = book.reports_after(cid, 0, 1 << 62, 1 << 62)
        assert first == 1
        out[cid] = [records[i : i + 64] for i in range(0, len(records), 64)]
    return out


def _owner_of(expected: dict[int, list[bytes]]) -> dict[bytes, int]:
    return {rec: cid for cid, recs in expected.items() for rec in recs}


def check_reports(
    sim: Sim, book: ReportBookPy, seq_of: dict[tuple[int, int], int], strict: bool, v: list[str]
) -> ReportFigures:
    """The report rules (module docstring) for every chain; violations onto ``v``. O(reports)."""
    fig = ReportFigures()
    expected = expected_reports(book)
    owner = _owner_of(expected)
    seqs = {cid: [int.from_bytes(r[:8], "little") for r in recs] for cid, recs in expected.items()}
    chains: dict[bytes, list[SimClient]] = {}
    for cl in sim.clients.values():
        chains.setdefault(cl.chain or cl.addr, []).append(cl)
    for chain in chains.values():
        fig.restarts += len(chain) - 1
        if chain[0].chain:
            fig.twins += 1
        last_live = 0  # the highest number a current client of the chain took
        for cl in chain:
            cid = cl.core.client_id
            mine = expected.get(cid, [])
            who = f"client {cid} ({cl.addr.decode()})"
            if cl.resume_from is not None:
                start = bisect_right(seqs.get(cid, []), cl.resume_from) + 1
            else:
                open_seq = seq_of.get((cid, opened_id(cl.core.session))) if cl.core.session else None
                if open_seq is None:
                    if any(isinstance(x, bytes) for x in cl.took):
                        if strict:
                            v.append(f"reports: {who} took reports, its session's open is not in the history")
                        else:
                            fig.lost += 1
                    continue
                start = bisect_right(seqs.get(cid, []), open_seq) + 1
            numbers = _walk(cl, who, mine, owner, start, strict, v, fig)
            if numbers is None:
                continue
            live = numbers[: _live_count(cl)]
            if live and live[0] <= last_live:
                v.append(f"reports: {who} took report {live[0]}, its chain had taken up to {last_live}")
            if live:
                last_live = live[-1]
                fig.taken += len(live)
    return fig


def _live_count(cl: SimClient) -> int:
    """How many reports the client took while it was current."""
    took = cl.took[: cl.took_live] if cl.retired else cl.took
    return sum(1 for x in took if isinstance(x, bytes))


def _walk(
    cl: SimClient,
    who: str,
    mine: list[bytes],
    owner: dict[bytes, int],
    start: int,
    strict: bool,
    v: list[str],
    fig: ReportFigures,
) -> list[int] | None:
    """The numbers of the reports the client took, checked against its expected ones from
    ``start``; None once a rule broke (the violation is on ``v``) or async lost its history."""
    cid = cl.core.client_id
    at = {rec: n for n, rec in enumerate(mine, 1)}
    n, told = start, False
    numbers: list[int] = []
    for item in cl.took:
        if isinstance(item, str):
            told = True
            fig.gone += 1
            continue
        if n <= len(mine) and item == mine[n - 1]:
            numbers.append(n)
            n += 1
            told = False
            continue
        k = at.get(item)
        if k is not None and k > n and told:
            told = False  # right after a GONE the client was told of: on from the oldest kept
            fig.skipped += k - n
            numbers.append(k)
            n = k + 1
            continue
        seq = int.from_bytes(item[:8], "little")
        other = owner.get(item)
        if other is not None and other != cid:
            v.append(f"reports: {who} took client {other}'s report at seq {seq} (misattributed)")
        elif not strict:
            fig.lost += 1  # async: the history this report came from was taken back
        elif k is not None and k < n:
            v.append(f"reports: {who} took report {k} (seq {seq}) again, or out of order, after {n - 1}")
        elif k is not None:
            v.append(f"reports: {who} skipped from report {n - 1} to {k} (seq {seq}) without a GONE")
        else:
            v.append(f"reports: {who} took a report at seq {seq} the history does not give it")
        return None
    return numbers


def check_sessions(
    by_id: dict[int, list[SimClient]], chain: list[wire.Entry], strict: bool, v: list[str]
) -> int:
    """The opens of client ids that several clients use (a restart's, a twin's): every open in the
    history is one a client of the id sent (its nonce), and each client's session is one its own
    open opened. Returns the sessions opened by an open that had opened one already.

    A nonce that opened two sessions is a violation: an open whose answer was lost, re-sent
    after another client's open made a newer session, must be answered FENCED (the group
    remembers the nonces of a client id's last ``replica.OLD_SESSIONS`` sessions), never open
    again and fence the newer, live client. O(history)."""
    reopened = 0
    for cid, clients in by_id.items():
        if len(clients) < 2:
            continue
        opened: dict[int, list[int]] = {}  # nonce -> the sessions its open made, in order
        for e in chain:
            if e.client_id == cid and is_open_entry(e.request_id):
                opened.setdefault(nonce_of(e.command), []).append(e.request_id >> SESSION_SHIFT)
        nonces = {cl.nonce or cid for cl in clients}
        for nonce, sessions in opened.items():
            if nonce not in nonces:
                v.append(
                    f"session: client {cid} sessions {sessions} opened by nonce {nonce}, which no client sent"
                )
            reopened += len(sessions) - 1
            if len(sessions) > 1:
                v.append(f"session: client {cid}'s open with nonce {nonce} opened sessions {sessions}")
        for cl in clients:
            if cl.core.session and not cl.core.opening and strict:
                if cl.core.session not in opened.get(cl.nonce or cid, ()):
                    v.append(
                        f"session: client {cid} ({cl.addr.decode()}) was told session {cl.core.session}, "
                        f"its open made {opened.get(cl.nonce or cid, [])}"
                    )
    return reopened


def check_fencing(
    sim: Sim, chain: list[wire.Entry], seq_of: dict[tuple[int, int], int], strict: bool, v: list[str]
) -> int:
    """The fencing rules (module docstring); violations onto ``v``. Returns the FENCED replies. O(history)."""
    newest: dict[int, int] = {}  # client id -> the newest session opened so far in the history
    for e in chain:
        if not e.client_id:
            continue
        session = e.request_id >> SESSION_SHIFT
        if is_open_entry(e.request_id):
            newest[e.client_id] = max(newest.get(e.client_id, 0), session)
        elif session < newest.get(e.client_id, 0):
            v.append(
                f"fencing: request ({e.client_id},{e.request_id}) of session {session} executed at seq "
                f"{e.seq}, after session {newest[e.client_id]} opened"
            )
    fenced_replies = 0
    for cl in sim.clients.values():
        cid = cl.core.client_id
        for rid, reply in cl.done.items():
            if reply.status != wire.FENCED:
                continue
            fenced_replies += 1
            if (cid, rid) in seq_of and strict:
                v.append(
                    f"fencing: request ({cid},{rid}) answered FENCED, executed at seq {seq_of[(cid, rid)]}"
                )
        if cl.core.fenced and strict and newest.get(cid, 0) <= cl.core.session:
            v.append(
                f"fencing: client {cid} session {cl.core.session} fenced, no newer session in the history"
            )
        if cl.fenced_submits and not cl.core.fenced:
            v.append(f"fencing: client {cid} refused submits, its core not fenced")  # pragma: no cover
    return fenced_replies
