"""Disk writes that either complete or fail loudly, and the two ways a journal can go bad.

For: ``write_all`` (``os.pwrite`` looped over the byte count it returns, so
a short write is completed or raises), ``describe`` (an OSError as one
line naming the file), and the exceptions the journal, the witness's state file
and the node machines share: :class:`JournalFailed` (a write or a sync failed
while running: ENOSPC, EIO) and :class:`JournalDamaged` (opening found
corruption that is not a torn last record). Not for: deciding what a node
does about them (``failover``/``journal_health``) or the journal's layout
(``journal``).

Why a failed ``fdatasync`` is never retried: on Linux a failed writeback
marks the pages clean and reports the error once; a second ``fdatasync``
then succeeds without the data ever reaching the disk (the "fsyncgate"
lesson PostgreSQL learned in 2018). Whoever sees the failure must treat
everything not known durable as lost, so the owner of the file refuses
every later write.
"""

from __future__ import annotations

import errno
import os

from ..protocol.journal_api import JournalDamaged, JournalFailed, JournalFault  # noqa: F401 (re-exported: raised here)


def describe(exc: OSError, doing: str, path: str) -> str:
    """``journal: ENOSPC writing var/a/entries.log`` — the error's symbolic name, what, where."""
    name = errno.errorcode.get(exc.errno or 0, "") or type(exc).__name__
    return f"journal: {name} {doing} {path}"


def write_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """``pwrite`` all of ``data`` at ``offset``, looping on short writes. Raises OSError (ENOSPC when
    the disk takes no byte at all). O(len(data))."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(errno.ENOSPC, "pwrite wrote nothing")
        view, offset = view[n:], offset + n
