"""The batch API: a NumPy array of commands in, a NumPy array of events out.

    python examples/batch.py

The loop over the commands runs in C with the GIL released; each event row
carries ``cmd``, the index of the command that caused it.
"""

import numpy as np

import matching

rng = np.random.default_rng(7)
n = 100_000
cmds = np.zeros(n, dtype=matching.COMMAND_DTYPE)
cmds["op"] = 0  # new orders only, to keep the example short
cmds["instrument"] = rng.integers(1, 4, n)
cmds["id"] = np.arange(1, n + 1)
cmds["side"] = rng.integers(0, 2, n)
cmds["price"] = 1000 + rng.integers(-5, 6, n)
cmds["qty"] = rng.integers(1, 100, n)
cmds["flags"] = 1  # HAS_PRICE: these are limit orders

engine = matching.Engine()
events = engine.apply_batch(cmds)
kinds = {code: name for code, name in matching.codes.EVENT_KIND_NAMES.items()}
counts = {kinds[k]: int(c) for k, c in zip(*np.unique(events["kind"], return_counts=True), strict=True)}
trades = events[events["kind"] == matching.codes.EV_TRADE]
print(f"{n} commands -> {len(events)} events {counts}")
print(f"traded volume {int(trades['qty'].sum())}, resting orders {engine.live_orders}")
print("first events:", matching.events_from_array(events[:3]))
