"""matchcore's matching engine: price-time priority for many instruments.

``Engine`` is the Cython core; ``ReferenceEngine`` is the plain-Python
specification it is tested against. Both take commands one by one
(``submit``, ``cancel``, ``replace``, ``mass_cancel``, ``apply``) or in a
NumPy batch (``apply_batch`` on ``command_array(...)``) and return the same
events. ``BookFeed`` turns those events into the public market-data feed
(L2 level updates, trades, BBO; ``matching.market_data``), and ``LocalBook``
rebuilds and verifies a book from it.
"""

from ._version import __version__
from .book_feed import BookFeed
from .codes import COMMAND_DTYPE, EVENT_DTYPE, digest_hex
from .commands import command_array, command_dict, command_record
from .events import (
    Accepted,
    Cancelled,
    Event,
    Rejected,
    Replaced,
    Trade,
    Triggered,
    event_dict,
    events_from_array,
    events_from_bytes,
)
from .market_data import (
    BboUpdate,
    BookSnapshot,
    LevelUpdate,
    LocalBook,
    TradeUpdate,
    depth_checksum,
    update_dict,
)
from .reference import ReferenceEngine

try:
    from ._engine import Engine
except ImportError:  # the extension is not built yet (a source checkout before `make build`)
    Engine = None  # type: ignore[assignment,misc]

__all__ = [
    "__version__",
    "COMMAND_DTYPE",
    "EVENT_DTYPE",
    "Accepted",
    "BboUpdate",
    "BookFeed",
    "BookSnapshot",
    "Cancelled",
    "Engine",
    "Event",
    "LevelUpdate",
    "LocalBook",
    "ReferenceEngine",
    "Rejected",
    "Replaced",
    "Trade",
    "TradeUpdate",
    "Triggered",
    "command_array",
    "command_dict",
    "command_record",
    "depth_checksum",
    "digest_hex",
    "event_dict",
    "events_from_array",
    "events_from_bytes",
    "update_dict",
]
