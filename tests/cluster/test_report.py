"""`qdistill report` and the report's plots: drawn from a hand-written run directory (no Ray), so
every point each plot must draw is known; a run stopped before its first evaluation still gets
its report; a directory that is not a finished `qdistill run` is refused and left as it was."""

from __future__ import annotations

import json

import pytest
from matplotlib.image import imread

from qdistill.cluster.rundir import plots, report
from qdistill.cluster.cli import main

PNGS = ["return.png", "loss.png", "staleness.png", "throughput.png"]


def _progress(t: float, steps: int, teacher_steps: int, sps: float, loss: float, lag: float) -> dict:
    """A record as the distill loop logs every 2 s (a learning teacher's run)."""
    return {"time": t + 1, "distill_s": t, "env_steps": steps * 10, "learner/steps": steps,
            "teacher/steps": teacher_steps, "rollout/steps_per_s": sps, "buffer/label_staleness": lag,
            "buffer/label_staleness_p95": 2 * lag, "buffer/label_staleness_used_max": 3 * lag,
            "learner/distill_loss/16x16": loss, "learner/distill_loss/8": 2 * loss, "learner/td_loss": 10 * loss}


def _eval(t: float, steps: int, teacher: float, big: float, small: float) -> dict:
    return {"distill_s": t, "env_steps": steps * 10, "learner/steps": steps, "eval/return/teacher": teacher,
            "eval/return/16x16": big, "eval/return/8": small}


RECORDS = [
    _progress(1.0, 100, 50, 4000.0, 0.5, 0.0),
    _eval(2.0, 150, 200.0, 20.0, 10.0),  # evaluations sit between progress records: not a rate interval
    _progress(3.0, 500, 250, 6000.0, 0.25, 1.5),
    {"event": "task_changed", "distill_s": 3.5, "env_steps": 5200, "learner/steps": 520, "dynamics": {"length": 1.0}},
    _eval(4.0, 600, 300.0, 250.0, 100.0),
    _progress(5.0, 1100, 550, 8000.0, 0.125, 4.0),
    {"event": "resumed", "env_steps": 9000, "learner/steps": 900, "buffer/lost": 0},  # from the checkpoint at 4.5 s
    _progress(4.5, 1000, 500, 7000.0, 0.0625, 0.5),  # time went back: no rate for 5.0 -> 4.5
    _progress(6.5, 1400, 700, 7500.0, 0.03125, 1.0),
]


def _summary() -> dict:
    student = {"params": 1, "eval_return_mean": 250.0, "eval_return_std": 1.0, "pct_of_teacher": 83.3,
               "agreement": 0.9, "kl": 0.1, "us_per_action": 5.0, "version": 3}
    return {"env": "CartPole-v1", "mode": "online", "wall_s": 9.0, "distill_wall_s": 6.5, "env_steps": 14000,
            "learner_steps": 1400, "stop_reason": "steps", "loss": "kl", "tau": 0.01, "behaviour": "teacher",
            "refresh": "periodic", "target_return": None,
            "teacher": {"net": "64x64", "params": 4610, "eval_return_mean": 300.0, "eval_return_std": 2.0,
                        "version": 7, "us_per_action": 9.0, "eval_episodes": 20},
            "students": {"16x16": {**student, "params": 386}, "8": {**student, "params": 58}}}


def _run_dir(path, records: list[dict], summary: dict | None = None, metrics_tail: str = ""):
    path.mkdir()
    lines = [json.dumps(r) for r in records]
    (path / "metrics.jsonl").write_text("".join(f"{line}\n" for line in lines) + metrics_tail)
    (path / "summary.json").write_text(json.dumps(summary or _summary()))
    return path


def _lines(fig, panel: int = 0) -> dict[str, list[list[float]]]:
    """Each labelled line of a panel: its (x, y) points."""
    return {line.get_label(): line.get_xydata().tolist() for line in fig.axes[panel].get_lines()
            if not line.get_label().startswith("_")}


def _marks(fig, panel: int = 0) -> list[float]:
    """x of the vertical lines marking the task's change."""
    return [line.get_xdata()[0] for line in fig.axes[panel].get_lines() if line.get_linestyle() == ":"]


def test_report_redraws_every_plot_and_report_md(tmp_path, capsys):
    run = _run_dir(tmp_path / "run", RECORDS, metrics_tail='{"distill_s": 7.0, "env_st')  # cut short by a kill
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"wrote {run / name}" for name in [*PNGS, "report.md"]]
    assert sorted(p.name for p in run.iterdir()) == sorted(["metrics.jsonl", "summary.json", "report.md", *PNGS])
    for name in PNGS:
        assert (run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert imread(run / name).shape == (450, 700, 4), name
    report = (run / "report.md").read_text()
    images = [line for line in report.splitlines() if line.startswith("![")]
    assert images == [f"![{plot.caption}]({plot.file})" for plot in plots.PLOTS]
    assert [plot.file for plot in plots.PLOTS] == PNGS
    assert "stopped by steps after 6.5 s of distillation, 14,000 env steps, 1,400 learner steps" in report
    assert "| student 16x16 | 386    | 250.0 ± 1.0   | 83.3         | 0.900     | 5         |" in report


def test_the_plots_draw_the_metrics(tmp_path):
    run = _run_dir(tmp_path / "run", RECORDS, metrics_tail="not json\n")
    records = plots.read_metrics(run / "metrics.jsonl")
    assert records == RECORDS
    figs = plots.figures(records, ["16x16", "8"])
    assert list(figs) == PNGS

    assert _lines(figs["return.png"]) == {"teacher": [[2.0, 200.0], [4.0, 300.0]],
                                          "student 16x16": [[2.0, 20.0], [4.0, 250.0]],
                                          "student 8": [[2.0, 10.0], [4.0, 100.0]],
                                          "task changes": [[3.5, 0.0], [3.5, 1.0]]}
    at = [1.0, 3.0, 5.0, 4.5, 6.5]
    loss = [0.5, 0.25, 0.125, 0.0625, 0.03125]
    assert _lines(figs["loss.png"]) == {"student 16x16": [[t, v] for t, v in zip(at, loss)],
                                        "student 8": [[t, 2 * v] for t, v in zip(at, loss)],
                                        "teacher TD loss": [[t, 10 * v] for t, v in zip(at, loss)],
                                        "task changes": [[3.5, 0.0], [3.5, 1.0]]}
    assert figs["loss.png"].axes[0].get_yscale() == "log"
    lag = [0.0, 1.5, 4.0, 0.5, 1.0]
    assert _lines(figs["staleness.png"]) == {"mean, as sampled": [[t, v] for t, v in zip(at, lag)],
                                             "p95, as sampled": [[t, 2 * v] for t, v in zip(at, lag)],
                                             "max, as trained on": [[t, 3 * v] for t, v in zip(at, lag)],
                                             "task changes": [[3.5, 0.0], [3.5, 1.0]]}
    low, high = figs["staleness.png"].axes[0].get_ylim()
    assert low == 0.0 and high > 12.0

    throughput = figs["throughput.png"]
    assert _lines(throughput, 0) == {"rollout, all actors": [[1.0, 4000.0], [3.0, 6000.0], [5.0, 8000.0],
                                                             [4.5, 7000.0], [6.5, 7500.0]],
                                     "task changes": [[3.5, 0.0], [3.5, 1.0]]}
    # learner steps/s over the progress records' intervals: (500 - 100) / 2 s, (1100 - 500) / 2 s, then
    # none across the resume (time went back), (1400 - 1000) / 2 s after it
    assert _lines(throughput, 1) == {"students": [[3.0, 200.0], [5.0, 300.0], [6.5, 200.0]],
                                     "learning teacher": [[3.0, 100.0], [5.0, 150.0], [6.5, 100.0]]}
    assert _marks(throughput, 1) == [3.5]
    assert [ax.get_ylabel() for ax in throughput.axes] == ["env steps/s", "learner steps/s"]


@pytest.mark.parametrize("records", [[], [_progress(1.0, 100, 50, 4000.0, 0.5, 0.0)]], ids=["nothing", "one-progress"])
def test_a_run_stopped_before_any_evaluation_still_gets_its_report(tmp_path, capsys, records):
    # an online run with a fixed teacher: no TD loss, no teacher steps
    records = [{k: v for k, v in r.items() if k not in ("learner/td_loss", "teacher/steps")} for r in records]
    run = _run_dir(tmp_path / "run", records)
    assert main(["report", str(run)]) == 0
    assert sorted(p.name for p in run.iterdir()) == sorted(["metrics.jsonl", "summary.json", "report.md", *PNGS])
    for name in PNGS:
        assert imread(run / name).shape == (450, 700, 4), name

    figs = plots.figures(plots.read_metrics(run / "metrics.jsonl"), ["16x16", "8"])
    empty = ["not recorded in this run"]
    assert _lines(figs["return.png"]) == {} and [t.get_text() for t in figs["return.png"].axes[0].texts] == empty
    assert [t.get_text() for t in figs["throughput.png"].axes[1].texts] == empty  # a rate needs two records
    if records:  # the lone points drawn, with a marker so that they show
        assert _lines(figs["loss.png"]) == {"student 16x16": [[1.0, 0.5]], "student 8": [[1.0, 1.0]]}
        assert {line.get_marker() for line in figs["loss.png"].axes[0].get_lines()} == {"o"}
        assert _lines(figs["throughput.png"], 0) == {"rollout, all actors": [[1.0, 4000.0]]}
        assert figs["staleness.png"].axes[0].get_ylim() == (0.0, 2.0)  # never stale: 0 on a readable axis
    else:
        assert all([t.get_text() for t in ax.texts] == empty for fig in figs.values() for ax in fig.axes)


@pytest.mark.parametrize("files, message", [
    ({}, "run directory '{run}' has no summary.json: expected the directory of a finished `qdistill run`"),
    ({"summary.json": json.dumps(_summary())},
     "run directory '{run}' has no metrics.jsonl: expected the directory of a finished `qdistill run`"),
    ({"summary.json": '{"env": "CartPole-v1", "stu', "metrics.jsonl": ""},
     ("run directory '{run}' has a summary.json that is not JSON (Unterminated string starting at: line 1 column 24 "
      "(char 23)): expected the directory of a finished `qdistill run`")),
    ({"summary.json": json.dumps({"env": "CartPole-v1", "stop_reason": "steps", "teacher": {"net": "64x64"}}),
      "metrics.jsonl": json.dumps({"time": 1.0, "env_steps": 100, "eval/return/teacher": 20.0}) + "\n"},
     ("run directory '{run}' has no students in its summary.json (a `qdistill train-teacher` run has none): "
      "expected the directory of a finished `qdistill run`")),
], ids=["empty", "no-metrics", "summary-not-json", "train-teacher"])
def test_report_refuses_what_is_not_a_finished_run(tmp_path, capsys, files, message):
    run = tmp_path / "run"
    run.mkdir()
    for name, text in files.items():
        (run / name).write_text(text)
    assert main(["report", str(run)]) == 2
    assert capsys.readouterr().err == f"qdistill: error: {message.format(run=run)}\n"
    assert sorted(p.name for p in run.iterdir()) == sorted(files)  # nothing written


def test_the_table_gives_each_return_and_percent_with_its_interval():
    policy = {"params": 386, "eval_return_mean": 250.0, "eval_return_std": 1.0, "us_per_action": 5.0}
    summary = {"teacher": {**policy, "net": "64x64", "eval_return_ci": [249.5, 250.5]},
               "students": {"16x16": {**policy, "pct_of_teacher": 83.25, "agreement": 0.9,
                                      "eval_return_ci": [240.04, 259.96], "pct_of_teacher_ci": [80.0, 86.75]},
                            "8": {**policy, "pct_of_teacher": 83.3, "agreement": 0.9}}}  # written before intervals
    lines = report.table(summary).splitlines()
    assert [[cell.strip() for cell in line.split("|")[3:5]] for line in lines[2:]] == [
        ["250.0 [249.5, 250.5]", "100.0"], ["250.0 [240.0, 260.0]", "83.2 [80.0, 86.8]"], ["250.0 ± 1.0", "83.3"]]


def _task_eval(t: float, returns: dict[str, tuple[float, float]], geomean: float) -> dict:
    """A multi-task evaluation record: each task's teacher and student 16x16, and the geometric mean."""
    record = {"distill_s": t, "eval/geomean_pct_of_teacher/16x16": geomean}
    for env, (teacher, student) in returns.items():
        record |= {f"eval/{env}/return/teacher": teacher, f"eval/{env}/return/16x16": student}
    return record


def test_a_multi_task_run_gets_a_return_panel_per_task_and_one_of_the_geometric_mean(tmp_path, capsys):
    breakout, acrobot = "MinAtar/Breakout-v1", "Acrobot-v1"
    records = [_progress(1.0, 100, 0, 4000.0, 0.5, 0.0),
               _task_eval(2.0, {breakout: (12.0, 3.0), acrobot: (-80.0, -400.0)}, 35.0),
               _task_eval(4.0, {breakout: (12.0, 11.0), acrobot: (-80.0, -88.0)}, 91.0)]
    assert plots.tasks(records) == [breakout, acrobot] and plots.tasks(RECORDS) == []
    fig = plots.returns(records, ["16x16"])
    assert [ax.get_ylabel() for ax in fig.axes] == [f"{breakout}\ngreedy return", f"{acrobot}\ngreedy return",
                                                    "geomean %\nof teachers"]
    assert [_lines(fig, panel) for panel in range(3)] == [
        {"teacher": [[2.0, 12.0], [4.0, 12.0]], "student 16x16": [[2.0, 3.0], [4.0, 11.0]]},
        {"teacher": [[2.0, -80.0], [4.0, -80.0]], "student 16x16": [[2.0, -400.0], [4.0, -88.0]]},
        {"student 16x16": [[2.0, 35.0], [4.0, 91.0]]}]
    task = {"teacher": {**_summary()["teacher"]}, "students": {"16x16": _summary()["students"]["16x16"]}}
    summary = {"tasks": [breakout, acrobot], "loss": "kl", "task_batches": "mixed", "task_inputs": "per-task",
               "stop_reason": "steps", "distill_wall_s": 4.0, "env_steps": 1000, "learner_steps": 100,
               "students": {"16x16": {"params": 900, "params_of_one_task_students": 1000,
                                      "geomean_pct_of_teacher": 91.0, "min_pct_of_teacher": 90.0}},
               "per_task": {breakout: task, acrobot: task}}
    run = _run_dir(tmp_path / "run", records, summary)
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"wrote {run / name}" for name in [*PNGS, "report.md"]]
    assert imread(run / "return.png").shape == (650, 700, 4)  # three panels: 200 pixels more
    report = (run / "report.md").read_text()
    assert report.startswith(f"# qdistill multi-task run: {breakout}, {acrobot}\n")
    assert f"## {acrobot}" in report and "![greedy return of the teacher and each student over the run](return.png)" \
        in report
