"""A journal's periodic snapshot written to disk on a thread of its own.

For: ``FileJournal.save_snapshot_later``. A node takes a snapshot every
``snapshot_every`` entries; its file is several megabytes (the report book
alone is ~8.6 MB at the default windows), and writing and fsyncing it took
~80 ms of the node's loop, during which nothing was received, sequenced or
acknowledged. The snapshot only shortens a restart's replay and lets old
segments go: every entry it covers is already in the journal, durable. So the
file can be written while the loop goes on, as long as nothing relies on it
before it is complete — the journal compacts only up to the snapshot that is
whole on disk (``fallback_seq`` while a write is in flight).

Not for: a snapshot something depends on at once (``reset`` installs a peer's
history: it writes in line, ``FileJournal.save_snapshot``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class SnapshotWriter:
    """At most one snapshot file being written; its outcome collected by :meth:`finish`."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: OSError | None = None
        self.seq: int | None = None  # the snapshot being written (or written, not yet collected)
        self.fallback_seq: int | None = None  # the one whole on disk before it (None: none)

    def start(self, seq: int, fallback_seq: int | None, write: Callable[[], None]) -> None:
        """Run ``write`` (which raises OSError on failure) on a thread. The caller has collected
        the previous write (:meth:`finish`): one at a time."""
        assert self._thread is None, "finish() the previous snapshot write first"
        self.seq, self.fallback_seq, self._error = seq, fallback_seq, None

        def run() -> None:
            try:
                write()
            except OSError as exc:  # reported to the loop by finish()
                self._error = exc

        self._thread = threading.Thread(target=run, name="snapshot-writer", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """A write is in flight (started, not finished)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def started(self) -> bool:
        """A write was started and not yet collected by :meth:`finish`."""
        return self._thread is not None

    def finish(self) -> OSError | None:
        """Wait for the write in flight, if any; its error (None: written, or nothing was)."""
        if self._thread is None:
            return None
        self._thread.join()
        self._thread, error, self._error = None, self._error, None
        return error
