"""The node machine: one node's shared state (epoch, journal, replica, peers) and its roles.

``machine`` holds the node and its fail-over logic (candidacy, votes,
switchover, fencing); ``primary`` sequences; ``standby`` replays; ``lease``,
``operator_promote`` and ``journal_health`` are the rules of the async lease,
the operator's promotion and a failed or damaged journal.
"""
