"""The one place where plain components become Ray actors."""

from __future__ import annotations

import asyncio
import sys

import numpy as np
import ray

from ..learners.batch import TransitionBatch
from .buffer import ReplayRing
from .dynamics import set_dynamics
from .evaluate import MAX_FINAL_EPISODES
from .metrics import RolloutMetrics
from .params import ParameterServer
from .ratelimit import SampleToInsertRatio
from .redis_buffer import RedisBuffer, RedisSpec
from .refresh import LabelRefresher
from .rollout import Rollout
from .sinks import open_sink


@ray.remote(num_cpus=0)
class BufferShard(ReplayRing):
    """One shard of the Ray buffer: a ReplayRing inside an actor, relabelling next to its data.

    With a rate limiter, `add` and `sample` wait until it lets them through (an asyncio actor: a
    waiting call does not hold up the others, which run one at a time on its event loop)."""

    def __init__(self, capacity: int, *, seed: int = 0, limit: SampleToInsertRatio | None = None) -> None:
        super().__init__(capacity, seed=seed)
        self.limit = limit
        self._changed: asyncio.Condition | None = None  # made on the actor's event loop

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def _when(self, allowed) -> None:
        changed = self._condition()
        async with changed:
            await changed.wait_for(lambda: self.limit is None or allowed(self.limit))

    async def _notify(self) -> None:
        changed = self._condition()
        async with changed:
            changed.notify_all()

    async def add(self, batch: TransitionBatch) -> None:
        await self._when(lambda limit: limit.can_insert(self.inserted, self.sampled, len(batch)))
        ReplayRing.add(self, batch)
        await self._notify()

    async def sample(self, batch_size: int) -> tuple[np.ndarray, TransitionBatch]:
        await self._when(lambda limit: limit.can_sample(self.inserted, self.sampled, batch_size))
        result = ReplayRing.sample(self, batch_size)
        await self._notify()
        return result

    async def release(self) -> None:
        """Stop limiting: what waits goes through (a run ending hands over what its actors hold)."""
        self.limit = None
        await self._notify()

    def attach_teacher(self, params: ray.actor.ActorHandle, net: str, obs_shape: tuple[int, ...], n_actions: int) -> None:
        self.teacher_params = params
        self.refresher = LabelRefresher(net, obs_shape, n_actions)

    async def refresh(self, chunk: int) -> int:
        pulled = await self.teacher_params.pull.remote(self.refresher.teacher.version)
        return self.refresher.refresh_pulled(pulled, self, chunk)


@ray.remote(num_cpus=0)
class ParameterServerActor(ParameterServer):
    pass


@ray.remote
class RolloutActor:
    """Steps a vector env next to its data and hands labelled batches to the buffer's sink.

    Before each collect it pulls newer teacher (and student) weights by version, unless the caller
    says it has them already.
    """

    def __init__(
        self,
        env_id: str,
        *,
        net: str,
        obs_shape: tuple[int, ...],
        n_actions: int,
        num_envs: int,
        seed: int,
        actor_id: int,
        params: str,
        task: int = 0,
        sink: str | RedisSpec,
        student: str | None = None,
        student_params: str | None = None,
        run: str = "",
        next_obs: bool = True,
        n_step: int = 1,
        gamma: float = 0.99,
    ) -> None:
        """`params`, `student_params` and a Ray buffer shard (`sink`: its name, or a Redis buffer's
        spec) are looked up here: a restarted actor finds them again (handles passed as arguments
        would pin the restart to objects that may be gone). `run`: the run's name, which its Ray
        metrics are tagged with."""
        self.rollout = Rollout(env_id, net=net, obs_shape=obs_shape, n_actions=n_actions,
                               num_envs=num_envs, seed=seed, actor_id=actor_id, task=task, student=student,
                               next_obs=next_obs, n_step=n_step, gamma=gamma)
        one_torch_thread()
        self.params = ray.get_actor(params)
        self.student_name = student
        self.student_params = ray.get_actor(student_params) if student_params else None
        self.sink = open_sink(sink, seed=seed)
        self.dynamics: dict[str, float] | None = None
        self.metrics = RolloutMetrics(run, actor_id)

    def _has(self, versions: tuple[int, int] | None) -> bool:
        """Whether this actor already holds the given (teacher, student) versions."""
        if versions is None:
            return False
        teacher, student = versions
        return self.rollout.teacher.version >= teacher and (
            self.student_params is None or self.rollout.student.version >= student)

    def _pull(self) -> int:
        refs = [self.params.pull.remote(self.rollout.teacher.version)]
        if self.student_params is not None:
            refs.append(self.student_params.pull.remote(self.rollout.student.version))
        pulled = ray.get(refs)
        version, weights = pulled[0]
        if weights is not None:
            self.rollout.load_weights(version, weights)
        if len(pulled) > 1 and pulled[1][1] is not None and self.student_name in pulled[1][1]:
            # (a size search's candidate dropped since this call was made has no weights: it acts on)
            self.rollout.load_student(pulled[1][0], pulled[1][1][self.student_name])
        return version

    def collect(self, num_steps: int, epsilon: float, beta: float = 1.0,
                dynamics: dict[str, float] | None = None,
                versions: tuple[int, int] | None = None, student: str | None = None) -> dict[str, object]:
        """`dynamics`: the task's parameters now (a changed task), set on this actor's envs when
        they differ from what it has; passed with every call, so restarted actors get it too; so is
        `student`, the one that acts (a size search's largest candidate left), which an actor with a
        student switches to when it differs from its own.
        `versions`: the newest (teacher, student) versions the caller has published; an actor that
        holds them skips the pull (a round trip per call), any other pulls first."""
        if dynamics and dynamics != self.dynamics:
            set_dynamics(self.rollout.env, dynamics)
            self.dynamics = dynamics
        if student is not None and self.student_params is not None and student != self.student_name:
            self.rollout.act_with(student)
            self.student_name = student
        latest = versions[0] if self._has(versions) else self._pull()
        dropped = self.rollout.dropped_nonfinite
        batch, episodes = self.rollout.collect(num_steps, epsilon, beta)
        self.sink.add(batch)
        self.metrics.collected(len(batch))
        return {
            "env_steps": len(batch),
            "dropped_nonfinite": self.rollout.dropped_nonfinite - dropped,
            "episodes": episodes,
            "weights_version": self.rollout.teacher.version,
            "latest_version": latest,
            "student_steps": int((batch.behaviour == 1).sum()),
        }

    def node(self) -> str:
        """Where this actor runs: "IP/node-id prefix" (nodes of one machine share an IP)."""
        return f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()[:8]}"

    def flush(self) -> int:
        """Everything collected so far is in the buffer when this returns."""
        self.sink.flush()
        return self.rollout.env_steps


@ray.remote
class EvaluatorActor:
    """Greedy episodes of the teacher and students, away from the learner's CPU."""

    def __init__(self, env_id: str, *, teacher_net: str, students: tuple[str, ...], obs_shape: tuple[int, ...],
                 n_actions: int, episodes: int, seed: int, tau: float, teacher_params: str,
                 ci_width: float | None = None, max_episodes: int = MAX_FINAL_EPISODES) -> None:
        """`teacher_params`: the named parameter server to take the newest teacher from; by name,
        so a restarted evaluator finds it again (weights as arguments would have to outlive it)."""
        import torch

        from .evaluator import Evaluator  # the students' fidelity is measured in torch

        torch.set_num_threads(1)
        self.evaluator = Evaluator(env_id, teacher_net=teacher_net, students=students, obs_shape=obs_shape,
                                   n_actions=n_actions, episodes=episodes, seed=seed, tau=tau,
                                   ci_width=ci_width, max_episodes=max_episodes)
        self.evaluator.load_teacher(*ray.get(ray.get_actor(teacher_params).pull.remote(-1)))

    def evaluate(self, version: int, students: dict[str, dict[str, np.ndarray]], final: bool = False,
                 teacher: tuple[int, dict[str, np.ndarray]] | None = None,
                 dynamics: dict[str, float] | None = None) -> dict[str, float]:
        """`teacher`: a new teacher (version, weights) to evaluate against from now on;
        `dynamics`: the task's parameters now."""
        if dynamics != self.evaluator.dynamics:
            self.evaluator.set_dynamics(dynamics)
        if teacher is not None:
            self.evaluator.load_teacher(*teacher)
        self.evaluator.load_students(version, students)
        return self.evaluator.evaluate(final=final, names=tuple(students))


@ray.remote(num_cpus=0)
class RedisRefresherActor:
    """Label refresh next to a Redis buffer: its own teacher copy, relabelling chunk by chunk."""

    def __init__(self, spec: RedisSpec, params: ray.actor.ActorHandle, net: str, obs_shape: tuple[int, ...],
                 n_actions: int) -> None:
        self.buffer = RedisBuffer(spec)
        self.params = params
        self.refresher = LabelRefresher(net, obs_shape, n_actions)
        one_torch_thread()

    def refresh(self, chunk: int) -> int:
        pulled = ray.get(self.params.pull.remote(self.refresher.teacher.version))
        return self.refresher.refresh_pulled(pulled, self.buffer, chunk)


def one_torch_thread() -> None:
    """One torch thread where this actor's policies run in torch (a conv teacher's large batches):
    the actor has one CPU. An actor whose policies all run in numpy never imports torch."""
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(1)
