"""The ``matchcore`` console script's entry point: process set-up before anything loads numpy.

For: one thing the ``matching.cli`` dispatcher cannot do for itself — importing
``matching.cli`` runs ``matching/__init__``, which loads numpy and with it
OpenBLAS, whose thread pool is sized from ``OPENBLAS_NUM_THREADS`` at that
moment. A node does no linear algebra, and every thread is something the
kernel tears down before a SIGKILLed node's peers see it gone, so the script
sets one thread (unless the environment says otherwise) and then hands over
to ``matching.cli.main``. Not for: the commands themselves.
"""

from __future__ import annotations

import os


def main() -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from matching.cli import main as run

    return run()
