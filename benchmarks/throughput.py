"""Throughput, side by side in one run: labelled transitions per second at the hardware's limit
against qdistill's collection path, on the same env, teacher and number of cores.

    python benchmarks/throughput.py --env CartPole-v1 --cores 2

Rows:
  limit        CORES processes, each an in-process loop of vector-env steps with batched teacher
               inference (torch, one thread): no Ray, no buffer. Labelled transitions/s, summed.
  collection   CORES rollout actors (one CPU each) on an embedded Ray runtime, each collecting
               `--steps-per-call` vector steps per call into one Ray buffer shard (one add in
               flight per actor, no rate limit), the learner idle. Env steps/s as the driver counts them.
Each figure is the median of --repeats windows of --seconds after a warm-up window. The teacher is
an untrained 256x256 network (inference costs the same at any weights). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import statistics
import time

import numpy as np


def _limit_worker(env_id: str, num_envs: int, seconds: float, windows: int, seed: int, out) -> None:
    import torch

    from qdistill.actors.envs import as_float32, describe, make_vector_env
    from qdistill.learners.networks import GreedyPolicy, QNetwork, to_numpy

    torch.set_num_threads(1)
    info = describe(env_id)
    teacher = GreedyPolicy("256x256", info.obs_shape, info.n_actions)
    teacher.load(0, to_numpy(QNetwork("256x256", info.obs_shape, info.n_actions).state_dict()))
    env = make_vector_env(env_id, num_envs)
    obs = as_float32(env.reset(seed=seed)[0])
    rates = []
    for _ in range(windows + 1):  # the first window warms up
        steps, end = 0, time.monotonic() + seconds
        start = time.monotonic()
        while time.monotonic() < end:
            q = teacher.q_values(obs)
            obs = as_float32(env.step(q.argmax(axis=1))[0])
            steps += num_envs
        rates.append(steps / (time.monotonic() - start))
    out.put(rates[1:])


def limit(env_id: str, cores: int, num_envs: int, seconds: float, windows: int) -> list[float]:
    """Per window: the sum over `cores` processes of labelled transitions/s."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_limit_worker, args=(env_id, num_envs, seconds, windows, i, out)) for i in range(cores)]
    for p in procs:
        p.start()
    per_proc = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return [float(sum(window)) for window in zip(*per_proc)]


def collection(env_id: str, cores: int, num_envs: int, steps_per_call: int, seconds: float, windows: int) -> list[float]:
    """Per window: env steps/s of `cores` rollout actors into one Ray buffer shard, learner idle."""
    import ray

    from qdistill.actors.envs import describe
    from qdistill.actors.remote import ParameterServerActor, RolloutActor, ShardedBuffer
    from qdistill.cluster.loop import Collector
    from qdistill.learners.networks import QNetwork, to_numpy

    info = describe(env_id)
    ray.init(address="local", num_cpus=cores, include_dashboard=False, logging_level=logging.ERROR)
    try:
        params = ParameterServerActor.options(name="throughput-params").remote()
        ray.get(params.publish.remote(0, to_numpy(QNetwork("256x256", info.obs_shape, info.n_actions).state_dict())))
        buffer = ShardedBuffer(1, 1_000_000, name="throughput")
        collector = Collector(lambda i: RolloutActor.options(num_cpus=1).remote(
            env_id, net="256x256", obs_shape=info.obs_shape, n_actions=info.n_actions, num_envs=num_envs,
            seed=i, actor_id=i, params="throughput-params", shard=buffer.shard_for(i)),
            cores, steps_per_call=steps_per_call, envs_per_actor=num_envs)
        rates = []
        for _ in range(windows + 1):  # the first window warms up (and waits for the actors to start)
            start_steps, start = collector.env_steps, time.monotonic()
            while time.monotonic() - start < seconds:
                collector.launch(epsilon=0.0)
                collector.harvest(timeout=0.01)
            rates.append((collector.env_steps - start_steps) / (time.monotonic() - start))
        return rates[1:]
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--envs", type=int, default=32, help="sub-envs per process or actor")
    parser.add_argument("--steps-per-call", type=int, default=32, help="vector steps per collect call")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a timed window")
    parser.add_argument("--repeats", type=int, default=5, help="timed windows per row (median)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    rows = {
        "limit": limit(args.env, args.cores, args.envs, args.seconds, args.repeats),
        "collection": collection(args.env, args.cores, args.envs, args.steps_per_call, args.seconds, args.repeats),
    }
    med = {name: statistics.median(rates) for name, rates in rows.items()}
    print(f"{args.env}, 256x256 teacher, {args.cores} cores, {args.envs} envs per process/actor, "
          f"median of {args.repeats} windows of {args.seconds:g} s")
    print(f"{'path':<12} {'transitions/s':>14} {'x limit':>8}   windows")
    for name, rates in rows.items():
        print(f"{name:<12} {med[name]:>14,.0f} {med[name] / med['limit']:>8.2f}   "
              + ", ".join(f"{r:,.0f}" for r in rates))
    print(f"\nreproduce: python benchmarks/throughput.py --env {args.env} --cores {args.cores} --envs {args.envs} "
          f"--steps-per-call {args.steps_per_call} --seconds {args.seconds:g} --repeats {args.repeats}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows, "median": med,
                       "ratio": {k: v / med["limit"] for k, v in med.items()}}, f, indent=2)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
