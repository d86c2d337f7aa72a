"""A run directory's metrics.jsonl as the tests read it."""

from __future__ import annotations

import json
from pathlib import Path


def read_records(out: Path) -> list[dict]:
    """Every record of the run in `out`, oldest first."""
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def evaluated_agreements(out: Path, student: str) -> list[float]:
    """`student`'s agreement with its teacher at each evaluation of its newest weights, oldest
    first. The last is the last weights' own, on the same episodes as the others; summary.json
    reports the student's best-returning version, which can be an early one."""
    return [r[f"eval/agreement/{student}"] for r in read_records(out) if f"eval/agreement/{student}" in r]
