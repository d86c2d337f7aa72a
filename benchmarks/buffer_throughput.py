"""Buffer throughput: insert and sample transitions/s for the Ray shards and Redis, side by side.

    python -m benchmarks.buffer_throughput      # from the repository root (it uses tests.support)

Writers are Ray actors pushing pre-built CartPole-shaped batches (1 or 2 at once, batches of 256 or
2048 transitions), as rollout actors do: to a Ray buffer shard with one add in flight, or straight
into Redis. Sampling is the learner's call (one sampler, the same batch sizes) on the filled buffer.
Each figure is the median of --repeats timed windows of --seconds. Redis runs on loopback, without
persistence and with AOF (appendfsync everysec).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import ray

from qdistill.actors.redis_buffer import RedisBuffer, RedisSpec
from qdistill.actors.buffer_client import ShardedBuffer
from qdistill.actors.sinks import open_sink
from qdistill.actors.wire import Schema
from qdistill.learners.batch import TransitionBatch
from tests.support.redis_server import RedisServer

SCHEMA = Schema(obs_shape=(4,), n_actions=2)  # CartPole


def cartpole_batch(n: int, seed: int) -> TransitionBatch:
    rng = np.random.default_rng(seed)
    return TransitionBatch(
        observations=rng.normal(size=(n, 4)).astype(np.float32), actions=rng.integers(0, 2, n),
        rewards=np.ones(n, np.float32), next_observations=rng.normal(size=(n, 4)).astype(np.float32),
        terminations=np.zeros(n, bool), truncations=np.zeros(n, bool),
        teacher_q=rng.normal(size=(n, 2)).astype(np.float32), label_version=np.zeros(n, np.int64),
        behaviour=np.zeros(n, np.int8), actor_id=np.zeros(n, np.int32), task=np.zeros(n, np.int16))


@ray.remote(num_cpus=0)
class Writer:
    def __init__(self, sink, batch_size: int, seed: int) -> None:
        """`sink`: a Ray shard's name or a Redis spec, opened as a rollout actor opens it."""
        self.batch = cartpole_batch(batch_size, seed)
        self.sink = open_sink(sink, seed=seed)

    def run(self, seconds: float) -> int:
        written, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            self.sink.add(self.batch)
            written += len(self.batch)
        self.sink.flush()
        return written


def insert_rate(sinks: list, batch_size: int, seconds: float) -> float:
    writers = [Writer.remote(sink, batch_size, i) for i, sink in enumerate(sinks)]
    ray.get([w.run.remote(0.2) for w in writers])  # warm up
    start = time.monotonic()
    total = sum(ray.get([w.run.remote(seconds) for w in writers]))
    rate = total / (time.monotonic() - start)
    for w in writers:
        ray.kill(w)
    return rate


def sample_rate(sample, batch_size: int, seconds: float) -> float:
    sample(batch_size)
    n, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        sample(batch_size)
        n += batch_size
    return n / (time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    ray.init(include_dashboard=False, logging_level=logging.ERROR)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        servers = {"redis": RedisServer(Path(tmp) / "plain").start(),
                   "redis (AOF everysec)": RedisServer(Path(tmp) / "aof", aof=True).start()}
        try:
            print(f"{'backend':<22} {'writers':>7} {'batch':>6} {'insert /s':>12} {'sample /s':>12}")
            for backend in ["ray shards", *servers]:
                for batch_size in (256, 2048):
                    for writers in (1, 2):
                        key = f"{backend}-{batch_size}-{writers}"
                        if backend == "ray shards":
                            buffer = ShardedBuffer(1, 1_000_000)
                            sinks = [buffer.sink_for(i) for i in range(writers)]
                            sample, close = buffer.sample, lambda b=buffer: [ray.kill(s) for s in b.shards]
                        else:
                            spec = RedisSpec(servers[backend].url, key, 1_000_000, 256, SCHEMA)
                            reader = RedisBuffer(spec)
                            sinks = [spec] * writers
                            sample, close = reader.sample, reader.close
                        inserts = [insert_rate(sinks, batch_size, args.seconds) for _ in range(args.repeats)]
                        samples = [sample_rate(sample, batch_size, args.seconds) for _ in range(args.repeats)]
                        close()
                        row = {"backend": backend, "writers": writers, "batch": batch_size,
                               "insert_per_s": statistics.median(inserts), "sample_per_s": statistics.median(samples)}
                        rows.append(row)
                        print(f"{backend:<22} {writers:>7} {batch_size:>6} {row['insert_per_s']:>12,.0f} "
                              f"{row['sample_per_s']:>12,.0f}", flush=True)
        finally:
            for server in servers.values():
                server.stop()
    print("\nmedians of", args.repeats, "windows of", args.seconds, "s; sampling uses one sampler")
    print("reproduce: python -m benchmarks.buffer_throughput")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
