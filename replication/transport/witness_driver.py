"""The witness's driver: runs the ``WitnessMachine`` behind the shared socket loop, in a process.

For: the witness's pass (read, tick, save, send) and its state file: the
witness's durable decisions (``WitnessMachine.durable_state``: the epoch it
granted, to whom, the in-sync set it accepted) are saved
(``storage.witness_state``) before any output of the pass that changed them
leaves, so a restarted witness never contradicts a vote or an ack it sent.
Not for: the sockets and inbound checks every process shares (``loop``), the
nodes (``node_driver``), or any decision (``replication.protocol.witness``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import zmq

from ..storage.diskio import describe
from ..storage.witness_state import load_witness_state, save_witness_state
from .group_file import GroupConfig
from .loop import MAX_DRAIN, SocketLoop, acknowledges_nothing

if TYPE_CHECKING:
    from ..protocol.witness import WitnessMachine

log = logging.getLogger("replication.node")


class WitnessDriver(SocketLoop):
    """Runs the ``WitnessMachine`` (``handle``/``tick``) behind ZeroMQ sockets.

    Parameters are :class:`~replication.transport.loop.SocketLoop`'s, and
    ``state_path``: the witness's state file ("" keeps its decisions in memory
    only).
    """

    machine: WitnessMachine

    def __init__(
        self,
        machine: WitnessMachine,
        endpoint: str,
        peers: dict[str, str],
        state_path: str = "",
        ctx: zmq.Context | None = None,
        keys_dir: str = "",
        cfg: GroupConfig | None = None,
    ) -> None:
        super().__init__(machine, "witness", endpoint, peers, ctx, keys_dir, cfg)
        self.state_path = state_path
        self.saved_state: dict | None = machine.durable_state()  # what the file holds (or started from)
        self.state_error = ""  # the state file failed: the witness decides nothing more

    def run_once(self, timeout_ms: float) -> None:
        events, now = self.poll(timeout_ms)
        outs: list = []

        def full() -> bool:  # enough for one pass: the rest waits in the socket
            return len(outs) > MAX_DRAIN

        if self.router in events:
            for ident, frame, user_id in self.frames(now, full):
                outs += self._inbound(ident, frame, now, user_id)
        outs += self.disconnects(events, now)
        outs += self.machine.tick(now)
        if self.state_path:
            outs = self._save_state(outs)
        self.perform(outs)

    def perform(self, outputs: list) -> None:
        """Send each output in order (the witness's are all ``wire.Send``)."""
        for o in outputs:
            self.send(o.dest, o.msg)

    def _save_state(self, outs: list) -> list:
        """Save the witness's decisions before the Vote or IsrAck that announces them leaves.

        A failed save (ENOSPC, EIO, a failed fdatasync, never retried) ends the witness's
        decisions for good: it announces nothing more, answers only ``status`` (with the
        error), and stays up. Without it no automatic fail-over happens; an operator's
        ``promote`` still can.
        """
        if self.state_error:
            return [o for o in outs if acknowledges_nothing(o)]
        state = self.machine.durable_state()
        if state == self.saved_state:
            return outs
        try:
            save_witness_state(self.state_path, state)
        except (
            OSError,
            ValueError,
        ) as exc:  # ValueError: a record larger than its slot (trust refuses those)
            self.state_error = (
                describe(exc, "writing", self.state_path).replace("journal:", "witness state:")
                if isinstance(exc, OSError)
                else f"witness state: {exc}"
            )
            log.error(
                "witness_state_failed error=%r: no more votes; the witness stays up to report status",
                self.state_error,
            )
            self.machine.error = self.state_error
            return [o for o in outs if acknowledges_nothing(o)]
        self.saved_state = state
        return outs


def witness_driver(cfg: GroupConfig) -> WitnessDriver:
    """Build the witness's driver."""
    from ..protocol.witness import WitnessMachine

    if not cfg.witness:
        raise ValueError(f"{cfg.path} has no [witness] endpoint")
    state = load_witness_state(cfg.witness_state) if cfg.witness_state else None
    if not cfg.witness_state and cfg.mode == "sync":
        log.warning(
            "witness_state_volatile path=%s: no [witness] state file; after a restart this witness "
            "refuses automatic promotions until the primary reports its in-sync set",
            cfg.path,
        )
    machine = WitnessMachine(cfg.node_names, cfg.settings, state=state)
    peers = {n: s.endpoint for n, s in cfg.nodes.items()}
    return WitnessDriver(machine, cfg.witness, peers, cfg.witness_state, keys_dir=cfg.keys_dir, cfg=cfg)
