"""``matchcore promote``'s check of a target against every node's and the witness's report."""

from __future__ import annotations

import pytest

from replication.ops.cli import promote_risk


def node(role, epoch, seq, commit=0, isr=()):
    return {"role": role, "epoch": epoch, "last_seq": seq, "commit": commit, "isr": list(isr)}


def witness(epoch, primary, isr, heard=None):
    return {"role": "witness", "epoch": epoch, "primary": primary, "isr": isr, "heard": heard or {}}


@pytest.mark.parametrize(
    ("st", "want"),
    [
        # The primary is gone; b holds everything; the witness (restarted) does not know the in-sync set.
        (
            {
                "a": {"role": "unreachable"},
                "b": node("standby", 1, 500, 500),
                "witness": witness(1, "a", None),
            },
            "",
        ),
        # ... and the witness recorded b in the in-sync set, having heard a at commit 500.
        (
            {
                "a": {"role": "unreachable"},
                "b": node("standby", 1, 500),
                "witness": witness(1, "a", ["b"], {"a": [1, 1, 520, 500, ["b"]]}),
            },
            "",
        ),
        # a ran solo: the witness recorded an empty in-sync set.
        (
            {"a": {"role": "unreachable"}, "b": node("standby", 1, 500), "witness": witness(1, "a", [])},
            "not in the in-sync set (empty: the primary ran solo)",
        ),
        # The witness heard a acknowledge up to 3,000 solo (its in-sync set left b out).
        (
            {
                "a": {"role": "unreachable"},
                "b": node("standby", 1, 200),
                "witness": witness(1, "a", None, {"a": [1, 1, 3000, 3000, []]}),
            },
            "acknowledged up to seq 3000 and b holds 200: 2800 may be lost",
        ),
        # A standby c reports a's commit beyond b.
        (
            {"a": {"role": "unreachable"}, "b": node("standby", 1, 90), "c": node("standby", 1, 100, 95)},
            "acknowledged up to seq 95",
        ),
        # A newer epoch exists (b missed a fail-over).
        ({"b": node("standby", 1, 90), "c": node("standby", 2, 100, 90)}, "epoch 2 exists"),
        # The primary is alive: that is a switchover's job.
        ({"a": node("primary", 1, 100, 100, ["b"]), "b": node("standby", 1, 100, 100)}, "use switchover"),
        ({"a": node("primary", 1, 100), "b": {"role": "unreachable"}}, "b does not answer"),
    ],
)
def test_promote_risk(st, want):
    got = promote_risk(st, "b", "sync")
    assert (want in got) if want else got == "", got
