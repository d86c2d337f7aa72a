"""TensorBoard event files beside metrics.jsonl (RUN/tensorboard/), so `tensorboard --logdir runs/`
shows every run: each numeric key of each logged record as a scalar under the same slash name,
at the record's env-step count, and the resolved config as text. Every figure logged with its 95%
interval (KEY/NAME beside KEY_ci_low/NAME and KEY_ci_high/NAME: evaluation returns and % of teacher) is
also a margin chart in the Custom Scalars tab, the figure drawn inside its error band.

A resumed run opens a new event file in the same directory: TensorBoard reads them as one run.
"""

from __future__ import annotations

from pathlib import Path

NOT_SCALARS = ("time", "env_steps")  # the record's wall-clock offset, and the step itself
CONFIG_TAG = "config"
CI_LOW, CI_HIGH = "_ci_low/", "_ci_high/"
ERROR_BARS = "error bars (95% interval)"  # the Custom Scalars category of the margin charts
FLUSH_S = 10  # a learner killed outright loses at most this much of its event file (metrics.jsonl: nothing)


class TensorBoardLog:
    def __init__(self, logdir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only where a run writes

        self.writer = SummaryWriter(log_dir=str(logdir), flush_secs=FLUSH_S)
        self.step = 0
        self.margins_written = False

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
        if not self.margins_written and (charts := margins(record)):
            # TensorBoard reads a run's first layout only: the first evaluation names every policy
            self.writer.add_custom_scalars({ERROR_BARS: {key: ["Margin", keys] for key, keys in charts.items()}})
            self.margins_written = True

    def close(self) -> None:
        self.writer.close()


def margins(record: dict[str, object]) -> dict[str, list[str]]:
    """Each figure of the record logged with its interval, KEY/NAME beside KEY_ci_low/NAME and
    KEY_ci_high/NAME (the evaluator's form): KEY/NAME -> [KEY/NAME, low, high], a margin chart's
    value, lower and upper series."""
    charts = {}
    for low in sorted(record):
        key, sep, name = low.partition(CI_LOW)
        value, high = f"{key}/{name}", f"{key}{CI_HIGH}{name}"
        if sep and value in record and high in record:
            charts[value] = [value, low, high]
    return charts
