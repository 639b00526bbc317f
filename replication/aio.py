"""``replication.aio``: the asyncio face of the group client.

``replication.aio.Client`` makes the same calls as ``replication.Client``, as
coroutines, on ``zmq.asyncio`` (see ``replication.client.aio_client``)::

    from replication.aio import Client

    async with Client.from_config("group.toml", client_id=7) as c:
        events = await c.submit(instrument=1, id=1, side="buy", price=100, qty=5)
"""

from __future__ import annotations

from .client.aio_client import Client

__all__ = ["Client"]
