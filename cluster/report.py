"""End of a distillation run: final evaluation, checkpoints, summary.json, report.md and a plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import ray

from ..learners import checkpoint
from ..learners.networks import action_latency_us, count_params

if TYPE_CHECKING:
    from .distill import DistillDriver


def finish_distill_run(driver: DistillDriver, reason: str) -> dict[str, object]:
    cfg, run = driver.config, driver.run
    last = driver.learner.weights()
    best = {}
    for name in cfg.distill.students:
        last_path = driver.save_student(name, "last", driver.student_version, last[name])
        if name not in driver.best:  # never evaluated: the last is the best we know
            driver.best[name] = (float("nan"), driver.student_version, last[name])
            driver.save_student(name, "best", driver.student_version, last[name])
        best[name] = driver.best[name][2]
        driver.best[name] = (*driver.best[name], last_path)  # type: ignore[assignment]
    final = ray.get(driver.evaluator.evaluate.remote(driver.student_version, best, final=True))
    teacher_path = checkpoint.save(run.checkpoints / "teacher.pt", driver.teacher)
    teacher_net = driver.teacher.network()
    students = {}
    for name in cfg.distill.students:
        net = checkpoint.load(run.checkpoints / f"student-{name}-best.pt").network()
        students[name] = {
            "params": count_params(net),
            "eval_return_mean": final[f"eval/return/{name}"],
            "eval_return_std": final[f"eval/return_std/{name}"],
            "pct_of_teacher": final[f"eval/pct_of_teacher/{name}"],
            "agreement": final[f"eval/agreement/{name}"],
            "kl": final[f"eval/kl/{name}"],
            "us_per_action": action_latency_us(net, driver.info.obs_shape),
            "version": driver.best[name][1],
            "checkpoint": str(run.checkpoints / f"student-{name}-best.pt"),
            "last_checkpoint": driver.best[name][3],
        }
    summary = {
        "env": cfg.env,
        "mode": "online",
        "wall_s": round(_now() - driver.started, 2),
        "distill_wall_s": round(driver.distill_wall_s, 2),
        "env_steps": driver.collector.env_steps,
        "learner_steps": driver.learner.steps,
        "stop_reason": reason,
        "loss": cfg.distill.loss,
        "behaviour": cfg.behaviour,
        "refresh": cfg.refresh,
        "target_return": cfg.target_return,
        "labels": dict(driver.counters),
        "teacher": {
            "net": driver.teacher.net,
            "params": count_params(teacher_net),
            "eval_return_mean": final["eval/return/teacher"],
            "eval_return_std": final["eval/return_std/teacher"],
            "eval_episodes": cfg.eval_episodes,
            "version": driver.teacher.version,
            "checkpoint": str(teacher_path),
            "us_per_action": action_latency_us(teacher_net, driver.info.obs_shape),
        },
        "students": students,
    }
    run.write_json("summary.json", summary)
    write_report(run.path, summary)
    run.close()
    return summary


def _now() -> float:
    import time

    return time.monotonic()


def table(summary: dict[str, object]) -> str:
    """Teacher and each student: parameters, return, % of teacher, agreement, µs per action."""
    teacher = summary["teacher"]
    rows = [("policy", "params", "greedy return", "% of teacher", "agreement", "µs/action")]
    rows.append((f"teacher {teacher['net']}", f"{teacher['params']:,}",
                 f"{teacher['eval_return_mean']:.1f} ± {teacher['eval_return_std']:.1f}", "100.0", "1.000",
                 f"{teacher['us_per_action']:.0f}"))
    for name, s in summary["students"].items():
        rows.append((f"student {name}", f"{s['params']:,}", f"{s['eval_return_mean']:.1f} ± {s['eval_return_std']:.1f}",
                     f"{s['pct_of_teacher']:.1f}", f"{s['agreement']:.3f}", f"{s['us_per_action']:.0f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def write_report(path: Path, summary: dict[str, object]) -> None:
    episodes = summary["teacher"]["eval_episodes"]
    text = (f"# qdistill run: {summary['env']}\n\n"
            f"Loss `{summary['loss']}`, behaviour `{summary['behaviour']}`, refresh `{summary['refresh']}`; "
            f"stopped by {summary['stop_reason']} after {summary['distill_wall_s']:.1f} s of distillation, "
            f"{summary['env_steps']:,} env steps, {summary['learner_steps']:,} learner steps. "
            f"Greedy returns over {episodes} held-out episodes; agreement on held-out teacher states.\n\n"
            f"{table(summary)}\n\n![return over time](return.png)\n")
    (path / "report.md").write_text(text)
    plot_returns(path / "metrics.jsonl", path / "return.png", list(summary["students"]))


def plot_returns(metrics: Path, out: Path, students: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in map(json.loads, metrics.read_text().splitlines()) if "eval/return/teacher" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    if records:
        t = [r["distill_s"] for r in records]
        ax.plot(t, [r["eval/return/teacher"] for r in records], "k--", label="teacher")
        for name in students:
            ax.plot(t, [r[f"eval/return/{name}"] for r in records], marker="o", ms=3, label=f"student {name}")
    ax.set_xlabel("distillation wall time (s)")
    ax.set_ylabel("greedy return")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
