"""Throughput, side by side in one run on the same env, teacher and cores: labelled transitions per
second against the hardware's limit, rows trained per second against a plain torch loop, and
(with --rllib) env steps per second against RLlib.

    python benchmarks/throughput.py --env CartPole-v1 --cores 2 [--rllib]

The whole benchmark pins itself to --cores CPUs, so every process it starts shares them.

Labelled transitions per second:
  limit        CORES processes, each the least work that yields labelled transitions: a vector env
               stepped with batched teacher inference (numpy, one BLAS thread), each step written
               into arrays; no Ray, no buffer. Real transitions (autoreset steps not counted).
  collection   CORES rollout actors (one CPU each) on an embedded Ray runtime, each collecting
               --steps-per-call vector steps per call into one Ray buffer shard (one add in flight
               per actor, no rate limit), the learner idle. Env steps/s as the driver counts them.
               The limit and the collection path take --rounds turns (Ray started afresh each
               time), so a slower spell of the machine falls on both; each round's ratio is printed.
  full         `qdistill run` as a user starts it, with the learner distilling: the buffer's rate
               limiter holds the actors to the replay ratio, so this is the learner's pace.
Rows trained per second (the env's preset students, batch size, chunk and torch threads):
  plain loop   the distillation learner's step alone, on minibatches drawn from memory before the clock.
  from buffer  the learner taking prefetched chunks from a Ray buffer shard, as a run does
               (--also-updates-per-sample N: one more row per N, its chunks N minibatches long).
               These rows take their timed windows in turn, so they share the machine's moments alike.
  full         the learner in `qdistill run` above (also evaluating, logging, sharing the CPUs).
RLlib (--rllib): its DQN with CORES env runners of --envs envs and a 256x256 Q-network: sampling
alone, against the collection path, and training, against the full path.

Each figure is the median of --repeats windows of --seconds after a warm-up window (the full path:
between its metrics records, logged every 2 s, at least --seconds apart, a window after its first record). The teacher is the env's preset teacher
network, untrained (inference costs the same at any weights). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import multiprocessing as mp
import os
import statistics
import time

# One BLAS thread per process, as Ray gives each one-CPU actor (OMP_NUM_THREADS=1): set before numpy
# loads, so the limit's processes (spawned, they import this module first) get it too.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402


def teacher_net(env_id: str) -> str:
    """The env's preset teacher network (256x256 for vector envs; MinAtar's and the Nature DQN for pixels)."""
    from qdistill.cluster.config import teacher_config

    return teacher_config(env_id, "unused").dqn.net


def _limit_worker(env_id: str, num_envs: int, steps: int, seconds: float, windows: int, seed: int, out) -> None:
    """The least work that yields labelled transitions: per vector step one batched teacher forward,
    its argmax and one env step, each step's observation, action, reward, end flags, next observation
    and Q-values written into arrays made once per `steps`; counts real transitions (not autoreset
    steps)."""
    import torch

    from qdistill.actors.envs import describe, make_vector_env
    from qdistill.learners.networks import QNetwork, to_numpy
    from qdistill.learners.policy import GreedyPolicy

    torch.set_num_threads(1)  # one thread per process, as a rollout actor has (conv teachers infer in torch)
    info, net = describe(env_id), teacher_net(env_id)
    teacher = GreedyPolicy(net, info.obs_shape, info.n_actions)
    teacher.load(0, to_numpy(QNetwork(net, info.obs_shape, info.n_actions).state_dict()))
    env = make_vector_env(env_id, num_envs)
    first_obs = env.reset(seed=seed)[0]
    resetting = np.zeros(num_envs, dtype=bool)
    rates = []
    for _ in range(windows + 1):  # the first window warms up
        transitions, start = 0, time.monotonic()
        while time.monotonic() - start < seconds:
            obs = np.empty((steps + 1, num_envs, *info.obs_shape), dtype=info.obs_dtype)
            q_all = np.empty((steps, num_envs, info.n_actions), dtype=np.float32)
            actions_all = np.empty((steps, num_envs), dtype=np.int64)
            rewards_all = np.empty((steps, num_envs), dtype=np.float32)
            terms_all = np.empty((steps, num_envs), dtype=bool)
            truncs_all = np.empty((steps, num_envs), dtype=bool)
            obs[0] = first_obs
            for t in range(steps):
                q_all[t] = q = teacher.q_values(obs[t])
                actions_all[t] = actions = q.argmax(axis=1)
                obs[t + 1], rewards_all[t], terms_all[t], truncs_all[t], _ = env.step(actions)
                transitions += num_envs - int(resetting.sum())
                resetting = terms_all[t] | truncs_all[t]
            first_obs = obs[steps]
        rates.append(transitions / (time.monotonic() - start))
    out.put(rates[1:])


def limit(env_id: str, cores: int, num_envs: int, steps: int, seconds: float, windows: int) -> list[float]:
    """Per window: the sum over `cores` processes of labelled transitions/s."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_limit_worker, args=(env_id, num_envs, steps, seconds, windows, i, out)) for i in range(cores)]
    for p in procs:
        p.start()
    per_proc = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return [float(sum(window)) for window in zip(*per_proc)]


def collection(env_id: str, cores: int, num_envs: int, steps_per_call: int, seconds: float, windows: int, *,
               cpus: int | None = None) -> list[float]:
    """Per window: env steps/s of `cores` rollout actors into one Ray buffer shard, learner idle
    (`cpus`: the Ray runtime's CPUs, `cores` unless given)."""
    import ray

    from qdistill.actors.envs import describe
    from qdistill.actors.buffer_client import ShardedBuffer
    from qdistill.actors.remote import ParameterServerActor, RolloutActor
    from qdistill.cluster.driver.collect import Collector
    from qdistill.learners.networks import QNetwork, to_numpy

    info = describe(env_id)
    ray.init(address="local", num_cpus=cpus or cores, include_dashboard=False, logging_level=logging.ERROR)
    try:
        params = ParameterServerActor.options(name="throughput-params").remote()
        net = teacher_net(env_id)
        ray.get(params.publish.remote(0, to_numpy(QNetwork(net, info.obs_shape, info.n_actions).state_dict())))
        buffer = ShardedBuffer(1, 1_000_000 if not info.pixels else 20_000, name="throughput")
        collector = Collector(lambda i: RolloutActor.options(num_cpus=1).remote(
            env_id, net=net, obs_shape=info.obs_shape, next_obs=False, n_actions=info.n_actions, num_envs=num_envs,
            seed=i, actor_id=i, params="throughput-params", sink=buffer.sink_for(i)),
            cores, steps_per_call=steps_per_call, envs_per_actor=num_envs)
        while collector.env_steps == 0:  # the actors are up (Ray start, imports) once a collect came back
            collector.launch(epsilon=0.0, versions=(0, 0))
            collector.harvest(timeout=0.1)
        rates = []
        for _ in range(windows + 1):  # the first window warms up
            start_steps, start = collector.env_steps, time.monotonic()
            while time.monotonic() - start < seconds:
                collector.launch(epsilon=0.0, versions=(0, 0))
                collector.harvest(timeout=0.1)
            rates.append((collector.env_steps - start_steps) / (time.monotonic() - start))
        return rates[1:]
    finally:
        ray.shutdown()


STARTUP_S = 30  # the full path's run is given this long beyond its windows: the first records of a pixel env
               # come once its buffer holds the learner's first batches


def _full_teacher(env_id: str, info, path: str) -> None:
    from qdistill.learners import checkpoint
    from qdistill.learners.networks import QNetwork, to_numpy

    spec = teacher_net(env_id)
    net = QNetwork(spec, info.obs_shape, info.n_actions)
    checkpoint.save(path, checkpoint.Checkpoint(spec, info.obs_shape, info.n_actions, env_id, 0,
                                                to_numpy(net.state_dict())))


def full(env_id: str, cores: int, num_envs: int, steps_per_call: int, seconds: float, windows: int,
         replay_ratio: float | None, updates_per_sample: int | None) -> tuple[list[float], list[float]]:
    """`qdistill run` as a user starts it (its own embedded Ray runtime, CORES actors, the learner
    distilling under the buffer's rate limiter): env steps/s and rows trained/s between its
    metrics records (every 2 s) at least `seconds` apart, after the first `seconds`."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from qdistill.actors.envs import describe
    from qdistill.cluster.config import distill_config

    info = describe(env_id)
    rows_per_step = distill_config(env_id, "unused").update_rows
    with tempfile.TemporaryDirectory() as tmp:
        _full_teacher(env_id, info, f"{tmp}/teacher.pt")
        cmd = [sys.executable, "-m", "qdistill.cluster.cli", "run", "--env", env_id, "--teacher", f"{tmp}/teacher.pt",
               "--actors", str(cores), "--envs-per-actor", str(num_envs), "--steps-per-call", str(steps_per_call),
               "--time", str(seconds * (windows + 2) + STARTUP_S), "--no-target", "--quiet", "--out", f"{tmp}/run"]
        if replay_ratio is not None:
            cmd += ["--replay-ratio", str(replay_ratio)]
        if updates_per_sample is not None:  # a config file's key: `qdistill run` has no flag for it
            Path(f"{tmp}/chunk.toml").write_text(f"updates_per_sample = {updates_per_sample}\n")
            cmd += ["--config", f"{tmp}/chunk.toml"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        records = [json.loads(line) for line in Path(f"{tmp}/run/metrics.jsonl").read_text().splitlines()]
    rated = [r for r in records if "rollout/steps_per_s" in r]
    first = rated[0]["distill_s"] if rated else 0.0  # the learner's first record (pixel envs fill the buffer first)
    logged = [r for r in rated if r["distill_s"] >= first + seconds][:-1]  # not the closing one
    env_rates, trained_rates = [], []
    a = logged[0] if logged else None
    for b in logged[1:]:  # windows of at least `seconds` between records
        dt = b["distill_s"] - a["distill_s"]
        if dt >= seconds:
            env_rates.append((b["env_steps"] - a["env_steps"]) / dt)
            trained_rates.append((b["learner/steps"] - a["learner/steps"]) * rows_per_step / dt)
            a = b
    if not env_rates:
        raise SystemExit(f"throughput: the full path logged no window of {seconds:g} s after its first record's {seconds:g} s "
                         f"(records at {[r['distill_s'] for r in records]}): give more --repeats or longer --seconds")
    return env_rates, trained_rates


def _distill_data(env_id: str, rows: int):
    """Real rows to train on: collected in-process with the untrained teacher."""
    from qdistill.actors.envs import describe
    from qdistill.actors.rollout import Rollout
    from qdistill.learners.batch import TransitionBatch
    from qdistill.learners.networks import QNetwork, to_numpy

    info, net = describe(env_id), teacher_net(env_id)
    rollout = Rollout(env_id, net=net, obs_shape=info.obs_shape, n_actions=info.n_actions, num_envs=32, next_obs=False)
    rollout.load_weights(0, to_numpy(QNetwork(net, info.obs_shape, info.n_actions).state_dict()))
    parts = []
    while sum(len(p) for p in parts) < rows:
        parts.append(rollout.collect(256, 0.05)[0])
    return info, TransitionBatch.concat(parts)


def learner(env_id: str, cores: int, seconds: float, windows: int, updates_per_sample: int | None,
            rows: int, also: tuple[int, ...] = ()) -> tuple[dict[str, list[float]], str]:
    """Rows trained per second by the distillation learner (the env's preset students, batch size,
    torch threads and chunk): a plain torch loop over tensors in memory, against the learner taking
    prefetched chunks from a Ray buffer shard, as `qdistill run` does; on `rows` rows collected first.
    `also`: more updates-per-sample values, each its own "from buffer" row. The rows take their
    windows in turn (plain, from buffer, the others), so all share the machine's moments alike."""
    import ray

    from qdistill.actors.buffer_client import ShardedBuffer
    from qdistill.cluster.config import distill_config
    from qdistill.learners.compute import learner_torch

    cfg = distill_config(env_id, "unused", updates_per_sample=updates_per_sample)
    learner_torch(cfg.learner_threads)
    info, data = _distill_data(env_id, rows)
    size = cfg.distill.batch_size
    rng = np.random.default_rng(0)
    drawn = [data.take(rng.integers(len(data), size=size)) for _ in range(256)]  # before the clock: the step alone
    ray.init(address="local", num_cpus=cores, include_dashboard=False, logging_level=logging.ERROR)
    try:
        buffer = ShardedBuffer(cfg.shards, len(data), name="throughput-learner")
        ray.get([shard.add.remote(data.take(np.arange(i, len(data), cfg.shards))) for i, shard in enumerate(buffer.shards)])
        steps: dict[str, object] = {"plain loop": _plain_step(cfg, info, drawn),
                                    "from buffer": _buffer_step(cfg, info, buffer, cfg.chunk_rows)}
        for n in also:
            steps[f"from buffer x{n}"] = _buffer_step(cfg, info, buffer, cfg.update_rows * n)
        rates: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(windows + 1):  # the first window warms up
            for name, step in steps.items():
                done, start = 0, time.monotonic()
                while time.monotonic() - start < seconds:
                    done += step()
                rates[name].append(done / (time.monotonic() - start))
    finally:
        ray.shutdown()
    return {name: r[1:] for name, r in rates.items()}, \
        f"students {','.join(cfg.distill.students)}, batch {size}, chunk {cfg.chunk_rows}, " \
        f"{cfg.learner_threads} torch thread(s)"


def _plain_step(cfg, info, drawn):
    """One distillation step on a minibatch already in memory, per call."""
    from qdistill.learners.distill import DistillLearner

    plain_learner = DistillLearner(cfg.distill, [(info.obs_shape, info.n_actions)])
    turn = itertools.count()

    def step() -> int:
        plain_learner.step(drawn[next(turn) % len(drawn)])
        return cfg.distill.batch_size
    return step


def _buffer_step(cfg, info, buffer, chunk_rows: int):
    """One prefetched chunk of `chunk_rows` rows taken from the buffer and trained on, per call."""
    from qdistill.cluster.driver.loop import Prefetcher, minibatches
    from qdistill.learners.distill import DistillLearner

    buffer_learner = DistillLearner(cfg.distill, [(info.obs_shape, info.n_actions)])
    prefetch = Prefetcher(buffer, chunk_rows)

    def step() -> int:
        _, chunk = prefetch.take()
        done = 0
        for _, mb in minibatches(np.arange(len(chunk)), chunk, cfg.distill.batch_size):
            buffer_learner.step(mb)
            done += len(mb)
        return done
    return step


def rllib(env_id: str, cores: int, num_envs: int, steps_per_call: int, seconds: float,
          windows: int) -> tuple[list[float], list[float]]:
    """RLlib's DQN (new API stack) on the same env, network and cores: CORES env runners of
    `num_envs` envs, one CPU each. Sampling: each runner steps `num_envs * steps_per_call` env steps
    per call with its DQN module, counted where it runs (the episodes are not shipped back). Training:
    `algo.train()` over and over, env steps sampled per second."""
    import ray
    from ray.rllib.algorithms.dqn import DQNConfig

    ray.init(address="local", num_cpus=cores, include_dashboard=False, logging_level=logging.ERROR)
    try:
        algo = (DQNConfig().environment(env_id)
                .env_runners(num_env_runners=cores, num_envs_per_env_runner=num_envs, num_cpus_per_env_runner=1)
                .rl_module(model_config={"fcnet_hiddens": [256, 256]})
                .learners(num_learners=0)).build_algo()
        per_call = num_envs * steps_per_call

        def sample(runner) -> int:
            return sum(len(episode) for episode in runner.sample(num_timesteps=per_call))

        sampling = []
        for _ in range(windows + 1):  # the first window warms up
            steps, start = 0, time.monotonic()
            while time.monotonic() - start < seconds:
                steps += sum(algo.env_runner_group.foreach_env_runner(sample, local_env_runner=False))
            sampling.append(steps / (time.monotonic() - start))
        training = []
        sampled = algo.train()["num_env_steps_sampled_lifetime"]
        for _ in range(windows + 1):
            start_sampled, start = sampled, time.monotonic()
            while time.monotonic() - start < seconds:
                sampled = algo.train()["num_env_steps_sampled_lifetime"]
            training.append((sampled - start_sampled) / (time.monotonic() - start))
        algo.stop()
        return sampling[1:], training[1:]
    finally:
        ray.shutdown()


def _table(title: str, unit: str, rows: dict[str, list[float]], base: str | dict[str, str],
           base_label: str | None = None) -> dict[str, float]:
    """Each row's median and its ratio to its base row's: `base` names one row for all, or one per row."""
    med = {name: statistics.median(rates) for name, rates in rows.items()}
    bases = base if isinstance(base, dict) else dict.fromkeys(rows, base)
    print(title)
    print(f"{'path':<16} {unit:>14} {'x ' + (base_label or str(base)):>10}   windows")
    for name, rates in rows.items():
        print(f"{name:<16} {med[name]:>14,.0f} {med[name] / med[bases[name]]:>10.2f}   "
              + ", ".join(f"{r:,.0f}" for r in rates))
    return med


def ray_version() -> str:
    import ray

    return ray.__version__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--cores", type=int, default=2, help="CPUs for the whole benchmark (it pins itself to them)")
    parser.add_argument("--envs", type=int, default=32, help="sub-envs per process or actor")
    parser.add_argument("--steps-per-call", type=int, default=2048, help="vector steps per collect call")
    parser.add_argument("--replay-ratio", type=float, help="the full path's (default: the env's preset)")
    parser.add_argument("--updates-per-sample", type=int, help="learner steps per sampled chunk, in the learner rows "
                                                                "and the full path (default: the env's preset)")
    parser.add_argument("--also-updates-per-sample", type=int, nargs="+", default=[], metavar="N",
                        help="more learner rows from the buffer at these updates per sample, side by side with the preset's")
    parser.add_argument("--learner-rows", type=int, default=100_000,
                        help="rows the learner rows train on, collected first (100000; fewer for Atari: 28 kB a row)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a timed window")
    parser.add_argument("--repeats", type=int, default=5, help="timed windows per row (median)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="the limit and the collection path measured this many times in turn (each round: "
                             "--repeats windows of each), so that a drift in the machine's speed falls on both")
    parser.add_argument("--rllib", action="store_true",
                        help="add RLlib's DQN side by side (needs ray[rllib] for this Ray: pip install 'ray[rllib]==<ray version>', "
                             "best in its own virtual environment, as it pins its own gymnasium)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    if args.cores < 1 or args.cores > len(os.sched_getaffinity(0)):
        parser.error(f"--cores {args.cores} is not valid: expected 1 to {len(os.sched_getaffinity(0))} (this machine's CPUs)")
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds} is not valid: expected an integer >= 1")
    if any(n < 1 for n in args.also_updates_per_sample):
        parser.error(f"--also-updates-per-sample {args.also_updates_per_sample} is not valid: expected integers >= 1")
    if args.rllib:
        try:
            import ray.rllib  # noqa: F401
        except ImportError as exc:
            parser.error(f"--rllib needs RLlib, which is not installed here ({exc}): pip install 'ray[rllib]'")
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])  # inherited by every process started
    full_env, full_trained = full(args.env, args.cores, args.envs, args.steps_per_call, args.seconds, args.repeats,
                                  args.replay_ratio, args.updates_per_sample)
    transitions: dict[str, list[float]] = {"limit": [], "collection": []}
    round_ratios = []
    for _ in range(args.rounds):  # in turn: a slower or faster spell of the machine falls on both rows
        rounds = {"limit": limit(args.env, args.cores, args.envs, args.steps_per_call, args.seconds, args.repeats),
                  "collection": collection(args.env, args.cores, args.envs, args.steps_per_call, args.seconds,
                                           args.repeats)}
        round_ratios.append(statistics.median(rounds["collection"]) / statistics.median(rounds["limit"]))
        for name, windows in rounds.items():
            transitions[name] += windows
    transitions["full"] = full_env
    trained, learner_setup = learner(args.env, args.cores, args.seconds, args.repeats, args.updates_per_sample,
                                     args.learner_rows, tuple(args.also_updates_per_sample))
    trained["full"] = full_trained
    if args.rllib:
        rllib_sampling, rllib_training = rllib(args.env, args.cores, args.envs, args.steps_per_call, args.seconds,
                                               args.repeats)
        sampling = {"rllib sampling": rllib_sampling, "collection": transitions["collection"],
                    "rllib training": rllib_training, "full": transitions["full"]}
    print(f"{args.env}, {teacher_net(args.env)} teacher, {args.cores} cores, {args.envs} envs per process/actor, "
          f"{args.steps_per_call} steps per call; median of {args.repeats} windows of {args.seconds:g} s\n")
    med_t = _table("Labelled transitions per second", "transitions/s", transitions, "limit")
    print(f"collection / limit, round by round: {', '.join(f'{r:.2f}' for r in round_ratios)}\n")
    med_l = _table(f"Rows trained per second ({learner_setup})", "rows/s", trained, "plain loop")
    paired = statistics.median(b / p for p, b in zip(trained["plain loop"], trained["from buffer"]))
    print(f"from buffer / plain loop, window by window (they take their windows in turn): median {paired:.2f}\n")
    med_r = None
    if args.rllib:
        med_r = _table(f"Env steps per second against RLlib {ray_version()} DQN ({args.cores} env runners of {args.envs} "
                       "envs, 256x256 Q-network)", "env steps/s", sampling,
                       {"rllib sampling": "rllib sampling", "collection": "rllib sampling",
                        "rllib training": "rllib training", "full": "rllib training"}, base_label="RLlib")
        print("(collection against RLlib's sampling; full, with the learner distilling, against RLlib training DQN)\n")
    print(f"reproduce: python benchmarks/throughput.py --env {args.env} --cores {args.cores} --envs {args.envs} "
          f"--steps-per-call {args.steps_per_call} --seconds {args.seconds:g} --repeats {args.repeats} "
          f"--rounds {args.rounds}"
          + (f" --replay-ratio {args.replay_ratio:g}" if args.replay_ratio is not None else "")
          + (f" --updates-per-sample {args.updates_per_sample}" if args.updates_per_sample is not None else "")
          + (f" --learner-rows {args.learner_rows}" if args.learner_rows != 100_000 else "")
          + (f" --also-updates-per-sample {' '.join(map(str, args.also_updates_per_sample))}"
             if args.also_updates_per_sample else "")
          + (" --rllib" if args.rllib else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "transitions": transitions, "trained": trained,
                       "median": {"transitions": med_t, "trained": med_l},
                       "ratio": {"collection_to_limit": med_t["collection"] / med_t["limit"],
                                 "collection_to_limit_by_round": round_ratios,
                                 "full_to_limit": med_t["full"] / med_t["limit"],
                                 "buffer_to_plain": med_l["from buffer"] / med_l["plain loop"],
                                 "buffer_to_plain_paired": paired,
                                 **{f"buffer_x{n}_to_plain": med_l[f"from buffer x{n}"] / med_l["plain loop"]
                                    for n in args.also_updates_per_sample},
                                 **({"collection_to_rllib_sampling": med_r["collection"] / med_r["rllib sampling"],
                                     "full_to_rllib_training": med_r["full"] / med_r["rllib training"]} if med_r else {})},
                       "rllib": sampling if args.rllib else None}, f, indent=2)


if __name__ == "__main__":
    main()
