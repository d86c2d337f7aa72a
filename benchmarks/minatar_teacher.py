"""MinAtar teachers side by side: `qdistill train-teacher` (Ray: 2 rollout actors of 8 envs, a
buffer shard, the learner) against a plain single-process DQN with the same settings and network
(`benchmarks/plain_dqn.py`), for each env and seed, both for the same env-step budget.

    python benchmarks/minatar_teacher.py --steps 1000000 --seeds 0 1 2
    python benchmarks/minatar_teacher.py --steps 1000000 --seeds 0 1 2 --to-reference

With --to-reference both stop once their greedy return reaches the published DQN's figure (REFERENCE
below), judged the same way (train-teacher's target rule, which plain_dqn.py --target-return
copies: a new best over 20 evaluation episodes every 25k env steps, then 20 held-out episodes), so
the table gives the env steps and wall time each took to beat it, within the step budget.

Each run is its own process started cold (Python, torch and, for train-teacher, Ray start-up in
its wall time), one after the other, who goes first alternating from pair to pair. "greedy return"
is each runner's own final figure on the same 20 held-out episodes (seeds 1,000,000 + 1000 * seed):
for train-teacher the best of its periodic evaluations (every 25k env steps) re-played on them
(summary.json), for the plain loop its final network; "final weights" plays train-teacher's last
network (checkpoints/teacher-last.pt) on those episodes too, which is what the plain loop reports.
Writes the table (.md) and every run (.json) under benchmarks/results/, after each run; --resume
keeps the runs already there (same steps) and runs only the missing ones, so a long table can be
filled over several sittings. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENVS = ("MinAtar/Breakout-v1", "MinAtar/SpaceInvaders-v1")
FINAL_SEED = 1_000_000  # train-teacher's final evaluation seeds (cluster/driver/evaluation.py), the plain loop's too
# Young & Tian 2019, "MinAtar: An Atari-Inspired Testbed for Thorough and Reproducible Reinforcement
# Learning Experiments" (arXiv:1903.03176): DQN (RMSProp, batch 32, one update per frame, eps to 0.1,
# sticky actions 0.1) after 5M frames, the average return of training episodes, read off the paper's
# learning curves: approximate, and not greedy returns.
REFERENCE = {"MinAtar/Breakout-v1": 10.0, "MinAtar/SpaceInvaders-v1": 43.0}
REFERENCE_LABEL = "DQN, Young & Tian 2019 (5M frames, training episodes, approx.)"


class RunFailed(RuntimeError):
    pass


def _stream(cmd: list[str], log: Path) -> float:
    """Run `cmd`, its output echoed to stderr and kept in `log`; its wall seconds. A non-zero exit
    raises RunFailed with the command and the last lines of its output."""
    tail: deque[str] = deque(maxlen=40)
    t0 = time.monotonic()
    with open(log, "w") as f, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                               cwd=HERE.parent) as proc:
        for line in proc.stdout:
            sys.stderr.write(line)
            f.write(line)
            tail.append(line)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise RunFailed(f"exit status {proc.returncode} from:\n  {' '.join(cmd)}\nlast lines of its output "
                        f"(all of it in {log}, kept with --keep):\n" + "".join(tail))
    return wall


def _qdistill() -> list[str]:
    script = Path(sys.executable).with_name("qdistill")  # the venv's console script
    return [str(script)] if script.exists() else [shutil.which("qdistill") or "qdistill"]


def last_weights_return(checkpoint_path: Path, env: str, seed: int) -> float:
    """train-teacher's last network, greedy on the plain loop's held-out episodes."""
    from qdistill.actors.evaluate import evaluate
    from qdistill.learners import checkpoint

    return evaluate(env, checkpoint.load(checkpoint_path).policy().act, episodes=20, seed=FINAL_SEED + 1000 * seed).mean


def run_teacher(env: str, seed: int, steps: int, folder: Path, target: float | None) -> dict[str, object]:
    out = folder / f"teacher-{env.split('/')[-1]}-{seed}"
    cmd = [*_qdistill(), "train-teacher", "--env", env, "--seed", str(seed), "--steps", str(steps),
           *(["--no-target"] if target is None else ["--target-return", f"{target:g}"]), "--quiet", "--out", str(out)]
    wall = _stream(cmd, folder / f"{out.name}.log")
    if not (out / "summary.json").exists():
        raise RunFailed(f"{' '.join(cmd)} exited 0 but wrote no {out / 'summary.json'}")
    summary = json.loads((out / "summary.json").read_text())
    if summary["stop_reason"] == "stopped":  # stopped from outside (Ctrl-C, SIGTERM): not a measurement
        raise RunFailed(f"{out} was stopped before its budget or target: not recorded; rerun it")
    teacher = summary["teacher"]
    return {"env": env, "runner": "train-teacher", "seed": seed, "wall_s": round(wall, 1),
            "own_wall_s": summary["wall_s"], "env_steps": summary["env_steps"], "updates": summary["learner_steps"],
            "return_mean": teacher["eval_return_mean"], "return_std": teacher["eval_return_std"],
            "final_weights_return": last_weights_return(Path(teacher["last_checkpoint"]), env, seed),
            "stop_reason": summary["stop_reason"], "reached": summary["stop_reason"] == "target"}


def run_plain(env: str, seed: int, steps: int, folder: Path, target: float | None) -> dict[str, object]:
    result = folder / f"plain-{env.split('/')[-1]}-{seed}.json"
    cmd = [sys.executable, str(HERE / "plain_dqn.py"), "--env", env, "--seed", str(seed), "--steps", str(steps),
           "--json", str(result), *([] if target is None else ["--target-return", f"{target:g}"])]
    wall = _stream(cmd, result.with_suffix(".log"))
    r = json.loads(result.read_text())
    return {"env": env, "runner": "plain DQN", "seed": seed, "wall_s": round(wall, 1), "own_wall_s": r["wall_s"],
            "env_steps": r["env_steps"], "updates": r["updates"], "return_mean": r["return_mean"],
            "return_std": r["return_std"], "final_weights_return": r["return_mean"], "reached": r["reached"]}


def spread(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}–{max(values):{fmt}}]"


def iqm_cell(values: list[float], fmt: str) -> str:
    """The interquartile mean over the seeds with its 95% bootstrap interval over them (Agarwal et
    al. 2021): the across-seed figure that neither one lucky seed nor one failed one moves much."""
    from qdistill.actors.intervals import iqm_ci

    ci = iqm_ci(values)
    return f"{ci.value:{fmt}} [{ci.low:{fmt}}, {ci.high:{fmt}}]"


def beaten(rs: list[dict[str, object]], env: str) -> str:
    """How many runs' held-out greedy return beats the published figure."""
    return f"{sum(r['return_mean'] >= REFERENCE[env] for r in rs)} of {len(rs)}" if env in REFERENCE else "—"


def table(rows: list[dict[str, object]], envs: list[str], steps: int, to_reference: bool) -> str:
    head = (f"MinAtar teachers, each until its greedy return beats the published DQN's (judged as train-teacher "
            f"judges a target) or {steps:,} env steps" if to_reference else f"MinAtar teachers, {steps:,} env steps each")
    lines = [f"{head}: wall of the whole command (cold start), greedy return on the same 20 held-out episodes\n",
             "| env | runner | median wall s [min–max] | env steps, median [min–max] | updates (median) | "
             "greedy return, median [min–max] | greedy return, IQM [95% CI] | final weights' return, median [min–max] | "
             "beat the reference | seeds |",
             "|---|---|---|---|---:|---|---|---|---|---|"]
    for env in envs:
        for runner in ("train-teacher", "plain DQN"):
            rs = [r for r in rows if r["env"] == env and r["runner"] == runner]
            if not rs:
                continue
            lines.append(f"| {env} | {runner} | {spread([r['wall_s'] for r in rs], '.1f')} | "
                         f"{spread([r['env_steps'] for r in rs], ',.0f')} | "
                         f"{statistics.median(r['updates'] for r in rs):,.0f} | "
                         f"{spread([r['return_mean'] for r in rs], '.2f')} | "
                         f"{iqm_cell([r['return_mean'] for r in rs], '.2f')} | "
                         f"{spread([r['final_weights_return'] for r in rs], '.2f')} | "
                         f"{beaten(rs, env)} | "
                         f"{' '.join(str(r['seed']) for r in rs)} |")
        if env in REFERENCE:
            lines.append(f"| {env} | {REFERENCE_LABEL} | — | 5,000,000 (frames) | — | ≈ {REFERENCE[env]:g} | — | — "
                         "| — | — |")
    return "\n".join(lines)


def write(prefix: Path, rows: list[dict[str, object]], args: argparse.Namespace) -> str:
    """The table so far as PREFIX.md, every run as PREFIX.json; the table's text."""
    command = (f"python benchmarks/minatar_teacher.py --steps {args.steps} --seeds {' '.join(map(str, args.seeds))} "
               f"--envs {' '.join(args.envs)}" + (" --to-reference" if args.to_reference else "")
               + (f" --results {args.results}" if args.results else ""))
    text = table(rows, args.envs, args.steps, args.to_reference)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{prefix}.md").write_text(f"{text}\n\n```\n{command}\n```\n")
    Path(f"{prefix}.json").write_text(json.dumps({"steps": args.steps, "seeds": args.seeds, "envs": args.envs,
                                                  "to_reference": args.to_reference, "reference": REFERENCE,
                                                  "runs": rows}, indent=2) + "\n")
    return f"{text}\n\nreproduce: {command}"


def earlier_runs(prefix: Path, steps: int, to_reference: bool) -> list[dict[str, object]]:
    """The runs PREFIX.json already holds, when they were made with the same budget and stop rule."""
    path = Path(f"{prefix}.json")
    if not path.exists():
        return []
    done = json.loads(path.read_text())
    if done["steps"] != steps or done.get("to_reference", False) != to_reference:
        sys.exit(f"minatar_teacher: --resume: {path} holds runs of {done['steps']:,} env steps"
                 f"{' to the reference' if done.get('to_reference') else ''}, not {steps:,}"
                 f"{' to the reference' if to_reference else ''}")
    return done["runs"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1_000_000, help="env steps of every run (1000000)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="(0 1 2)")
    parser.add_argument("--envs", nargs="+", default=list(ENVS), help=f"({' '.join(ENVS)})")
    parser.add_argument("--results", help="write PREFIX.md and PREFIX.json (default "
                                          "benchmarks/results/minatar_teacher_STEPS)")
    parser.add_argument("--to-reference", action="store_true", help="stop each run once it beats the published "
                                                                    "DQN's return (REFERENCE), within --steps")
    parser.add_argument("--resume", action="store_true", help="keep the runs PREFIX.json holds, run the others")
    parser.add_argument("--keep", help="keep the run directories and logs here (default: a temporary folder)")
    args = parser.parse_args()
    if args.to_reference and (unknown := [e for e in args.envs if e not in REFERENCE]):
        sys.exit(f"minatar_teacher: --to-reference: no published figure for {', '.join(unknown)}; "
                 f"expected envs among {', '.join(REFERENCE)}")
    prefix = Path(args.results or HERE / "results" /
                  f"minatar_teacher_{args.steps}{'_to_reference' if args.to_reference else ''}")
    rows = earlier_runs(prefix, args.steps, args.to_reference) if args.resume else []
    done = {(r["env"], r["runner"], r["seed"]) for r in rows}
    runners = (run_teacher, run_plain)
    names = {run_teacher: "train-teacher", run_plain: "plain DQN"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp).absolute()
        folder.mkdir(parents=True, exist_ok=True)
        pair = 0
        for env in args.envs:
            for seed in args.seeds:
                for runner in runners if pair % 2 == 0 else runners[::-1]:
                    if (env, names[runner], seed) in done:
                        print(f"== {env} seed {seed}: {runner.__name__} kept from {prefix}.json", file=sys.stderr)
                        continue
                    print(f"== {env} seed {seed}: {runner.__name__} ({args.steps:,} env steps"
                          f"{', to the reference' if args.to_reference else ''})", file=sys.stderr,
                          flush=True)
                    try:
                        rows.append(runner(env, seed, args.steps, folder,
                                           REFERENCE[env] if args.to_reference else None))
                    except RunFailed as exc:
                        sys.exit(f"minatar_teacher: {runner.__name__} failed on {env} seed {seed}: {exc}")
                    print(f"== done: {json.dumps(rows[-1])}", file=sys.stderr, flush=True)
                    write(prefix, rows, args)
                pair += 1
    print(f"\n{write(prefix, rows, args)}")


if __name__ == "__main__":
    main()
