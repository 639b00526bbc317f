"""The node machine: one node's shared state (epoch, journal, replica, peers) and its roles.

``machine`` holds the node (``NodeMachine``: shared state, the handler
table, role changes, candidacy, votes, fencing, status) and one role object
at a time: ``primary.PrimaryRole`` sequences, ``standby.StandbyRole`` replays
(and decides when to run for primary), ``standby.DivergedRole`` refuses
everything. ``lease``, ``operator_promote`` and ``journal_health`` are the
rules of the async lease, the operator's promotion and a failed or damaged
journal; ``records`` the named records the node and its roles keep.
"""
