"""A changing task: at a given env step the env's dynamics change; actors and evaluator get the
new parameters with their next call."""

from __future__ import annotations


class TaskChange:
    def __init__(self, at: int | None, change: dict[str, float]) -> None:
        self.at = at
        self.change = dict(change)
        self.changed_at: int | None = None  # the env step at which it changed

    def due(self, env_steps: int) -> bool:
        return self.at is not None and self.changed_at is None and env_steps >= self.at

    @property
    def waiting(self) -> bool:
        """A change is coming that has not happened yet (no target is judged before it)."""
        return self.at is not None and self.changed_at is None

    @property
    def dynamics(self) -> dict[str, float] | None:
        """The task's changed parameters once it has changed (None: the env as registered)."""
        return dict(self.change) if self.changed_at is not None else None

    def facts(self) -> dict[str, object]:
        """For summary.json: when it was to change, when it did, and to what."""
        return {"task_change": {"at": self.at, "changed_at": self.changed_at, "dynamics": self.change}} \
            if self.at else {}
