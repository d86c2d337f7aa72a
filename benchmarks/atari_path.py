"""Atari end to end on a CPU, on a small budget: Stable-Baselines3 trains a DQN `CnnPolicy`
(NatureCNN) on ALE/Pong-v5 preprocessed as qdistill's Atari env (84x84 greyscale, 4 frames
skipped with max pooling, 4 stacked, channels first), briefly; `qdistill run --teacher sb3:ZIP`
then distills it into a small conv student on the Ray-shard buffer. The point is the path (frames
as uint8 from the env through the buffer to the learner; the SB3 model's Q-values as labels), not
the score: a Pong teacher trained this briefly loses every point.

    python benchmarks/atari_path.py --sb3-steps 20000 --steps 20000 --json benchmarks/results/atari_path.json

Prints SB3's training time, the run's wall time, env steps and frames per second (4 frames per
agent step), and the bytes per buffer row (summary.json); then what the agreement rests on: on
2,000 states the teacher visits playing greedily, how often it picks its most frequent action, the
gap between its best and second-best Q-values, and the student's choices beside them (a teacher
this brief is nearly indifferent between actions, and its argmax nearly constant). Needs the atari
and sb3 extras. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ENV = "ALE/Pong-v5"
STUDENT = "c16k8s4-c32k4s2-256"  # Mnih et al. 2013's network: about a third of the Nature DQN's parameters


def train_sb3(path: Path, steps: int, seed: int) -> float:
    """An SB3 DQN CnnPolicy on qdistill's Pong frames, `steps` env steps; seconds taken."""
    import gymnasium as gym
    import torch
    from stable_baselines3 import DQN

    from qdistill.actors import pixels

    torch.set_num_threads(1)
    pixels.register(ENV)
    env = pixels.atari_wrappers(gym.make(ENV, frameskip=1, repeat_action_probability=pixels.ATARI_STICKY))
    start = time.monotonic()
    model = DQN("CnnPolicy", env, buffer_size=min(steps, 50_000), learning_starts=min(5_000, steps // 4),
                batch_size=32, train_freq=4, target_update_interval=1_000, exploration_fraction=0.5,
                optimize_memory_usage=False, seed=seed, device="cpu", verbose=0)
    model.learn(steps)
    model.save(path)
    return time.monotonic() - start


def argmax_facts(run: Path, env: str, student: str, seed: int, num_states: int = 2_000) -> dict[str, float]:
    """Teacher and student greedy actions on states the teacher visits, and the teacher's margins."""
    from qdistill.actors.evaluate import visited_states
    from qdistill.learners import checkpoint

    teacher = checkpoint.load(run / "checkpoints" / "teacher.pt").policy()
    pupil = checkpoint.load(run / "checkpoints" / f"student-{student}-best.pt").policy()
    states = visited_states(env, teacher.act, num_states=num_states, seed=3_000_000 + seed)
    tq, sq = teacher.q_values(states), pupil.q_values(states)
    ta, sa = tq.argmax(1), sq.argmax(1)
    top2 = np.sort(tq, axis=1)[:, -2:]
    gap = top2[:, 1] - top2[:, 0]
    spread = tq.max(1) - tq.min(1)
    wide = gap > np.median(gap)
    return {"states": num_states, "teacher_top_action": int(np.bincount(ta).argmax()),
            "teacher_top_action_share": float(np.bincount(ta).max() / num_states),
            "student_top_action": int(np.bincount(sa).argmax()),
            "student_top_action_share": float(np.bincount(sa).max() / num_states),
            "teacher_gap_median": float(np.median(gap)), "teacher_spread_median": float(np.median(spread)),
            "teacher_q_abs_median": float(np.median(np.abs(tq))), "agreement": float((ta == sa).mean()),
            "agreement_wide_gap": float((ta[wide] == sa[wide]).mean()) if wide.any() else float("nan"),
            "student_picks_teacher_second": float((sa == np.argsort(tq, axis=1)[:, -2]).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sb3-steps", type=int, default=20_000, help="SB3's env steps (agent steps)")
    parser.add_argument("--steps", type=int, default=20_000, help="the run's env steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--keep", help="keep the SB3 model and the run directory here (default: a temporary folder)")
    parser.add_argument("--sb3-model", help="a model an earlier --keep kept: no SB3 training this time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp).absolute()
        folder.mkdir(parents=True, exist_ok=True)
        zip_path = Path(args.sb3_model).absolute() if args.sb3_model else folder / "pong_dqn.zip"
        sb3_s = None if args.sb3_model else train_sb3(zip_path, args.sb3_steps, args.seed)
        out = folder / "run"
        cmd = ["qdistill", "run", "--env", ENV, "--teacher", f"sb3:{zip_path}", "--students", STUDENT,
               "--steps", str(args.steps), "--actors", "1", "--buffer-capacity", "20000", "--no-target",
               "--seed", str(args.seed), "--out", str(out)]
        start = time.monotonic()
        subprocess.run(cmd, check=True, stdout=sys.stderr)
        wall = time.monotonic() - start
        summary = json.loads((out / "summary.json").read_text())
        facts = argmax_facts(out, ENV, STUDENT, args.seed)
    student = summary["students"][STUDENT]
    figures = {
        "sb3_steps": args.sb3_steps, "sb3_train_s": sb3_s and round(sb3_s, 1), "run_wall_s": round(wall, 1),
        "distill_wall_s": summary["distill_wall_s"], "env_steps": summary["env_steps"],
        "frames_per_s": round(4 * summary["env_steps"] / summary["distill_wall_s"], 1),
        "learner_steps": summary["learner_steps"], "bytes_per_row": summary["buffer"]["bytes_per_row"],
        "teacher": {k: summary["teacher"][k] for k in ("net", "params", "eval_return_mean")},
        "student": {"net": STUDENT, "params": student["params"], "return": student["eval_return_mean"],
                    "agreement": student["agreement"]},
        "argmax": facts,
    }
    rows = [("SB3 DQN CnnPolicy training", f"{args.sb3_steps:,} agent steps in {sb3_s:.0f} s" if sb3_s else
             f"none: {zip_path}"),
            ("qdistill run (whole command)", f"{wall:.0f} s"),
            ("distillation", f"{summary['distill_wall_s']:.0f} s, {summary['env_steps']:,} agent steps, "
                             f"{figures['frames_per_s']:,.0f} frames/s, {summary['learner_steps']:,} learner steps"),
            ("bytes per buffer row", f"{figures['bytes_per_row']:,} (one uint8 4x84x84 frame stack, no next one)"),
            ("teacher", f"{summary['teacher']['net']}, {summary['teacher']['params']:,} params, "
                        f"return {summary['teacher']['eval_return_mean']:.1f}"),
            (f"student {STUDENT}", f"{student['params']:,} params, return {student['eval_return_mean']:.1f}, "
                                   f"agreement {student['agreement']:.3f}"),
            ("on states the teacher visits", f"{facts['states']:,}: the teacher picks action "
                                             f"{facts['teacher_top_action']} on {facts['teacher_top_action_share']:.0%}, "
                                             f"the student action {facts['student_top_action']} on "
                                             f"{facts['student_top_action_share']:.0%}; agreement {facts['agreement']:.3f}"),
            ("teacher's Q-values there", f"median gap best - second {facts['teacher_gap_median']:.2g}, median "
                                         f"spread {facts['teacher_spread_median']:.2g}, median |Q| "
                                         f"{facts['teacher_q_abs_median']:.2g}; the student picks the teacher's "
                                         f"second choice on {facts['student_picks_teacher_second']:.0%}; agreement "
                                         f"where the gap is above its median {facts['agreement_wide_gap']:.3f}")]
    print("| what | figure |\n|---|---|")
    print("\n".join(f"| {a} | {b} |" for a, b in rows))
    print(f"\nreproduce: python benchmarks/atari_path.py --sb3-steps {args.sb3_steps} --steps {args.steps} "
          f"--seed {args.seed}" + (f" --sb3-model {args.sb3_model}" if args.sb3_model else ""))
    if args.keep:
        print(f"kept: {zip_path} and {out}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
