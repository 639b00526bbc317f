"""Which matching engine a node runs: the Cython core, or the reference engine in plain Python.

For: turning ``--engine auto|native|reference`` into the engine factory the
node machines take (``matching.Engine`` or ``matching.ReferenceEngine``).
Not for: the engines themselves (``matching``).
"""

from __future__ import annotations

from typing import Any


def engine_factory(kind: str) -> Any:
    import matching

    if kind == "reference" or (kind == "auto" and matching.Engine is None):
        return matching.ReferenceEngine
    if matching.Engine is None:
        raise SystemExit("the Cython engine is not built (run `make build`), or pass --engine reference")
    return matching.Engine
