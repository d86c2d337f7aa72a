"""One learner step two ways, side by side: subnormal floats kept or flushed to zero
(--compare flush), or torch.optim's Adam or the learners' own (--compare optimizer); --also-net
adds arms of other networks (the learners' Adam, flushed) to the same windows.

Flush: Adam's first moment decays geometrically wherever a weight's gradient is zero (a dead ReLU
unit's weights) and passes through float32's subnormal range, where each x86 operation costs about
a hundred cycles. `learners/compute.py` flushes them on a learner's thread. Optimizer:
`learners/optim.py` runs torch's fused Adam kernel without torch.optim around it.

Two learners (--learner dqn: a DQNLearner; distill: a DistillLearner with one student; the same
network, seed and minibatches) train for --warm steps, then take windows of --steps steps in turn;
prints µs per step (median [min-max] of the windows) and, for the flush, the share of subnormal
first moments in the kept learner's Adam state.

    python benchmarks/learner_step.py --net 256x256 --batch 64
    python benchmarks/learner_step.py --compare optimizer --learner distill --net 16x16 --batch 256
    python benchmarks/learner_step.py --compare optimizer --net 256x256 --also-net 128x128 --also-net 64x64

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
from qdistill.learners.configs import DistillConfig, DQNConfig
from qdistill.learners.distill import DistillLearner
from qdistill.learners.dqn import DQNLearner
from qdistill.learners.optim import Adam


def batches(size: int, count: int, seed: int) -> list[TransitionBatch]:
    rng = np.random.default_rng(seed)
    return [TransitionBatch(
        observations=rng.normal(size=(size, 4)).astype(np.float32), actions=rng.integers(0, 2, size),
        rewards=np.ones(size, np.float32), next_observations=rng.normal(size=(size, 4)).astype(np.float32),
        terminations=rng.random(size) < 0.05, truncations=np.zeros(size, bool), teacher_q=np.zeros((size, 2), np.float32),
        label_version=np.zeros(size, np.int64), behaviour=np.zeros(size, np.int8), actor_id=np.zeros(size, np.int32),
        task=np.zeros(size, np.int16), horizon=np.full(size, 3, np.int8)) for _ in range(count)]


class TorchStep:
    """torch.optim.Adam (fused) in place of the learners' Adam, over the same parameters (the
    optimizer comparison)."""

    def __init__(self, adam: Adam) -> None:
        self.torch = torch.optim.Adam(adam.params, lr=adam.lr, fused=True)

    def zero_grad(self) -> None:
        self.torch.zero_grad(set_to_none=True)

    def step(self) -> None:
        self.torch.step()

    def state_dict(self) -> dict[str, object]:
        return self.torch.state_dict()


def learner(kind: str, net: str, batch: int, torch_step: bool) -> DQNLearner | DistillLearner:
    if kind == "dqn":
        made = DQNLearner(DQNConfig(net=net, lr=2.3e-3, batch_size=batch, target_update=128, n_step=3), [((4,), 2)])
        if torch_step:
            made.optimizer = TorchStep(made.optimizer)
        return made
    made = DistillLearner(DistillConfig(students=(net,), batch_size=batch), [((4,), 2)])
    if torch_step:
        made.optimizers = {name: TorchStep(opt) for name, opt in made.optimizers.items()}
    return made


def steps(learner: DQNLearner | DistillLearner, data: list[TransitionBatch], n: int, flush: bool) -> float:
    """µs per step over n steps, subnormals flushed or kept on this thread."""
    torch.set_flush_denormal(flush)
    start = time.perf_counter()
    for i in range(n):
        learner.step(data[(learner.steps + i) % len(data)])
    return (time.perf_counter() - start) / n * 1e6


def subnormal_share(learner: DQNLearner | DistillLearner) -> float:
    torch.set_flush_denormal(False)  # flushing also reads subnormal inputs as zero
    optimizers = [learner.optimizer] if isinstance(learner, DQNLearner) else list(learner.optimizers.values())
    moments = [s["exp_avg"] for opt in optimizers for s in opt.state_dict()["state"].values()]
    tiny = torch.finfo(torch.float32).smallest_normal
    return sum(int(((m != 0) & (m.abs() < tiny)).sum()) for m in moments) / sum(m.numel() for m in moments)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", choices=["flush", "optimizer"], default="flush")
    parser.add_argument("--learner", choices=["dqn", "distill"], default="dqn")
    parser.add_argument("--net", default="256x256")
    parser.add_argument("--also-net", action="append", default=[], metavar="NET",
                        help="another arm: this network with the learners' Adam, flushed (repeatable)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--warm", type=int, default=3_000, help="steps each learner takes before the clock")
    parser.add_argument("--steps", type=int, default=500, help="steps per window")
    parser.add_argument("--windows", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = batches(args.batch, 64, seed=0)
    if args.compare == "flush":  # (arm, flushed, torch's Adam step, network)
        arms = [("subnormals kept", False, False, args.net), ("subnormals flushed", True, False, args.net)]
    else:
        arms = [("torch.optim.Adam (fused)", True, True, args.net), ("learners.optim.Adam", True, False, args.net)]
    arms += [(f"{net}, learners.optim.Adam, flushed", True, False, net) for net in args.also_net]
    learners = {name: (learner(args.learner, net, args.batch, torch_step), flush)
                for name, flush, torch_step, net in arms}
    for made, flush in learners.values():
        steps(made, data, args.warm, flush=flush)
    share = subnormal_share(learners[arms[0][0]][0])
    times: dict[str, list[float]] = {name: [] for name in learners}
    for _ in range(args.windows):
        for name, (made, flush) in learners.items():
            times[name].append(steps(made, data, args.steps, flush=flush))
    torch.set_flush_denormal(False)
    what = "DQN step" if args.learner == "dqn" else "distillation step (one student)"
    print(f"{what}, {args.net}, batch {args.batch}, one torch thread, after {args.warm:,} steps; "
          f"{args.windows} windows of {args.steps} steps in turn\n")
    print("| arm | µs per step, median [min-max] |\n|---|---|")
    for name, t in times.items():
        print(f"| {name} | {statistics.median(t):,.0f} [{min(t):,.0f}-{max(t):,.0f}] |")
    first, second = arms[0][0], arms[1][0]
    ratio = statistics.median(times[second]) / statistics.median(times[first])
    print(f"\n{second} / {first}: {ratio:.2f}x" + (f"; subnormal first moments in the kept learner's Adam state: "
                                                 f"{share:.0%}" if args.compare == "flush" else ""))
    for name, *_ in arms[2:]:
        print(f"{name} / {second}: {statistics.median(times[name]) / statistics.median(times[second]):.2f}x")
    also = "".join(f" --also-net {net}" for net in args.also_net)
    print(f"\nreproduce: python benchmarks/learner_step.py --compare {args.compare} --learner {args.learner} "
          f"--net {args.net}{also} --batch {args.batch} --warm {args.warm} --steps {args.steps} --windows {args.windows}")


if __name__ == "__main__":
    main()
