"""The pipelined floor (``benchmarks.batch_floor``): its windows, and one pass end to end.

Tiny N; no assertion is about a timing.
"""

from __future__ import annotations

import json

import numpy as np

from benchmarks import batch_floor, groups
from replication.protocol.records import REQUEST_DTYPE


def test_windows_carry_every_order_once_and_the_sizes_a_replica_answers_with():
    frames = batch_floor.windows(3_000, 256, seed=1)
    head = batch_floor.HEAD
    rids = []
    for tag, (frame, k, answer_bytes) in enumerate(frames):
        got_tag, reply, reports = head.unpack_from(frame)
        req = np.frombuffer(frame, dtype=REQUEST_DTYPE, offset=head.size)
        assert got_tag == tag and len(req) == k <= 256
        assert (req["client_id"] == batch_floor.CLIENT_ID).all()
        assert reply >= batch_floor.REPLY_HEAD * k and reports % batch_floor.REPORT_SIZE == 0
        assert answer_bytes == reply + reports
        rids += req["request_id"].tolist()
    assert rids == list(range(rids[0], rids[0] + len(rids)))  # each order once, in order
    setup, ops = groups.mix_records(3_000, 1)
    assert len(rids) == len(setup) + len(ops)  # the setup orders too, as the group benchmark sends


def test_one_round_of_both_variants_runs_end_to_end(capsys):
    assert batch_floor.main(["--orders", "2000", "--window", "256", "--rounds", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["orders"] > 2_000 and out["window"] == 256
    for variant in ("bare", "replica"):
        assert out[variant]["orders_per_s"] > 0
        assert set(out[variant]["cpu_us_per_order"]) == {"primary", "standby", "client"}
