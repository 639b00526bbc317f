"""``SlotFile``: a small record replaced durably in place, for one fdatasync per save.

For: state that must be durable before something is announced, is small, and
is rewritten whole on a critical path — the journal's metadata (epoch and its
history, saved at a promotion) and the witness's decisions (saved before the
vote that announces them). A save is one ``pwrite`` into a slot of a file
that already exists and one ``fdatasync``: no new file, no rename, no
directory fsync. Not for: anything that grows (the journal's entries), large
blobs (a snapshot: temp file and rename), or deciding what the record means
(callers store their own bytes, e.g. JSON).

On-disk layout: two slots of ``slot_size`` bytes, slot ``k`` at offset
``k * slot_size``, written alternately; each slot is::

    u64 counter        0 = never written; the record with counter c is in slot c % 2
    u32 length         of the body
    u32 crc32(body)
    body               length bytes; the rest of the slot is left as it was

``load`` returns the body of the valid slot (non-zero counter, length that
fits, whole body present, CRC right) with the highest counter. Slot 0 only
ever holds even counters, so the file's first byte is even — never ``{``
(0x7B), which lets a caller tell this file from a JSON file of old.
"""

from __future__ import annotations

import os
import struct
import zlib

from .diskio import write_all

HEAD = struct.Struct("<QII")  # counter, body length, crc32(body)


def fsync_dir(path: str) -> None:
    """fsync a directory, so the names created or renamed in it survive a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Why a crash never loses a saved record (the file is not torn-write safe by itself; the
# two slots make it so):
# - The file only ever appears whole: ``rewrite`` (creation, or replacing a file in another
#   format) builds both slots in a temp file, fsyncs it, renames it over ``path`` and fsyncs
#   the directory. A crash before the rename leaves the old file (or none) as it was.
# - ``save`` of counter c + 1 writes slot (c + 1) % 2, never slot c % 2, which holds the newest
#   valid record c. A crash mid-write may leave that slot any mix of old and new bytes (no
#   sector atomicity is assumed); its length and CRC then reject it (a false accept needs a
#   crc32 collision) and ``load`` returns record c, the state before a save that had not
#   returned, so nothing announced depended on it. A slot the write never reached keeps its
#   older record c - 1, which record c outranks.
# - Once ``fdatasync`` returns, record c + 1 is on disk; the next save goes to the other slot,
#   so it stays intact until a newer record is durable. fdatasync suffices: the write stays
#   inside the file's allocated size, so no metadata the data depends on changes.
class SlotFile:
    """Two fixed slots written alternately in place; see the module docstring.

    Parameters
    ----------
    path : str
        The file. Its directory must exist.
    slot_size : int
        Bytes per slot, header included; a body may hold ``slot_size - 16``.

    ``counter`` is the highest counter loaded or saved; the next save writes
    ``counter + 1``. A caller that keeps copies elsewhere too (the journal's
    ``meta.json`` fallback) may raise it so the next save outranks them; that
    save may then overwrite this file's newest slot, which is safe only
    because the copy elsewhere is newer still.
    """

    def __init__(self, path: str, slot_size: int) -> None:
        if slot_size <= HEAD.size:
            raise ValueError(f"slot_size must exceed the {HEAD.size}-byte header, not {slot_size}")
        self.path = path
        self.slot_size = slot_size
        self.counter = 0
        self._read = False  # the file was read, so ``counter`` knows what it holds
        self._fd = -1

    @property
    def capacity(self) -> int:
        """The largest body a slot holds, in bytes."""
        return self.slot_size - HEAD.size

    def records(self) -> list[tuple[int, bytes]]:
        """``(counter, body)`` of every valid slot, slot 0 first; ``[]`` if the file is missing. O(size)."""
        self._read = True
        try:
            with open(self.path, "rb") as f:
                data = f.read(2 * self.slot_size)
        except FileNotFoundError:
            return []
        out = []
        for slot in range(2):
            off = slot * self.slot_size
            if len(data) < off + HEAD.size:
                continue
            counter, n, crc = HEAD.unpack_from(data, off)
            body = data[off + HEAD.size : off + HEAD.size + n]
            if counter == 0 or n > self.capacity or len(body) != n or zlib.crc32(body) != crc:
                continue  # empty, or torn by a crash mid-write: the other slot holds the previous record
            out.append((counter, body))
            self.counter = max(self.counter, counter)
        return out

    def load(self) -> bytes | None:
        """The body of the newest valid slot, or None (no file, or no valid slot). O(size)."""
        got = self.records()
        return max(got, key=lambda r: r[0])[1] if got else None

    def save(self, body: bytes) -> None:
        """Durably replace the record: one ``pwrite`` into the other slot + ``fdatasync``. O(len(body)).

        The first save to a missing (or short) file is a :meth:`rewrite` instead.
        Raises ValueError if ``body`` is longer than :attr:`capacity`.
        """
        self._check(body)
        if not self._read:
            self.records()  # learn the counter, so the newest record's slot is not the one overwritten
        if self._fd < 0:
            try:
                fd = os.open(self.path, os.O_RDWR)
            except FileNotFoundError:
                fd = -1
            if fd >= 0 and os.fstat(fd).st_size < 2 * self.slot_size:
                os.close(fd)
                fd = -1
            if fd < 0:
                self.rewrite(body)
                return
            self._fd = fd
        self.counter += 1
        try:
            write_all(self._fd, self._record(body), (self.counter % 2) * self.slot_size)
            os.fdatasync(self._fd)
        except BaseException:
            # Not known durable: the next save retries the same slot, never the one holding
            # the last record known durable (re-reading could find this one in the page cache).
            self.counter -= 1
            raise

    def rewrite(self, body: bytes) -> None:
        """Replace the whole file (both slots, ``body`` the only record) through a synced temp file,
        a rename and a directory fsync: for creating it, or replacing a file in another format."""
        self._check(body)
        self.close()
        self.counter += 1
        data = bytearray(2 * self.slot_size)
        rec = self._record(body)
        off = (self.counter % 2) * self.slot_size
        data[off : off + len(rec)] = rec
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.replace(tmp, self.path)
        except BaseException:
            os.close(fd)
            self.counter -= 1  # the file at ``path`` is as it was
            raise
        fsync_dir(os.path.dirname(self.path) or ".")
        self._fd = fd
        self._read = True

    def close(self) -> None:
        """Close the file (the next save opens it again)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> SlotFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, body: bytes) -> None:
        if len(body) > self.capacity:
            raise ValueError(
                f"{self.path}: a {len(body)}-byte record does not fit a {self.slot_size}-byte slot "
                f"(at most {self.capacity})"
            )

    def _record(self, body: bytes) -> bytes:
        return HEAD.pack(self.counter, len(body), zlib.crc32(body)) + body
