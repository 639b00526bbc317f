"""Layer 0: the replication path's C loops and their pure-Python twins.

For: the per-entry loops of the catch-up and journal paths (CRC-32 of
journal records, framing, dedupe-table updates, write-back), compiled from
``_fast.pyx``; ``fastpath`` picks the compiled one or its Python twin.
Imports nothing else of ``replication``. (The client's Replies decoder,
``protocol/_client_fast.pyx``, lives beside the codec it mirrors.)
"""
