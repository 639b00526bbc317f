"""Build the Cython core; everything else is declared in pyproject.toml."""

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

# Compiler directives are set once here, not sprinkled through the sources.
DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
    "embedsignature": True,
}

extensions = [
    Extension(
        "matching._engine",
        ["matching/_engine.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    ),
    # The market-data feed's batch path (matching.BookFeed's rules, in C; a node runs it per command).
    Extension(
        "matching._book_feed",
        ["matching/_book_feed.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    ),
    # The catch-up path's per-entry loops (CRC-32 of records, dedupe-table updates);
    # replication.native.fastpath falls back to plain Python when this is not built.
    Extension(
        "replication.native._fast",
        ["replication/native/_fast.pyx"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    ),
    # The execution-report book (replication.protocol.reports.ReportBook when built; else the
    # plain-Python ReportBookPy, its specification).
    Extension(
        "replication.native._reports",
        ["replication/native/_reports.pyx"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    ),
    # The client's Replies decoder; replication.client.group_client falls back to wire.decode when this is not built.
    Extension(
        "replication.protocol._client_fast",
        ["replication/protocol/_client_fast.pyx"],
        extra_compile_args=["-O3"],
    ),
]

setup(ext_modules=cythonize(extensions, compiler_directives=DIRECTIVES))
