"""Pieces both drivers' loops are made of: paced collection and prefetched sampling."""

from __future__ import annotations

from typing import Callable

import ray

from ..actors.remote import ShardedBuffer
from ..learners.batch import TransitionBatch
from .config import RunConfig
from .progress import Progress


def run_loop(loop: Callable[[Progress | None], str], cfg: RunConfig, *, show_progress: bool) -> str:
    """Run a driver's loop under a progress line; Ctrl-C ends it as "interrupted", not a traceback."""
    progress = Progress(cfg.steps or cfg.time or 0, "steps" if cfg.steps else "s") if show_progress else None
    try:
        return loop(progress)
    except KeyboardInterrupt:
        return "interrupted"
    finally:
        if progress:
            progress.close()


def stop_actors(rollout_actors: list[ray.actor.ActorHandle], others: list[ray.actor.ActorHandle]) -> None:
    """Let the rollout actors hand over what they collected (10 s at most), then end every actor."""
    flushes = [actor.flush.remote() for actor in rollout_actors]
    ray.wait(flushes, num_returns=len(flushes), timeout=10)
    for handle in [*rollout_actors, *others]:
        ray.kill(handle)


def budget_spent(cfg: RunConfig, env_steps: int, elapsed_s: float) -> str | None:
    """"steps" or "time" once that budget is spent, else None."""
    if cfg.steps is not None and env_steps >= cfg.steps:
        return "steps"
    if cfg.time is not None and elapsed_s >= cfg.time:
        return "time"
    return None


def pace(cfg: RunConfig, env_steps: int, learner_steps: int, call_size: int) -> tuple[bool, float]:
    """The replay ratio, both ways: whether the learner owes steps for the data collected, and how
    many env steps the actors may have collected or under way (one call each ahead of the learner)."""
    owes = env_steps >= cfg.learning_starts and (env_steps - cfg.learning_starts) * cfg.replay_ratio > learner_steps
    allowed = cfg.learning_starts + learner_steps / cfg.replay_ratio + cfg.actors * call_size
    return owes, allowed


class Collector:
    """Keeps rollout actors busy with one `collect` call each, never further ahead than allowed."""

    def __init__(self, actors: list[ray.actor.ActorHandle], *, steps_per_call: int, envs_per_actor: int) -> None:
        self.actors = actors
        self.steps_per_call = steps_per_call
        self.call_size = steps_per_call * envs_per_actor
        self.pending: dict[ray.ObjectRef, int] = {}
        self.idle = list(range(len(actors)))
        self.env_steps = 0
        self.failures = 0  # collects lost with their actor (Ray restarts the actor)

    def launch(self, allowed_env_steps: float, epsilon: float, beta: float = 1.0) -> None:
        """Start collects on idle actors while the steps collected or under way stay within `allowed_env_steps`."""
        while self.idle and self.env_steps + len(self.pending) * self.call_size < allowed_env_steps:
            i = self.idle.pop()
            self.pending[self.actors[i].collect.remote(self.steps_per_call, epsilon, beta)] = i

    def harvest(self, timeout: float = 0.0) -> list[dict[str, object]]:
        """Results of the collects that have finished (waiting up to `timeout` for the first)."""
        if not self.pending:
            return []
        ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
        results = []
        for ref in ready:
            self.idle.append(self.pending.pop(ref))
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError:
                self.failures += 1  # the next collect waits for the restarted actor
                continue
            self.env_steps += result["env_steps"]
            results.append(result)
        return results


class Prefetcher:
    """Samples `chunk` transitions from the buffer, keeping the next request in flight."""

    def __init__(self, buffer: ShardedBuffer, chunk: int) -> None:
        self.buffer = buffer
        self.chunk = chunk
        self.next_refs: list | None = None

    def sample(self) -> tuple:
        refs = self.next_refs or self.buffer.sample_async(self.chunk)
        self.next_refs = self.buffer.sample_async(self.chunk)
        return self.buffer.gather(refs)


def minibatches(batch: TransitionBatch, size: int):
    for start in range(0, len(batch) - size + 1, size):
        yield batch.take(slice(start, start + size))
