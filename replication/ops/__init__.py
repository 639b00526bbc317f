"""Layer 6: operations — the ``matchcore`` subcommands and the demo.

The top layer: it may import every other one, and none imports it.
"""
