"""Two groups and one router: every order goes to the group that serves its instrument.

    python examples/routed.py

Starts two groups on loopback (each a primary, a standby and a witness, as
`matchcore primary|standby|witness` would from a shell), writes a routes file
giving instruments 1 and 2 to the first group and 3 to the second, trades
on all three through one `replication.Router`, then mass-cancels an account
on every group at once. Each group ends with only its own instruments'
commands in its sequence.
"""

import os

from replication import Router
from replication.testing.harness import Group

ROUTES = """\
[groups.g1]
config = "{g1}"
instruments = [1, 2]

[groups.g2]
config = "{g2}"
instruments = [3]
"""

groups = []
try:
    for _ in range(2):
        # Each Group writes a group.toml in its own temp dir, on ports free right
        # now: start one before making the next so they cannot pick the same ones.
        # No idle time commands (time_interval_ms = 0): the seqs printed at the end then
        # count this script's commands only.
        g = Group(nodes=("a", "b"), mode="sync", extra={"time_interval_ms": 0})
        groups.append(g)
        g.start_all()
        g.wait_ready()
    g1, g2 = groups
    routes = os.path.join(g1.dir, "routes.toml")
    with open(routes, "w", encoding="utf-8") as f:
        f.write(ROUTES.format(g1=g1.path, g2=g2.path))

    # One session per group for this client id: the id must be this router's alone.
    with Router.from_file(routes, client_id=1) as router:
        for instrument in (1, 2, 3):
            oid = 10 * instrument  # order ids are unique within a group, across its instruments
            sell = router.submit(instrument, id=oid + 1, side="sell", price=101, qty=10, account=9)
            buy = router.submit(instrument, id=oid + 2, side="buy", price=101, qty=4, account=8)
            print(router.group_of(instrument), sell, buy)
        try:
            router.submit(instrument=4, id=1, side="buy", price=100, qty=1)
        except ValueError as exc:
            print("refused:", exc)
        # No instrument: sent to every group; not atomic across them.
        print("mass cancel of account 9:", router.mass_cancel(account=9))

    for name, g in (("g1", g1), ("g2", g2)):
        a = g.status()["a"]
        print(f"{name}: {a['role']} at seq {a['last_seq']}, digest {a['digest']}")
finally:
    for g in groups:
        g.stop()  # kills every process and removes the temp dir
