"""A plain DQN for MinAtar in one process: no Ray, no buffer actors, no evaluator; the yardstick
`benchmarks/minatar_teacher.py` holds `qdistill train-teacher` against.

    python benchmarks/plain_dqn.py --env MinAtar/Breakout-v1 --steps 1000000 --seed 0

The same settings as train-teacher's `MinAtar/*` preset (cluster/config/presets.py) and the same
network (`QNetwork("minatar", ...)`, conv 16 3x3 stride 1 then dense 128): 8 envs in one Gymnasium
vector env, a 100k numpy ring buffer, Double DQN with the Huber loss, Adam 2.5e-4, gamma 0.99, the
gradient norm clipped at 10 (DQNConfig's default), batch 64, one update per 4 transitions once 5,000
are stored, the target network copied every 1,000 updates, epsilon 1 -> 0.01 over the first 100k
env steps. Env steps count transitions (the autoreset step after an episode's end is none), as
train-teacher counts them. At the end: 20 greedy episodes of the final network on train-teacher's
held-out seeds (1,000,000 + 1000 * seed). With --target-return R it also judges a target as
train-teacher does (cluster/driver/evaluation.py), in its own process and wall time: every 25k env
steps 20 greedy episodes (seeds 100,003 * seed + env steps); once their mean reaches R, the held-out
episodes, and it stops when those reach R too. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from qdistill.actors.envs import make_vector_env
from qdistill.actors.evaluate import evaluate
from qdistill.learners.networks import QNetwork, greedy_actions

N_ENVS, CAPACITY, LEARNING_STARTS, BATCH, LR, GAMMA, MAX_GRAD_NORM = 8, 100_000, 5_000, 64, 2.5e-4, 0.99, 10.0
EPS_START, EPS_END, EPS_STEPS, TARGET_UPDATE, UPDATES_PER_TRANSITION = 1.0, 0.01, 100_000, 1_000, 0.25
FINAL_SEED = 1_000_000  # train-teacher's final evaluation seeds (cluster/driver/evaluation.py)
EVAL_EVERY, EVAL_EPISODES = 25_000, 20  # train-teacher's MinAtar preset and default


def train(env_id: str, steps: int, seed: int, *, target_return: float | None = None,
          log_every: int = 50_000) -> dict[str, object]:
    """Train for `steps` env steps (transitions), or until the greedy return reaches `target_return` as
    train-teacher judges it; the wall time, steps, updates and greedy return."""
    t0 = time.monotonic()
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env = make_vector_env(env_id, N_ENVS)
    shape, n_actions = env.single_observation_space.shape, int(env.single_action_space.n)
    q = QNetwork("minatar", shape, n_actions)
    q_target = copy.deepcopy(q).requires_grad_(False)
    optimizer = torch.optim.Adam(q.parameters(), lr=LR)
    obs_buf, next_buf = np.zeros((2, CAPACITY, *shape), np.uint8)
    act_buf = np.zeros(CAPACITY, np.int64)
    rew_buf, term_buf = np.zeros((2, CAPACITY), np.float32)
    size = pos = env_steps = updates = 0
    owed, losses, returns = 0.0, deque(maxlen=100), deque(maxlen=20)
    running, resetting = np.zeros(N_ENVS), np.zeros(N_ENVS, bool)
    obs, _ = env.reset(seed=seed)
    next_log, next_eval, best_return, reached = log_every, max(EVAL_EVERY, LEARNING_STARTS), -np.inf, False
    while env_steps < steps and not reached:
        eps = max(EPS_END, EPS_START - (EPS_START - EPS_END) * env_steps / EPS_STEPS)
        actions = greedy_actions(q, obs)
        explore = rng.random(N_ENVS) < eps
        actions[explore] = rng.integers(n_actions, size=int(explore.sum()))
        next_obs, rewards, terms, truncs, _ = env.step(actions)
        keep = ~resetting  # a sub-env's autoreset step: its "transition" crosses two episodes
        idx = (pos + np.arange(int(keep.sum()))) % CAPACITY
        obs_buf[idx], next_buf[idx], act_buf[idx] = obs[keep], next_obs[keep], actions[keep]
        rew_buf[idx], term_buf[idx] = rewards[keep], terms[keep]
        pos, size, env_steps = (pos + len(idx)) % CAPACITY, min(size + len(idx), CAPACITY), env_steps + len(idx)
        running += np.where(keep, rewards, 0.0)
        resetting = terms | truncs
        returns.extend(running[resetting & keep])
        running[resetting] = 0.0
        obs = next_obs
        if size >= LEARNING_STARTS:  # then one update per 4 transitions, none owed for the ones before
            owed += UPDATES_PER_TRANSITION * len(idx)
        while owed >= 1.0:
            owed -= 1.0
            b = rng.integers(size, size=BATCH)
            o, o2 = torch.from_numpy(obs_buf[b]), torch.from_numpy(next_buf[b])
            q_taken = q(o).gather(1, torch.from_numpy(act_buf[b])[:, None]).squeeze(1)
            with torch.no_grad():  # Double DQN: the online net picks, the target net values
                best = q(o2).argmax(1, keepdim=True)
                target = torch.from_numpy(rew_buf[b]) + GAMMA * (1 - torch.from_numpy(term_buf[b])) * \
                    q_target(o2).gather(1, best).squeeze(1)
            loss = F.smooth_l1_loss(q_taken, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(q.parameters(), MAX_GRAD_NORM)
            optimizer.step()
            updates += 1
            losses.append(loss.item())
            if updates % TARGET_UPDATE == 0:
                q_target.load_state_dict(q.state_dict())
        if env_steps >= next_log:
            next_log += log_every
            print(f"[plain_dqn {env_id} seed {seed}] {env_steps:,} env steps, {updates:,} updates, eps {eps:.3f}, "
                  f"return (last 20) {np.mean(returns) if returns else float('nan'):.2f}, "
                  f"loss {np.mean(losses) if losses else float('nan'):.4f}, "
                  f"{env_steps / (time.monotonic() - t0):,.0f} steps/s", file=sys.stderr, flush=True)
        if target_return is not None and env_steps >= next_eval:  # a new best at the target, then held out
            next_eval += EVAL_EVERY
            mean = evaluate(env_id, lambda o: greedy_actions(q, o), episodes=EVAL_EPISODES,
                            seed=seed * 100_003 + env_steps).mean
            reached = mean > best_return and mean >= target_return and evaluate(
                env_id, lambda o: greedy_actions(q, o), episodes=EVAL_EPISODES,
                seed=FINAL_SEED + 1000 * seed).mean >= target_return
            best_return = max(best_return, mean)
            print(f"[plain_dqn {env_id} seed {seed}] {env_steps:,} env steps: greedy return {mean:.2f}"
                  + (" — target reached" if reached else ""), file=sys.stderr, flush=True)
    env.close()
    train_s = time.monotonic() - t0
    result = evaluate(env_id, lambda o: greedy_actions(q, o), episodes=20, seed=FINAL_SEED + 1000 * seed)
    return {"env": env_id, "seed": seed, "wall_s": round(time.monotonic() - t0, 2), "train_s": round(train_s, 2),
            "env_steps": env_steps, "updates": updates, "return_mean": result.mean, "return_std": result.std,
            "eval_episodes": result.episodes, "target_return": target_return, "reached": reached}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="MinAtar/Breakout-v1", help="a MinAtar env id (MinAtar/Breakout-v1)")
    parser.add_argument("--steps", type=int, default=1_000_000, help="env steps, transitions (1000000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target-return", type=float, help="stop once the greedy return reaches this, judged as "
                                                              "train-teacher judges it")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()
    r = train(args.env, args.steps, args.seed, target_return=args.target_return)
    print(f"{r['env']} seed {r['seed']}: {r['wall_s']:.1f} s wall ({r['train_s']:.1f} s training), "
          f"{r['env_steps']:,} env steps, {r['updates']:,} updates, greedy return {r['return_mean']:.2f} ± "
          f"{r['return_std']:.2f} ({r['eval_episodes']} episodes)")
    print(f"reproduce: python benchmarks/plain_dqn.py --env {args.env} --steps {args.steps} --seed {args.seed}"
          + (f" --target-return {args.target_return:g}" if args.target_return is not None else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2) + "\n")


if __name__ == "__main__":
    main()
