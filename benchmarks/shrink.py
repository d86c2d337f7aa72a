"""The size search against training the same candidates one by one: `qdistill shrink` (every
candidate in one run, halved as it goes) and, with --one-by-one, one `qdistill run` per candidate
on the same budget; each side's winner (the smallest candidate whose 95% interval of % of teacher
clears the threshold on its final held-out evaluation) and each side's wall time.

    python benchmarks/shrink.py --env CartPole-v1 --teacher T.pt --steps 50000 --one-by-one

Writes the table (.md) and the figures (.json) under benchmarks/results/. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _qdistill(args: list[str], out: Path) -> tuple[float, dict[str, object]]:
    """(wall s, summary) of a qdistill command writing into `out` (kept: taken as it is)."""
    if not (out / "summary.json").is_file():
        start = time.monotonic()
        subprocess.run([sys.executable, "-m", "qdistill.cluster.cli", *args, "--out", str(out), "--quiet"],
                       check=True, stdout=subprocess.DEVNULL)
        (out / "bench_wall_s").write_text(f"{time.monotonic() - start:.1f}\n")
    return float((out / "bench_wall_s").read_text()), json.loads((out / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", required=True)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--steps", type=int, required=True, help="the budget, of the search and of each one-by-one run")
    parser.add_argument("--candidates", help="specs joined by ',' (default: shrink's)")
    parser.add_argument("--keep", type=float, default=0.95)
    parser.add_argument("--one-by-one", action="store_true", help="also one run per candidate")
    parser.add_argument("--eval-ci", type=float, default=5.0, help="the final evaluations' interval width, for the "
                                                                  "search and each one-by-one run alike (5 points)")
    parser.add_argument("--eval-max-episodes", type=int, default=1000, help="their cap on episodes per policy (1000)")
    parser.add_argument("--behaviour", default="teacher", help="who acts, in the search and each one-by-one run "
                                                               "alike: teacher (default), student or mixed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-runs", help="keep the runs here (and take the ones already there)")
    parser.add_argument("--results", help="PREFIX of the .md and .json (default benchmarks/results/shrink_ENV)")
    args = parser.parse_args()
    common = ["--env", args.env, "--teacher", args.teacher, "--steps", str(args.steps), "--no-target",
              "--seed", str(args.seed), "--eval-ci", str(args.eval_ci), "--behaviour", args.behaviour,
              "--eval-max-episodes", str(args.eval_max_episodes)]
    with tempfile.TemporaryDirectory() as tmp:
        keep = Path(args.keep_runs or tmp)
        keep.mkdir(parents=True, exist_ok=True)
        wall, summary = _qdistill(["shrink", *common, "--keep", str(args.keep),
                                   *(["--candidates", args.candidates] if args.candidates else [])], keep / "search")
        search, teacher = summary["search"], summary["teacher"]
        rows = {"env": args.env, "steps": args.steps, "keep": args.keep, "seed": args.seed, "behaviour": args.behaviour,
                "teacher": {k: teacher[k] for k in ("net", "params", "eval_return_mean")},
                "search": {"wall_s": wall, "winner": search["winner"], "candidates": search["candidates"]}}
        if args.one_by_one:
            singles = {}
            for name in search["candidates"]:
                s_wall, s = _qdistill(["run", *common, "--students", name], keep / f"single-{name.replace('/', '-')}")
                student = s["students"][name]
                singles[name] = {"wall_s": s_wall, "params": student["params"], "pct_of_teacher": student["pct_of_teacher"],
                                 "pct_of_teacher_ci": student["pct_of_teacher_ci"]}
            passing = [n for n, c in singles.items() if c["pct_of_teacher_ci"][0] >= 100 * args.keep]
            rows["one_by_one"] = {"wall_s": sum(c["wall_s"] for c in singles.values()), "candidates": singles,
                                  "winner": min(passing, key=lambda n: (singles[n]["params"], n)) if passing else None}
    text = table(rows, " ".join(["python benchmarks/shrink.py", *sys.argv[1:]]))
    prefix = Path(args.results or HERE / "results" / f"shrink_{args.env.replace('/', '-')}")
    prefix.with_suffix(".md").write_text(text)
    prefix.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    print(text)


def _pct(c: dict[str, object] | None) -> str:
    if not c or c.get("pct_of_teacher") is None:
        return "—"
    ci = c.get("pct_of_teacher_ci")
    return f"{c['pct_of_teacher']:.1f}" + (f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "")


def table(rows: dict[str, object], command: str) -> str:
    teacher, search, singles = rows["teacher"], rows["search"], rows.get("one_by_one")
    lines = [f"{rows['env']}: the smallest student keeping {100 * rows['keep']:g}% of the teacher's return "
             f"(teacher {teacher['net']}, {teacher['params']:,} params, return {teacher['eval_return_mean']:.1f}); "
             f"{rows['steps']:,} env steps per run, seed {rows['seed']}, behaviour {rows.get('behaviour', 'teacher')}\n",
             "| candidate | params | % of teacher's params | search: % of teacher | search: fate | one by one: % of "
             "teacher | one by one: wall s |", "|---|---:|---:|---|---|---|---:|"]
    for name, c in search["candidates"].items():
        share = 100 * c["params"] / teacher["params"]
        share = f"{share:.1f}" if share >= 1 else f"{share:.2g}"
        fate = "winner" if name == search["winner"] else "left to the end" if c["status"] == "final" else \
            f"dropped at {c['dropped_at_env_steps']:,}"
        single = (singles or {}).get("candidates", {}).get(name)
        lines.append(f"| {name} | {c['params']:,} | {share} | {_pct(c)} | {fate} | "
                     f"{_pct(single)}{' (smallest passing)' if singles and name == singles['winner'] else ''} | "
                     f"{single['wall_s']:.1f} |" if single else
                     f"| {name} | {c['params']:,} | {share} | {_pct(c)} | {fate} | — | — |")
    lines.append("")
    lines.append(f"search: winner {search['winner'] or 'none'}, wall {search['wall_s']:.1f} s")
    if singles:
        lines.append(f"one by one: smallest passing {singles['winner'] or 'none'}, wall {singles['wall_s']:.1f} s in all "
                     f"({search['wall_s'] / singles['wall_s']:.2f}x for the search)")
    return "\n".join(lines) + f"\n\nreproduce: {command}\n"


if __name__ == "__main__":
    main()
