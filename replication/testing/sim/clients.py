"""One simulated client: its core, its order flow, and what it was told (for the checker).

For: :class:`SimClient`, the record ``participants`` drives and ``sessions``
creates more of (a restart's, a twin's), and that ``check`` and
``check_reports`` read. Not for: running a client (``participants``) or
judging it (``check``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...protocol import wire
from ...protocol.client_core import ClientCore


@dataclass
class SimClient:
    """One client: its core, the commands it sends in turn, and what it was told (for the checker)."""

    addr: bytes
    core: ClientCore
    commands: list[bytes]
    next_cmd: int = 0
    sent: dict[int, bytes] = field(default_factory=dict)  # request id -> command
    done: dict[int, wire.Reply] = field(default_factory=dict)  # request id -> final reply (OK or EXPIRED)
    ok_replies: list[wire.Reply] = field(default_factory=list)  # every OK reply received, late twins too
    # Sessions and execution reports (``sessions``): the open's nonce (unique per open of the id);
    # the client this one continues (its chain: the first client's address), and the report seq its
    # core resumed from (None: from its own session's open on); what the application took from the
    # feed, in order: 64-byte reports, and a GONE's detail (a str) where it was told one; once a
    # restart replaced it (``retired``): how many of those it took before, and its successor.
    nonce: int = 0
    chain: bytes = b""
    resume_from: int | None = None
    took: list[bytes | str] = field(default_factory=list)
    retired: bool = False
    took_live: int = 0
    successor: bytes = b""
    start_at: float = 0.0  # a restarted client opens its session from then on
    fenced_submits: int = 0  # submits its core refused with SessionFenced
