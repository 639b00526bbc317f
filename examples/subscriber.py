"""A market-data / drop-copy subscriber: the sequenced stream of a group, as JSON lines.

    python examples/subscriber.py

Starts a small group, sends a few orders, and prints each sequenced entry
with its events as a subscriber receives them (what `matchcore subscribe`
does). Subscribers are read-only: they never acknowledge and never slow the
primary; a gap in the stream is refilled from the node.
"""

import io
import threading
import time

from replication import Client
from replication.testing.harness import Group
from replication.transport.group_file import load
from replication.transport.subscriber import subscribe

group = Group(nodes=("a", "b"), mode="sync")
try:
    group.start_all()
    group.wait_for(
        lambda st: st.get("a", {}).get("role") == "primary" and st.get("b", {}).get("joined"),
        what="a primary with a joined standby",
    )
    stream = io.StringIO()
    reader = threading.Thread(
        target=subscribe,
        args=(load(group.path),),
        kwargs={"node": "a", "count": 4, "idle_timeout": 10.0, "out": stream},
    )
    reader.start()
    # A client id is held by one live client at a time: the Client opens a session (entry 1
    # of the stream), and a second live Client with the same id would fence this one.
    with Client.from_config(group.path, client_id=2) as client:
        time.sleep(0.3)  # PUB/SUB joins late (ZeroMQ's slow joiner): let it connect first
        client.submit(instrument=1, id=1, side="sell", price=1251, qty=100)
        client.submit(instrument=1, id=2, side="buy", price=1251, qty=40)
        client.cancel(instrument=1, id=1)
    reader.join(timeout=15)
    print(stream.getvalue(), end="")
finally:
    group.stop()
