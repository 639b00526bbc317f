"""Layer 3: processes and sockets — running the machines over ZeroMQ.

For: the group file (``group_file``), the socket loop both drivers share
(``loop``: ROUTER, peer DEALERs, inbound decode and trust checks, idle
waits), the node's driver (``node_driver``: durability order, reply
bundles, the entry stream) and the witness's (``witness_driver``: its state
file), socket options and GC tuning (``sockets``), CURVE keys and the ZAP
handler (``curve``), connection monitoring, Prometheus metrics, the
stream subscriber, and the public market-data feed (``md_engine``: computed
from the applied entries, kept in snapshots; ``market_data_pub``: its PUB,
heartbeats and snapshot service). Imports ``storage``, ``protocol`` and ``native``; never a
client, the CLI or a test harness.
"""
