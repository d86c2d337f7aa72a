"""Batched inference on one thread, numpy against torch, per network and batch size: what
`GreedyPolicy` runs in rollout actors, the evaluator and label refresh, and which one it picks.

    python -m benchmarks.inference [--repeats 5] [--json PATH]

Each cell is the median [min–max] over --repeats windows of µs per forward pass (a batch of
observations → Q-values), untrained weights (the cost does not depend on them), uint8 frames for
conv nets and float32 vectors for MLPs, one torch and one BLAS thread as in a rollout actor.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

CASES = [  # (spec, observation shape, actions): MinAtar's and Atari's teachers and students, an MLP
    ("minatar", (4, 10, 10), 3), ("c8k3s1-16", (4, 10, 10), 3),
    ("nature", (4, 84, 84), 6), ("c16k8s4-c32k4s2-256", (4, 84, 84), 6),
    ("256x256", (8,), 4),
]
BATCHES = (1, 8, 32, 256)


def _us_per_call(fn, obs: np.ndarray, seconds: float) -> float:
    for _ in range(5):
        fn(obs)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(obs)
        calls += 1
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.3, help="length of a timed window")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    import torch

    from qdistill.learners.networks import QNetwork, input_dtype, to_numpy
    from qdistill.learners.policy import BACKENDS, GreedyPolicy
    from qdistill.learners.specs import macs

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows, figures = [], []
    for spec, shape, actions in CASES:
        weights = to_numpy(QNetwork(spec, shape, actions).state_dict())
        policies = {b: GreedyPolicy(spec, shape, actions, backend=b) for b in BACKENDS}
        auto = GreedyPolicy(spec, shape, actions)
        for p in (*policies.values(), auto):
            p.load(0, weights)
        for batch in BATCHES:
            obs = (rng.integers(0, 2, (batch, *shape)) * 255).astype(input_dtype(spec)) if len(shape) == 3 \
                else rng.normal(size=(batch, *shape)).astype(np.float32)
            times = {b: [_us_per_call(p.q_values, obs, args.seconds) for _ in range(args.repeats)]
                     for b, p in policies.items()}
            med = {b: statistics.median(t) for b, t in times.items()}
            picked = "torch" if batch >= auto.torch_from else "numpy"
            fastest = min(med, key=med.get)
            cells = [f"{med[b]:,.0f} [{min(times[b]):,.0f}–{max(times[b]):,.0f}]" for b in BACKENDS]
            rows.append(f"| {spec} | {'x'.join(map(str, shape))} | {macs(spec, shape):,} | {batch} | "
                        + " | ".join(cells) + f" | {picked}{'' if picked == fastest else ' (slower)'} |")
            figures.append({"spec": spec, "obs_shape": shape, "batch": batch, "us": times, "picked": picked})
    print("µs per forward pass on one thread, median [min–max] of "
          f"{args.repeats} windows of {args.seconds:g} s\n")
    print(f"| network | obs | MACs/obs | batch | {' | '.join(BACKENDS)} | GreedyPolicy picks |")
    print("|---|---|---|---|" + "---|" * len(BACKENDS) + "---|")
    print("\n".join(rows))
    print(f"\nreproduce: python -m benchmarks.inference --repeats {args.repeats} --seconds {args.seconds:g}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
