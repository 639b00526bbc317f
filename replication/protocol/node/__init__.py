"""The node machine: one node's shared state (epoch, journal, replica, peers) and its roles.

``machine`` holds the node (``NodeMachine``: shared state, the handler
table, timers, role changes, fencing) and one role object at a time:
``primary.PrimaryRole`` sequences (with its components ``in_sync``, the
in-sync set, and ``catch_up``, joins, refills and snapshots),
``standby.StandbyRole`` replays (and decides when to run for primary),
``standby.DivergedRole`` refuses everything. The node's own components,
which outlive role changes: ``candidacy`` (failure detection, votes),
``lease`` (the async lease: the primary's, and a standby's promise),
``operator_promote`` and ``journal_health`` (a failed or damaged journal).
``status`` is the node's report, ``records`` the named records it keeps.
"""
