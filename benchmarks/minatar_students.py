"""How small a MinAtar student can be: one `qdistill run` distills a trained teacher into a ladder
of conv students at once (the same rows, labels and updates for all), then `qdistill export`
writes one of them as ONNX through the verification gate.

    python benchmarks/minatar_students.py --teacher RUN/checkpoints/teacher-best.pt --env MinAtar/Breakout-v1
    python benchmarks/minatar_students.py --evaluate RUN_DIR --env MinAtar/Breakout-v1   # a kept run again

The table: parameters (and % of the teacher's), greedy return of the teacher and of each student's
best checkpoint on the same --episodes held-out episodes (200 by default, seeds 2,000,000 + 1000 *
seed, none of them the run's; ± is the standard error of the mean), % of the teacher's return on
them, agreement with the teacher's greedy action on held-out teacher states (the run's), µs per
action (batch 1, one thread). A MinAtar return's spread is as large as its mean: over the run's 30
episodes a SpaceInvaders teacher read 63.4 and the same network 51.8 over 200, so the run's own
final figures (20 episodes) only pick each student's best checkpoint. The bar to beat (issue 21):
the seed document's offline procedure on a Breakout teacher of 8.1 (200k labelled states, KL τ =
0.01, 3 epochs) kept 93% at 25% of the parameters, 75% at 6.4%, 25% at 1.7%; Rusu et al. 2016:
102% at 7%. Not part of the test suite.
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

LADDER = ("c16k3s1-64", "c16k3s1-32", "c8k3s1-32", "c8k3s1-16", "c4k3s1-16", "c4k3s1-8", "c2k3s1-8")
HELD_OUT_SEED = 2_000_000  # the table's episodes: neither the run's evaluations' seeds nor its final ones


def held_out(checkpoint_path: str, env: str, episodes: int, seed: int) -> tuple[float, float]:
    """A checkpoint's greedy return on the benchmark's held-out episodes: (mean, standard error)."""
    from qdistill.actors.evaluate import evaluate
    from qdistill.learners import checkpoint

    result = evaluate(env, checkpoint.load(checkpoint_path).policy().act, episodes=episodes, seed=HELD_OUT_SEED + 1000 * seed)
    return result.mean, result.std / math.sqrt(episodes)


def table(summary: dict[str, object], env: str, episodes: int, seed: int) -> tuple[str, dict[str, object]]:
    """The markdown table and its figures: teacher and students on the same held-out episodes."""
    teacher, students = summary["teacher"], summary["students"]
    print(f"evaluating the teacher and {len(students)} students on {episodes} held-out episodes each", file=sys.stderr,
          flush=True)
    t_mean, t_se = held_out(teacher["checkpoint"], env, episodes, seed)
    lines = ["| policy | params | % of teacher's params | greedy return ± s.e. | % of teacher | agreement | µs/action |",
             "|---|---:|---:|---|---:|---:|---:|",
             f"| teacher {teacher['net']} | {teacher['params']:,} | 100.0 | {t_mean:.2f} ± {t_se:.2f} | 100.0 | 1.000 | "
             f"{teacher['us_per_action']:.0f} |"]
    figures = {"teacher": {"params": teacher["params"], "return_mean": t_mean, "return_se": t_se}}
    for name, s in sorted(students.items(), key=lambda kv: -kv[1]["params"]):
        mean, se = held_out(s["checkpoint"], env, episodes, seed)
        figures[name] = {"params": s["params"], "return_mean": mean, "return_se": se, "pct_of_teacher": 100 * mean / t_mean,
                         "agreement": s["agreement"], "us_per_action": s["us_per_action"]}
        lines.append(f"| student {name} | {s['params']:,} | {100 * s['params'] / teacher['params']:.1f} | "
                     f"{mean:.2f} ± {se:.2f} | {100 * mean / t_mean:.1f} | {s['agreement']:.3f} | "
                     f"{s['us_per_action']:.0f} |")
        print(f"  {name}: {mean:.2f} ({100 * mean / t_mean:.1f}% of the teacher)", file=sys.stderr, flush=True)
    return "\n".join(lines), figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", help="a teacher checkpoint (train-teacher's teacher-best.pt)")
    parser.add_argument("--evaluate", metavar="RUN_DIR", help="no new run: the table for a run kept with --out")
    parser.add_argument("--env", default="MinAtar/Breakout-v1")
    parser.add_argument("--students", default=",".join(LADDER))
    parser.add_argument("--steps", type=int, default=500_000, help="the run's env steps")
    parser.add_argument("--behaviour", default="teacher", help="who acts in the run: teacher, student or mixed")
    parser.add_argument("--replay-ratio", type=float, default=0.1, help="the run's learner steps per env step (0.1)")
    parser.add_argument("--tau", type=float, default=0.01, help="the run's KL temperature (0.01)")
    parser.add_argument("--eval-every-s", type=float, default=60.0,
                        help="seconds between the run's evaluations, which pick each student's best checkpoint (60)")
    parser.add_argument("--eval-episodes", type=int, default=20,
                        help="episodes per run evaluation (20): more pick each student's best checkpoint more surely")
    parser.add_argument("--episodes", type=int, default=200, help="held-out episodes per policy for the table")
    parser.add_argument("--export", help="the student written as ONNX and verified")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="keep the run here (default: a temporary directory)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    if (args.teacher is None) == (args.evaluate is None):
        sys.exit("minatar_students: give --teacher CHECKPOINT (a new run) or --evaluate RUN_DIR (a kept one)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.evaluate or args.out or Path(tmp) / "run")
        wall = None
        if args.teacher:
            config = Path(tmp) / "evaluator.toml"  # the run's evaluations only pick each student's best checkpoint
            config.write_text(f"eval_every_s = {args.eval_every_s}\neval_episodes = {args.eval_episodes}\n")
            start = time.monotonic()
            subprocess.run(["qdistill", "run", "--env", args.env, "--teacher", args.teacher, "--students",
                            args.students, "--steps", str(args.steps), "--replay-ratio", str(args.replay_ratio),
                            "--behaviour", args.behaviour, "--tau", str(args.tau), "--config",
                            str(config), "--no-target", "--seed", str(args.seed), "--out", str(out)], check=True,
                           stdout=sys.stderr)
            wall = time.monotonic() - start
        summary = json.loads((out / "summary.json").read_text())
        text, figures = table(summary, args.env, args.episodes, args.seed)
        sidecar = None
        if args.export:
            subprocess.run(["qdistill", "export", str(out), "--student", args.export, "--format", "onnx"], check=True,
                           stdout=sys.stderr)
            sidecar = json.loads(next((out / "export").glob("*.onnx.json")).read_text())
    teacher = summary["teacher"]
    print(f"{args.env}: teacher {teacher['net']} ({teacher['params']:,} params), one run of {summary['env_steps']:,} "
          f"env steps" + (f" ({wall:.0f} s)" if wall else "") + f", {summary['learner_steps']:,} learner steps, "
          f"behaviour {summary['behaviour']}, τ {summary['tau']:g}, "
          f"{args.episodes} held-out episodes per policy, seed {args.seed}\n")
    print(text)
    if sidecar:
        v = sidecar["verification"]
        print(f"\nONNX export of {args.export}: agreement with the float student {v['agreement']:.4f} on "
              f"{v['held_out_states']:,} held-out states (gate {v['min_agreement']}), return "
              f"{v['return_exported']['mean']:.1f} exported vs {v['return_float']['mean']:.1f} float over "
              f"{v['episodes']} episodes; input {sidecar['input']['dtype']} {sidecar['input']['shape']}, "
              f"{sidecar['input']['scaling']}")
    source = (f"--evaluate {args.evaluate}" if args.evaluate else
              f"--teacher {args.teacher} --students {args.students} --steps {args.steps} --replay-ratio "
              f"{args.replay_ratio:g} --behaviour {args.behaviour} --tau {args.tau:g} "
              f"--eval-every-s {args.eval_every_s:g} --eval-episodes {args.eval_episodes}") + (
        f" --export {args.export}" if args.export else "")
    print(f"\nreproduce: python benchmarks/minatar_students.py {source} --env {args.env} --episodes {args.episodes} "
          f"--seed {args.seed}")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "held_out": figures, "export": sidecar,
                                               "wall_s": wall}, indent=1) + "\n")


if __name__ == "__main__":
    main()
