"""A node's engine with its public market-data feed attached: every command the replica applies, the feed follows.

For: ``feed_engine_factory(factory)``, the engine factory a node runs with
(``node_driver``): each engine it makes is a ``FeedEngine``, the real engine
plus the feed (``matching._book_feed.FastBookFeed``, the C path, when built;
else its specification ``matching.BookFeed``). ``apply_batch`` applies the commands to the
engine, then hands the commands and their events to the feed, so the feed
sees exactly the commands the replica applies, in order, whatever the path
(a primary's batch, a standby's entries, a catch-up, a journal replay at
start). ``snapshot`` / ``restore`` carry the feed's state inside the engine
blob of the replica's snapshot, so a restart, a snapshot install or a
catch-up from a peer's snapshot resumes the feed where every other node has
it: the per-instrument seqs and checksums are the same on every node at
every group seq.

Not for: sockets (``market_data_pub``), or any protocol decision: the
replica and the machine see the engine they always saw (same events, same
digests, same blob for the engine part).

Snapshot blob (little-endian)::

    b"MCFEED01", engine blob length u64, the engine's own blob,
    feed seq u64, instruments u32, then per instrument (instrument u32, instrument seq u64),
    orders u64, then per resting order (id u64, instrument u32, side u8, 3 zero bytes,
    price, open, visible, display: four int64)

A blob without the magic is a plain engine's (written before the feed was
attached): it restores, with the feed *unavailable* — it cannot know the
resting orders' visible qty nor the instrument seqs every other node has —
and the node publishes nothing until it next installs a snapshot that has
the feed. Said once in the log.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import Any

from matching.book_feed import BookFeed

from ..protocol.market_data import encode_updates

try:  # the feed's batch path in C (matching/_book_feed.pyx); BookFeed is its specification
    from matching._book_feed import FastBookFeed as _Feed
except ImportError:  # not built: the same updates from the Python feed, encoded after
    _Feed = None

log = logging.getLogger("replication.market_data")

MAGIC = b"MCFEED01"
_HEAD = struct.Struct("<8sQ")
_SEQ_COUNT = struct.Struct("<QI")
_INSTRUMENT = struct.Struct("<IQ")
_COUNT = struct.Struct("<Q")
_ORDER = struct.Struct("<QIB3xqqqq")
# Updates held for the publisher between two passes. A pass applies at most a few batches,
# so this is only reached when nobody takes them (the publisher stopped): then they are
# dropped and counted, never kept without bound.
MAX_PENDING = 1 << 20


class FeedEngine:
    """An engine plus its ``BookFeed``; anything but ``apply_batch``, ``snapshot`` and ``restore``
    goes to the engine unchanged.

    ``feed``: a ``FastBookFeed`` (the C path, updates written as wire records)
    or, when it is not built, a ``BookFeed``; either way ``take()`` gives the
    records. ``collect``: keep each batch's updates in ``pending`` for the publisher
    (off while a replica is rebuilt at start: nobody would read them).
    ``available``: the feed knows the book (see the module).
    """

    inner_type: Any = None  # set per factory (feed_engine_factory): the engine class restored
    enabled = True  # the group computes the feed (group file ``market_data``); off: a plain engine

    def __init__(self, inner: Any, feed: Any = None, available: bool = True) -> None:
        self.inner = inner
        self.feed = feed if feed is not None else (_Feed or BookFeed)()
        if feed is None:  # (a factory's engine is fresh; the reference engine keeps no seq)
            self.feed.seq = int(getattr(inner, "seq", 0))
        self.available = available and self.enabled
        self.collect = False
        self.pending: list[bytes] = []  # runs of 64-byte update records
        self.n_pending = 0
        self.unpublished = 0  # updates dropped because nobody took them in time

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def apply_batch(self, commands: Any, digests: Any = None) -> Any:
        """The engine's ``apply_batch``; the feed then follows the same commands (group seqs
        ``feed.seq + 1 ...``: a replica applies one command per entry). O(batch)."""
        first = self.feed.seq + 1
        events = (
            self.inner.apply_batch(commands) if digests is None else self.inner.apply_batch(commands, digests)
        )
        if self.available:
            if _Feed is not None:
                records = self.feed.apply_records(commands, events, first)
            else:
                records = encode_updates(self.feed.apply_batch(commands, events, first))
            if self.collect and records:
                n = len(records) // 64
                if self.n_pending + n <= MAX_PENDING:
                    self.pending.append(records)
                    self.n_pending += n
                else:
                    self.unpublished += n
        return events

    def take(self) -> bytes:
        """The update records since the last call, in order (and none are kept)."""
        out = self.pending[0] if len(self.pending) == 1 else b"".join(self.pending)
        self.pending, self.n_pending = [], 0
        return out

    # -- snapshot ----------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The engine's blob wrapped with the feed's state (see the module). O(orders)."""
        blob = self.inner.snapshot()
        if not self.available:
            return bytes(blob)  # nothing true to add: a restore keeps the feed unavailable
        seq, seqs, orders = self.feed.state()
        parts = [_HEAD.pack(MAGIC, len(blob)), bytes(blob), _SEQ_COUNT.pack(seq, len(seqs))]
        parts += [_INSTRUMENT.pack(i, s) for i, s in seqs]
        parts.append(_COUNT.pack(len(orders)))
        parts += [_ORDER.pack(*o) for o in orders]
        return b"".join(parts)

    @classmethod
    def restore(cls, blob: bytes | bytearray | memoryview) -> FeedEngine:
        """Rebuild from :meth:`snapshot` bytes (or a plain engine blob); ``ValueError`` if damaged."""
        blob = bytes(blob)
        if blob[:8] != MAGIC:
            if cls.enabled:
                log.warning("market_data_unavailable: a snapshot without the feed's state; publishing none")
            return cls(cls.inner_type.restore(blob), available=False)
        try:
            _, elen = _HEAD.unpack_from(blob)
            pos = _HEAD.size + elen
            inner = cls.inner_type.restore(blob[_HEAD.size : pos])
            if not cls.enabled:  # the feed was switched off: its state is dropped
                return cls(inner, available=False)
            seq, n = _SEQ_COUNT.unpack_from(blob, pos)
            pos += _SEQ_COUNT.size
            seqs = list(_INSTRUMENT.iter_unpack(blob[pos : pos + n * _INSTRUMENT.size]))
            pos += n * _INSTRUMENT.size
            (m,) = _COUNT.unpack_from(blob, pos)
            pos += _COUNT.size
            orders = list(_ORDER.iter_unpack(blob[pos : pos + m * _ORDER.size]))
            pos += m * _ORDER.size
        except struct.error as exc:
            raise ValueError(f"market-data feed state damaged: {exc}") from None
        if pos != len(blob) or len(seqs) != n or len(orders) != m:
            raise ValueError("market-data feed state damaged (length)")
        return cls(inner, (_Feed or BookFeed).from_state(seq, seqs, orders))


def feed_engine_factory(factory: Callable[[], Any], enabled: bool = True) -> Callable[[], FeedEngine]:
    """An engine factory like ``factory`` whose engines carry the market-data feed.

    ``make()`` is a ``FeedEngine`` around ``factory()``; ``make.restore(blob)``
    and ``type(make()).restore(blob)`` restore one (the replica uses the latter).
    ``enabled=False`` (group file ``market_data = 0``): the engines compute no
    feed and write plain engine blobs, and still restore a snapshot written
    with the feed on (dropping its state).
    """
    inner_type = type(factory())
    # The engine's own module: the replica reads it to know whether the engine zeroes its
    # event records' padding (the native one does), and a FeedEngine returns its events.
    attrs = {"inner_type": inner_type, "enabled": bool(enabled), "__module__": inner_type.__module__}
    cls = type("FeedEngine", (FeedEngine,), attrs)

    def make() -> FeedEngine:
        return cls(factory())

    make.restore = cls.restore  # type: ignore[attr-defined]
    return make
