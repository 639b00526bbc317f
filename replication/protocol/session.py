"""Client sessions: the request-id layout, the session-open request, and the fence rule.

For: the pure rules every layer shares about who holds a client id. A
client id is held by one live session at a time (docs/operations.md "Start a group": sessions). A
client opens a session with a request the primary sequences like any
other; the primary gives it the client id's next session number (strictly
increasing per client id) and every replica learns it by applying that
entry, so session state is replicated state: it survives fail-over, and a
replay or a standby reaches the same table. Not for: sockets, clocks or
randomness (the client picks its open's nonce; nothing here draws one).

Request ids::

    request_id = session << SESSION_SHIFT | counter

- ``counter >= 1``: a command of that session (the client counts from 1);
- ``request_id == 0`` on the wire: "open me a session" (``OPEN_REQUEST``), its
  command an ``open_command(nonce)``;
- ``counter == 0, session >= 1``: only in the journal, the entry that opened
  ``session`` (the primary rewrites the open's id so). Its command is the
  open's, so the entry names the nonce, and a re-sent open (same nonce) is
  answered with that entry's first result instead of opening again.

Ids therefore never repeat across sessions or processes without a clock,
and rise across sessions, so the dedupe table's per-client floor (the
``EXPIRED`` rule) keeps working. Session 0 is "no session": a client that
never opens one (the simulator's, tests') numbers from 1 as before; once a
client id has a session, a request of an older session is answered
``wire.FENCED`` and never executed.

The open's command is an engine record with ``op = OP_SESSION``, an op the
engine does not know, and the nonce in its ``account`` field: both engines
answer it with one ``rejected invalid_op`` event (id 0) and change nothing
else, so the entry replays like any other, and its effect on the chained
digest is the same for every open whatever its nonce: a local replay of a
client's commands matches the group's digest once it applies one
``open_command`` (any nonce) where the session opened.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

SESSION_SHIFT = 40  # 2**40 - 1 requests per session, 2**24 - 1 sessions per client id
COUNTER_MASK = (1 << SESSION_SHIFT) - 1
MAX_SESSION = (1 << (64 - SESSION_SHIFT)) - 1
OPEN_REQUEST = 0  # the request id of an open on the wire
OP_SESSION = 0xF0  # the op of an open's command: never an engine op (matching.codes: 0..3)
_OP_OFFSET = 44  # matching.codes.COMMAND_DTYPE: "op" is the u8 at byte 44, "account" the u64 at 8
_NONCE_OFFSET = 8
_U64 = struct.Struct("<Q")
_COMMAND_SIZE = 80


class SessionFenced(RuntimeError):
    """A newer session holds this client id; this one was fenced and sends nothing more.

    ``client_id`` names the id. Requests answered ``FENCED`` were never
    executed; requests still unanswered may or may not have been.
    """

    def __init__(self, client_id: int, session: int = 0) -> None:
        super().__init__(
            f"client id {client_id} is held by a newer session (this one, session {session}, was fenced): "
            "each live client needs its own client id"
        )
        self.client_id = client_id
        self.session = session


class Held(NamedTuple):
    """A client id's current session: its number and the nonce of the open that made it."""

    session: int
    nonce: int


def session_of(request_id: int) -> int:
    """The session number a request id carries. O(1)."""
    return request_id >> SESSION_SHIFT


def first_id(session: int) -> int:
    """The first command request id of ``session``. O(1)."""
    return (session << SESSION_SHIFT) | 1


def opened_id(session: int) -> int:
    """The request id the journal gives the entry that opened ``session``. O(1)."""
    return session << SESSION_SHIFT


def is_open_entry(request_id: int) -> bool:
    """Whether a journal entry's request id marks a session open. O(1)."""
    return request_id != 0 and not request_id & COUNTER_MASK


def open_command(nonce: int) -> bytes:
    """The 80-byte command record of an open with ``nonce`` (a non-zero u64). O(1)."""
    if not 0 < nonce < 1 << 64:
        raise ValueError("a session nonce is a non-zero u64")
    rec = bytearray(_COMMAND_SIZE)
    _U64.pack_into(rec, _NONCE_OFFSET, nonce)
    rec[_OP_OFFSET] = OP_SESSION
    return bytes(rec)


def nonce_of(command: bytes) -> int:
    """The nonce of an open's command, or 0 if ``command`` is not one (wrong size or op). O(1)."""
    if len(command) != _COMMAND_SIZE or command[_OP_OFFSET] != OP_SESSION:
        return 0
    return _U64.unpack_from(command, _NONCE_OFFSET)[0]


def next_session(held: Held | None, floor: int, newest_id: int) -> int:
    """The session number a new open of a client id gets: above its current session and above
    every session its remembered request ids (``newest_id``, the highest) or its dedupe floor
    imply, so the new session's ids are fresh and above the floor. O(1)."""
    cur = held.session if held is not None else 0
    return max(cur, session_of(floor), session_of(newest_id)) + 1


def stale(held: Held | None, request_id: int) -> bool:
    """Whether a request of this id must be fenced: its client id has a newer session. O(1)."""
    return held is not None and request_id >> SESSION_SHIFT < held.session
