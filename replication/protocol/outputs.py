"""What the sans-IO machines return: the outputs a driver carries out.

For: ``Send`` (deliver a message to a peer or a client), ``Publish``
(broadcast to stream subscribers), and a batch's replies kept as columns
(``ReplyColumns``) released to one client as a ``ReplyRun`` (one ``Send`` per
reply, without a ``Reply`` object per order). Not for: how they are framed
(``codec.encode_replies``) or sent (the transport). Reached as ``wire.X``
by the rest of the code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .messages import OK, Message, Reply

Address = str | bytes


@dataclass(slots=True, unsafe_hash=True)
class Send:
    """Output: deliver ``msg`` to ``dest`` (peer name ``str`` or client address ``bytes``).

    ``needs_sync``: the message may acknowledge what the journal holds, so it leaves only once
    the journal's appends so far are durable (a driver that defers its fsync syncs first). The
    primary clears it on ``Entries``: they may leave before its own fsync, which then overlaps
    the standby's write and round trip (the standby acks only what it journaled itself).
    """

    dest: Address
    msg: Message
    needs_sync: bool = True


@dataclass(slots=True, unsafe_hash=True)
class Publish:
    """Output: broadcast ``msg`` to stream subscribers, best effort."""

    msg: Message
    topic: bytes = field(default=b"E")


class ReplyColumns(NamedTuple):
    """The OK replies of one sequenced batch, as columns: reply ``i`` answers request
    ``request_ids[i]`` of client ``client_ids[i]``, sequenced as ``first_seq + i`` in
    ``epoch`` by ``leader``, with events ``events[offsets[i]:offsets[i + 1]]``."""

    epoch: int
    first_seq: int
    leader: str
    client_ids: list[int] | np.ndarray  # both lists of ints, or both uint64 arrays
    request_ids: list[int] | np.ndarray
    events: bytes
    offsets: list[int]  # one more than there are replies

    def reply(self, i: int) -> Reply:
        """Reply ``i`` as a message. O(its events)."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return Reply(
            int(self.client_ids[i]),
            int(self.request_ids[i]),
            OK,
            self.epoch,
            self.first_seq + i,
            self.leader,
            self.events[a:b],
        )


@dataclass(slots=True, eq=False)
class ReplyRun:
    """Output: deliver replies ``lo .. hi - 1`` of ``cols`` to the client at ``dest``, in order.

    Means exactly one ``Send(dest, reply)`` per reply (:meth:`sends`): the
    primary releases a batch's replies this way, without a ``Reply`` object
    per order, and the driver packs them straight into its ``Replies`` frame
    (:func:`encode_replies`).
    """

    dest: Address
    cols: ReplyColumns
    lo: int
    hi: int

    def __len__(self) -> int:
        return self.hi - self.lo

    def replies(self) -> list[Reply]:
        """The replies as messages. O(replies)."""
        return [self.cols.reply(i) for i in range(self.lo, self.hi)]

    def sends(self) -> list[Send]:
        """The same outputs one ``Send`` per reply. O(replies)."""
        return [Send(self.dest, r) for r in self.replies()]

    def events_size(self) -> int:
        """Bytes of events of its replies. O(1)."""
        return self.cols.offsets[self.hi] - self.cols.offsets[self.lo]
