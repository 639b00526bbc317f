"""A tiny deterministic in-process network for the sans-IO machine tests.

Not the project's fault-injecting simulator: just FIFO delivery with a fake
clock, optional message filters, and every message round-tripped through the
wire codec so the tests exercise it too; each node's ``invariants()`` is
checked after each of its steps.
"""

from __future__ import annotations

from collections import deque

from replication.protocol import wire
from replication.protocol.client_core import ClientCore, Done
from replication.protocol.node.machine import NodeMachine
from replication.protocol.settings import Settings
from replication.protocol.witness import WitnessMachine
from replication.storage.journal import MemoryJournal


def settings(**kw) -> Settings:
    s = Settings(snapshot_every=0)
    for k, v in kw.items():
        setattr(s, k, v)
    return s


class Net:
    def __init__(self, machines: dict, dt: float = 0.001) -> None:
        self.machines = machines  # name (str) or client address (bytes) -> machine
        self.queue: deque = deque()
        self.now = 0.0
        self.dt = dt
        self.down: set = set()  # names whose inbound and outbound messages vanish
        self.drop = None  # optional predicate(src, dest, msg) -> bool
        self.done: dict = {}  # client address -> list of Done
        self.published: list = []

    def emit(self, src, outputs) -> None:
        for o in outputs:
            if isinstance(o, wire.Publish):
                self.published.append(o.msg)
            elif isinstance(o, Done):
                self.done.setdefault(src, []).append(o)
            elif isinstance(o, wire.ReplyRun):  # one Send per reply
                self.emit(src, o.sends())
            else:
                self.queue.append((src, o.dest, wire.decode(wire.encode(o.msg))))

    def deliver_all(self, limit: int = 100000) -> None:
        n = 0
        while self.queue and n < limit:
            src, dest, msg = self.queue.popleft()
            n += 1
            if src in self.down or dest in self.down or dest not in self.machines:
                continue
            if self.drop is not None and self.drop(src, dest, msg):
                continue
            self.emit(dest, self.machines[dest].handle(src, msg, self.now))
            self.check(dest)

    def step(self) -> None:
        self.deliver_all()
        self.now += self.dt
        for name, m in self.machines.items():
            if name not in self.down:
                self.emit(name, m.tick(self.now))
                self.check(name)
        self.deliver_all()

    def check(self, name) -> None:
        """A node's invariants after each of its steps (``NodeMachine.invariants``)."""
        m = self.machines[name]
        if isinstance(m, NodeMachine):
            m.invariants()

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            self.step()

    def run_until(self, cond, seconds: float = 5.0) -> None:
        end = self.now + seconds
        while not cond():
            assert self.now < end, "condition not reached"
            self.step()


def group(
    mode: str = "sync",
    n_standbys: int = 1,
    witness: bool = True,
    engine_factory=None,
    perturb: dict | None = None,
    **kw,
):
    from matching import ReferenceEngine

    s = settings(mode=mode, **kw)
    names = ["a"] + [chr(ord("b") + i) for i in range(n_standbys)]
    machines: dict = {}
    journals = {}
    for i, name in enumerate(names):
        journals[name] = MemoryJournal()
        machines[name] = NodeMachine(
            name,
            names,
            journals[name],
            s,
            "witness" if witness else None,
            engine_factory or ReferenceEngine,
            "primary" if i == 0 else "standby",
            (perturb or {}).get(name, 0),
        )
    if witness:
        machines["witness"] = WitnessMachine(names, s)
    net = Net(machines)
    net.journals = journals
    net.settings = s
    return net


def add_client(net: Net, addr: bytes, client_id: int, nodes: list[str], first: int = 1) -> ClientCore:
    c = ClientCore(client_id, nodes, first, retry_timeout=0.02)
    net.machines[addr] = c
    return c


def cmd(i: int, side: str = "buy", price: int = 100, qty: int = 10) -> bytes:
    from matching.commands import command_record

    rec = command_record({"op": "new", "instrument": 1, "id": i, "side": side, "price": price, "qty": qty})
    return wire.pack_command(rec)
