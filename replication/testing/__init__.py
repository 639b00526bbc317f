"""Layer 5: proving the group — the simulator, its checker, golden traces, chaos and the process harness.

For: ``sim`` (the seeded fault simulator running the production machines,
a package of one role per module: schedule, events, network, participants,
fault handlers, run loop, and ``sim.check``, its safety and liveness checks;
``python -m replication.testing.sim``), ``golden`` (digests that prove a
refactoring changed nothing), ``chaos`` (faults on real processes) and
``harness`` (a group of real processes on loopback). Imports every layer
below but ``ops``; nothing below imports it.
"""
