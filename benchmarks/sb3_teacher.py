"""A Stable-Baselines3 DQN as the teacher: SB3 trains a DQN on CartPole-v1 with RL Baselines3 Zoo's
hyperparameters, in chunks until its return reaches the env's threshold greedily and with 5% random
actions (or a cap), saves it, and `qdistill run --teacher sb3:ZIP --students 16x16` distills it into a 16x16 student.

    python benchmarks/sb3_teacher.py --json benchmarks/results/sb3_cartpole.json

The teacher's and student's greedy returns are the run's own (summary.json: its evaluator's final
episodes), the same figures as for a teacher qdistill trains. Needs the sb3 extra
(`pip install -e '.[sb3]'`) to train the teacher; the run itself reads the zip without SB3.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import os
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

ENV = "CartPole-v1"
# RL Baselines3 Zoo, hyperparams/dqn.yml, CartPole-v1 (n_timesteps 5e4)
ZOO = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1_000, gamma=0.99,
           target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
           exploration_final_eps=0.04, policy_kwargs={"net_arch": [256, 256]})
ZOO_STEPS = 50_000
NOISE = 0.05  # a run's behaviour: the teacher acts, a random action with probability 0.05


def sb3_return(model, episodes: int, seed: int, noise: float = 0.0) -> tuple[float, float]:
    """Mean and std of SB3's own greedy (deterministic) policy over `episodes` seeded episodes,
    a random action instead with probability `noise`."""
    env = gym.make(ENV)
    rng = np.random.default_rng(seed)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            action = model.predict(obs, deterministic=True)[0] if rng.random() >= noise else rng.integers(2)
            obs, reward, terminated, truncated, _ = env.step(int(action))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns)), float(np.std(returns))


def evaluate(model, args: argparse.Namespace) -> dict[str, float]:
    seed = 10_000 + args.seed * 1_000
    (mean, std), (noisy, noisy_std) = (sb3_return(model, args.episodes, seed, noise) for noise in (0.0, NOISE))
    return {"steps": model.num_timesteps, "return_mean": mean, "return_std": std,
            "noisy_return_mean": noisy, "noisy_return_std": noisy_std}


def train_teacher(zip_path: Path, args: argparse.Namespace) -> dict[str, object]:
    """Zoo's 5e4 steps, then more in chunks until its return reaches the target both greedily and
    with the run's 5% random actions, or the cap; the zip holds the best-evaluated model.

    Why with noise too: a run's states come from the teacher acting with 5% random actions, and a
    teacher that plays 500 only when nothing perturbs it (Zoo's DQN swings between such policies
    and robust ones as it trains) cannot show a student how to recover from its slips either: one
    (seed 0, 111,616 steps) played 500 ± 0 greedily and 440 with noise, and its 16x16 students
    finished at 437-497 in seven runs, three of them below 475."""
    import torch
    from stable_baselines3 import DQN

    torch.set_num_threads(args.threads)
    model = DQN("MlpPolicy", ENV, seed=args.seed, device="cpu", **ZOO)
    t0 = time.monotonic()
    evals: list[dict[str, float]] = []
    best = {"return_mean": -np.inf}
    chunk = ZOO_STEPS
    while True:
        model.learn(chunk, reset_num_timesteps=False)
        evals.append(evaluate(model, args))
        score = min(evals[-1]["return_mean"], evals[-1]["noisy_return_mean"])
        print(f"  SB3 DQN after {model.num_timesteps:,} steps: greedy return {evals[-1]['return_mean']:.1f} ± "
              f"{evals[-1]['return_std']:.1f}, with noise {evals[-1]['noisy_return_mean']:.1f}", flush=True)
        if score > min(best["return_mean"], best.get("noisy_return_mean", -np.inf)):
            best = evals[-1]
            model.save(zip_path)
        if score >= args.target or model.num_timesteps + args.chunk > args.cap:
            break
        chunk = args.chunk
    return {"steps": model.num_timesteps, "train_s": round(time.monotonic() - t0, 1), "best": best,
            "evals": evals, "hyperparameters": {**ZOO, "n_timesteps": ZOO_STEPS}}


def distill(zip_path: Path, out: Path, seed: int, steps: int) -> dict[str, object]:
    budget = ["--steps", str(steps), "--no-target"] if steps else []  # 0: stop at the reward threshold
    cmd = [sys.executable, "-m", "qdistill.cluster.cli", "run", "--env", ENV, "--teacher", f"sb3:{zip_path}",
           "--students", "16x16", "--seed", str(seed), "--out", str(out), "--quiet", *budget]
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    summary = json.loads((out / "summary.json").read_text())
    student, teacher = summary["students"]["16x16"], summary["teacher"]
    return {"seed": seed, "wall_s": round(wall, 1), "env_steps": summary["env_steps"],
            "stop_reason": summary["stop_reason"],
            "teacher": {"net": teacher["net"], "params": teacher["params"], "return_mean": teacher["eval_return_mean"],
                        "return_std": teacher["eval_return_std"], "episodes": teacher["eval_episodes"]},
            "student": {"net": "16x16", "params": student["params"], "return_mean": student["eval_return_mean"],
                        "return_std": student["eval_return_std"], "agreement": student["agreement"]}}


def reused(zip_path: Path, args: argparse.Namespace) -> dict[str, object]:
    """--zip: a teacher saved earlier, evaluated by SB3 as a trained one is."""
    from stable_baselines3 import DQN

    return {"zip": str(zip_path), "best": evaluate(DQN.load(zip_path, device="cpu"), args)}


def print_table(sb3: dict, runs: list[dict], args: argparse.Namespace) -> None:
    best, t = sb3["best"], runs[0]["teacher"]
    trained = (f"after {best['steps']:,} SB3 steps (trained {sb3['steps']:,} in {sb3['train_s']:.0f} s)"
               if "zip" not in sb3 else f"given: {sb3['zip']}")
    print(f"\n{ENV}: a Stable-Baselines3 DQN teacher distilled by qdistill into a 16x16 student\n")
    print("| policy | network | params | greedy return | notes |")
    print("|---|---|---:|---:|---|")
    print(f"| SB3 DQN, SB3's own evaluation | {t['net']} | {t['params']:,} | {best['return_mean']:.1f} ± "
          f"{best['return_std']:.1f} | {args.episodes} episodes, {trained}; {best['noisy_return_mean']:.1f} ± "
          f"{best['noisy_return_std']:.1f} with 5% random actions |")
    for run in runs:
        t, s = run["teacher"], run["student"]
        print(f"| teacher sb3:ZIP, run seed {run['seed']} | {t['net']} | {t['params']:,} | {t['return_mean']:.1f} ± "
              f"{t['return_std']:.1f} | the run's final evaluation, {t['episodes']} episodes |")
        print(f"| student, run seed {run['seed']} | {s['net']} | {s['params']:,} | {s['return_mean']:.1f} ± "
              f"{s['return_std']:.1f} | agreement {s['agreement']:.1%}; {run['env_steps']:,} env steps, "
              f"{run['wall_s']:.0f} s, stop: {run['stop_reason']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="SB3's seed, and the first run's (0)")
    parser.add_argument("--runs", type=int, default=3, help="qdistill runs, seeds SEED, SEED+1, ... (3)")
    parser.add_argument("--steps", type=int, default=150_000,
                        help="each run's env steps, no early stop (150000); 0: the run's default, which stops "
                             "as soon as one periodic evaluation finds the student at 475")
    parser.add_argument("--target", type=float, default=475.0, help="SB3 teacher's return to reach, greedily and with noise (475)")
    parser.add_argument("--episodes", type=int, default=20, help="greedy episodes per SB3 evaluation (20)")
    parser.add_argument("--chunk", type=int, default=10_000, help="SB3 steps per extra chunk (10000)")
    parser.add_argument("--cap", type=int, default=200_000, help="SB3 steps at most (200000)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads while SB3 trains (1)")
    parser.add_argument("--zip", help="distill this SB3 DQN zip instead of training one")
    parser.add_argument("--keep", help="keep the SB3 zip and the runs here (default: a temporary folder)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp).absolute()
        folder.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("SB3_LOGDIR", str(folder / "sb3-logs"))  # SB3's logger makes a folder, by default in /tmp
        if args.zip:
            zip_path = Path(args.zip).absolute()
            sb3 = reused(zip_path, args)
        else:
            zip_path = folder / "sb3_dqn_cartpole.zip"
            print(f"training an SB3 DQN on {ENV} (RL Baselines3 Zoo hyperparameters, seed {args.seed})", flush=True)
            sb3 = train_teacher(zip_path, args)
        runs = []
        for seed in range(args.seed, args.seed + args.runs):
            print(f"distilling sb3:{zip_path.name} into a 16x16 student (run seed {seed})", flush=True)
            runs.append(distill(zip_path, folder / f"run-{seed}", seed, args.steps))
    print_table(sb3, runs, args)
    print(f"\nreproduce: python benchmarks/sb3_teacher.py --seed {args.seed} --runs {args.runs} --steps {args.steps}"
          + (f" --json {args.json}" if args.json else ""))
    if args.json:
        Path(args.json).write_text(json.dumps({"env": ENV, "steps": args.steps, "sb3": sb3, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
