"""Operator calls over ZeroMQ: ask one node (or the witness) one question, or read the whole group's status.

For: what ``matchcore status``, ``switchover`` and ``promote``, the process
harness and the chaos harness share: :func:`ask` (one request, one answer,
over CURVE when the group has keys) and :func:`group_status` (every node's
and the witness's status, ``unreachable`` for the silent). Not for: the
command line (``ops.cli``) or the protocol (the machines answer).
"""

from __future__ import annotations

import json
from typing import Any


def ask(
    endpoint: str, msg: Any, timeout: float = 1.0, keys_dir: str = "", server: str = "", key: str = ""
) -> Any:
    """Send one message to a node's ROUTER and wait for one answer (None on timeout).

    With ``keys_dir``, connect over CURVE to the node named ``server`` as key ``key`` (a name in
    ``keys_dir`` or a ``.key_secret`` path; default: the implicit operator's).
    """
    import zmq

    from ..protocol import wire

    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    try:
        if keys_dir:
            from ..transport.curve import make_client

            make_client(s, keys_dir, server=server, me=key or "operator")
        s.connect(endpoint)
        s.send(wire.encode(msg))
        if not s.poll(int(timeout * 1000)):
            return None
        try:
            return wire.decode(s.recv())
        except wire.DecodeError:
            return None
    finally:
        s.close(0)


def group_status(cfg: Any, timeout: float = 1.0, key: str = "") -> dict[str, Any]:
    """``{name: status dict}`` for every node and the witness (``role: unreachable`` if silent)."""
    from ..protocol import wire

    if cfg.keys_dir and not key:
        from ..transport.curve import default_operator_key

        key = default_operator_key(cfg)
    out: dict[str, Any] = {}
    targets = {n: s.endpoint for n, s in cfg.nodes.items()}
    if cfg.witness:
        targets["witness"] = cfg.witness
    # Every target at once (one thread each, each with its own socket): a group with nodes down
    # answers in one timeout, not one per silent node.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(targets) or 1) as pool:
        asked = {
            name: pool.submit(ask, ep, wire.StatusRequest(), timeout, cfg.keys_dir, name, key)
            for name, ep in targets.items()
        }
    for name, future in asked.items():
        got = future.result()
        out[name] = (
            json.loads(got.body) if isinstance(got, wire.Status) else {"node": name, "role": "unreachable"}
        )
    return out
