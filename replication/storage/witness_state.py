"""The witness's state file: its durable decisions, saved before the vote that announces them.

For: ``load_witness_state`` at the witness's start and ``save_witness_state``
from its driver (``transport.witness_driver``) whenever ``WitnessMachine.durable_state()``
(epoch, primary, in-sync set, ISR proposal) changed. That save sits on the
fail-over's critical path, so it is a ``slotfile.SlotFile`` write: one
``pwrite`` and one ``fdatasync`` (the first save, which creates the file,
also renames a temp file and fsyncs the directory, once). Not for: deciding
what the witness keeps (``replication.protocol.witness`` does) or the journal's
metadata (``FileJournal``, through the same ``SlotFile``).

The file is two 4 KiB slots, each holding the state as JSON (see
``slotfile``). A plain JSON file written by older versions still loads (its
first byte is ``{``, which a slot file's never is), and the next save
replaces it by a slot file.
"""

from __future__ import annotations

import json
import os

from .slotfile import SlotFile

SLOT_SIZE = 4096  # the state is ~100 bytes, plus ~10 per in-sync node
KEYS = frozenset({"epoch", "primary", "isr", "isr_proposal"})


def _unreadable(path: str, exc: BaseException) -> SystemExit:
    return SystemExit(
        f"witness state file {path} is unreadable ({exc}); restore it, or remove it to start "
        "without it (then no automatic promotion until the primary reports its in-sync set)"
    )


def _is_json_file(path: str) -> bool:
    """Whether ``path`` holds the plain JSON of older versions (as opposed to a slot file). May raise OSError."""
    with open(path, "rb") as f:
        return f.read(1) == b"{"


def load_witness_state(path: str) -> dict | None:
    """The witness's saved decisions, or None if it never saved any. A damaged file stops the start.

    Reads either format (slot file, or the plain JSON of older versions). O(1): a few KiB read.
    """
    try:
        if _is_json_file(path):
            with open(path, encoding="utf-8") as f:
                state = json.load(f)
        else:
            body = SlotFile(path, SLOT_SIZE).load()
            if body is None:
                raise ValueError("no valid record in either slot")
            state = json.loads(body)
        if not isinstance(state, dict) or not KEYS <= set(state):
            raise ValueError("missing keys")
        return state
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise _unreadable(path, exc) from exc


def save_witness_state(path: str, state: dict) -> None:
    """Replace the state file durably: one in-place slot write + fdatasync.

    Creating the file (or replacing an older version's JSON file) is a synced
    temp file renamed over it, then the directory synced: once. Raises
    ValueError if the state's JSON exceeds a slot (never truncated). O(size).
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    body = json.dumps(state, sort_keys=True).encode()
    with SlotFile(path, SLOT_SIZE) as slots:
        try:
            legacy = _is_json_file(path)
        except FileNotFoundError:
            legacy = False
        if legacy:
            slots.rewrite(body)
        else:
            slots.save(body)
