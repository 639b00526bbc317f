"""The Cython engine against the reference, command by command.

The reference (``matching.reference``) is the specification; for random
sessions from ``tests/strategies.py`` the Cython core must emit the same
events, hold the same depth in every instrument, and agree on both digests
after *every* command, with both engines' invariant checks passing.  The
same sessions also pin the Cython engine's ways in (per-call, dicts, batch)
to each other, and snapshot/restore to "changes nothing".
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import matching
from matching import ReferenceEngine, command_array, events_from_array
from tests.strategies import EXTREME_IDS, INSTRUMENTS, command_lists, timed_command_lists

pytestmark = [
    pytest.mark.skipif(matching.Engine is None, reason="extension not built"),
    # The ``long`` hypothesis profile runs far past the default per-test timeout.
    pytest.mark.timeout(3600),
]

ALL_IDS = [*range(0, 20), *EXTREME_IDS]


def _state(e) -> tuple:
    """Everything observable about an engine's books."""
    return (
        e.instruments(),
        [e.depth(i) for i in INSTRUMENTS],
        [e.order(i) for i in ALL_IDS],
        e.live_orders,
        e.digest,
        e.book_digest(),
        e.commands_applied,
        [e.bbo(i) for i in INSTRUMENTS],
        e.waiting_stops,
    )


def _call(e, cmd: dict) -> list:
    """Drive the per-call API when the dict maps onto it, else ``apply``."""
    args = {k: v for k, v in cmd.items() if k != "op"}
    op = cmd.get("op")
    try:
        if op == "new" and {"instrument", "id", "side"} <= args.keys():
            return e.submit(**args)
        if op == "cancel" and args.keys() == {"instrument", "id"}:
            return e.cancel(**args)
        if op == "replace" and {"instrument", "id"} <= args.keys() <= {
            "instrument",
            "id",
            "price",
            "qty",
            "stop_price",
            "ts",
        }:
            return e.replace(**args)
        if op == "mass_cancel" and args.keys() <= {"account", "instrument"}:
            return e.mass_cancel(**args)
    except TypeError:  # e.g. an unexpected keyword from a malformed command
        pass
    return e.apply(cmd)


@given(st.one_of(command_lists(), timed_command_lists()))
def test_every_command_matches_the_reference(cmds):
    ref = ReferenceEngine()
    fast = matching.Engine(capacity=4)  # tiny: the pool must grow under the test
    per_call = []
    for i, cmd in enumerate(cmds):
        expected = ref.apply(cmd)
        got = fast.apply(cmd)
        assert got == expected, f"command {i}: {cmd}"
        assert _state(fast) == _state(ref), f"state after command {i}: {cmd}"
        ref._check()
        fast._check()
        per_call.extend((i, ev) for ev in got)
    # The batch API over the same session: same events, same end state.
    batch = matching.Engine(capacity=1)
    arr = batch.apply_batch(command_array(cmds))
    assert arr.dtype == matching.EVENT_DTYPE
    assert list(zip(arr["cmd"].tolist(), events_from_array(arr), strict=True)) == per_call
    assert _state(batch) == _state(fast)
    batch._check()


@given(st.one_of(command_lists(), timed_command_lists()))
def test_per_call_api_matches_the_reference(cmds):
    ref = ReferenceEngine()
    fast = matching.Engine()
    for i, cmd in enumerate(cmds):
        assert _call(fast, cmd) == _call(ref, cmd), f"command {i}: {cmd}"
        assert fast.digest == ref.digest
    assert _state(fast) == _state(ref)
    fast._check()


@given(st.one_of(command_lists(min_size=2), timed_command_lists(min_size=2)), st.data())
def test_snapshot_restore_does_not_change_the_future(cmds, data):
    cut = data.draw(st.integers(min_value=0, max_value=len(cmds)), label="cut")
    ref = ReferenceEngine()
    fast = matching.Engine()
    for cmd in cmds[:cut]:
        ref.apply(cmd)
        fast.apply(cmd)
    clone = matching.Engine.restore(fast.snapshot())
    clone._check()
    assert _state(clone) == _state(fast)
    for i, cmd in enumerate(cmds[cut:], start=cut):
        expected = ref.apply(cmd)
        assert fast.apply(cmd) == expected, f"command {i}"
        assert clone.apply(cmd) == expected, f"restored engine, command {i}"
    assert _state(clone) == _state(ref) == _state(fast)
    clone._check()


@settings(max_examples=40)
@given(
    st.lists(st.one_of(command_lists(max_size=30), timed_command_lists(max_size=30)), min_size=1, max_size=4)
)
def test_several_batches_chain_like_one(chunks):
    whole = matching.Engine()
    pieces = matching.Engine()
    ref = ReferenceEngine()
    flat = [c for chunk in chunks for c in chunk]
    all_events = whole.apply_batch(command_array(flat)) if flat else None
    n = 0
    for chunk in chunks:
        if chunk:
            arr = pieces.apply_batch(command_array(chunk))
            expected = ref.apply_batch(command_array(chunk))
            assert events_from_array(arr) == events_from_array(expected)
            assert arr["cmd"].tolist() == expected["cmd"].tolist()
            n += len(arr)
    if all_events is not None:
        assert len(all_events) == n
    assert _state(whole) == _state(pieces) == _state(ref)
