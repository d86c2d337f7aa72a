"""qdistill's DQN teacher against Stable-Baselines3's DQN with RL Baselines3 Zoo's hyperparameters,
side by side and interleaved: for each seed, `qdistill train-teacher --env E --seed S` (the whole
command, Ray start-up included, stopping at the env's reward threshold as its preset says), then
SB3's DQN on the same env and seed, judged the same way: every EVAL env steps (the qdistill
config's cadence, the preset's or --config's: every arm must share it) a greedy mean over 20 held-out episodes; at the threshold, 20 further held-out episodes
must confirm it (as `train-teacher`'s final evaluation must), else training goes on; Zoo's budget
ends it. SB3's training time leaves its evaluations out; qdistill's wall keeps everything in.

    python -m benchmarks.teacher_vs_sb3 --env CartPole-v1 --seeds 0 1 2 3 4     # from the repository root

--also-config FILE (repeatable) adds a qdistill arm with that train-teacher config file, run in turn
with the others on each seed: a candidate preset measured beside the preset and SB3 in one run.

Prints a table per env (each seed, the medians with their range, the interquartile mean of the env
steps with its interval) and the command; --json keeps the rows. Needs the sb3 extra. Not part of
the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import yaml

from benchmarks.time_to_target import run_once
from qdistill.actors.intervals import iqm_ci

# RL Baselines3 Zoo, hyperparams/dqn.yml: (n_timesteps, DQN's arguments); LunarLander-v3 takes v2's
_NET = {"policy_kwargs": {"net_arch": [256, 256]}}
ZOO: dict[str, tuple[int, dict[str, object]]] = {
    "CartPole-v1": (50_000, dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1_000,
                                 gamma=0.99, target_update_interval=10, train_freq=256, gradient_steps=128,
                                 exploration_fraction=0.16, exploration_final_eps=0.04, **_NET)),
    **{env: (100_000, dict(learning_rate=6.3e-4, batch_size=128, buffer_size=50_000, learning_starts=0, gamma=0.99,
                           target_update_interval=250, train_freq=4, gradient_steps=-1, exploration_fraction=0.12,
                           exploration_final_eps=0.1, **_NET))
       for env in ("Acrobot-v1", "LunarLander-v3")},
}
EPISODES = 20
CONFIRM_SEED = 500_000  # a greedy score at the target is confirmed on EPISODES more, as train-teacher does


def greedy_return(model, env_id: str, seed: int) -> float:
    """SB3's greedy (deterministic) policy: mean return over EPISODES held-out seeded episodes."""
    env, returns = gym.make(env_id), []
    for episode in range(EPISODES):
        obs, _ = env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(int(model.predict(obs, deterministic=True)[0]))
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def sb3_to_target(env_id: str, seed: int, every: int, target: float) -> dict[str, object]:
    """Zoo's DQN trained in one `learn` call (its ε schedule over Zoo's budget), stopped as
    `train-teacher` stops: at the first evaluation at or above `target` whose policy also scores
    it on 20 further held-out episodes."""
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    class UntilTarget(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.last, self.eval_s, self.evals = 0, 0.0, []

        def _on_step(self) -> bool:
            if self.num_timesteps - self.last < every:
                return True
            self.last, t0 = self.num_timesteps, time.monotonic()
            score = greedy_return(self.model, env_id, 10_000 + 1_000 * seed)
            if score >= target:  # confirmed on other seeds, or training goes on
                score = greedy_return(self.model, env_id, CONFIRM_SEED + 1_000 * seed)
            self.evals.append((self.num_timesteps, score))
            self.eval_s += time.monotonic() - t0
            return self.evals[-1][1] < target

    torch.set_num_threads(1)
    budget, hyper = ZOO[env_id]
    callback, t0 = UntilTarget(), time.monotonic()
    model = DQN("MlpPolicy", env_id, seed=seed, device="cpu", **hyper)
    model.learn(budget, callback=callback)
    wall = time.monotonic() - t0
    reached = bool(callback.evals) and callback.evals[-1][1] >= target
    return {"seed": seed, "env_steps": model.num_timesteps, "train_s": round(wall - callback.eval_s, 1),
            "wall_s": round(wall, 1), "return_mean": callback.evals[-1][1] if callback.evals else None,
            "reached": reached}


def eval_every(env_id: str, config: str | None, also: list[str]) -> int:
    """The env steps between evaluations of qdistill's arms (as `qdistill config show-teacher`
    resolves them), which SB3's arm takes too; arms that differ are refused."""
    def resolved(path: str | None) -> int:
        shown = subprocess.run([sys.executable, "-m", "qdistill.cluster.cli", "config", "show-teacher", "--env", env_id,
                                *(["--config", path] if path else [])], capture_output=True, text=True, check=True)
        return int(yaml.safe_load(shown.stdout)["eval_every"])

    cadences = {path or "the preset": resolved(path) for path in (config, *also)}
    if len(set(cadences.values())) > 1:
        raise SystemExit(f"teacher_vs_sb3: the qdistill arms evaluate at different cadences {cadences}: "
                         "expected one eval_every for all, which SB3's arm takes too")
    return next(iter(cadences.values()))


def summarise(rows: list[dict[str, object]], key: str, digits: int) -> str:
    values = [r[key] for r in rows]
    return f"{statistics.median(values):,.{digits}f} [{min(values):,.{digits}f}–{max(values):,.{digits}f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", action="append", choices=sorted(ZOO), help="repeatable (default CartPole-v1)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--config", help="a train-teacher config file for qdistill's side (default: the preset)")
    parser.add_argument("--also-config", action="append", default=[], metavar="FILE",
                        help="another qdistill arm, with this train-teacher config file (repeatable)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    os.environ.setdefault("SB3_LOGDIR", tempfile.mkdtemp(prefix="sb3-logs-"))
    results = {}
    for env_id in args.env or ["CartPole-v1"]:
        target, every = gym.spec(env_id).reward_threshold, eval_every(env_id, args.config, args.also_config)
        ours, sb3, also = [], [], {path: [] for path in args.also_config}
        for seed in args.seeds:  # interleaved: the machine's drift falls on every arm alike
            ours.append(run_once("train-teacher", env_id, seed, ["--config", args.config] if args.config else []))
            for path, rows in also.items():
                rows.append(run_once("train-teacher", env_id, seed, ["--config", path]))
            sb3.append(sb3_to_target(env_id, seed, every, target))
            arms = "; ".join(f"{name} {rows[-1]['env_steps']:,} steps {rows[-1]['wall_s']:.1f} s (reached {rows[-1]['reached']})"
                             for name, rows in (("qdistill", ours), *also.items()))
            print(f"{env_id} seed {seed}: {arms}; SB3 {sb3[-1]['env_steps']:,} steps, trained "
                  f"{sb3[-1]['train_s']:.1f} s (reached {sb3[-1]['reached']})", flush=True)
        results[env_id] = {"target": target, "eval_every": every, "qdistill": ours, "sb3": sb3,
                           **({"also": also} if also else {})}
        print(table(env_id, results[env_id]))
    print("reproduce: python -m benchmarks.teacher_vs_sb3 " + " ".join(sys.argv[1:]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def table(env_id: str, r: dict[str, object]) -> str:
    ours, sb3 = r["qdistill"], r["sb3"]
    lines = [f"\n{env_id}: env steps and time to a greedy {r['target']:g} (20 held-out episodes every "
             f"{r['eval_every']:,} env steps), seeds {', '.join(str(x['seed']) for x in ours)}\n",
             "| runner | env steps, median [min–max] | IQM env steps [95% interval] | time s, median [min–max] | reached |",
             "|---|---|---|---|---|"]
    arms = [("qdistill train-teacher (whole command)", ours, "wall_s"),
            *((f"qdistill train-teacher --config {path}", rows, "wall_s") for path, rows in r.get("also", {}).items()),
            ("SB3 DQN, RL Zoo hyperparameters (training only)", sb3, "train_s")]
    for name, rows, time_key in arms:
        iqm = iqm_ci([x["env_steps"] for x in rows])
        lines.append(f"| {name} | {summarise(rows, 'env_steps', 0)} | {iqm.value:,.0f} [{iqm.low:,.0f}, {iqm.high:,.0f}] "
                     f"| {summarise(rows, time_key, 1)} | {sum(x['reached'] for x in rows)} of {len(rows)} |")
    sb3_s = statistics.median(x["train_s"] for x in sb3)
    lines.append("")
    for name, rows, _ in arms[:-1]:
        ratio = statistics.median(x["wall_s"] for x in rows) / sb3_s
        lines.append(f"{name}: median wall / SB3's median training time {ratio:.2f}x")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
