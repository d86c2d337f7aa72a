"""One student for several tasks against one student per task: `qdistill run` distils every
task's teacher into one multi-task student (a shared trunk, a head per task) for each chosen
variant of input layers (`per-task` or zero-padded `pad`) and minibatches (`mixed` or `one` task
each), and, with --single, each task's teacher into a one-task student of the same spec.

    python benchmarks/multitask_students.py --env CartPole-v1 --env Acrobot-v1 --env LunarLander-v3 \
        --teacher CartPole-v1=A.pt --teacher Acrobot-v1=B.pt --teacher LunarLander-v3=C.pt \
        --student 64x64 --steps 600000 --single

Every policy (each task's teacher, each multi-task student's part for that task, each one-task
student's best checkpoint) plays the same --episodes held-out episodes per task (seeds 2,000,000 +
1000 * seed; ± the standard error), and each % of a teacher has its 95% bootstrap interval (the
student's and the teacher's episodes resampled in pairs). --reuse evaluates runs already kept. The multi-task run sees --steps env steps over all its tasks;
each one-task run sees its share, --steps / tasks. Per variant: parameters (against the one-task
students' together), % of each teacher, their geometric mean and lowest, and the wall time.
Writes the table (.md) and the figures (.json) under benchmarks/results/. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from minatar_students import HELD_OUT_SEED  # noqa: E402 - a sibling script

HERE = Path(__file__).resolve().parent
VARIANTS = ("per-task:mixed", "pad:mixed", "per-task:one", "pad:one")


def _run(args: list[str], out: Path, reuse: bool) -> dict[str, object]:
    """A `qdistill run` into `out` (or, with --reuse, the one already there): its wall and summary."""
    if not (reuse and (out / "summary.json").is_file()):
        start = time.monotonic()
        subprocess.run(["qdistill", "run", *args, "--out", str(out), "--no-target", "--quiet"], check=True,
                       stdout=sys.stderr)
        return {"wall_s": time.monotonic() - start, "summary": json.loads((out / "summary.json").read_text())}
    summary = json.loads((out / "summary.json").read_text())
    return {"wall_s": summary["wall_s"], "summary": summary}


def _returns(checkpoint_path: str, env: str, episodes: int, seed: int) -> np.ndarray:
    """A checkpoint's greedy returns on the benchmark's held-out episodes (the same seeds for every
    policy of a task, so students and teacher pair episode by episode)."""
    from qdistill.actors.evaluate import evaluate
    from qdistill.learners import checkpoint

    return np.array(evaluate(env, checkpoint.load(checkpoint_path).policy().act, episodes=episodes,
                             seed=HELD_OUT_SEED + 1000 * seed).returns)


def _versus(returns: np.ndarray, teacher: np.ndarray) -> dict[str, object]:
    """A policy's return (mean, s.e.) and its % of the teacher's with the 95% bootstrap interval,
    episodes resampled in pairs."""
    from qdistill.actors.intervals import percent_ci

    pct = percent_ci(returns, teacher)
    return {"return": float(returns.mean()), "se": float(returns.std() / math.sqrt(len(returns))),
            "pct": pct.value, "pct_ci": [pct.low, pct.high]}


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if all(v > 0 for v in values) else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", action="append", required=True, help="a task's env; give it once per task")
    parser.add_argument("--teacher", action="append", required=True, metavar="ENV=PATH", help="each task's teacher")
    parser.add_argument("--student", required=True, help="the student spec, multi-task and one-task alike")
    parser.add_argument("--steps", type=int, required=True, help="the multi-task run's env steps (all tasks)")
    parser.add_argument("--variants", default="per-task:mixed", help=f"INPUTS:BATCHES joined by ',' (of {', '.join(VARIANTS)})")
    parser.add_argument("--single", action="store_true", help="also one one-task student per task")
    parser.add_argument("--replay-ratio", type=float, default=0.1, help="learner steps per env step (0.1)")
    parser.add_argument("--eval-every-s", type=float, default=30.0, help="seconds between a run's evaluations (30)")
    parser.add_argument("--episodes", type=int, default=200, help="held-out episodes per policy and task (200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", help="keep the runs here (default: a temporary directory)")
    parser.add_argument("--reuse", action="store_true", help="take the runs already kept in --keep instead of running "
                                                             "them again (their own wall times); only evaluate")
    parser.add_argument("--results", help="PREFIX of the .md and .json (default benchmarks/results/multitask_STUDENT)")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",")]
    if unknown := [v for v in variants if v not in VARIANTS]:
        sys.exit(f"multitask_students: variants {', '.join(unknown)} are not known: expected some of {', '.join(VARIANTS)}")
    teachers = dict(t.split("=", 1) for t in args.teacher)
    if sorted(teachers) != sorted(args.env):
        sys.exit(f"multitask_students: give --teacher ENV=PATH for exactly the envs {', '.join(args.env)}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp).absolute()
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "evaluator.toml"
        config.write_text(f"eval_every_s = {args.eval_every_s}\n")
        common = ["--students", args.student, "--replay-ratio", str(args.replay_ratio), "--seed", str(args.seed),
                  "--config", str(config)]
        runs: dict[str, dict[str, object]] = {}
        for variant in variants:
            inputs, batches = variant.split(":")
            task_args = [a for env in args.env for a in ("--env", env, "--teacher", f"{env}={teachers[env]}")]
            runs[variant] = _run([*task_args, *common, "--steps", str(args.steps), "--task-inputs", inputs,
                                  "--task-batches", batches], folder / f"multi-{inputs}-{batches}", args.reuse)
        singles = {}
        if args.single:
            for env in args.env:
                singles[env] = _run(["--env", env, "--teacher", teachers[env], *common, "--steps",
                                     str(args.steps // len(args.env))], folder / f"single-{env.replace('/', '-')}",
                                    args.reuse)
        figures = _figures(args, teachers, runs, singles)
    text = _table(args, figures)
    prefix = Path(args.results or HERE / "results" / f"multitask_{args.student}")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{prefix}.md").write_text(text + "\n")
    Path(f"{prefix}.json").write_text(json.dumps(figures, indent=1) + "\n")
    print(text)


def _figures(args, teachers, runs, singles) -> dict[str, object]:
    """Every policy's held-out return per task, and its % of its task's teacher with the interval."""
    figures: dict[str, object] = {"tasks": {}, "variants": {}, "single": {}}
    reference = {}
    for env in args.env:
        reference[env] = _returns(teachers[env], env, args.episodes, args.seed)
        mean, se = reference[env].mean(), reference[env].std() / math.sqrt(args.episodes)
        figures["tasks"][env] = {"teacher_return": float(mean), "teacher_se": float(se)}
    for variant, run in runs.items():
        summary = run["summary"]
        student = summary["students"][args.student]
        rows = {}
        for env in args.env:
            part = summary["per_task"][env]["students"][args.student]
            rows[env] = {**_versus(_returns(part["checkpoint"], env, args.episodes, args.seed), reference[env]),
                         "agreement": part["agreement"]}
        figures["variants"][variant] = {"params": student["params"], "wall_s": run["wall_s"],
                                        "env_steps": summary["env_steps"], "learner_steps": summary["learner_steps"],
                                        "tasks": rows, "geomean_pct": _geomean([r["pct"] for r in rows.values()]),
                                        "min_pct": min(r["pct"] for r in rows.values())}
    for env, run in singles.items():
        s = run["summary"]["students"][args.student]
        figures["single"][env] = {"params": s["params"], "wall_s": run["wall_s"], "agreement": s["agreement"],
                                  **_versus(_returns(s["checkpoint"], env, args.episodes, args.seed), reference[env])}
    return figures


def _cell(r: dict[str, object]) -> str:
    return f"{r['return']:.2f} ± {r['se']:.2f} ({r['pct']:.1f} [{r['pct_ci'][0]:.1f}, {r['pct_ci'][1]:.1f}])"


def _table(args, figures: dict[str, object]) -> str:
    lines = [f"Student {args.student} for {', '.join(args.env)}: {args.steps:,} env steps a multi-task run "
             f"({args.steps // len(args.env):,} a one-task run), replay ratio {args.replay_ratio:g}, "
             f"{args.episodes} held-out episodes per policy and task, seed {args.seed}\n",
             "| student | params | " + " | ".join(f"{env} return ± s.e. (% of teacher [95% CI])" for env in args.env)
             + " | geomean % | lowest % | wall s |",
             "|---|---:|" + "---|" * len(args.env) + "---:|---:|---:|",
             "| teachers | — | " + " | ".join(f"{t['teacher_return']:.2f} ± {t['teacher_se']:.2f}"
                                             for t in figures["tasks"].values()) + " | 100.0 | 100.0 | — |"]
    for variant, v in figures["variants"].items():
        lines.append(f"| multi-task, {variant} | {v['params']:,} | " + " | ".join(
            _cell(r) for r in v["tasks"].values())
            + f" | {v['geomean_pct']:.1f} | {v['min_pct']:.1f} | {v['wall_s']:.0f} |")
    if figures["single"]:
        single = figures["single"]
        lines.append(f"| one per task | {sum(s['params'] for s in single.values()):,} | " + " | ".join(
            _cell(s) for s in single.values())
            + f" | {_geomean([s['pct'] for s in single.values()]):.1f} | {min(s['pct'] for s in single.values()):.1f} "
            f"| {sum(s['wall_s'] for s in single.values()):.0f} |")
    teachers = " ".join(f"--teacher {env}=PATH" for env in args.env)
    lines.append(f"\n```\npython benchmarks/multitask_students.py {' '.join('--env ' + e for e in args.env)} {teachers} "
                 f"--student {args.student} --steps {args.steps} --variants {args.variants}"
                 f"{' --single' if args.single else ''} --replay-ratio {args.replay_ratio:g} --eval-every-s "
                 f"{args.eval_every_s:g} --episodes {args.episodes} --seed {args.seed}\n```")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
