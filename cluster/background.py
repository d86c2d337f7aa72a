"""Every run lives in a named Ray actor, the run's learner: `qdistill run` follows it (progress line,
Ctrl-C asks it to stop); `--detach` leaves it running as a detached actor, and `status`, `scale` and
`stop` reach it by name from any machine of the cluster."""

from __future__ import annotations

import os
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import ray

from .control import RunControl
from .jobs import Job, execute

NAMESPACE = "qdistill"
PREFIX = "run:"


class RunNotFound(ValueError):
    """No run of that name on the cluster."""


# A learner that dies (its process killed, its node lost) is restarted by Ray, up to 3 times, and
# `start` runs again on it: the run resumes from its run directory's last state.
@ray.remote(num_cpus=0, max_concurrency=4, max_restarts=3, max_task_retries=-1)
class RunActor:
    """Hosts one run: `start` executes it on one thread; `status`, `scale`, `stop` answer on others."""

    def __init__(self, job: Job, name: str, detached: bool) -> None:
        with warnings.catch_warnings():  # Ray's own property uses a deprecated one of its own
            warnings.simplefilter("ignore")
            restarted = ray.get_runtime_context().was_current_actor_reconstructed
        self.job = replace(job, resume=True) if restarted else job
        self.control = RunControl()
        if restarted:
            self.control.publish(learner_restarted=True)
        self.control.publish(run=name, out=job.config.out, env=job.config.env, command=job.command,
                             detached=detached, device=job.device,
                             node=f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()[:8]}")

    def start(self) -> dict[str, object]:
        try:
            summary = execute(self.job, self.control)
        except ray.exceptions.RayActorError as exc:
            # one of the run's own actors is gone for good (a buffer shard, a parameter server): the
            # learner's process exits, Ray restarts it, and the run resumes from its last state
            print(f"qdistill: {type(exc).__name__} in the run, restarting its learner: {exc}", file=sys.stderr)
            os._exit(1)
        except BaseException as exc:
            self.control.publish(state="failed", error=f"{type(exc).__name__}: {exc}")
            raise
        self.control.publish(state="finished", stop_reason=summary["stop_reason"])
        return summary

    def status(self) -> dict[str, object]:
        return self.control.status()

    def scale(self, actors: int, task: str | None = None) -> None:
        self.control.request_scale(actors, task)

    def stop(self) -> None:
        self.control.request_stop()

    def swap_teacher(self, teacher) -> None:
        self.control.request_teacher(teacher)


def run_name(out: str) -> str:
    """A run is named after its directory."""
    return Path(out).name


def learner_options(resources: dict[str, float]) -> dict[str, object]:
    """Where the run's learner goes: on this machine (beside its run directory) by default, or on
    any node with the resources asked for (a GPU: {"GPU": 1})."""
    if not resources:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = ray.get_runtime_context().get_node_id()
        return {"scheduling_strategy": NodeAffinitySchedulingStrategy(here, soft=False)}
    rest = {k: v for k, v in resources.items() if k not in ("CPU", "GPU")}
    return {"num_cpus": resources.get("CPU", 0), "num_gpus": resources.get("GPU", 0), "resources": rest or None}


def launch(job: Job, *, detach: bool, learner_resources: dict[str, float]) -> tuple[ray.actor.ActorHandle, ray.ObjectRef]:
    name = run_name(job.config.out)
    if name in runs():
        raise ValueError(f"a run named {name!r} is already on this cluster (see `qdistill status {name}`): "
                         "give another --out, or stop that run first")
    actor = RunActor.options(name=PREFIX + name, namespace=NAMESPACE, lifetime="detached" if detach else None,
                             **learner_options(learner_resources)).remote(job, name, detach)
    return actor, actor.start.remote()


def runs() -> list[str]:
    """Names of the runs on the cluster (running, or finished and detached)."""
    return sorted(a["name"][len(PREFIX):] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a["namespace"] == NAMESPACE and a["name"].startswith(PREFIX))


def find(name: str) -> ray.actor.ActorHandle:
    name = run_name(name)  # a run directory's path names its run too
    try:
        return ray.get_actor(PREFIX + name, namespace=NAMESPACE)
    except ValueError:
        known = ", ".join(runs()) or "none"
        raise RunNotFound(f"no run named {name!r} on this cluster: the runs here are {known}") from None


def wait_started(actor: ray.actor.ActorHandle, timeout: float = 120.0) -> dict[str, object]:
    """The first status past "starting" (the run's actors placed), or the last one seen at `timeout`."""
    deadline = time.monotonic() + timeout
    status = ray.get(actor.status.remote())
    while status["state"] == "starting" and time.monotonic() < deadline:
        time.sleep(0.5)
        status = ray.get(actor.status.remote())
    return status
