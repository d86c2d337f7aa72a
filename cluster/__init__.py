"""Placing a run on Ray: config, connect, the driver that wires and supervises, the CLI."""
