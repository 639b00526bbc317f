"""Layer 4: the client side — ``Client`` (one group), ``Router`` (several), and the operator's calls.

``replication.Client``, ``replication.Router`` and ``replication.MarketData`` are the public names.
Imports ``transport`` and below.
"""

from __future__ import annotations

__all__ = ["Client", "MarketData", "Router"]


def __getattr__(name: str):
    # Lazy, like the top package: importing the client side must not import pyzmq until needed.
    if name == "Client":
        from .group_client import Client

        return Client
    if name == "Router":
        from .router import Router

        return Router
    if name == "MarketData":
        from .market_data import MarketData

        return MarketData
    raise AttributeError(name)
