"""Time to target: wall-clock of `qdistill train-teacher` or `qdistill run` (Ray start-up included)
until the greedy mean return over 20 held-out episodes reaches the env's reward threshold.

    python benchmarks/time_to_target.py train-teacher --env CartPole-v1 --seeds 3
    python benchmarks/time_to_target.py run --env CartPole-v1 --seeds 3                 # from nothing
    python benchmarks/time_to_target.py run --env CartPole-v1 --seeds 3 -- --teacher T.pt

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

from qdistill.actors.intervals import iqm_ci


def run_once(command: str, env: str, seed: int, extra: list[str]) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "qdistill.cluster.cli", command, "--env", env,
               "--seed", str(seed), "--out", str(out), "--quiet", *extra]
        t0 = time.monotonic()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.monotonic() - t0
        summary = json.loads((out / "summary.json").read_text())
    row = {"env": env, "seed": seed, "wall_s": round(wall, 1), "env_steps": summary["env_steps"],
           "teacher_return": summary["teacher"]["eval_return_mean"]}
    if command == "run":
        name, student = next(iter(summary["students"].items()))
        row.update(distill_wall_s=summary["distill_wall_s"], student=name,
                   return_mean=student["eval_return_mean"], return_std=student["eval_return_std"])
    else:
        row.update(distill_wall_s=float("nan"), student="-", return_mean=summary["teacher"]["eval_return_mean"],
                   return_std=summary["teacher"]["eval_return_std"])
    row["reached"] = summary["target_return"] is not None and row["return_mean"] >= summary["target_return"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["train-teacher", "run"])
    parser.add_argument("--env", action="append", help="env id (repeatable; default CartPole-v1)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", help="also write the rows here")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []  # more qdistill flags, after --
    args = parser.parse_args(argv[: len(argv) - len(extra) - (1 if extra else 0)])
    args.extra = extra
    envs = args.env or ["CartPole-v1"]
    policy = "teacher" if args.command == "train-teacher" else "student"
    print(f"qdistill {args.command}: {policy} greedy return, 20 held-out episodes")
    print(f"{'env':<16} {'seed':>4} {'wall s':>7} {'distill s':>9} {'env steps':>10} {'return':>15} {'reached':>7}")
    rows = []
    for env in envs:
        env_rows = [run_once(args.command, env, seed, args.extra) for seed in range(args.seeds)]
        for r in env_rows:
            print(f"{env:<16} {r['seed']:>4} {r['wall_s']:>7.1f} {r['distill_wall_s']:>9.1f} {r['env_steps']:>10,} "
                  f"{r['return_mean']:>8.1f} ± {r['return_std']:<5.1f} {str(r['reached']):>7}", flush=True)
        med = lambda k: statistics.median(x[k] for x in env_rows)  # noqa: E731
        print(f"{env:<16} {'med':>4} {med('wall_s'):>7.1f} {med('distill_wall_s'):>9.1f} {med('env_steps'):>10,.0f} "
              f"{med('return_mean'):>8.1f}{'':8} {sum(x['reached'] for x in env_rows)}/{len(env_rows):<5}")
        steps, ret = (iqm_ci([x[k] for x in env_rows]) for k in ("env_steps", "return_mean"))
        print(f"{env:<16} {'IQM':>4} env steps {steps.value:,.0f} [{steps.low:,.0f}, {steps.high:,.0f}], return "
              f"{ret.value:.1f} [{ret.low:.1f}, {ret.high:.1f}] (interquartile mean over the seeds, 95% interval)")
        rows += env_rows
    print(f"\nreproduce: python benchmarks/time_to_target.py {args.command} " + " ".join(f"--env {e}" for e in envs)
          + f" --seeds {args.seeds}" + (" -- " + " ".join(args.extra) if args.extra else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
