"""The simulator's network: every frame through the wire codec, then lost, duplicated, reordered or cut.

For: :class:`Network`. A participant's outputs are encoded as in
production (``emit``: a ``wire.Send`` is one frame, a ``wire.ReplyRun`` one
frame per reply, in order; a ``wire.Publish`` only reaches the golden
trace, as the simulation has no subscriber), then each frame is sent
(``send``): a directed link may be cut (counted, as overlapping faults may
cut one link twice), and each frame may be dropped, duplicated or delayed
past later ones, at the schedule's rates, with draws from the simulator's
one random stream. What survives is queued as a ``DELIVER`` event a little
later. Not for: what a delivery does (``participants``) or which links a
fault cuts (``faults``).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from ...protocol import wire
from .events import DELIVER, EventQueue

Link = tuple[str, str]  # (source, destination): links are directed


class Network:
    """Links, loss rates and the frames in flight (as events on the queue).

    Parameters
    ----------
    rng : random.Random
        The simulator's stream (shared: the order of draws is part of a run).
    queue : EventQueue
    count_fault : callable
        ``count_fault(kind)``: one drop, duplicate or reorder happened.
    note : callable
        ``note(now, msg)``: every message that leaves, before it is encoded (the checker's lease rule).
    drop, duplicate, reorder : float
        The probability that a frame is lost, sent twice, or delayed by up to 5 ms more.
    """

    def __init__(
        self,
        rng: random.Random,
        queue: EventQueue,
        count_fault: Callable[[str], None],
        note: Callable[[float, wire.Message], None],
        drop: float,
        duplicate: float,
        reorder: float,
    ) -> None:
        self.rng = rng
        self.queue = queue
        self.count_fault = count_fault
        self.note = note
        self.drop, self.duplicate, self.reorder = drop, duplicate, reorder
        # Directed links that lose everything, counted: overlapping faults may cut one link twice.
        self.cuts: Counter[Link] = Counter()
        self.trace: Any = None  # golden.Trace: every frame sent, when a golden trace is recorded

    def heal_messages(self) -> None:
        """No more losses, duplicates or reorders (the run's tail)."""
        self.drop = self.duplicate = self.reorder = 0.0

    def is_cut(self, src: wire.Address, dest: wire.Address) -> bool:
        return (src, dest) in self.cuts

    def cut(self, links: set[Link]) -> None:
        self.cuts.update(links)

    def uncut(self, links: set[Link]) -> None:
        self.cuts.subtract(links)
        self.cuts = +self.cuts  # drop the links no fault cuts any more

    def emit(self, now: float, src: wire.Address, outputs: Iterable) -> None:
        """Encode and send a participant's outputs (``Done`` and other local outputs are not sent)."""
        trace = self.trace
        for o in outputs:
            if isinstance(o, wire.Send):
                self.note(now, o.msg)
                frame = wire.encode(o.msg)
                if trace is not None:
                    trace.frame(now, src, o.dest, frame)
                self.send(now, src, o.dest, frame)
            elif isinstance(o, wire.ReplyRun):  # means one Send per reply: delivered so, in order
                for r in o.replies():
                    self.note(now, r)
                    frame = wire.encode(r)
                    if trace is not None:
                        trace.frame(now, src, o.dest, frame)
                    self.send(now, src, o.dest, frame)
            elif trace is not None and isinstance(o, wire.Publish):
                trace.frame(now, src, o.topic.decode(), wire.encode(o.msg))
            # Publish: no subscriber in the simulation; Done is handled by the client loop.

    def send(self, now: float, src: wire.Address, dest: wire.Address, frame: bytes) -> None:
        """One frame onto the wire: cut, dropped, duplicated and delayed as the rates draw it."""
        rng = self.rng
        if (src, dest) in self.cuts:
            return
        if self.drop and rng.random() < self.drop:
            self.count_fault("drop")
            return
        copies = 1
        if self.duplicate and rng.random() < self.duplicate:
            self.count_fault("duplicate")
            copies = 2
        for _ in range(copies):
            delay = rng.uniform(0.00002, 0.0002)
            if self.reorder and rng.random() < self.reorder:
                self.count_fault("reorder")
                delay += rng.uniform(0.0, 0.005)
            self.queue.push(now + delay, DELIVER, src, dest, frame)
