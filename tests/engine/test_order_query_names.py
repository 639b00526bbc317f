"""``Engine.order()`` names what ``submit`` takes by name (issue 16): side and ``stp`` as
strings, on both engines, so an order read back can be submitted again as it is."""

from __future__ import annotations

import pytest

import matching
from matching import codes

ENGINES = [matching.ReferenceEngine] + ([matching.Engine] if matching.Engine is not None else [])


@pytest.mark.parametrize("make", ENGINES, ids=lambda e: e.__name__)
@pytest.mark.parametrize("stp", list(codes.STP_NAMES))
def test_order_names_the_stp_mode(make, stp: str) -> None:
    e = make()
    e.submit(instrument=1, id=5, side="sell", price=101, qty=3, account=9, stp=stp)
    got = e.order(5)
    assert got["stp"] == stp and got["side"] == "sell" and got["account"] == 9
    # What order() says is what submit() takes.
    again = make()
    again.submit(instrument=1, id=5, side=got["side"], price=got["price"], qty=got["open"], stp=got["stp"])
    assert again.order(5) == {**got, "account": 0}
