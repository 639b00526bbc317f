"""Type stubs for ``replication.protocol._client_fast``: for client_core and client.group_client."""

import numpy as np
import numpy.typing as npt

from .wire import Reply

SESSION_RANGE: bool

class ReplyBlock:
    """The replies of one ``Replies`` frame, parsed into a C array."""

    answered: int
    def __len__(self) -> int: ...
    def all_ok(self, client_id: int, lo: int = 0, hi: int = 2**64 - 1) -> bool:
        """Whether every reply is an ``OK`` to ``client_id`` for a request id in ``lo .. hi - 1``. O(n)."""
    def pop_answered(self, pending: dict) -> int:
        """Pop each reply's request id from ``pending``; how many were not there. Call once. O(n)."""
    def replies(self) -> tuple[Reply, ...]:
        """Every reply: ``wire.decode(frame).replies``. O(n)."""
    def answered_replies(self) -> list[Reply]:
        """The replies ``pop_answered`` matched, in order. O(n)."""
    def last_answered(self) -> Reply | None:
        """The last matched reply, or ``None``. O(n) at worst."""

def decode_replies(frame: bytes) -> ReplyBlock | None:
    """A ``Replies`` frame as a block; ``None`` for any other frame; ``wire.DecodeError`` if bad. O(len)."""

def gather(
    blocks: list[ReplyBlock], row0: int = 0
) -> tuple[
    npt.NDArray[np.uint64], npt.NDArray[np.uint8], npt.NDArray[np.uint32], npt.NDArray[np.uint64], np.ndarray
]:
    """Answered replies of ``blocks`` as ``(request_id, status, epoch, seq, events)`` columns. O(rows + bytes)."""
