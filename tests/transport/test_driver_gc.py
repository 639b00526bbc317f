"""The driver's process sets its cyclic GC up for the loop (``node.tune_gc``)."""

from __future__ import annotations

import gc

from replication.transport import driver as node


def test_tune_gc_freezes_startup_objects_and_raises_the_young_threshold():
    before = gc.get_threshold()
    try:
        node.tune_gc()
        assert gc.get_threshold() == (node.GC_THRESHOLD0, *before[1:])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
