"""A teacher learning in the run vs train-teacher-then-distill, side by side in one run, from nothing:
wall-clock (Ray start-up included) and env steps (teacher's and students' together) until teacher
and student both reach the env's reward threshold, and how stale the students' labels were with
label refresh on and off. "own labels": the share of trained-on rows labelled by the learning
teacher's own step on them; "relabelled": the share relabelled by the learner's copy of the teacher.

    python benchmarks/online_teacher.py --env CartPole-v1 --seeds 3
    python benchmarks/online_teacher.py --env MinAtar/Breakout-v1 --target-return 10 --seeds 5 --no-drift

Arms, each seed in turn (interleaved, so machine noise falls on both):
  sequential   qdistill run --env ENV                        (trains a teacher to the threshold, then distills)
  learning     qdistill run --env ENV --teacher-learns       (teacher and students learn together)
  no-refresh   qdistill run --env ENV --teacher-learns --refresh off --steps S --no-target
               (labels never refreshed: how far they drift and what the student loses; S = the
               learning arm's median env steps)
Not part of the test suite.
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

ARMS = {"sequential": [], "learning": ["--teacher-learns"]}


def run_once(env: str, seed: int, extra: list[str]) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "qdistill.cluster.cli", "run", "--env", env, "--seed", str(seed),
               "--out", str(out), "--quiet", *extra]
        t0 = time.monotonic()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.monotonic() - t0
        summary = json.loads((out / "summary.json").read_text())
        teacher_phase = out / "teacher" / "summary.json"  # sequential: the teacher's own env steps
        teacher = json.loads(teacher_phase.read_text()) if teacher_phase.is_file() else None
        env_steps = summary["env_steps"] + (teacher["env_steps"] if teacher else 0)
        tracking = _tracking([json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()],
                             summary["target_return"]) if not teacher else None
    student = next(iter(summary["students"].values()))
    labels = summary["labels"]
    # sequential: the distillation phase after the teacher reached the threshold (the most that
    # learning together could save, were its teacher to learn exactly as fast)
    phase = round(summary["wall_s"] - teacher["wall_s"], 2) if teacher else None
    return {"seed": seed, "wall_s": round(wall, 1), "env_steps": env_steps, "distill_phase_s": phase,
            "teacher": summary["teacher"]["eval_return_mean"], "student": student["eval_return_mean"],
            "stop": summary["stop_reason"], "p95_sampled": labels.get("staleness_p95_sampled"),
            "p95_used": labels.get("staleness_p95_used"), "relabelled": labels.get("relabelled_fraction"),
            "own": labels.get("labels/from_teacher_step", 0) / labels["sampled"] if labels.get("sampled") else 0.0,
            "phase_share": round(phase / wall, 3) if phase is not None else None, "tracking": tracking,
            "loop_s": summary.get("loop_s"), "students_worker_s": summary.get("students_worker_s")}


def _tracking(records: list[dict], target: float | None) -> float | None:
    """How closely the student followed the learning teacher: the median of student/teacher return
    over the run's evaluations from the first at which the teacher reached half its target on."""
    evals = [r for r in records if "eval/return/teacher" in r]
    student = next((k for r in evals for k in r if k.startswith("eval/return/") and k != "eval/return/teacher"), None)
    if target is None or student is None:
        return None
    half = next((i for i, r in enumerate(evals) if r["eval/return/teacher"] >= target / 2), None)
    ratios = [r[student] / r["eval/return/teacher"] for r in evals[half:] if r["eval/return/teacher"] > 0] \
        if half is not None else []
    return round(statistics.median(ratios), 3) if ratios else None


def _loop_shares(rows: list[dict]) -> dict[str, float]:
    """Each loop phase's median share of the loop's whole time (the sum of its top-level phases), and
    the students' steps on their worker thread beside the loop (a learning teacher's run) against it."""
    shares = []
    for r in (r for r in rows if r.get("loop_s")):
        whole = sum(x for p, x in r["loop_s"].items() if "/" not in p)
        beside = {"students on their thread (beside)": r["students_worker_s"]} if r.get("students_worker_s") else {}
        shares.append({k: v / whole for k, v in {**r["loop_s"], **beside}.items()})
    return {k: statistics.median(s.get(k, 0.0) for s in shares) for k in (shares[0] if shares else {})}


def _fmt(v: object) -> str:
    return "-" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed … first-seed+seeds-1")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--no-drift", action="store_true", help="skip the no-refresh arm")
    parser.add_argument("--target-return", type=float,
                        help="the return teacher and student must reach (default: the env's reward threshold; "
                             "MinAtar has none)")
    parser.add_argument("--students", help="the students of both arms (default: the env's preset's)")
    parser.add_argument("--student-every", type=int, help="the learning arm's --student-every (default: its default, 1)")
    args = parser.parse_args()
    students = ["--students", args.students] if args.students else []
    given = (["--target-return", str(args.target_return)] if args.target_return is not None else []) + students
    learning = ["--student-every", str(args.student_every)] if args.student_every else []
    rows: dict[str, list[dict]] = {arm: [] for arm in [*ARMS, *([] if args.no_drift else ["no-refresh"])]}
    header = f"{'arm':<11} {'seed':>4} {'wall s':>7} {'env steps':>10} {'teacher':>8} {'student':>8} " \
             f"{'stop':>7} {'phase 2 s':>9} {'share':>6} {'tracking':>8} {'p95 lag sampled':>15} {'p95 lag used':>12} {'relabelled':>10} {'own labels':>10}"
    goal = f"return {args.target_return:g}" if args.target_return is not None else "the reward threshold"
    who = args.students or "the preset's student"
    print(f"{args.env}: from nothing until teacher and {who} reach {goal}\n{header}")

    def show(arm: str, r: dict) -> None:
        print(f"{arm:<11} {r['seed']:>4} {r['wall_s']:>7.1f} {r['env_steps']:>10,} {r['teacher']:>8.1f} "
              f"{r['student']:>8.1f} {r['stop']:>7} {_fmt(r['distill_phase_s']):>9} {_fmt(r['phase_share']):>6} "
              f"{_fmt(r['tracking']):>8} {_fmt(r['p95_sampled']):>15} {_fmt(r['p95_used']):>12} "
              f"{_fmt(r['relabelled']):>10} {_fmt(r['own']):>10}", flush=True)
        if args.json:  # the rows so far, should the run be cut short
            Path(args.json).write_text(json.dumps({"rows": rows, "partial": True}, indent=2) + "\n")

    seeds = range(args.first_seed, args.first_seed + args.seeds)
    for seed in seeds:
        for arm, extra in ARMS.items():
            rows[arm].append(run_once(args.env, seed, [*extra, *given, *(learning if arm == "learning" else [])]))
            show(arm, rows[arm][-1])
    steps = int(statistics.median(r["env_steps"] for r in rows["learning"]))
    for seed in [] if args.no_drift else seeds:
        rows["no-refresh"].append(run_once(args.env, seed, ["--teacher-learns", "--refresh", "off", "--steps",
                                                            str(steps), "--no-target", *students, *learning]))
        show("no-refresh", rows["no-refresh"][-1])
    print()
    med = {arm: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "env_steps", "teacher", "student")}
           for arm, rs in rows.items()}
    for arm, m in med.items():
        reached = sum(r["stop"] == "target" for r in rows[arm])
        print(f"{arm:<11} {'med':>4} {m['wall_s']:>7.1f} {m['env_steps']:>10,.0f} {m['teacher']:>8.1f} "
              f"{m['student']:>8.1f} {f'{reached}/{len(rows[arm])}':>7}")
    ratio = med["learning"]["wall_s"] / med["sequential"]["wall_s"]
    bound = statistics.median((r["wall_s"] - r["distill_phase_s"]) / r["wall_s"] for r in rows["sequential"])
    print(f"\nlearning together / train-then-distill, median wall: {ratio:.2f}x (goal <= 0.7x)")
    per_step = {arm: statistics.median(r["wall_s"] / r["env_steps"] * 1e3 for r in rows[arm]) for arm in ARMS}
    print(f"wall per env step, median: learning together {per_step['learning']:.3f} ms, train-then-distill "
          f"{per_step['sequential']:.3f} ms ({per_step['learning'] / per_step['sequential']:.2f}x; the rest of the "
          "ratio is the env steps each arm's teacher took to the target)")
    print(f"train-then-distill without its distillation phase / with it, median: {bound:.2f}x "
          "(learning together with free students and a teacher learning as fast as alone)")
    share = statistics.median(r["phase_share"] for r in rows["sequential"])
    tracked = [r["tracking"] for r in rows["learning"] if r["tracking"] is not None]
    print(f"distillation phase's share of train-then-distill, median: {share:.2f} (the 0.7x goal holds where >= 0.40)")
    print(f"student/teacher return over the learning arm's evaluations once its teacher reached half the target, "
          f"median over seeds: {statistics.median(tracked):.2f}" if tracked else "tracking: no evaluation past half the target")
    loop = _loop_shares(rows["learning"])
    print("where the learning arm's run loop spent its time, median share of the loop's wall: "
          + ", ".join(f"{k} {v:.2f}" for k, v in loop.items()))
    print(f"reproduce: python benchmarks/online_teacher.py --env {args.env} --seeds {args.seeds}"
          + (f" --first-seed {args.first_seed}" if args.first_seed else "")
          + "".join(f" {a}" for a in [*given, *learning])
          + (" --no-drift" if args.no_drift else ""))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "median": med, "ratio": ratio, "bound": bound,
                                                "per_env_step_ms": per_step, "phase_share": share, "tracking": tracked, "loop_shares": loop}, indent=2) + "\n")


if __name__ == "__main__":
    main()
