"""Two clients on one group: the maker is told of its fill, privately, with no polling of the book.

    python examples/maker_taker.py

A maker rests a sell, a taker buys part of it. Each call returns the
caller's own events; the maker learns of the trade from its execution
reports (``Client.executions``), which every node keeps as replicated state.
Then both ask the group about the order (``Client.order``,
``Client.open_orders``), and a restarted maker resumes its reports from the
last seq it saw.
"""

from replication import Client
from replication.testing.harness import Group

group = Group(nodes=("a", "b"), mode="sync")  # a temp dir with group.toml; loopback ports
try:
    group.start_all()
    group.wait_ready()
    maker = Client.from_config(group.path, client_id=1)  # distinct client ids: one session each
    taker = Client.from_config(group.path, client_id=2)
    print("maker:", maker.submit(instrument=1, id=10, side="sell", price=100, qty=10))
    print("taker:", taker.submit(instrument=1, id=20, side="buy", price=100, qty=4))

    reports = []
    while not any(r["event"] == "trade" for r in reports):
        reports += maker.executions(timeout=1.0)
    fill = next(r for r in reports if r["event"] == "trade")
    print(f"maker's fill: {fill['qty']} at {fill['price']} (side {fill['side']}, seq {fill['seq']})")
    print("order 10:", maker.order(instrument=1, id=10))
    print("maker's open orders:", [o["id"] for o in maker.open_orders()])

    last_seq = reports[-1]["seq"]
    maker.close()  # the maker restarts ...
    taker.submit(instrument=1, id=21, side="buy", price=100, qty=6)
    maker = Client.from_config(group.path, client_id=1, resume_from=last_seq)
    missed = []
    while not missed:
        missed = maker.executions(timeout=1.0)
    print("after the restart:", [(r["event"], r.get("side"), r["seq"]) for r in missed])
    maker.close()
    taker.close()
finally:
    group.stop()
