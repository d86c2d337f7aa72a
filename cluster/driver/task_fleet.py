"""A multi-task run's rollout actors: each task's are a group of the run's Collector, started in
task blocks (all of task 0's, then task 1's, …, so SPREAD, which places actors in turn over the
nodes, spreads each task over them), counted per task (`--task-actors 2:1:1`, or `--actors` split
evenly) and scaled per task (`qdistill scale RUN --task ENV --actors N`) or in all."""

from __future__ import annotations

from ..config import RunConfig
from ..placement import fleet
from .collect import Collector


class TaskFleet:
    """Mixed into both multi-task drivers, ahead of Driver: their fleet's start, scaling and views."""

    config: RunConfig
    collector: Collector

    def actor_task(self, actor: int) -> int:
        """The task rollout actor `actor` collects."""
        return self.collector.groups[actor]

    def start_fleet(self) -> None:
        for task, actors in enumerate(self.config.actors_per_task):
            self.collector.resize(actors, task)

    def resize(self, actors: int, task: str | None) -> None:
        """`task`'s actors to `actors`; None: `actors` in all, split evenly (`qdistill scale` has
        checked both: a count that does not divide, or an env not among the tasks, changes nothing)."""
        envs = self.config.envs
        if task is None and actors % len(envs) == 0:
            for t in range(len(envs)):
                self.collector.resize(actors // len(envs), t)
        elif task in envs:
            self.collector.resize(actors, envs.index(task))

    def fleet_view(self) -> dict[str, object]:
        """The collector's view, with each task's wanted actors (`qdistill status` and `scale`)."""
        return {**self.collector.view(),
                "per_task": {env: self.collector.wanted_in(t) for t, env in enumerate(self.config.envs)}}

    def actors_per_task(self) -> dict[str, dict[str, int]]:
        """Each task's actors per node ("IP/node-id prefix" → alive there), as the run ends."""
        handles = self.collector.actors
        return {env: fleet([h for i, h in handles.items() if self.actor_task(i) == t])["per_node"]
                for t, env in enumerate(self.config.envs)}
