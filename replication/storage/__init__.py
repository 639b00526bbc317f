"""Layer 2: what a node and the witness keep on disk.

For: the journal (``journal``: file and in-memory implementations of
``protocol.journal_api.JournalBase``; ``journal_records``: the record
format), writes that complete or fail loudly (``diskio``), the two-slot
metadata file (``slotfile``) and the witness's state file. Imports only
``protocol`` and ``native``.
"""
