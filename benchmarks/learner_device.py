"""Time per learner update on the CPU and on CUDA: the CNN teacher's DQN step and each student's
distillation step, for a pixel env's preset networks.

The teacher is the env's preset network and optimiser (`qdistill config show`), the students its
preset students plus any --students, each at its preset's minibatch size (--batch: one size for
all); each row is one network's update (one DistillLearner per student, so no row shares another's
step). Rows come from the same random uint8 frames of the
env's shape, handed to the learner as numpy as the buffer hands them (the copy to the device is
part of an update). Each configuration warms up for --warm updates, then all take windows of
--steps updates in turn; prints µs per update, median [min-max] over the windows, and each
device's time over the CPU's with the most threads.

    python benchmarks/learner_device.py --env MinAtar/Breakout-v1 --devices cpu cuda --threads 1 16

CPU rows set their torch threads and flush subnormals as the learner does (`learners/compute.py`).
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

import numpy as np
import torch

from qdistill.actors.envs import describe
from qdistill.cluster.config.presets import distill_config, teacher_config
from qdistill.learners.batch import TransitionBatch
from qdistill.learners.compute import learner_torch
from qdistill.learners.distill import DistillLearner
from qdistill.learners.dqn import DQNLearner


def batches(obs_shape: tuple[int, ...], n_actions: int, size: int, count: int, seed: int) -> list[TransitionBatch]:
    rng = np.random.default_rng(seed)

    def frames() -> np.ndarray:
        return (rng.random((size, *obs_shape)) < 0.1).astype(np.uint8) * 255

    return [TransitionBatch(
        observations=frames(), actions=rng.integers(0, n_actions, size),
        rewards=rng.normal(size=size).astype(np.float32),
        next_observations=frames(), terminations=rng.random(size) < 0.01, truncations=np.zeros(size, bool),
        teacher_q=rng.normal(size=(size, n_actions)).astype(np.float32), label_version=np.zeros(size, np.int64),
        behaviour=np.zeros(size, np.int8), actor_id=np.zeros(size, np.int32), task=np.zeros(size, np.int16),
        horizon=np.ones(size, np.int8)) for _ in range(count)]


def window(learner: DQNLearner | DistillLearner, data: list[TransitionBatch], n: int, device: str) -> float:
    """µs per update over n updates, the device's queue drained before the clock stops."""
    start = time.perf_counter()
    for i in range(n):
        learner.step(data[(learner.steps + i) % len(data)])
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / n * 1e6


def rows(learner: DQNLearner | DistillLearner) -> int:
    return learner.config.batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="MinAtar/Breakout-v1")
    parser.add_argument("--devices", nargs="+", default=["cpu"], choices=["cpu", "cuda"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1], help="torch threads of the CPU rows")
    parser.add_argument("--batch", type=int, help="minibatch rows of every network (default: the teacher's and the "
                        "students' presets')")
    parser.add_argument("--students", nargs="*", default=[], help="student specs beside the preset's")
    parser.add_argument("--warm", type=int, default=50)
    parser.add_argument("--steps", type=int, default=100, help="updates per window")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    if "cuda" in args.devices and not torch.cuda.is_available():
        parser.error("--devices cuda: torch sees no CUDA device here; give --devices cpu")
    info = describe(args.env)
    dqn = teacher_config(args.env, "unused").dqn
    distill = distill_config(args.env, "unused").distill
    dqn = replace(dqn, batch_size=args.batch or dqn.batch_size)
    distill = replace(distill, batch_size=args.batch or distill.batch_size)
    students = list(dict.fromkeys([*distill.students, *args.students]))
    sizes = {dqn.batch_size, distill.batch_size}
    data = {size: batches(info.obs_shape, info.n_actions, size, 16, seed=0) for size in sizes}
    tasks = [(info.obs_shape, info.n_actions)]
    places = [("cpu", t) for t in args.threads if "cpu" in args.devices] + [("cuda", 0)] * ("cuda" in args.devices)
    runs: dict[tuple[str, str, int], DQNLearner | DistillLearner] = {}  # (network, device, threads)
    for device, threads in places:
        runs[(f"teacher {dqn.net}", device, threads)] = DQNLearner(dqn, tasks, seed=0, device=device)
        for spec in students:
            runs[(f"student {spec}", device, threads)] = DistillLearner(replace(distill, students=(spec,)), tasks,
                                                                      seed=0, device=device)
    times: dict[tuple[str, str, int], list[float]] = {key: [] for key in runs}
    for key, learner in runs.items():
        learner_torch(max(key[2], 1))
        window(learner, data[rows(learner)], args.warm, key[1])
    for _ in range(args.windows):
        for key, learner in runs.items():
            learner_torch(max(key[2], 1))
            times[key].append(window(learner, data[rows(learner)], args.steps, key[1]))
    gpu = f", {torch.cuda.get_device_name()}" if "cuda" in args.devices else ""
    print(f"{args.env} {info.obs_shape}, {info.n_actions} actions; batch {dqn.batch_size} (teacher), "
          f"{distill.batch_size} (students); torch {torch.__version__}{gpu}; "
          f"{args.windows} windows of {args.steps} updates in turn after {args.warm}\n")
    print("| network | device | µs per update, median [min-max] | updates/s | time / CPU's |\n|---|---|---|---:|---:|")
    table = []
    for (net, device, threads), t in times.items():
        base = times[(net, "cpu", max(args.threads))] if "cpu" in args.devices else t
        place = f"cpu, {threads} thread{'s' * (threads > 1)}" if device == "cpu" else "cuda"
        med = statistics.median(t)
        print(f"| {net} | {place} | {med:,.0f} [{min(t):,.0f}-{max(t):,.0f}] | {1e6 / med:,.0f} | "
              f"{med / statistics.median(base):.2f}x |")
        table.append({"network": net, "device": device, "threads": threads, "us_median": med, "us": t})
    print(f"\nreproduce: python benchmarks/learner_device.py --env {args.env} --devices {' '.join(args.devices)} "
          f"--threads {' '.join(map(str, args.threads))}" + (f" --batch {args.batch}" if args.batch else "")
          + (f" --students {' '.join(args.students)}" if args.students else "")
          + f" --warm {args.warm} --steps {args.steps} --windows {args.windows}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": args.env, "batch": {"teacher": dqn.batch_size, "students": distill.batch_size},
                       "torch": torch.__version__, "gpu": gpu.lstrip(", "), "rows": table}, f, indent=1)


if __name__ == "__main__":
    main()
