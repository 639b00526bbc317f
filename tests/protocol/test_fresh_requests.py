"""The primary's dedupe look-up of a bundle (``fastpath.fresh_requests``, C and Python) against
the per-request test it replaces: well-formed, not queued, ``Replica.lookup`` gives None."""

from __future__ import annotations

from collections import OrderedDict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replication.native import fastpath
from replication.protocol import wire

IMPLS = [pytest.param(fastpath.fresh_requests_py, id="python")]
if fastpath.NATIVE:
    from replication.native import _fast

    IMPLS.append(pytest.param(_fast.fresh_requests, id="native"))

CIDS, RIDS = (1, 2, 3), range(0, 12)
requests = st.lists(
    st.builds(
        wire.Request,
        st.sampled_from(CIDS),
        st.sampled_from(RIDS),
        st.sampled_from([bytes(wire.COMMAND_SIZE)] * 4 + [bytes(3), bytes(wire.COMMAND_SIZE + 1)]),
    ),
    max_size=16,
)
tables = st.dictionaries(
    st.sampled_from(CIDS),
    st.tuples(st.integers(0, 6), st.lists(st.sampled_from(RIDS), unique=True, max_size=5)),
    max_size=3,
)


def _lookup(results: dict, cid: int, rid: int):
    slot = results.get(cid)
    if slot is None:
        return None
    got = slot[1].get(rid)
    return got if got is not None else ("expired" if rid < slot[0] else None)


@pytest.mark.parametrize("fresh", IMPLS)
@given(
    reqs=requests,
    table=tables,
    queued=st.sets(st.tuples(st.sampled_from(CIDS), st.sampled_from(RIDS))),
    data=st.data(),
)
def test_fresh_requests_is_the_per_request_test(fresh, reqs, table, queued, data):
    results = {
        c: [floor, OrderedDict((r, (r + 100, b"")) for r in rids)] for c, (floor, rids) in table.items()
    }
    start = data.draw(st.integers(0, len(reqs)))
    keys, want_keys = set(queued), set(queued)
    want = 0
    for m in reqs[start:]:
        key = (m.client_id, m.request_id)
        if len(m.command) != wire.COMMAND_SIZE or key in want_keys or _lookup(results, *key) is not None:
            break
        want_keys.add(key)
        want += 1
    for seq in (reqs, tuple(reqs)):
        keys = set(queued)
        assert fresh(seq, start, keys, results, wire.COMMAND_SIZE) == want
        assert keys == want_keys
