"""Observation normalisation, with and without: `qdistill run --env E` from nothing (the teacher
trained first to its target, then the students distilled to theirs), once plain and once with
--normalize-obs, interleaved seed by seed (the arms' order alternating), on the same seeds.

    python benchmarks/normalization.py --env Acrobot-v1 --env LunarLander-v3 --seeds 0 1 2

Per env and arm: the teacher's wall time and env steps (its own run, Ray start-up included), its
greedy return on held-out episodes and whether it reached the target, and the student's % of the
teacher with its 95% interval, each as the median [min–max] over the seeds. Writes the table (.md)
and every run (.json) under benchmarks/results/. Not part of the test suite.
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

HERE = Path(__file__).resolve().parent
ARMS = {"plain": [], "normalised": ["--normalize-obs"]}


def run_once(env: str, seed: int, arm: str, keep: Path) -> dict[str, object]:
    out = keep / f"{env.replace('/', '-')}-{arm}-seed{seed}"
    if not (out / "summary.json").is_file():
        start = time.monotonic()
        subprocess.run([sys.executable, "-m", "qdistill.cluster.cli", "run", "--env", env, "--seed", str(seed),
                        "--out", str(out), "--quiet", *ARMS[arm]], check=True, stdout=subprocess.DEVNULL)
        print(f"  {env} {arm} seed {seed}: {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
    teacher, run = (json.loads((d / "summary.json").read_text()) for d in (out / "teacher", out))
    name, student = next(iter(run["students"].items()))
    return {"env": env, "arm": arm, "seed": seed, "teacher_wall_s": teacher["wall_s"],
            "teacher_env_steps": teacher["env_steps"], "teacher_net": teacher["teacher"]["net"],
            "teacher_return": teacher["teacher"]["eval_return_mean"], "teacher_reached": teacher["reached_target"],
            "student": name, "student_return": student["eval_return_mean"], "pct_of_teacher": student["pct_of_teacher"],
            "pct_of_teacher_ci": student.get("pct_of_teacher_ci"), "distill_wall_s": run["distill_wall_s"],
            "run_wall_s": run["wall_s"], "dir": str(out)}


def spread(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}–{max(values):{fmt}}]"


def table(rows: list[dict[str, object]], command: str) -> str:
    lines = ["Observation normalisation: `qdistill run --env E` from nothing, plain and with --normalize-obs, "
             "interleaved; each figure the median [min–max] over the seeds\n",
             "| env | arm | teacher | teacher wall s | teacher env steps | teacher return | teachers at target | "
             "student | student % of teacher | distill wall s | seeds |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for env in dict.fromkeys(r["env"] for r in rows):
        for arm in ARMS:
            rs = [r for r in rows if r["env"] == env and r["arm"] == arm]
            if rs:
                lines.append(
                    f"| {env} | {arm} | {rs[0]['teacher_net']} | {spread([r['teacher_wall_s'] for r in rs], '.1f')} | "
                    f"{spread([r['teacher_env_steps'] for r in rs], ',.0f')} | "
                    f"{spread([r['teacher_return'] for r in rs], '.1f')} | "
                    f"{sum(r['teacher_reached'] for r in rs)} of {len(rs)} | {rs[0]['student']} | "
                    f"{spread([r['pct_of_teacher'] for r in rs], '.1f')} | "
                    f"{spread([r['distill_wall_s'] for r in rs], '.1f')} | {' '.join(str(r['seed']) for r in rs)} |")
    return "\n".join(lines) + f"\n\nreproduce: {command}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", action="append", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--keep", help="keep the runs here, and take the ones already there (default: a temporary "
                                       "directory)")
    parser.add_argument("--results", default=str(HERE / "results" / "normalization"), help="PREFIX of the .md and .json")
    args = parser.parse_args()
    command = ("python benchmarks/normalization.py " + " ".join(f"--env {e}" for e in args.env)
               + f" --seeds {' '.join(map(str, args.seeds))}")
    with tempfile.TemporaryDirectory() as tmp:
        keep = Path(args.keep or tmp)
        keep.mkdir(parents=True, exist_ok=True)
        rows = []
        for env in args.env:
            for i, seed in enumerate(args.seeds):
                for arm in (list(ARMS) if i % 2 == 0 else list(ARMS)[::-1]):
                    rows.append(run_once(env, seed, arm, keep))
                    text = table(rows, command)
                    Path(f"{args.results}.md").write_text(text)
                    Path(f"{args.results}.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
