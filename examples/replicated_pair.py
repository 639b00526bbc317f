"""A primary/standby pair with a witness, and a client that survives a fail-over.

    python examples/replicated_pair.py

Starts the three processes on loopback (what `matchcore primary`,
`matchcore standby` and `matchcore witness` do from a shell), sends orders
through `replication.Client`, kills the primary, and carries on against the
promoted standby: the client re-sends what was unanswered and nothing is
executed twice.
"""

import signal

from replication import Client
from replication.testing.harness import Group

group = Group(nodes=("a", "b"), mode="sync")  # writes a group.toml in a temp dir
try:
    group.start_all()
    group.wait_for(
        lambda st: st.get("a", {}).get("role") == "primary" and st.get("b", {}).get("joined"),
        what="a primary with a joined standby",
    )
    # client_id: distinct per live client. The Client opens a session for it, and a second
    # live Client with the same id would fence this one (its next call: SessionFenced).
    with Client.from_config(group.path, client_id=1) as client:
        print(client.submit(instrument=1, id=1, side="sell", price=1251, qty=100))
        print(client.submit(instrument=1, id=2, side="buy", price=1251, qty=40))

        group.kill("a", signal.SIGKILL)  # the primary dies; b takes over with the same book
        print(client.submit(instrument=1, id=3, side="buy", price=1251, qty=60))  # served by b

    status = group.wait_for(lambda st: st.get("b", {}).get("role") == "primary", what="b serving")
    print(
        f"b is primary in epoch {status['b']['epoch']} at seq {status['b']['last_seq']}, "
        f"digest {status['b']['digest']}"
    )
finally:
    group.stop()  # kills every process and removes the temp dir
