"""A size search's results (`qdistill shrink`): every candidate's row of the Pareto table, the
winner, and the plot of % of teacher against parameters."""

from __future__ import annotations

import math
from pathlib import Path

from ...actors.intervals import geometric_mean
from ...learners import checkpoint
from ...learners.export import inner_linears
from ...learners.networks import action_latency_us, count_params
from ...learners.specs import is_conv
from . import tables
from .layout import RunDir

PLOT = "search.png"


def weight_bytes(net, parts: list | None = None) -> dict[str, int]:
    """Bytes of the weights in float32, and with the inner dense layers int8 (one int8 per weight
    and a float32 scale per output row, as `export --int8` stores them; a conv net has no int8 form).
    `parts`: a multi-task network's task paths, whose inner layers count (shared ones once)."""
    inner = set()
    for part in [] if is_conv(net.spec) else parts or [net]:
        names = set(inner_linears(part))
        inner |= {id(m) for name, m in part.named_modules() if name in names}
    int8 = 0
    for module in net.modules():
        for p in module.parameters(recurse=False):
            int8 += p.numel() + 4 * p.shape[0] if id(module) in inner and p.dim() == 2 else 4 * p.numel()
    return {"float_bytes": 4 * count_params(net), "int8_bytes": int8 if inner else None}


def search_result(search, finals: dict[str, dict[str, float]], run: RunDir) -> dict[str, object]:
    """summary.json's "search": the threshold, the winner (or None) and every candidate: the ones
    left with their final held-out figures, the dropped ones with their figures when dropped.
    `finals`: each task's final evaluation (env → result). With several tasks a candidate's row
    holds its figures per task, its geometric mean of % of teacher and its slowest task's µs per
    action; its interval must clear the threshold on every task."""
    several = len(finals) > 1
    candidates = {}
    for name in sorted(search.params, key=lambda n: (search.params[n], n)):
        row = {"params": search.params[name], **_sizes(run, name, list(finals) if several else None)}
        if name in search.active:
            row["status"] = "final"
            figures = {env: _figures(final.get, lambda k: f"eval/{k}/{name}") for env, final in finals.items()}
        else:
            at = search.dropped[name]
            row.update(status="dropped", dropped_at_env_steps=at["at_env_steps"], dropped_at_rung=at["at_rung"],
                       ranked_pct_of_teacher=at.get("ranked_pct_of_teacher"))
            figures = {env: _figures(at.get, (lambda k, e=env: f"eval/{e}/{k}") if several else (lambda k: f"eval/{k}"))
                       for env in finals}
        if several:
            pcts = [f["pct_of_teacher"] for f in figures.values()]
            row.update(geomean_pct_of_teacher=geometric_mean(pcts) if None not in pcts else None, per_task=figures)
        else:
            row.update(next(iter(figures.values())))
        candidates[name] = row
    winner = search.winner({n: min((f["pct_of_teacher_ci"] or [-math.inf])[0] for f in _tasks(c))
                            for n, c in candidates.items() if c["status"] == "final"})
    return {"keep": search.keep, "threshold_pct": search.threshold, "rank_window": search.window, "winner": winner,
            "winner_checkpoint": str(run.student_checkpoint(winner, "best")) if winner else None,
            "candidates": candidates}


def _sizes(run: RunDir, name: str, envs: list[str] | None) -> dict[str, object]:
    """A candidate's weight bytes and µs per action (several tasks, `envs`: the slowest task's)."""
    if envs is None:
        net = checkpoint.load(run.student_checkpoint(name, "best")).network()
        return {**weight_bytes(net), "us_per_action": action_latency_us(net, net.obs_shape)}
    whole = checkpoint.load_multitask(run.student_checkpoint(name, "best")).network()
    parts = [whole.task_network(t) for t in range(len(envs))]
    return {**weight_bytes(whole, list(whole.tasks)),
            "us_per_action": max(action_latency_us(part, part.obs_shape) for part in parts)}


def _figures(get, key) -> dict[str, object]:
    """Return, % of teacher (each with its interval) and agreement, read through `get(key(KIND))`."""
    return {"eval_return_mean": get(key("return")), "pct_of_teacher": get(key("pct_of_teacher")),
            "agreement": get(key("agreement")),
            "eval_return_ci": _pair(get, key, "return_ci"), "pct_of_teacher_ci": _pair(get, key, "pct_of_teacher_ci")}


def _tasks(row: dict[str, object]) -> list[dict[str, object]]:
    """A candidate's figures on each task (its own, for one task)."""
    return list(row["per_task"].values()) if "per_task" in row else [row]


def _pair(get, key, kind: str) -> list[float] | None:
    low, high = get(key(f"{kind}_low")), get(key(f"{kind}_high"))
    return [low, high] if low is not None and high is not None else None


def _ci(value: float | None, interval: list[float] | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f} [{interval[0]:.1f}, {interval[1]:.1f}]" if interval else f"{value:.1f}"


def search_table(summary: dict[str, object]) -> str:
    """The Pareto table: every candidate, smallest first, with its size, figures and fate; with
    several tasks a column of % of teacher per task and their geometric mean."""
    search = summary["search"]
    envs = list(summary.get("per_task", {}))
    teacher_params = sum(t["teacher"]["params"] for t in summary["per_task"].values()) if envs else \
        summary["teacher"]["params"]
    figures = [f"% of teacher {env}" for env in envs] + ["geomean % of teachers"] if envs else \
        ["greedy return", "% of teacher", "agreement"]
    rows = [("candidate", "params", f"% of teacher{'s' if envs else ''}' params", *figures, "µs/action", "int8 bytes",
             "")]
    for name, c in search["candidates"].items():
        fate = "winner" if name == search["winner"] else "final" if c["status"] == "final" else \
            f"dropped at {c['dropped_at_env_steps']:,} env steps"
        share = 100 * c["params"] / teacher_params
        if envs:
            values = [_ci(c["per_task"][env]["pct_of_teacher"], c["per_task"][env]["pct_of_teacher_ci"]) for env in envs]
            values.append(_ci(c["geomean_pct_of_teacher"], None))
        else:
            values = [_ci(c["eval_return_mean"], c["eval_return_ci"]), _ci(c["pct_of_teacher"], c["pct_of_teacher_ci"]),
                      f"{c['agreement']:.3f}" if c["agreement"] is not None else "—"]
        rows.append((name, f"{c['params']:,}", f"{share:.1f}" if share >= 1 else f"{share:.2g}", *values,
                     f"{c['us_per_action']:.0f}", f"{c['int8_bytes']:,}" if c["int8_bytes"] else "—", fate))
    return tables.table(rows, markdown=True)


def search_text(summary: dict[str, object]) -> str:
    """report.md's section: the rule, the table, the winner (or why none), the plot."""
    search = summary["search"]
    whose = "every task's teacher's return" if "per_task" in summary else "the teacher's return"
    verdict = (f"The smallest candidate that keeps {search['threshold_pct']:g}% of {whose}, its 95% "
               f"interval included: **{search['winner']}** (`{search['winner_checkpoint']}`, ready for "
               "`qdistill export`)." if search["winner"] else
               f"No candidate left at the end kept {search['threshold_pct']:g}% of {whose} with its whole "
               "95% interval: give larger candidates, a longer budget, or a lower --keep.")
    last = f"the mean over their last {search['rank_window']} evaluations of"
    rank = (f"{last} the geometric mean over tasks of the % of each teacher, each counted from 1% up to the "
            "threshold") if "per_task" in summary else f"{last} their % of teacher (counted up to the threshold)"
    return ("## Size search\n\nCandidates distilled side by side on the same stream, the lower half dropped at 1/8, "
            f"1/4 and 1/2 of the budget by {rank}; among candidates at the threshold, the smaller kept. Rows of "
            "dropped candidates hold their last evaluation before they were dropped; "
            f"the others the final held-out one.\n\n{search_table(summary)}\n\n{verdict}\n\n"
            f"![% of teacher against parameters]({PLOT})\n")


def search_plot(path: Path, summary: dict[str, object]) -> Path:
    """search.png: each candidate's % of teacher (with its interval) against its parameters, the
    threshold, the winner marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    search, several = summary["search"], "per_task" in summary
    key = "geomean_pct_of_teacher" if several else "pct_of_teacher"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for status, colour in (("final", "tab:blue"), ("dropped", "tab:grey")):
        rows = [(n, c) for n, c in search["candidates"].items() if c["status"] == status and c[key] is not None]
        if not rows:
            continue
        x = [c["params"] for _, c in rows]
        y = [c[key] for _, c in rows]
        err = [[max(c[key] - c["pct_of_teacher_ci"][0], 0) if c.get("pct_of_teacher_ci") else 0 for _, c in rows],
               [max(c["pct_of_teacher_ci"][1] - c[key], 0) if c.get("pct_of_teacher_ci") else 0 for _, c in rows]]
        ax.errorbar(x, y, yerr=err, fmt="o", color=colour, capsize=3, label="left to the end" if status == "final" else
                    "dropped (last evaluation)")
        for (name, c), xi, yi in zip(rows, x, y):
            ax.annotate(name, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if search["winner"]:
        w = search["candidates"][search["winner"]]
        ax.scatter([w["params"]], [w[key]], s=160, facecolors="none", edgecolors="tab:red", label="winner")
    ax.axhline(search["threshold_pct"], color="tab:red", linestyle="--", linewidth=1,
               label=f"keep {search['threshold_pct']:g}%")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("geometric mean of % of each task's teacher" if several else "% of the teacher's return")
    ax.set_title(f"Size search: {', '.join(summary.get('tasks') or [summary['env']])}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = path / PLOT
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
