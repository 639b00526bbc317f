"""Layer 3: processes and sockets — running the machines over ZeroMQ.

For: the group file (``group_file``), the node and witness drivers
(``driver``), CURVE keys and the ZAP handler (``curve``), connection
monitoring, Prometheus metrics and the stream subscriber. Imports
``storage``, ``protocol`` and ``native``; never a client, the CLI or a test
harness.
"""
