"""Helpers for the tests (and the benchmarks): real Ray heads, a real redis-server, network
namespaces, sequence-numbered batches, `qdistill` run in-process or as a process, a run's
metrics.jsonl, and the multi-node run script test_kill_node.py starts.
Imported as `tests.support.<module>` from the repository root (pytest's `pythonpath = ["."]`)."""
