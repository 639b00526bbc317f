"""The one place matchcore's version is written.

``pyproject.toml`` reads it (``[tool.setuptools.dynamic]``), ``matching.__version__``
and ``replication.__version__`` re-export it, and ``matchcore --version`` prints it.
Change it together with a new heading in ``CHANGELOG.md``.
"""

__version__ = "0.2.0"
