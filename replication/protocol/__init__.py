"""Layer 1: the sans-IO protocol core — what a node, the witness and a client decide.

For: the messages and their codec (``wire``: the one namespace for what
``messages``, ``codec``, ``records``, ``outputs`` and ``fields`` define), the
settings, the replicated state (``replica``), the journal's interface
(``journal_api``), the group's time (``group_time``), sessions, the request
queues, the trust policy, the node machine and its roles (``node``), the
witness machine and the client core. Every machine is a deterministic
function of its inputs: it imports no zmq, reads no clock (a primary's
stamps come from a clock the driver injects) and touches no file (a journal
is injected). Imports only
``native`` below it.
"""
