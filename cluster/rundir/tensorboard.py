"""TensorBoard event files beside metrics.jsonl (RUN/tensorboard/), so `tensorboard --logdir runs/`
shows every run: each numeric key of each logged record as a scalar under the same slash name,
at the record's env-step count, and the resolved config as text.

A resumed run opens a new event file in the same directory: TensorBoard reads them as one run.
"""

from __future__ import annotations

from pathlib import Path

NOT_SCALARS = ("time", "env_steps")  # the record's wall-clock offset, and the step itself
CONFIG_TAG = "config"
FLUSH_S = 10  # a learner killed outright loses at most this much of its event file (metrics.jsonl: nothing)


class TensorBoardLog:
    def __init__(self, logdir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only where a run writes

        self.writer = SummaryWriter(log_dir=str(logdir), flush_secs=FLUSH_S)
        self.step = 0

    def config(self, text: str) -> None:
        """The resolved config (config.json's text), as a JSON block TensorBoard's text tab renders."""
        self.writer.add_text(CONFIG_TAG, f"```json\n{text}```", global_step=self.step)

    def scalars(self, record: dict[str, object]) -> None:
        """Every numeric value of a record (booleans as 0/1), at its env_steps (else the last one seen).
        Queued for the writer's thread: a protobuf per key, no file write here."""
        self.step = int(record.get("env_steps") or self.step)
        for key, value in record.items():
            if key not in NOT_SCALARS and isinstance(value, (int, float)):
                self.writer.add_scalar(key, float(value), self.step)

    def close(self) -> None:
        self.writer.close()
