"""The C records of the core and the NumPy dtypes of codes.py can never drift.

``command_t`` / ``event_t`` in ``_engine.pxd`` are read and written by the
batch API straight from NumPy buffers, so their size and every field offset
must equal ``COMMAND_DTYPE`` / ``EVENT_DTYPE``.  The C copies of the codes
must equal codes.py's.
"""

from __future__ import annotations

import pytest

import matching
from matching import codes

pytestmark = pytest.mark.skipif(matching.Engine is None, reason="extension not built")


@pytest.fixture(scope="module")
def layout():
    from matching import _engine

    return _engine._layout()


@pytest.mark.parametrize("name, dtype", [("command", codes.COMMAND_DTYPE), ("event", codes.EVENT_DTYPE)])
def test_record_matches_dtype(layout, name, dtype):
    size, offsets = layout[name]
    assert size == dtype.itemsize
    assert set(offsets) == set(dtype.names)
    for field in dtype.names:
        assert offsets[field] == dtype.fields[field][1], field


def test_itemsizes_are_pinned(layout):
    assert layout["command"][0] == 80
    assert layout["event"][0] == 64


def test_order_slot_fits_a_cache_line(layout):
    assert layout["order_t"] == 48


def test_c_codes_equal_codes_py():
    from matching import _engine

    for name, value in _engine._constants().items():
        assert getattr(codes, name) == value, name
