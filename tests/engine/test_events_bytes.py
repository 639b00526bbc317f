"""events_from_bytes: the NumPy-free decoder of a reply's events equals events_from_array."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import groups
from matching import COMMAND_DTYPE, EVENT_DTYPE, ReferenceEngine, events_from_array, events_from_bytes
from matching.events import EVENT_RECORD


def test_record_struct_matches_the_dtype():
    assert EVENT_RECORD.size == EVENT_DTYPE.itemsize
    row = np.zeros(1, dtype=EVENT_DTYPE)
    values = dict(cmd=1, id=2, maker=3, price=-4, qty=5, open_a=6, open_b=7, instrument=8, kind=9, reason=10)
    for k, v in values.items():
        row[k] = v
    assert EVENT_RECORD.unpack(row.tobytes()) == tuple(values.values())


def test_same_events_as_the_array_decoder():
    setup, ops = groups.mix_records(3000, 4)
    arr = ReferenceEngine().apply_batch(np.array([tuple(r) for r in setup + ops], dtype=COMMAND_DTYPE))
    assert len(arr) > 3000
    assert events_from_bytes(arr.tobytes()) == events_from_array(arr)
    assert events_from_bytes(b"") == []
    with pytest.raises(ValueError):
        events_from_bytes(bytes(63))


def test_an_unknown_event_kind_is_a_clear_error():
    bad = EVENT_RECORD.pack(0, 1, 0, 100, 10, 0, 0, 1, 99, 0)
    with pytest.raises(ValueError, match="unknown event kind 99"):
        events_from_bytes(bad)
