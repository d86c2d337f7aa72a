"""The run report's plots: one PNG per question about a distillation run, drawn from its metrics.jsonl.

They are drawn from the run directory alone, so `qdistill report` can draw them again at any time.
Each plot draws what the metrics hold: a run that stopped early, or one logged before a metric
existed, gets the lines it has and an empty panel saying so, never an error. The x axis is the
distillation wall time (`distill_s`) throughout, with a changing task's change marked.

Figures are made with `matplotlib.figure.Figure`, not pyplot, so drawing needs no GUI backend and
leaves no global state behind; the functions return them, so what they drew can be checked.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .layout import RunPaths

SIZE, DPI = (7.0, 4.5), 100  # every PNG is 700 x 450 pixels
TIME = "distill_s"
Series = tuple[list[float], list[float]]  # distillation wall times and values


def read_metrics(path: Path) -> list[dict]:
    """The run's records in order. A line that is not a JSON object (one cut short when the run was
    killed mid-write, then resumed) is skipped, so the report still draws the rest."""
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def series(records: list[dict], key: str) -> Series:
    """(distill_s, value) of each record that holds both, the value not null."""
    points = [(r[TIME], r[key]) for r in records if r.get(TIME) is not None and r.get(key) is not None]
    return [t for t, _ in points], [v for _, v in points]


def rate(records: list[dict], counter: str) -> Series:
    """A counter's rate per second between consecutive progress records: those carrying
    `rollout/steps_per_s`, whose intervals that rate is measured over, so the two compare; a run
    without them (offline) is measured between its records (one per epoch). An interval where
    time or the counter went back (a resume from an earlier checkpoint) is skipped."""
    paced = [r for r in records if "rollout/steps_per_s" in r] or records
    t, v = series(paced, counter)
    steps = [(t1, (v1 - v0) / (t1 - t0)) for t0, v0, t1, v1 in zip(t, v, t[1:], v[1:]) if t1 > t0 and v1 >= v0]
    return [at for at, _ in steps], [r for _, r in steps]


def task_changes(records: list[dict]) -> list[float]:
    return [r[TIME] for r in records if r.get("event") == "task_changed" and r.get(TIME) is not None]


def _panels(rows: int = 1) -> tuple[Figure, list[Axes]]:
    """A 700-pixel-wide figure of `rows` panels sharing the time axis: 450 pixels high up to two
    panels, 200 more for each further one."""
    fig = Figure(figsize=(SIZE[0], SIZE[1] + 2.0 * max(rows - 2, 0)), dpi=DPI)
    return fig, list(fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0])


def _line(ax: Axes, data: Series, label: str, **style) -> None:
    """One line, if there is anything to draw; a lone point gets a marker so that it shows."""
    if data[0]:
        ax.plot(*data, label=label, **({"marker": "o", "ms": 3} if len(data[0]) == 1 else {}) | style)


def _finish(fig: Figure, axes: list[Axes], records: list[dict], ylabels: list[str]) -> Figure:
    """Mark the task's change, label, and say so on a panel with nothing recorded."""
    for ax, ylabel in zip(axes, ylabels):
        if not ax.lines:
            ax.text(0.5, 0.5, "not recorded in this run", transform=ax.transAxes, ha="center", va="center",
                    color="grey")
        for at in task_changes(records):
            ax.axvline(at, color="tab:red", lw=1, ls=":", label="task changes" if ax is axes[0] else None)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        ax.set_ylabel(ylabel)
    axes[-1].set_xlabel("distillation wall time (s)")
    fig.tight_layout()
    return fig


def tasks(records: list[dict]) -> list[str]:
    """A multi-task run's tasks, in the order its evaluations logged them (eval/ENV/return/teacher);
    none for a one-task run."""
    head, tail = "eval/", "/return/teacher"
    found = {}
    for r in records:
        found.update((k[len(head):-len(tail)], None) for k in r if k.startswith(head) and k.endswith(tail) and
                     k.count("/") > 2)
    return list(found)


def returns(records: list[dict], students: list[str]) -> Figure:
    """Greedy return of the teacher and each student at each evaluation; for several tasks, a panel
    per task and one of each student's geometric mean % of the teachers."""
    envs = tasks(records)
    fig, axes = _panels(len(envs) + 1 if envs else 1)
    for ax, prefix in zip(axes, [f"eval/{env}/" for env in envs] or ["eval/"]):
        _line(ax, series(records, f"{prefix}return/teacher"), "teacher", color="k", ls="--", marker="s", ms=3)
        for name in students:
            _line(ax, series(records, f"{prefix}return/{name}"), f"student {name}", marker="o", ms=3)
    for name in students if envs else []:
        _line(axes[-1], series(records, f"eval/geomean_pct_of_teacher/{name}"), f"student {name}", marker="o", ms=3)
    labels = [f"{env}\ngreedy return" for env in envs] + ["geomean %\nof teachers"] if envs else ["greedy return"]
    return _finish(fig, axes, records, labels)


def losses(records: list[dict], students: list[str]) -> Figure:
    """Each student's distillation loss on its last minibatch and, when the teacher learns in the
    run, its TD loss; log scale, as losses fall by orders of magnitude."""
    fig, (ax,) = _panels()
    for name in students:
        _line(ax, series(records, f"learner/distill_loss/{name}"), f"student {name}")
    _line(ax, series(records, "learner/td_loss"), "teacher TD loss", color="k", ls="--")
    ax.set_yscale("log")
    return _finish(fig, [ax], records, ["loss (last minibatch)"])


def staleness(records: list[dict], students: list[str]) -> Figure:
    """How many teacher versions the labels lagged: mean and p95 as sampled, the most as trained on."""
    fig, (ax,) = _panels()
    _line(ax, series(records, "buffer/label_staleness"), "mean, as sampled")
    _line(ax, series(records, "buffer/label_staleness_p95"), "p95, as sampled")
    _line(ax, series(records, "buffer/label_staleness_used_max"), "max, as trained on")
    ax.set_yscale("symlog", linthresh=2)  # the bound (a few versions) beside lags in the hundreds
    ax.set_ylim(0, max(ax.get_ylim()[1], 2))  # labels never stale: 0 at the foot of a readable axis
    ax.yaxis.set_major_formatter("{x:g}")  # whole versions: 2, 10, 100, not 2 x 10^0
    return _finish(fig, [ax], records, ["label staleness\n(teacher versions)"])


def throughput(records: list[dict], students: list[str]) -> Figure:
    """Env steps/s of all rollout actors together and, below, learner steps/s (students; a
    learning teacher's too): where a run's time went."""
    fig, (env, learn) = _panels(2)
    _line(env, series(records, "rollout/steps_per_s"), "rollout, all actors")
    _line(learn, rate(records, "learner/steps"), "students")
    _line(learn, rate(records, "teacher/steps"), "learning teacher", color="k", ls="--")
    return _finish(fig, [env, learn], records, ["env steps/s", "learner steps/s"])


@dataclass(frozen=True)
class Plot:
    file: str
    caption: str  # report.md's alt text
    draw: Callable[[list[dict], list[str]], Figure]


PLOTS = (
    Plot("return.png", "greedy return of the teacher and each student over the run", returns),
    Plot("loss.png", "distillation loss per student (and a learning teacher's TD loss)", losses),
    Plot("staleness.png", "label staleness in teacher versions", staleness),
    Plot("throughput.png", "env steps/s and learner steps/s", throughput),
)


def figures(records: list[dict], students: list[str]) -> dict[str, Figure]:
    """Every plot of the report, by file name."""
    return {plot.file: plot.draw(records, students) for plot in PLOTS}


def render(run: Path, students: list[str]) -> list[Path]:
    """Draw every plot from RUN/metrics.jsonl into RUN; the files written."""
    written = []
    for name, fig in figures(read_metrics(RunPaths(run).metrics), students).items():
        fig.savefig(run / name, dpi=DPI)
        written.append(run / name)
    return written
