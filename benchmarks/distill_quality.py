"""Distillation quality: loss × behaviour online, against the offline baseline, side by side.

    python benchmarks/distill_quality.py --env CartPole-v1 --teacher T.pt --samples 50000
    python benchmarks/distill_quality.py --env LunarLander-v3 --teacher T.pt --students 64x64 --samples 200000

Every row gets the same number of teacher-labelled samples: online runs stop after that many env
steps (each labelled once as it is collected), the offline baseline labels that many
teacher-visited states once and fits them for --epochs passes. Each row is its own `qdistill run`
process, one after the other; returns are greedy means over 20 held-out episodes of the best
checkpoint. Without --teacher, a teacher is trained first with `qdistill train-teacher`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CLI = [sys.executable, "-m", "qdistill.cluster.cli"]


def qdistill_run(args: list[str], out: Path) -> dict[str, object]:
    subprocess.run([*CLI, "run", *args, "--out", str(out), "--quiet"], check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--teacher", help="teacher checkpoint (default: train one)")
    parser.add_argument("--students", default="16x16")
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--losses", default="mse,kl,nll")
    parser.add_argument("--behaviours", default="teacher,mixed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        teacher = args.teacher
        if teacher is None:
            subprocess.run([*CLI, "train-teacher", "--env", args.env, "--out", f"{tmp}/teacher", "--quiet"],
                           check=True, stdout=subprocess.DEVNULL)
            teacher = f"{tmp}/teacher/checkpoints/teacher_best.pt"
        common = ["--env", args.env, "--teacher", teacher, "--students", args.students, "--seed", str(args.seed)]
        configs = [("online", loss, b) for loss in args.losses.split(",") for b in args.behaviours.split(",")]
        configs += [("offline", loss, "teacher") for loss in args.losses.split(",")]
        rows = []
        header = (f"{'mode':<8} {'loss':<4} {'behaviour':<9} {'samples':>8} {'student return':>16} "
                  f"{'% teacher':>9} {'agreement':>9} {'wall s':>7}")
        print(f"{args.env}, students {args.students}, teacher {teacher}")
        print(header)
        for i, (mode, loss, behaviour) in enumerate(configs):
            extra = (["--mode", "offline", "--samples", str(args.samples), "--epochs", str(args.epochs)]
                     if mode == "offline" else ["--steps", str(args.samples), "--no-target", "--behaviour", behaviour])
            summary = qdistill_run([*common, "--loss", loss, *extra], Path(tmp) / f"run{i}")
            for name, s in summary["students"].items():
                row = {"mode": mode, "loss": loss, "behaviour": behaviour, "student": name,
                       "samples": summary["env_steps"], "return_mean": s["eval_return_mean"],
                       "return_std": s["eval_return_std"], "pct_of_teacher": s["pct_of_teacher"],
                       "agreement": s["agreement"], "distill_wall_s": summary["distill_wall_s"],
                       "teacher_return": summary["teacher"]["eval_return_mean"]}
                rows.append(row)
                print(f"{mode:<8} {loss:<4} {behaviour:<9} {row['samples']:>8,} "
                      f"{row['return_mean']:>8.1f} ± {row['return_std']:<5.1f} {row['pct_of_teacher']:>9.1f} "
                      f"{row['agreement']:>9.3f} {row['distill_wall_s']:>7.1f}", flush=True)
        print(f"teacher greedy return {rows[0]['teacher_return']:.1f} (same held-out episodes)")
    print(f"\nreproduce: python benchmarks/distill_quality.py --env {args.env} --teacher TEACHER.pt "
          f"--students {args.students} --samples {args.samples} --epochs {args.epochs}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
