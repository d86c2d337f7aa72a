"""End of a distillation run: final evaluation, checkpoints, summary.json, report.md and its plots."""

from __future__ import annotations

import json
from pathlib import Path

from ...learners import checkpoint
from ...learners.networks import action_latency_us, count_params
from ..config import DistillRunConfig
from . import tables
from .layout import RunDir, RunPaths


def policy_summary(teacher: checkpoint.Checkpoint, students: dict[str, checkpoint.Checkpoint],
                   final: dict[str, float]) -> dict[str, dict]:
    """Teacher and students side by side: size, return, closeness to the teacher, latency."""
    teacher_net = teacher.network()
    rows = {}
    for name, ckpt in students.items():
        net = ckpt.network()
        rows[name] = {
            "params": count_params(net),
            "eval_return_mean": final[f"eval/return/{name}"],
            "eval_return_std": final[f"eval/return_std/{name}"],
            "pct_of_teacher": final[f"eval/pct_of_teacher/{name}"],
            "agreement": final[f"eval/agreement/{name}"],
            "kl": final[f"eval/kl/{name}"],
            "us_per_action": action_latency_us(net, ckpt.obs_shape),
            "version": ckpt.version,
            **_intervals(final, name),
        }
    return {
        "teacher": {
            "net": teacher.net,
            "params": count_params(teacher_net),
            "eval_return_mean": final["eval/return/teacher"],
            "eval_return_std": final["eval/return_std/teacher"],
            "version": teacher.version,
            "eval_episodes": int(final["eval/episodes"]),  # each policy played these (paired) episodes
            "us_per_action": action_latency_us(teacher_net, teacher.obs_shape),
            **_intervals(final, "teacher"),
        },
        "students": rows,
    }


def _intervals(final: dict[str, float], name: str) -> dict[str, list[float]]:
    """The 95% bootstrap intervals over episodes the evaluation gave `name` (the return's, and a
    student's % of its teacher's, episodes paired by seed), as [low, high]."""
    keys = {"eval_return_ci": "eval/return_ci", "pct_of_teacher_ci": "eval/pct_of_teacher_ci"}
    return {field: [final[f"{key}_low/{name}"], final[f"{key}_high/{name}"]]
            for field, key in keys.items() if f"{key}_low/{name}" in final}


def _with_ci(value: float, interval: list[float] | None, spread: str = "") -> str:
    """"12.3 [10.1, 14.2]" with the 95% interval; summaries written before intervals: "12.3 ± 1.0"."""
    return f"{value:.1f} [{interval[0]:.1f}, {interval[1]:.1f}]" if interval else f"{value:.1f}{spread}"


def summarize(run: RunDir, cfg: DistillRunConfig, teacher: checkpoint.Checkpoint, final: dict[str, float],
              students: dict[str, dict[str, str]], run_facts: dict[str, object]) -> dict[str, object]:
    """Write summary.json, and report.md with its plots, from the final evaluation.

    `students` maps each name to its `checkpoint` (best) and `last_checkpoint` paths;
    `run_facts` holds the run's own counters (mode, wall times, steps, stop reason, labels).
    """
    teacher_path = checkpoint.save(run.teacher, teacher)
    policies = policy_summary(teacher, {n: checkpoint.load(p["checkpoint"]) for n, p in students.items()}, final)
    policies["teacher"]["checkpoint"] = str(teacher_path)
    for name, paths in students.items():
        policies["students"][name].update(paths)
    summary = {
        "env": cfg.env,
        **run_facts,
        "loss": cfg.distill.loss,
        "tau": cfg.distill.tau,
        "behaviour": cfg.behaviour,
        "refresh": cfg.refresh,
        "target_return": cfg.target_return,
        **policies,
    }
    run.write_json(run.summary, summary)
    write_report(run.path, summary)
    return summary


def table(summary: dict[str, object]) -> str:
    """Teacher and each student: parameters, return, % of teacher, agreement, µs per action."""
    teacher = summary["teacher"]
    rows = [("policy", "params", "greedy return", "% of teacher", "agreement", "µs/action")]
    rows.append((f"teacher {teacher['net']}", f"{teacher['params']:,}",
                 _with_ci(teacher["eval_return_mean"], teacher.get("eval_return_ci"), f" ± {teacher['eval_return_std']:.1f}"),
                 "100.0", "1.000", f"{teacher['us_per_action']:.0f}"))
    for name, s in summary["students"].items():
        rows.append((f"student {name}", f"{s['params']:,}",
                     _with_ci(s["eval_return_mean"], s.get("eval_return_ci"), f" ± {s['eval_return_std']:.1f}"),
                     _with_ci(s["pct_of_teacher"], s.get("pct_of_teacher_ci")), f"{s['agreement']:.3f}",
                     f"{s['us_per_action']:.0f}"))
    return tables.table(rows, markdown=True)


CI_NOTE = " (95% bootstrap intervals over the episodes in brackets; % of teacher pairs the episodes by seed)"


def rows(summary: dict[str, object]) -> str:
    """", rows of N bytes in the buffer" (summaries written before it was counted have no figure)."""
    size = summary.get("buffer", {}).get("bytes_per_row")
    return f", rows of {size:,} bytes in the buffer" if size else ""


def plot_images(path: Path, students: list[str]) -> tuple[list[Path], str]:
    """Every plot drawn into `path`, and report.md's Markdown that embeds them."""
    from .plots import PLOTS, render  # matplotlib: seconds to import, and only the report needs it

    return render(path, students), "\n\n".join(f"![{plot.caption}]({plot.file})" for plot in PLOTS)


def write_report(path: Path, summary: dict[str, object]) -> list[Path]:
    """report.md, embedding every plot, and the plots themselves; the files written."""
    search = summary.get("search")
    pngs, images = plot_images(path, list(search["candidates"] if search else summary["students"]))
    episodes = summary["teacher"]["eval_episodes"]
    text = (f"# qdistill run: {summary['env']}\n\n"
            f"Mode `{summary['mode']}`, loss `{summary['loss']}`, behaviour `{summary['behaviour']}`, refresh `{summary['refresh']}`; "
            f"stopped by {summary['stop_reason']} after {summary['distill_wall_s']:.1f} s of distillation, "
            f"{summary['env_steps']:,} env steps, {summary['learner_steps']:,} learner steps"
            f"{rows(summary)}. "
            f"Greedy returns over {episodes} held-out episodes{CI_NOTE}; agreement on held-out teacher states.\n\n"
            f"{table(summary)}\n\n{images}\n")
    if search:
        from .search import search_plot, search_text

        pngs.append(search_plot(path, summary))
        text += "\n" + search_text(summary)
    report = RunPaths(path).report
    report.write_text(text)
    return [*pngs, report]


def regenerate(path: Path) -> list[Path]:
    """`qdistill report`: the plots and report.md drawn again from a finished run's metrics.jsonl and
    summary.json alone (after a change to the plots, or for a run copied off its cluster)."""
    expected = "expected the directory of a finished `qdistill run`"
    paths = RunPaths(path)
    for file in (paths.summary, paths.metrics):
        if not file.is_file():
            raise ValueError(f"run directory {str(path)!r} has no {file.name}: {expected}")
    try:
        summary = json.loads(paths.summary.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"run directory {str(path)!r} has a summary.json that is not JSON ({exc}): {expected}") from None
    if "students" not in summary:  # train-teacher writes no report: its metrics are the teacher's alone
        raise ValueError(f"run directory {str(path)!r} has no students in its summary.json (a `qdistill "
                         f"train-teacher` run has none): {expected}")
    if "per_task" in summary:
        from .multitask import write_task_report

        return write_task_report(path, summary)
    return write_report(path, summary)
