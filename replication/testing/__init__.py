"""Layer 5: proving the group — the simulator, its checker, golden traces, chaos and the process harness.

For: ``sim`` (the seeded fault simulator running the production machines),
``sim_check`` (its safety and liveness checks), ``golden`` (digests that
prove a refactoring changed nothing), ``chaos`` (faults on real processes)
and ``harness`` (a group of real processes on loopback). Imports every
layer below; nothing below imports it.
"""
