"""Time-to-teacher: wall-clock of `qdistill train-teacher` (Ray start-up included) until the
greedy mean return over 20 held-out episodes reaches the env's reward threshold.

    python benchmarks/teacher_time.py --env CartPole-v1 --seeds 3

Each seed runs as its own `qdistill` process, one after the other; the table gives each run and
the median. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(env: str, seed: int, extra: list[str]) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "qdistill.cluster.cli", "train-teacher", "--env", env,
               "--seed", str(seed), "--out", str(out), "--quiet", *extra]
        t0 = time.monotonic()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.monotonic() - t0
        summary = json.loads((out / "summary.json").read_text())
    teacher = summary["teacher"]
    return {
        "env": env, "seed": seed, "wall_s": round(wall, 1), "env_steps": summary["env_steps"],
        "learner_steps": summary["learner_steps"], "return_mean": round(teacher["eval_return_mean"], 1),
        "return_std": round(teacher["eval_return_std"], 1), "reached": summary["reached_target"],
        "target": summary["target_return"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", action="append", help="env id (repeatable; default CartPole-v1)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("extra", nargs="*", help="more train-teacher flags, after --")
    args = parser.parse_args()
    envs = args.env or ["CartPole-v1"]
    rows = []
    header = f"{'env':<16} {'seed':>4} {'wall s':>7} {'env steps':>10} {'learner steps':>13} {'greedy return':>15} {'reached':>7}"
    print(header)
    for env in envs:
        env_rows = []
        for seed in range(args.seeds):
            r = run_once(env, seed, args.extra)
            env_rows.append(r)
            print(f"{env:<16} {seed:>4} {r['wall_s']:>7.1f} {r['env_steps']:>10,} {r['learner_steps']:>13,} "
                  f"{r['return_mean']:>8.1f} ± {r['return_std']:<5.1f} {str(r['reached']):>7}", flush=True)
        med = lambda k: statistics.median(x[k] for x in env_rows)  # noqa: E731
        print(f"{env:<16} {'med':>4} {med('wall_s'):>7.1f} {med('env_steps'):>10,.0f} {med('learner_steps'):>13,.0f} "
              f"{med('return_mean'):>8.1f}{'':8} {sum(x['reached'] for x in env_rows)}/{len(env_rows):<5}")
        rows += env_rows
    print(f"\nreproduce: python benchmarks/teacher_time.py " + " ".join(f"--env {e}" for e in envs)
          + f" --seeds {args.seeds}" + (" -- " + " ".join(args.extra) if args.extra else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
