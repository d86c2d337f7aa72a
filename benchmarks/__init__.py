"""Benchmarks: scripts that print tables, run from the repository root as modules, e.g.
`python -m benchmarks.buffer_throughput` (so they import tests.support and each other by name).
Not part of the test suite."""
