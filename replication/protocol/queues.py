"""The primary's two queues: requests waiting to be sequenced, and replies waiting for their commit.

For: ``PendingQueue`` (the requests a primary queued and has not sequenced
yet, one queue per sender, served in turn: a client's window of a packed
bundle stays one span of its records)
and ``ReplyQueue`` (the replies held until their seq is committed: a
sequenced batch's replies stay its columns, released as ``wire.ReplyRun``).
Both look like plain queues of pairs or tuples from outside, and cost per
span or stretch inside. Not for: deciding what to queue, sequence or
release — ``node.primary.PrimaryRole`` does that.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from typing import NamedTuple, cast

import numpy as np

from . import wire
from .session import COUNTER_MASK
from .wire import ReplyColumns, ReplyRun, RequestRun, Send


class HeldReply(NamedTuple):
    """One reply held for its commit: what ``ReplyQueue`` holds and yields."""

    seq: int  # the entry it answers: released once ``seq`` is committed
    dest: wire.Address
    reply: wire.Reply
    since: float  # when it was held


class Stretch(NamedTuple):
    """Replies (or requests) ``lo .. hi - 1`` of a batch, all to (or from) ``dest``."""

    dest: wire.Address
    lo: int
    hi: int


class Batch(NamedTuple):
    """What ``PendingQueue.take`` removes: the senders' stretches of the batch, the id columns
    (lists, or uint64 arrays if a span is among them) and the commands back to back."""

    stretches: list[Stretch]
    client_ids: list[int] | np.ndarray
    request_ids: list[int] | np.ndarray
    commands: bytes


class QueuedRequest(NamedTuple):
    """One request a ``PendingQueue`` holds, and who sent it."""

    src: wire.Address
    request: wire.Request


class _Held:
    """Replies ``lo .. hi - 1`` of a batch's columns, all to ``dest``, held since ``t``."""

    __slots__ = ("dest", "cols", "lo", "hi", "t")

    def __init__(self, dest: wire.Address, cols: ReplyColumns, lo: int, hi: int, t: float) -> None:
        self.dest, self.cols, self.lo, self.hi, self.t = dest, cols, lo, hi, t


class ReplyQueue:
    """The replies a primary holds until their seq is committed (``waiting``), in seq order.

    Seen from outside, a sequence of ``HeldReply(seq, dest, reply, since)``:
    iterating makes those on demand. Inside, a sequenced batch's replies stay
    the batch's columns (``wire.ReplyColumns``), one segment per stretch of
    one client, and :meth:`release` hands a committed stretch on as one
    ``wire.ReplyRun``: holding and releasing cost per stretch, not per order.
    A single reply (a re-sent request's first result) is held as its ``HeldReply``.
    """

    __slots__ = ("_q", "_n")

    def __init__(self) -> None:
        self._q: deque[HeldReply | _Held] = deque()  # single replies and _Held segments
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def __bool__(self) -> bool:
        return self._n > 0

    def append(self, item: HeldReply | tuple[int, wire.Address, wire.Reply, float]) -> None:
        """Hold one ``HeldReply`` (or the same as a tuple); ``seq`` above all held. O(1)."""
        self._q.append(item if type(item) is HeldReply else HeldReply(*item))
        self._n += 1

    def add_stretches(self, cols: ReplyColumns, stretches: list[Stretch], t: float) -> None:
        """Hold every reply of ``cols``, replies ``lo .. hi - 1`` to ``dest`` for each ``(dest, lo,
        hi)`` of ``stretches`` (in order, covering them all), seqs above all held. O(stretches)."""
        for dest, lo, hi in stretches:
            self._q.append(_Held(dest, cols, lo, hi, t))
            self._n += hi - lo

    def head(self) -> tuple[int, float]:
        """``(seq, held since)`` of the first reply held (the queue is not empty). O(1)."""
        x = self._q[0]
        if isinstance(x, HeldReply):
            return x.seq, x.since
        return x.cols.first_seq + x.lo, x.t

    def __iter__(self) -> Iterator[HeldReply]:
        for x in self._q:
            if isinstance(x, HeldReply):
                yield x
                continue
            first, reply = x.cols.first_seq, x.cols.reply
            for i in range(x.lo, x.hi):
                yield HeldReply(first + i, x.dest, reply(i), x.t)

    def release(self, commit: float) -> list[Send | ReplyRun]:
        """Outputs for the replies with seq <= ``commit``, removed in order: a ``Send`` per single
        reply, a ``ReplyRun`` per stretch (or committed part of one). O(outputs)."""
        q = self._q
        out: list[Send | ReplyRun] = []
        append = out.append
        while q:
            x = q[0]
            if isinstance(x, HeldReply):
                if x.seq > commit:
                    break
                q.popleft()
                self._n -= 1
                append(Send(x.dest, x.reply))
                continue
            first = x.cols.first_seq
            if first + x.lo > commit:
                break
            hi = x.hi if commit >= first + x.hi - 1 else int(commit) - first + 1
            append(ReplyRun(x.dest, x.cols, x.lo, hi))
            self._n -= hi - x.lo
            if hi < x.hi:
                x.lo = hi
                break
            q.popleft()
        return out


# A bundle's stretch of one client's consecutive request ids at least this long is queued as
# one span (no Request object per request); a shorter one, request by request: a span's
# columns cost a few NumPy calls when it is sequenced, a few requests' worth.
SPAN_MIN = 8


class _Span:
    """Records ``lo .. hi - 1`` of ``run``, from ``src``: requests ``base + lo ..`` of client ``cid``."""

    __slots__ = ("src", "run", "lo", "hi", "cid", "base")

    def __init__(self, src: wire.Address, run: RequestRun, lo: int, hi: int, cid: int, base: int) -> None:
        self.src, self.run, self.lo, self.hi, self.cid, self.base = src, run, lo, hi, cid, base


class PendingQueue:
    """The requests a primary queued and has not sequenced yet: one first-in-first-out queue per sender.

    Seen from outside, a sequence of ``QueuedRequest(src, request)`` pairs: iterating makes
    them on demand, sender by sender (the rare paths: refusing them at a
    step-down, tests). Inside, each sender's queue holds its requests queued
    alone (``Request``) and its spans: a stretch of a packed bundle
    (``wire.RequestRun``) that is one client's consecutive request ids stays a
    span of the bundle's records, so queueing, the duplicate test and
    :meth:`take` cost per span, not per request. ``loose`` holds the
    ``(client id, request id)`` keys of the lone requests
    (``fastpath.fresh_requests`` adds to it); :meth:`queued` also looks in the
    spans. ``by_src`` counts the requests queued per sender: the sequencer
    refuses a client's requests past ``Settings.max_in_flight`` with a
    ``busy`` reply, so the queue holds at most that many per client connection.

    :meth:`take` serves the senders in turn (a deficit round-robin by request
    count), so a sender's one request waits for at most one quantum of each
    other sender's backlog, not for all of it; each sender's requests keep
    their order. The senders are a dict (insertion-ordered: the turn is
    deterministic), the one to serve next first. One order across senders
    still holds: a session open is sequenced after every request of its
    client id queued before it (sent by an older session, perhaps on another
    connection), as the first in, first out queue did; so no entry of an
    older session follows the open that fenced it. Such an open waits in
    ``_held`` until those are taken (none can join them: ``on_request``
    fences them once the open is queued).
    """

    __slots__ = ("_q", "_n", "loose", "_spans", "by_src", "_held")

    def __init__(self) -> None:
        self._q: dict[wire.Address, deque[wire.Request | _Span]] = {}  # sender -> its queue, oldest first
        self._n = 0
        self.loose: set[tuple[int, int]] = set()  # the lone requests' (client id, request id)
        self._spans: dict[int, list[_Span]] = {}  # client id -> its spans, in queue order
        self.by_src: dict[wire.Address, int] = {}  # sender -> requests of it queued
        self._held: list[QueuedRequest] = []  # opens behind older requests

    def __len__(self) -> int:
        return self._n

    def __bool__(self) -> bool:
        return self._n > 0

    @property
    def ready(self) -> int:
        """How many requests :meth:`take` may take now (all but the held opens; at least one
        while any is queued: a held open waits for requests in the senders' queues). O(1)."""
        return self._n - len(self._held)

    def __iter__(self) -> Iterator[QueuedRequest]:
        yield from self._held
        for src, dq in self._q.items():
            for x in dq:
                if not isinstance(x, _Span):
                    yield QueuedRequest(src, x)
                    continue
                for i in range(x.lo, x.hi):
                    yield QueuedRequest(src, x.run[i])

    def keys(self) -> list[tuple[int, int]]:
        """Every queued request's ``(client id, request id)``, sorted. O(n log n)."""
        return sorted((q.request.client_id, q.request.request_id) for q in self)

    def queued(self, client_id: int, request_id: int) -> bool:
        """Is request ``request_id`` of ``client_id`` queued? O(1 + the client's spans)."""
        if (client_id, request_id) in self.loose:
            return True
        return any(s.base + s.lo <= request_id < s.base + s.hi for s in self._spans.get(client_id, ()))

    def unqueued(self, client_id: int, first: int, count: int) -> int:
        """How many of request ids ``first .. first + count - 1`` of ``client_id``, from the
        first, are not queued. O(the client's spans), or O(count) probes when pairs are queued."""
        for s in self._spans.get(client_id, ()):
            a, b = s.base + s.lo, s.base + s.hi
            if a < first + count and b > first:
                count = max(a, first) - first
        loose = self.loose
        if loose and count:
            if len(loose) < count:  # the least id it holds in range: iteration order cannot matter
                count = min(
                    [r - first for c, r in loose if c == client_id and first <= r < first + count] or [count]
                )
            else:
                count = next((j for j in range(count) if (client_id, first + j) in loose), count)
        return count

    def room(self, src: wire.Address, limit: int) -> int:
        """How many more requests of ``src`` may be queued under ``limit``. O(1)."""
        return max(0, limit - self.by_src.get(src, 0))

    def _of(self, src: wire.Address) -> deque[wire.Request | _Span]:
        """``src``'s queue, made (last in the turn) if it has none. O(1)."""
        dq = self._q.get(src)
        if dq is None:
            dq = self._q[src] = deque()
        return dq

    def add(self, src: wire.Address, m: wire.Request) -> None:
        """Queue one request (not queued already). O(1); O(queued) for a session open."""
        self.loose.add((m.client_id, m.request_id))
        if not m.request_id & COUNTER_MASK and self._behind(m):
            self._held.append(QueuedRequest(src, m))
        else:
            self._of(src).append(m)
        self._n += 1
        self.by_src[src] = self.by_src.get(src, 0) + 1

    def _behind(self, m: wire.Request) -> bool:
        """A request of an older session of ``m``'s client id (a lower request id) is queued or
        held. O(lone requests queued + the client's spans)."""
        cid, rid = m.client_id, m.request_id
        return any(sp.base + sp.lo < rid for sp in self._spans.get(cid, ())) or any(
            c == cid and r < rid for c, r in self.loose
        )

    def _release(self) -> None:
        """Move each held open nothing of its client id is queued before any more to the end of
        its sender's queue, oldest first. O(held x lone requests queued)."""
        held, self._held = self._held, []
        for q in held:
            if self._behind(q.request):
                self._held.append(q)
            else:
                self._of(q.src).append(q.request)

    def extend(self, src: wire.Address, requests: Sequence[wire.Request] | RequestRun) -> None:
        """Queue requests one by one, their keys already in ``loose``. O(len(requests))."""
        self._of(src).extend(requests)
        self._n += len(requests)
        self.by_src[src] = self.by_src.get(src, 0) + len(requests)

    def add_span(
        self, src: wire.Address, run: RequestRun, lo: int, hi: int, client_id: int, first: int
    ) -> None:
        """Queue records ``lo .. hi - 1`` of ``run``: requests ``first ..`` of ``client_id``, none
        queued already. O(1)."""
        span = _Span(src, run, lo, hi, client_id, first - lo)
        self._of(src).append(span)
        self._spans.setdefault(client_id, []).append(span)
        self._n += hi - lo
        self.by_src[src] = self.by_src.get(src, 0) + hi - lo

    def take(self, n: int) -> Batch:
        """Remove ``n`` requests, the senders served in turn; a ``Batch``: a ``Stretch(src, lo,
        hi)`` per stretch of one sender, the id columns (lists, or uint64 arrays if a span is
        among them) and the commands back to back.

        Each sender in turn gives up to a quantum, ``n`` shared evenly among
        the senders queued (rounded up), from the front of its queue; one that
        still has requests then goes last in the turn, and the next batch
        starts with the sender after it. A lone sender (the pipelined case)
        gives all ``n`` at once. O(senders served + spans + lone requests).
        """
        senders = self._q
        quantum = -(-n // len(senders))
        stretches: list[Stretch] = []
        pieces: list[_LonePiece | _SpanPiece] = []  # the batch's ids, piece by piece
        cmds: list[bytes] = []
        at = 0
        while at < n:
            src = next(iter(senders))
            dq = senders.pop(src)
            k = self._take_from(dq, min(quantum, n - at), pieces, cmds)
            _stretch(stretches, src, at, at + k)
            at += k
            left = self.by_src[src] - k
            if left:
                self.by_src[src] = left
                senders[src] = dq  # its turn is over: last in line
            else:
                del self.by_src[src]
        self._n -= n
        lone = [p for p in pieces if isinstance(p, _LonePiece)]
        for piece in lone:
            self.loose.difference_update(zip(piece.client_ids, piece.request_ids, strict=True))
        if self._held:
            self._release()  # after the keys taken are gone from loose
        if len(pieces) == 1 and lone:  # no span: lists, as queued
            return Batch(stretches, lone[0].client_ids, lone[0].request_ids, b"".join(cmds))
        c_cols, r_cols = [], []
        for p in pieces:
            if isinstance(p, _LonePiece):
                c_cols.append(np.array(p.client_ids, dtype=np.uint64))
                r_cols.append(np.array(p.request_ids, dtype=np.uint64))
            else:
                c_cols.append(np.full(p.length, p.client_id, dtype=np.uint64))
                r_cols.append(np.arange(p.first, p.first + p.length, dtype=np.uint64))
        return Batch(stretches, np.concatenate(c_cols), np.concatenate(r_cols), b"".join(cmds))

    def _take_from(
        self,
        dq: deque[wire.Request | _Span],
        n: int,
        pieces: list[_LonePiece | _SpanPiece],
        cmds: list[bytes],
    ) -> int:
        """Remove up to ``n`` requests from the front of one sender's queue ``dq``, adding their
        ids to ``pieces`` (lone requests join the last piece if it is of lone requests too) and
        their commands to ``cmds``. How many it removed. O(spans + lone requests)."""
        at = 0
        while at < n and dq:
            x = dq[0]
            if type(x) is not _Span:
                piece = pieces[-1] if pieces else None
                if type(piece) is not _LonePiece:
                    piece = _LonePiece()
                    pieces.append(piece)
                cids, rids = piece.client_ids, piece.request_ids
                while at < n and dq and type(dq[0]) is not _Span:
                    m = cast(wire.Request, dq.popleft())  # (not a span: the loop's test)
                    cids.append(m.client_id)
                    rids.append(m.request_id)
                    cmds.append(m.command)
                    at += 1
                continue
            k = min(n - at, x.hi - x.lo)
            pieces.append(_SpanPiece(x.cid, x.base + x.lo, k))
            cmds.append(x.run.commands(x.lo, x.lo + k))
            x.lo += k
            at += k
            if x.lo == x.hi:
                dq.popleft()
                spans = self._spans[x.cid]
                if spans[0] is x:
                    del spans[0]  # the client's oldest: the usual case
                else:
                    spans.remove(x)  # the client id has spans from another sender queued before it
                if not spans:
                    del self._spans[x.cid]
        return at


class _LonePiece:
    """The ids of consecutive lone requests of a batch (``PendingQueue.take``), as lists."""

    __slots__ = ("client_ids", "request_ids")

    def __init__(self) -> None:
        self.client_ids: list[int] = []
        self.request_ids: list[int] = []


class _SpanPiece(NamedTuple):
    """Part of a span in a batch: ``length`` requests of ``client_id`` from request id ``first``."""

    client_id: int
    first: int
    length: int


def _stretch(stretches: list[Stretch], dest: wire.Address, lo: int, hi: int) -> None:
    """Add ``Stretch(dest, lo, hi)``, merged into the last one if that ends at ``lo`` for ``dest``."""
    last = stretches[-1] if stretches else None
    if last is not None and last.dest == dest and last.hi == lo:
        stretches[-1] = Stretch(dest, last.lo, hi)
    else:
        stretches.append(Stretch(dest, lo, hi))
