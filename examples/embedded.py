"""The engine embedded in an application: a few orders, their events, the book.

python examples/embedded.py
"""

from matching import Engine, event_dict

engine = Engine()
steps = [
    dict(instrument=1, id=1, side="sell", price=1251, qty=100),
    dict(instrument=1, id=2, side="sell", price=1252, qty=60, display_qty=20),  # an iceberg
    dict(instrument=1, id=3, side="buy", price=1249, qty=80, account=7),
    dict(instrument=1, id=4, side="buy", price=1252, qty=150, tif="IOC"),  # sweeps two levels
]
for order in steps:
    for event in engine.submit(**order):
        print(event_dict(event))

print(engine.replace(instrument=1, id=3, price=1250))  # a new price goes to the back of its level
print(engine.cancel(instrument=1, id=42))  # unknown ids are rejected, never raised
bids, asks = engine.depth(1)
print("bids", bids, "asks", asks)
print(f"digest {engine.digest:016x}")
