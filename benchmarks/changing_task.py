"""A changing task: a trained CartPole teacher keeps learning in a run whose dynamics change part-way;
does the teacher adapt, and does the 16x16 student follow it?

    python benchmarks/changing_task.py --seeds 3

Each seed: `qdistill train-teacher` (to the reward threshold), then
  qdistill run --teacher T --teacher-learns --change-at C --change NAME=VALUE --steps S --no-target
Printed per seed: the greedy returns on held-out episodes just before the change, in the first
evaluation on the changed task, and at the end (the final evaluation of the best teacher version and
best student on the changed task, on other episodes); the student's % of the adapted teacher; the
env steps after the change until the student's evaluation first reached 90% of the adapted teacher's
final return. The plot of the
median seed's run (returns and label staleness over time, the change marked) is copied to --plot.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "qdistill.cluster.cli", *args, "--quiet"], check=True,
                   stdout=subprocess.DEVNULL)


def run_seed(seed: int, args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    teacher_dir, run_dir = tmp / f"teacher-{seed}", tmp / f"run-{seed}"
    _cli("train-teacher", "--env", "CartPole-v1", "--seed", str(seed), "--out", str(teacher_dir))
    change = [a for c in args.change for a in ("--change", c)]
    _cli("run", "--env", "CartPole-v1", "--seed", str(seed), "--out", str(run_dir), "--teacher-learns",
         "--teacher", str(teacher_dir / "checkpoints" / "teacher_best.pt"), "--change-at", str(args.change_at),
         *change, "--steps", str(args.steps), "--no-target")
    summary = json.loads((run_dir / "summary.json").read_text())
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval/return/teacher" in r]
    before = [r for r in evals if not r["eval/on_changed_task"]]
    after = [r for r in evals if r["eval/on_changed_task"]]
    changed_at = summary["task_change"]["changed_at"]
    adapted = summary["teacher"]["eval_return_mean"]
    recovered = next((r["env_steps"] - changed_at for r in after if r["eval/return/16x16"] >= 0.9 * adapted), None)
    student = summary["students"]["16x16"]
    return {"seed": seed, "changed_at": changed_at, "dir": str(run_dir),
            "teacher_before": before[-1]["eval/return/teacher"] if before else None,
            "student_before": before[-1]["eval/return/16x16"] if before else None,
            "teacher_changed": after[0]["eval/return/teacher"], "student_changed": after[0]["eval/return/16x16"],
            "teacher_end": summary["teacher"]["eval_return_mean"], "student_end": student["eval_return_mean"],
            "pct": student["pct_of_teacher"], "recovered_after": recovered,
            "p95_used": summary["labels"]["staleness_p95_used"]}


def _f(v: object) -> str:
    return "-" if v is None else f"{v:,.1f}" if isinstance(v, float) else f"{v:,}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--change-at", type=int, default=10_000)
    parser.add_argument("--change", action="append", default=None, help="NAME=VALUE (default length=2.0)")
    parser.add_argument("--steps", type=int, default=120_000)
    parser.add_argument("--plot", default="benchmarks/results/changing_task.png")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    args.change = args.change or ["length=2.0"]
    cols = ("seed", "changed_at", "teacher_before", "student_before", "teacher_changed", "student_changed",
            "teacher_end", "student_end", "pct", "recovered_after", "p95_used")
    heads = ("seed", "change at", "T before", "S before", "T changed", "S changed", "T end", "S end",
             "S % of T", "S back at 90% after", "p95 lag used")
    print(f"CartPole-v1, a trained teacher learning on; at step {args.change_at:,} the dynamics change: "
          f"{', '.join(args.change)}\nT = teacher 256x256, S = student 16x16, greedy return on held-out episodes")
    print("  ".join(f"{h:>{max(len(h), 9)}}" for h in heads), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            rows.append(run_seed(seed, args, Path(tmp)))
            print("  ".join(f"{_f(rows[-1][c]):>{max(len(h), 9)}}" for c, h in zip(cols, heads)), flush=True)
        pcts = sorted(r["pct"] for r in rows)
        median = next(r for r in rows if r["pct"] == pcts[len(pcts) // 2])
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(median["dir"]) / "return.png", args.plot)
    print(f"\nstudent % of the adapted teacher, median of {len(rows)}: {statistics.median(pcts):.1f} "
          f"(min {pcts[0]:.1f}); plot of seed {median['seed']}: {args.plot}")
    print(f"reproduce: python benchmarks/changing_task.py --seeds {args.seeds} --change-at {args.change_at} "
          f"{' '.join('--change ' + c for c in args.change)} --steps {args.steps}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
