"""A size search's results (`qdistill shrink`): every candidate's row of the Pareto table, the
winner, and the plot of % of teacher against parameters."""

from __future__ import annotations

from pathlib import Path

from ...learners import checkpoint
from ...learners.export import inner_linears
from ...learners.networks import action_latency_us, count_params, is_conv
from . import tables
from .layout import RunDir

PLOT = "search.png"


def weight_bytes(net) -> dict[str, int]:
    """Bytes of the weights in float32, and with the inner dense layers int8 (one int8 per weight
    and a float32 scale per output row, as `export --int8` stores them; a conv net has no int8 form)."""
    inner = set() if is_conv(net.spec) else set(inner_linears(net))
    int8 = 0
    for name, p in net.named_parameters():
        layer, kind = name.rsplit(".", 1)
        int8 += p.numel() + 4 * p.shape[0] if layer in inner and kind == "weight" else 4 * p.numel()
    return {"float_bytes": 4 * count_params(net), "int8_bytes": int8 if inner else None}


def search_result(search, final: dict[str, float], run: RunDir) -> dict[str, object]:
    """summary.json's "search": the threshold, the winner (or None) and every candidate: the ones
    left with their final held-out figures, the dropped ones with their figures when dropped."""
    candidates = {}
    for name in sorted(search.params, key=lambda n: (search.params[n], n)):
        net = checkpoint.load(run.student_checkpoint(name, "best")).network()
        row = {"params": search.params[name], **weight_bytes(net), "us_per_action": action_latency_us(net, net.obs_shape)}
        if name in search.active:
            figures = {k: final.get(f"eval/{k}/{name}") for k in ("return", "pct_of_teacher", "agreement")}
            row.update(status="final", eval_return_mean=figures["return"], pct_of_teacher=figures["pct_of_teacher"],
                       agreement=figures["agreement"],
                       eval_return_ci=[final[f"eval/return_ci_low/{name}"], final[f"eval/return_ci_high/{name}"]],
                       pct_of_teacher_ci=[final[f"eval/pct_of_teacher_ci_low/{name}"],
                                          final[f"eval/pct_of_teacher_ci_high/{name}"]])
        else:
            at = search.dropped[name]
            row.update(status="dropped", dropped_at_env_steps=at["at_env_steps"], dropped_at_rung=at["at_rung"],
                       best_pct_of_teacher=at["best_pct_of_teacher"], eval_return_mean=at.get("eval/return"),
                       pct_of_teacher=at.get("eval/pct_of_teacher"), agreement=at.get("eval/agreement"),
                       eval_return_ci=_pair(at, "eval/return_ci"), pct_of_teacher_ci=_pair(at, "eval/pct_of_teacher_ci"))
        candidates[name] = row
    winner = search.winner({n: c["pct_of_teacher_ci"][0] for n, c in candidates.items() if c["status"] == "final"})
    return {"keep": search.keep, "threshold_pct": search.threshold, "winner": winner,
            "winner_checkpoint": str(run.student_checkpoint(winner, "best")) if winner else None,
            "candidates": candidates}


def _pair(figures: dict[str, object], key: str) -> list[float] | None:
    low, high = figures.get(f"{key}_low"), figures.get(f"{key}_high")
    return [low, high] if low is not None and high is not None else None


def _ci(value: float | None, interval: list[float] | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f} [{interval[0]:.1f}, {interval[1]:.1f}]" if interval else f"{value:.1f}"


def search_table(summary: dict[str, object]) -> str:
    """The Pareto table: every candidate, smallest first, with its size, figures and fate."""
    search, teacher = summary["search"], summary["teacher"]
    rows = [("candidate", "params", "% of teacher's params", "greedy return", "% of teacher", "agreement",
             "µs/action", "int8 bytes", "")]
    for name, c in search["candidates"].items():
        fate = "winner" if name == search["winner"] else "final" if c["status"] == "final" else \
            f"dropped at {c['dropped_at_env_steps']:,} env steps"
        share = 100 * c["params"] / teacher["params"]
        rows.append((name, f"{c['params']:,}", f"{share:.1f}" if share >= 1 else f"{share:.2g}",
                     _ci(c["eval_return_mean"], c["eval_return_ci"]), _ci(c["pct_of_teacher"], c["pct_of_teacher_ci"]),
                     f"{c['agreement']:.3f}" if c["agreement"] is not None else "—", f"{c['us_per_action']:.0f}",
                     f"{c['int8_bytes']:,}" if c["int8_bytes"] else "—", fate))
    return tables.table(rows, markdown=True)


def search_text(summary: dict[str, object]) -> str:
    """report.md's section: the rule, the table, the winner (or why none), the plot."""
    search = summary["search"]
    verdict = (f"The smallest candidate that keeps {search['threshold_pct']:g}% of the teacher's return, its 95% "
               f"interval included: **{search['winner']}** (`{search['winner_checkpoint']}`, ready for "
               "`qdistill export`)." if search["winner"] else
               f"No candidate left at the end kept {search['threshold_pct']:g}% of the teacher's return with its whole "
               "95% interval: give larger candidates, a longer budget, or a lower --keep.")
    return ("## Size search\n\nCandidates distilled side by side on the same stream, the lower half dropped at 1/8, "
            "1/4 and 1/2 of the budget by their best % of teacher (counted up to the threshold; among candidates at "
            "it, the smaller kept). Rows of dropped candidates hold their last evaluation before they were dropped; "
            f"the others the final held-out one.\n\n{search_table(summary)}\n\n{verdict}\n\n"
            f"![% of teacher against parameters]({PLOT})\n")


def search_plot(path: Path, summary: dict[str, object]) -> Path:
    """search.png: each candidate's % of teacher (with its interval) against its parameters, the
    threshold, the winner marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    search = summary["search"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for status, colour in (("final", "tab:blue"), ("dropped", "tab:grey")):
        rows = [(n, c) for n, c in search["candidates"].items() if c["status"] == status and c["pct_of_teacher"] is not None]
        if not rows:
            continue
        x = [c["params"] for _, c in rows]
        y = [c["pct_of_teacher"] for _, c in rows]
        err = [[max(c["pct_of_teacher"] - c["pct_of_teacher_ci"][0], 0) if c["pct_of_teacher_ci"] else 0 for _, c in rows],
               [max(c["pct_of_teacher_ci"][1] - c["pct_of_teacher"], 0) if c["pct_of_teacher_ci"] else 0 for _, c in rows]]
        ax.errorbar(x, y, yerr=err, fmt="o", color=colour, capsize=3, label="left to the end" if status == "final" else
                    "dropped (last evaluation)")
        for (name, c), xi, yi in zip(rows, x, y):
            ax.annotate(name, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if search["winner"]:
        w = search["candidates"][search["winner"]]
        ax.scatter([w["params"]], [w["pct_of_teacher"]], s=160, facecolors="none", edgecolors="tab:red", label="winner")
    ax.axhline(search["threshold_pct"], color="tab:red", linestyle="--", linewidth=1,
               label=f"keep {search['threshold_pct']:g}%")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("% of the teacher's return")
    ax.set_title(f"Size search: {summary['env']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = path / PLOT
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
