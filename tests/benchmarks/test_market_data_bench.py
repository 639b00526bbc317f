"""``benchmarks.market_data`` runs: its in-process part (feed off/on through a replica) writes its JSON."""

from __future__ import annotations

import argparse
import json

import pytest

from benchmarks import common
from benchmarks import market_data as bench


def test_the_in_process_figure_is_written(tmp_path):
    pytest.importorskip("matching._book_feed")
    parser = argparse.ArgumentParser()
    common.add_common_arguments(parser)
    bench.add_arguments(parser)
    args = parser.parse_args(
        ["--commands", "2000", "--pairs", "1", "--no-group", "--no-plot", "--out", str(tmp_path)]
    )
    result = bench.run(args)
    saved = json.loads((tmp_path / "market_data.json").read_text())
    med = saved["in_process"]["median_us_per_order"]
    assert set(med) == {"primary_off", "primary_on", "standby_off", "standby_on"}
    assert all(v > 0 for v in med.values()) and result["runs"] == []
