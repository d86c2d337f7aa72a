"""End of a distillation run: final evaluation, checkpoints, summary.json, report.md and a plot."""

from __future__ import annotations

import json
from pathlib import Path

from ..learners import checkpoint
from ..learners.networks import action_latency_us, count_params
from .config import DistillRunConfig
from .rundir import RunDir


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
        }
    return {
        "teacher": {
            "net": teacher.net,
            "params": count_params(teacher_net),
            "eval_return_mean": final["eval/return/teacher"],
            "eval_return_std": final["eval/return_std/teacher"],
            "version": teacher.version,
            "us_per_action": action_latency_us(teacher_net, teacher.obs_shape),
        },
        "students": rows,
    }


def summarize(run: RunDir, cfg: DistillRunConfig, teacher: checkpoint.Checkpoint, final: dict[str, float],
              students: dict[str, dict[str, str]], run_facts: dict[str, object]) -> dict[str, object]:
    """Write summary.json, report.md and return.png from the final evaluation.

    `students` maps each name to its `checkpoint` (best) and `last_checkpoint` paths;
    `run_facts` holds the run's own counters (mode, wall times, steps, stop reason, labels).
    """
    teacher_path = checkpoint.save(run.checkpoints / "teacher.pt", teacher)
    policies = policy_summary(teacher, {n: checkpoint.load(p["checkpoint"]) for n, p in students.items()}, final)
    policies["teacher"].update(checkpoint=str(teacher_path), eval_episodes=cfg.eval_episodes)
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
    run.write_json("summary.json", summary)
    write_report(run.path, summary)
    return summary


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
            f"Mode `{summary['mode']}`, loss `{summary['loss']}`, behaviour `{summary['behaviour']}`, refresh `{summary['refresh']}`; "
            f"stopped by {summary['stop_reason']} after {summary['distill_wall_s']:.1f} s of distillation, "
            f"{summary['env_steps']:,} env steps, {summary['learner_steps']:,} learner steps. "
            f"Greedy returns over {episodes} held-out episodes; agreement on held-out teacher states.\n\n"
            f"{table(summary)}\n\n![return over time](return.png)\n")
    (path / "report.md").write_text(text)
    plot_returns(path / "metrics.jsonl", path / "return.png", list(summary["students"]))


def plot_returns(metrics: Path, out: Path, students: list[str]) -> None:
    """Greedy return of the teacher and each student over the run and, below, how many teacher
    versions the sampled labels lagged; a changing task's change is marked on both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    evals = [r for r in records if "eval/return/teacher" in r]
    lags = [r for r in records if r.get("buffer/label_staleness") is not None]
    changes = [r["distill_s"] for r in records if r.get("event") == "task_changed"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True, height_ratios=(2, 1))
    if evals:
        t = [r["distill_s"] for r in evals]
        top.plot(t, [r["eval/return/teacher"] for r in evals], "k--", label="teacher")
        for name in students:
            top.plot(t, [r[f"eval/return/{name}"] for r in evals], marker="o", ms=3, label=f"student {name}")
    if lags:
        t = [r["distill_s"] for r in lags]
        bottom.plot(t, [r["buffer/label_staleness"] for r in lags], label="mean, as sampled")
        bottom.plot(t, [r["buffer/label_staleness_p95"] for r in lags], label="p95, as sampled")
        bottom.plot(t, [r.get("buffer/label_staleness_used_max") for r in lags], label="max, as trained on")
    for ax in (top, bottom):
        for at in changes:
            ax.axvline(at, color="tab:red", lw=1, ls=":", label="task changes" if ax is top else None)
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8)
    top.set_ylabel("greedy return")
    bottom.set_yscale("symlog", linthresh=2)  # the bound (a few versions) beside lags in the hundreds
    bottom.set_ylim(bottom=0)
    bottom.set_ylabel("label staleness\n(teacher versions)")
    bottom.set_xlabel("distillation wall time (s)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
