"""A multi-task run's end: each task's teacher and students side by side, each student's
geometric mean over tasks, summary.json and report.md.

    RUN/checkpoints/student-NAME-{best,last}.pt          each student's whole multi-task network
    RUN/checkpoints/tasks/ENV/teacher.pt                 each task's teacher (ENV: the env id, '/' as '-')
    RUN/checkpoints/tasks/ENV/student-NAME-{best,last}.pt   each student's part for that task
"""

from __future__ import annotations

from pathlib import Path

from ...actors.intervals import geometric_mean
from ...learners import checkpoint
from ..config import DistillRunConfig
from . import tables
from .layout import RunDir
from .report import CI_NOTE, plot_images, policy_summary, table


def task_dir(run: RunDir, env: str) -> Path:
    return run.checkpoints / "tasks" / env.replace("/", "-")


def summarize_tasks(run: RunDir, cfg: DistillRunConfig, teachers: list[checkpoint.Checkpoint],
                    finals: list[dict[str, float]], students: dict[str, dict[str, dict[str, str]]],
                    params: dict[str, int], run_facts: dict[str, object]) -> dict[str, object]:
    """summary.json and report.md from every task's final evaluation. `students`: each name's
    `best` and `last` checkpoint paths (`network`, and one per env); `params`: each student's
    whole network's parameters."""
    per_task = {}
    for teacher, final in zip(teachers, finals):
        folder = task_dir(run, teacher.env_id)
        folder.mkdir(parents=True, exist_ok=True)
        teacher_path = checkpoint.save(folder / "teacher.pt", teacher)
        parts = {name: checkpoint.load(paths["best"][teacher.env_id]) for name, paths in students.items()}
        policies = policy_summary(teacher, parts, final)
        policies["teacher"]["checkpoint"] = str(teacher_path)
        for name in students:
            policies["students"][name]["checkpoint"] = students[name]["best"][teacher.env_id]
        per_task[teacher.env_id] = policies
    overall = {}
    for name, paths in students.items():
        pcts = [per_task[t.env_id]["students"][name]["pct_of_teacher"] for t in teachers]
        single = sum(per_task[t.env_id]["students"][name]["params"] for t in teachers)
        overall[name] = {"params": params[name], "params_of_one_task_students": single,
                         "geomean_pct_of_teacher": geometric_mean(pcts),
                         "min_pct_of_teacher": min(pcts),
                         "checkpoint": paths["best"]["network"], "last_checkpoint": paths["last"]["network"]}
    summary = {"env": cfg.env, "tasks": list(cfg.tasks), **run_facts, "loss": cfg.distill.loss, "tau": cfg.distill.tau,
               "task_batches": cfg.task_batches, "task_inputs": cfg.task_inputs, "students": overall,
               "per_task": per_task}
    run.write_json(run.summary, summary)
    write_task_report(run.path, summary)
    return summary


def task_tables(summary: dict[str, object]) -> str:
    """The students over all tasks, then each task's teacher and students (Markdown)."""
    rows = [("student", "params", "params of one-task students", "geomean % of teachers", "lowest % of a teacher")]
    for name, s in summary["students"].items():
        rows.append((name, f"{s['params']:,}", f"{s['params_of_one_task_students']:,}",
                     f"{s['geomean_pct_of_teacher']:.1f}", f"{s['min_pct_of_teacher']:.1f}"))
    parts = [tables.table(rows, markdown=True) + "\n"]
    for env, policies in summary["per_task"].items():
        parts.append(f"## {env}\n\n{table(policies)}\n")
    return "\n".join(parts)


def write_task_report(path: Path, summary: dict[str, object]) -> list[Path]:
    """report.md, embedding every plot (returns: a panel per task), and the plots; the files written."""
    search = summary.get("search")
    pngs, images = plot_images(path, list(search["candidates"] if search else summary["students"]))
    text = (f"# qdistill multi-task run: {', '.join(summary['tasks'])}\n\n"
            f"Loss `{summary['loss']}`, minibatches `{summary['task_batches']}`, input layers `{summary['task_inputs']}`; "
            f"stopped by {summary['stop_reason']} after {summary['distill_wall_s']:.1f} s of distillation, "
            f"{summary['env_steps']:,} env steps, {summary['learner_steps']:,} learner steps. Greedy returns over "
            f"{_episodes(summary)} held-out episodes per task{CI_NOTE}; agreement on held-out teacher "
            "states.\n\n"
            f"{task_tables(summary)}\n{images}\n")
    if "search" in summary:
        from .search import search_plot, search_text

        pngs.append(search_plot(path, summary))
        text += "\n" + search_text(summary)
    report = path / "report.md"
    report.write_text(text)
    return [*pngs, report]


def _episodes(summary: dict[str, object]) -> str:
    """The held-out episodes each task's policies played: one count, or each task's (--eval-ci plays
    on where a task's intervals are wide)."""
    counts = {t: p["teacher"]["eval_episodes"] for t, p in summary["per_task"].items()}
    if len(set(counts.values())) == 1:
        return str(next(iter(counts.values())))
    return ", ".join(f"{n} ({t})" for t, n in counts.items())
