"""matchcore's benchmark harnesses: measured figures, peers side by side.

Each harness is a module with ``add_arguments(parser)`` and ``run(args) -> dict``,
registered in :data:`benchmarks.cli.HARNESSES` and reachable as
``matchcore bench NAME`` (or ``python -m benchmarks.NAME``). Installed, this
directory is the package ``matchcore_benchmarks`` (see pyproject.toml), so imports
inside it are relative and child processes are started by the package's own name
(``__package__``), never by ``benchmarks``. Shared machinery
(machine description, HdrHistogram percentiles, JSON results, tables, charts)
lives in :mod:`benchmarks.common`; the standard command mix in
:mod:`benchmarks.workload`; adapters for other Python matching engines in
:mod:`benchmarks.peers`.

This package is not a test suite: nothing here asserts on timings, and pytest
does not collect it.
"""
