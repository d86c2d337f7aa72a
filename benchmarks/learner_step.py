"""One DQN learner step with subnormal floats kept and flushed to zero, side by side.

Adam's first moment decays geometrically wherever a weight's gradient is zero (a dead ReLU unit's
weights) and passes through float32's subnormal range, where each x86 operation costs about a
hundred cycles. `learners/compute.py` flushes them on a learner's thread. Two DQNLearners (the
same network, seed and minibatches) train for --warm steps, one with subnormals kept and one
flushed, then take windows of --steps steps in turn; prints µs per step (median [min-max] of the
windows) and the share of subnormal first moments in the kept learner's Adam state.

    python benchmarks/learner_step.py --net 256x256 --batch 64

Random CartPole-shaped rows (4 floats, 2 actions, 3-step horizons), one torch thread. Not part of
the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from qdistill.learners.batch import TransitionBatch
from qdistill.learners.configs import DQNConfig
from qdistill.learners.dqn import DQNLearner


def batches(size: int, count: int, seed: int) -> list[TransitionBatch]:
    rng = np.random.default_rng(seed)
    return [TransitionBatch(
        observations=rng.normal(size=(size, 4)).astype(np.float32), actions=rng.integers(0, 2, size),
        rewards=np.ones(size, np.float32), next_observations=rng.normal(size=(size, 4)).astype(np.float32),
        terminations=rng.random(size) < 0.05, truncations=np.zeros(size, bool), teacher_q=np.zeros((size, 2), np.float32),
        label_version=np.zeros(size, np.int64), behaviour=np.zeros(size, np.int8), actor_id=np.zeros(size, np.int32),
        task=np.zeros(size, np.int16), horizon=np.full(size, 3, np.int8)) for _ in range(count)]


def steps(learner: DQNLearner, data: list[TransitionBatch], n: int, flush: bool) -> float:
    """µs per step over n steps, subnormals flushed or kept on this thread."""
    torch.set_flush_denormal(flush)
    start = time.perf_counter()
    for i in range(n):
        learner.step(data[(learner.steps + i) % len(data)])
    return (time.perf_counter() - start) / n * 1e6


def subnormal_share(learner: DQNLearner) -> float:
    torch.set_flush_denormal(False)  # flushing also reads subnormal inputs as zero
    moments = [s["exp_avg"] for s in learner.optimizer.state.values()]
    tiny = torch.finfo(torch.float32).smallest_normal
    return sum(int(((m != 0) & (m.abs() < tiny)).sum()) for m in moments) / sum(m.numel() for m in moments)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--net", default="256x256")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--warm", type=int, default=3_000, help="steps each learner takes before the clock")
    parser.add_argument("--steps", type=int, default=500, help="steps per window")
    parser.add_argument("--windows", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = batches(args.batch, 64, seed=0)
    config = DQNConfig(net=args.net, lr=2.3e-3, batch_size=args.batch, target_update=128, n_step=3)
    learners = {"kept": DQNLearner(config, [((4,), 2)], seed=0), "flushed": DQNLearner(config, [((4,), 2)], seed=0)}
    for name, learner in learners.items():
        steps(learner, data, args.warm, flush=name == "flushed")
    share = subnormal_share(learners["kept"])
    times: dict[str, list[float]] = {name: [] for name in learners}
    for _ in range(args.windows):
        for name, learner in learners.items():
            times[name].append(steps(learner, data, args.steps, flush=name == "flushed"))
    torch.set_flush_denormal(False)
    print(f"DQN step, {args.net}, batch {args.batch}, one torch thread, after {args.warm:,} steps; "
          f"{args.windows} windows of {args.steps} steps in turn\n")
    print("| subnormals | µs per step, median [min-max] |\n|---|---|")
    for name, t in times.items():
        print(f"| {name} | {statistics.median(t):,.0f} [{min(t):,.0f}-{max(t):,.0f}] |")
    ratio = statistics.median(times["flushed"]) / statistics.median(times["kept"])
    print(f"\nflushed / kept: {ratio:.2f}x; subnormal first moments in the kept learner's Adam state: {share:.0%}")
    print(f"\nreproduce: python benchmarks/learner_step.py --net {args.net} --batch {args.batch} --warm {args.warm} "
          f"--steps {args.steps} --windows {args.windows}")


if __name__ == "__main__":
    main()
