"""The primary's two queues: requests waiting to be sequenced, and replies waiting for their commit.

For: ``PendingQueue`` (the requests a primary queued and has not sequenced
yet: a client's window of a packed bundle stays one span of its records)
and ``ReplyQueue`` (the replies held until their seq is committed: a
sequenced batch's replies stay its columns, released as ``wire.ReplyRun``).
Both look like plain queues of pairs or tuples from outside, and cost per
span or stretch inside. Not for: deciding what to queue, sequence or
release — ``sequencer.SequencerMixin`` does that.
"""

from __future__ import annotations

from collections import deque
from itertools import groupby, repeat

import numpy as np

from . import wire
from .wire import ReplyColumns, ReplyRun, RequestRun, Send


class _Held:
    """Replies ``lo .. hi - 1`` of a batch's columns, all to ``dest``, held since ``t``."""

    __slots__ = ("dest", "cols", "lo", "hi", "t")

    def __init__(self, dest: wire.Address, cols: ReplyColumns, lo: int, hi: int, t: float) -> None:
        self.dest, self.cols, self.lo, self.hi, self.t = dest, cols, lo, hi, t


def _stretches(srcs: tuple | list) -> list[tuple[wire.Address, int, int]]:
    """``(dest, lo, hi)`` for each stretch of equal consecutive ``srcs``. O(len) (one C test
    when a single client sent them all, the pipelined case)."""
    if srcs.count(srcs[0]) == len(srcs):
        return [(srcs[0], 0, len(srcs))]
    out, lo = [], 0
    for dest, group in groupby(srcs):
        hi = lo + sum(1 for _ in group)
        out.append((dest, lo, hi))
        lo = hi
    return out


class ReplyQueue:
    """The replies a primary holds until their seq is committed (``waiting``), in seq order.

    Seen from outside, a sequence of ``(seq, dest, Reply, held since)``:
    iterating makes those on demand. Inside, a sequenced batch's replies stay
    the batch's columns (``wire.ReplyColumns``), one segment per stretch of
    one client, and :meth:`release` hands a committed stretch on as one
    ``wire.ReplyRun``: holding and releasing cost per stretch, not per order.
    A single reply (a re-sent request's first result) is held as its tuple.
    """

    __slots__ = ("_q", "_n")

    def __init__(self) -> None:
        self._q: deque = deque()  # (seq, dest, Reply, t) tuples and _Held segments
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def __bool__(self) -> bool:
        return self._n > 0

    def append(self, item: tuple) -> None:
        """Hold one ``(seq, dest, Reply, t)``; ``seq`` above all held. O(1)."""
        self._q.append(item)
        self._n += 1

    def add_stretches(self, cols: ReplyColumns, stretches: list, t: float) -> None:
        """Hold every reply of ``cols``, replies ``lo .. hi - 1`` to ``dest`` for each ``(dest, lo,
        hi)`` of ``stretches`` (in order, covering them all), seqs above all held. O(stretches)."""
        for dest, lo, hi in stretches:
            self._q.append(_Held(dest, cols, lo, hi, t))
            self._n += hi - lo

    def head(self) -> tuple[int, float]:
        """``(seq, held since)`` of the first reply held (the queue is not empty). O(1)."""
        x = self._q[0]
        if type(x) is tuple:
            return x[0], x[3]
        return x.cols.first_seq + x.lo, x.t

    def __iter__(self):
        for x in self._q:
            if type(x) is tuple:
                yield x
                continue
            first, reply = x.cols.first_seq, x.cols.reply
            for i in range(x.lo, x.hi):
                yield (first + i, x.dest, reply(i), x.t)

    def release(self, commit: float) -> list:
        """Outputs for the replies with seq <= ``commit``, removed in order: a ``Send`` per single
        reply, a ``ReplyRun`` per stretch (or committed part of one). O(outputs)."""
        q, out = self._q, []
        append = out.append
        while q:
            x = q[0]
            if type(x) is tuple:
                if x[0] > commit:
                    break
                q.popleft()
                self._n -= 1
                append(Send(x[1], x[2]))
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
    """The requests a primary queued and has not sequenced yet, in arrival order.

    Seen from outside, a sequence of ``(src, Request)`` pairs: iterating makes
    them on demand (the rare paths: refusing them at a step-down, tests).
    Inside, a request queued alone stays its pair, and a stretch of a packed
    bundle (``wire.RequestRun``) that is one client's consecutive request ids
    stays a span of the bundle's records: queueing, the duplicate test and
    :meth:`take` cost per span, not per request. ``loose`` holds the
    ``(client id, request id)`` keys of the pairs (``fastpath.fresh_requests``
    adds to it); :meth:`queued` also looks in the spans. ``by_src`` counts the
    requests queued per sender: the sequencer refuses a client's requests
    past ``Settings.max_in_flight`` with a ``busy`` reply, so the queue holds
    at most that many per client connection.
    """

    __slots__ = ("_q", "_n", "loose", "_spans", "by_src")

    def __init__(self) -> None:
        self._q: deque = deque()  # (src, Request) pairs and _Span segments
        self._n = 0
        self.loose: set = set()  # the pairs' keys
        self._spans: dict[int, list[_Span]] = {}  # client id -> its spans, in queue order
        self.by_src: dict[wire.Address, int] = {}  # sender -> requests of it queued

    def __len__(self) -> int:
        return self._n

    def __bool__(self) -> bool:
        return self._n > 0

    def __iter__(self):
        for x in self._q:
            if type(x) is tuple:
                yield x
                continue
            for i in range(x.lo, x.hi):
                yield (x.src, x.run[i])

    def keys(self) -> list[tuple[int, int]]:
        """Every queued request's ``(client id, request id)``, sorted. O(n log n)."""
        return sorted((m.client_id, m.request_id) for _, m in self)

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

    def add(self, src: wire.Address, m: wire.Request) -> None:
        """Queue one request (not queued already). O(1)."""
        self.loose.add((m.client_id, m.request_id))
        self._q.append((src, m))
        self._n += 1
        self.by_src[src] = self.by_src.get(src, 0) + 1

    def extend(self, src: wire.Address, requests: tuple | list | RequestRun) -> None:
        """Queue requests one by one, their keys already in ``loose``. O(len(requests))."""
        self._q.extend(zip(repeat(src), requests))
        self._n += len(requests)
        self.by_src[src] = self.by_src.get(src, 0) + len(requests)

    def add_span(
        self, src: wire.Address, run: RequestRun, lo: int, hi: int, client_id: int, first: int
    ) -> None:
        """Queue records ``lo .. hi - 1`` of ``run``: requests ``first ..`` of ``client_id``, none
        queued already. O(1)."""
        span = _Span(src, run, lo, hi, client_id, first - lo)
        self._q.append(span)
        self._spans.setdefault(client_id, []).append(span)
        self._n += hi - lo
        self.by_src[src] = self.by_src.get(src, 0) + hi - lo

    def take(self, n: int) -> tuple[list, list | np.ndarray, list | np.ndarray, bytes]:
        """Remove the first ``n`` requests; ``(stretches, client ids, request ids, commands)``:
        ``(src, lo, hi)`` per stretch of one sender, the id columns (lists, or uint64 arrays
        if a span is among them) and the commands back to back. O(spans + pairs)."""
        q, popleft = self._q, self._q.popleft
        stretches: list = []
        pieces: list = []  # per stretch of pairs: (client ids, request ids); per span: a _Span part
        cmds: list = []
        at = 0
        while at < n:
            x = q[0]
            if type(x) is tuple:
                k = 0
                srcs, cids, rids = [], [], []
                while at + k < n and type(q[0]) is tuple:
                    src, m = popleft()
                    srcs.append(src)
                    cids.append(m.client_id)
                    rids.append(m.request_id)
                    cmds.append(m.command)
                    k += 1
                self.loose.difference_update(zip(cids, rids, strict=True))
                pieces.append((cids, rids))
                for dest, lo, hi in _stretches(srcs):
                    _stretch(stretches, dest, at + lo, at + hi)
            else:
                k = min(n - at, x.hi - x.lo)
                pieces.append((x.cid, x.base + x.lo, k))
                cmds.append(x.run.commands(x.lo, x.lo + k))
                _stretch(stretches, x.src, at, at + k)
                x.lo += k
                if x.lo == x.hi:
                    popleft()
                    spans = self._spans[x.cid]
                    del spans[0]  # the client's oldest: the queue is first in, first out
                    if not spans:
                        del self._spans[x.cid]
            at += k
        self._n -= n
        by_src = self.by_src
        for src, lo, hi in stretches:
            left = by_src[src] - (hi - lo)
            if left:
                by_src[src] = left
            else:
                del by_src[src]
        if len(pieces) == 1 and len(pieces[0]) == 2:
            return stretches, pieces[0][0], pieces[0][1], b"".join(cmds)  # no span: lists, as queued
        c_cols, r_cols = [], []
        for p in pieces:
            if len(p) == 2:
                c_cols.append(np.array(p[0], dtype=np.uint64))
                r_cols.append(np.array(p[1], dtype=np.uint64))
            else:
                cid, rid, k = p
                c_cols.append(np.full(k, cid, dtype=np.uint64))
                r_cols.append(np.arange(rid, rid + k, dtype=np.uint64))
        return stretches, np.concatenate(c_cols), np.concatenate(r_cols), b"".join(cmds)


def _stretch(stretches: list, dest: wire.Address, lo: int, hi: int) -> None:
    """Add ``(dest, lo, hi)`` to ``stretches``, merged into the last one if that ends at ``lo`` for ``dest``."""
    if stretches and stretches[-1][0] == dest and stretches[-1][2] == lo:
        stretches[-1] = (dest, stretches[-1][1], hi)
    else:
        stretches.append((dest, lo, hi))
