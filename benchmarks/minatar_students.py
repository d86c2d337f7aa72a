"""How small a MinAtar student can be: one `qdistill run` distills a trained teacher into a ladder
of conv students at once (the same rows, labels and updates for all), then `qdistill export`
writes one of them as ONNX through the verification gate.

    python benchmarks/minatar_students.py --teacher RUN/checkpoints/teacher-best.pt --env MinAtar/Breakout-v1

The table: parameters (and % of the teacher's), greedy return over the run's final held-out
episodes (the evaluator's), % of the teacher's return on the same episodes, agreement with the
teacher's greedy action on held-out teacher states, µs per action (batch 1, one thread, torch).
The bar to beat (issue 21): the seed document's offline procedure on a Breakout teacher of 8.1
(200k labelled states, KL τ = 0.01, 3 epochs) kept 93% at 25% of the parameters, 75% at 6.4%,
25% at 1.7%; Rusu et al. 2016: 102% at 7%. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LADDER = ("c16k3s1-64", "c16k3s1-32", "c8k3s1-32", "c8k3s1-16", "c4k3s1-16", "c4k3s1-8", "c2k3s1-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True, help="a teacher checkpoint (train-teacher's teacher-best.pt)")
    parser.add_argument("--env", default="MinAtar/Breakout-v1")
    parser.add_argument("--students", default=",".join(LADDER))
    parser.add_argument("--steps", type=int, default=500_000, help="the run's env steps")
    parser.add_argument("--episodes", type=int, default=50, help="final evaluation episodes per policy")
    parser.add_argument("--export", default="c8k3s1-16", help="the student written as ONNX and verified")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="keep the run here (default: a temporary directory)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or Path(tmp) / "run")
        config = Path(tmp) / "episodes.toml"
        config.write_text(f"eval_episodes = {args.episodes}\n")
        start = time.monotonic()
        subprocess.run(["qdistill", "run", "--env", args.env, "--teacher", args.teacher, "--students", args.students,
                        "--steps", str(args.steps), "--config", str(config), "--no-target",
                        "--seed", str(args.seed), "--out", str(out)], check=True, stdout=sys.stderr)
        wall = time.monotonic() - start
        summary = json.loads((out / "summary.json").read_text())
        subprocess.run(["qdistill", "export", str(out), "--student", args.export, "--format", "onnx"], check=True,
                       stdout=sys.stderr)
        sidecar = json.loads(next((out / "export").glob("*.onnx.json")).read_text())
    teacher, students = summary["teacher"], summary["students"]
    print(f"{args.env}: teacher {teacher['net']} ({teacher['params']:,} params), one run of {summary['env_steps']:,} "
          f"env steps ({wall:.0f} s), {args.episodes} final episodes per policy, seed {args.seed}\n")
    print("| policy | params | % of teacher's params | greedy return | % of teacher | agreement | µs/action |")
    print("|---|---:|---:|---|---:|---:|---:|")
    print(f"| teacher {teacher['net']} | {teacher['params']:,} | 100.0 | {teacher['eval_return_mean']:.1f} ± "
          f"{teacher['eval_return_std']:.1f} | 100.0 | 1.000 | {teacher['us_per_action']:.0f} |")
    for name, s in sorted(students.items(), key=lambda kv: -kv[1]["params"]):
        print(f"| student {name} | {s['params']:,} | {100 * s['params'] / teacher['params']:.1f} | "
              f"{s['eval_return_mean']:.1f} ± {s['eval_return_std']:.1f} | {s['pct_of_teacher']:.1f} | "
              f"{s['agreement']:.3f} | {s['us_per_action']:.0f} |")
    v = sidecar["verification"]
    print(f"\nONNX export of {args.export}: agreement with the float student {v['agreement']:.4f} on "
          f"{v['held_out_states']:,} held-out states (gate {v['min_agreement']}), return {v['return_exported']['mean']:.1f} "
          f"exported vs {v['return_float']['mean']:.1f} float over {v['episodes']} episodes; input "
          f"{sidecar['input']['dtype']} {sidecar['input']['shape']}, {sidecar['input']['scaling']}")
    print(f"\nreproduce: python benchmarks/minatar_students.py --teacher {args.teacher} --env {args.env} "
          f"--students {args.students} --export {args.export} --steps {args.steps} --episodes {args.episodes} "
          f"--seed {args.seed}")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "export": sidecar, "wall_s": wall}, indent=1) + "\n")


if __name__ == "__main__":
    main()
