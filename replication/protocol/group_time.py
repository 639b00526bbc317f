"""The group's time: the sequencer's stamp on every command, and the idle ``time`` command.

For: what the primary needs to make time an input of the replicated engine
(docs/operations.md, "The group's time"): the clock it is given (``Clock``: the
machine's ``now`` -> nanoseconds; ``virtual_clock`` is the default and the
simulator's), the stamp rule (``next_stamp``: never below the last applied
entry's ``ts``, so it never decreases across batches, epochs and fail-overs),
writing the stamp into a batch's command records (``stamp_commands``: a
client's own ``ts`` is overwritten) and the record of the ``time`` command
the primary sequences when it has been idle for ``Settings.time_interval``
(``time_command``). Not for: reading a clock (the driver injects one:
``time.time_ns`` in production) or deciding when to sequence (``node.primary``).

The stamp travels inside the command record (``ts`` at byte 56 of
``matching.codes.COMMAND_DTYPE``), so it is journaled and streamed with the
entry, and a standby or a replay applies exactly what the primary applied.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping

import numpy as np

from matching.codes import COMMAND_DTYPE, OP_TIME

from .wire import COMMAND_SIZE

# The machine's ``now`` (seconds, the caller's clock) -> the group's time in int64 nanoseconds.
Clock = Callable[[float], int]

_FIELDS: Mapping[str, tuple] = COMMAND_DTYPE.fields or {}
TS_OFFSET = _FIELDS["ts"][1]  # 56: the int64 ``ts`` of a command record
_OP_OFFSET = _FIELDS["op"][1]  # 44: the u8 ``op``
_TS = struct.Struct("<q")
TS_MAX = (1 << 63) - 1
# Past this many commands a batch is stamped through NumPy (below it, its per-call overhead costs more).
_STAMP_BULK = 16


def virtual_clock(now: float) -> int:
    """The machine's own ``now`` in nanoseconds: deterministic, so the default (the tests, the
    simulator's virtual time). O(1)."""
    return round(now * 1_000_000_000)


def next_stamp(clock_ns: int, last_ts: int) -> int:
    """The stamp of the next batch: the clock's reading, but never below ``last_ts`` (the ``ts``
    of the last entry applied: a promoted standby continues from the old primary's time even
    if its own clock is behind), and clamped to int64 (a clock cannot push it out of range). O(1)."""
    return min(max(clock_ns, last_ts, 0), TS_MAX)


def stamp_commands(commands: bytes, ts: int) -> bytes:
    """``commands`` (``COMMAND_SIZE``-byte records back to back) with every ``ts`` set to ``ts``,
    whatever the client put there. O(bytes): one copy."""
    n = len(commands) // COMMAND_SIZE
    if n == 1:
        return commands[:TS_OFFSET] + _TS.pack(ts) + commands[TS_OFFSET + 8 :]
    buf = bytearray(commands)
    if n < _STAMP_BULK:
        for at in range(TS_OFFSET, n * COMMAND_SIZE, COMMAND_SIZE):
            _TS.pack_into(buf, at, ts)
    else:
        words = np.frombuffer(buf, dtype="<i8").reshape(n, COMMAND_SIZE // 8)
        words[:, TS_OFFSET // 8] = ts
    return bytes(buf)


def time_command(ts: int) -> bytes:
    """The command record of ``{"op": "time", "ts": ts}``: it only moves the engine's time (what is
    due expires). O(1)."""
    rec = bytearray(COMMAND_SIZE)
    rec[_OP_OFFSET] = OP_TIME
    _TS.pack_into(rec, TS_OFFSET, ts)
    return bytes(rec)


def is_time_command(command: bytes) -> bool:
    """Whether ``command`` is a ``time`` command's record. O(1)."""
    return len(command) == COMMAND_SIZE and command[_OP_OFFSET] == OP_TIME


def stamp_of(command: bytes) -> int:
    """The ``ts`` of one command record. O(1)."""
    return _TS.unpack_from(command, TS_OFFSET)[0]
