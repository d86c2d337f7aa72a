"""Where actors go: rollout actors spread over the nodes and restarted when they fail; the buffer
shards, parameter servers and evaluator on the head node, so a lost worker node takes only rollout
actors with it (losing the head loses the cluster anyway)."""

from __future__ import annotations

import time
from collections import Counter

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .config import RunConfig


class PlacementError(ValueError):
    """A request no node of the cluster can satisfy."""


def rollout_options(cfg: RunConfig) -> dict[str, object]:
    return {
        "num_cpus": cfg.actor_cpus,
        "resources": dict(cfg.actor_resources) or None,
        "scheduling_strategy": "SPREAD",
        "max_restarts": -1,  # restarted on failure, on any node that can host it
        "max_task_retries": 0,  # a collect lost with its actor is counted and issued again, not replayed
    }


def _head() -> dict[str, object] | None:
    """The head node's entry in `ray.nodes()` (None if the cluster does not mark one)."""
    return next((n for n in ray.nodes() if n["Alive"] and "node:__internal_head__" in n["Resources"]), None)


def on_head() -> dict[str, object]:
    head = _head()
    node = head["NodeID"] if head else ray.get_runtime_context().get_node_id()
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False)}


def check_feasible(cfg: RunConfig, learner_resources: dict[str, float] | None = None) -> None:
    """Refuse at once a rollout actor, or a learner, that no live node could host (instead of
    leaving it pending forever)."""
    _check_node_for("a rollout actor", {"CPU": cfg.actor_cpus, **cfg.actor_resources})
    if learner_resources:
        _check_node_for("the learner", learner_resources)


def _check_node_for(what: str, need: dict[str, float]) -> None:
    need = {k: v for k, v in need.items() if v > 0}
    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    if any(all(node.get(k, 0) >= v for k, v in need.items()) for node in nodes):
        return
    offers = "; ".join(", ".join(f"{k} {v:g}" for k, v in sorted(node.items()) if k in need or k == "CPU")
                       for node in nodes) or "no live nodes"
    raise PlacementError(f"no node can host {what} asking for "
                         f"{', '.join(f'{k} {v:g}' for k, v in need.items())}: the nodes offer {offers}")


def check_memory(cfg: RunConfig, record_size: int) -> None:
    """Refuse a buffer that holds less than one batch, one the head node (which holds the Ray buffer
    shards) has not the memory for, or more transitions in flight than its object store holds."""
    capacity = cfg.capacity_for(record_size)
    if capacity < cfg.batch_rows:
        raise PlacementError(f"buffer_bytes {cfg.buffer_bytes} holds {capacity} transitions of {record_size} bytes, "
                             f"fewer than the batch size {cfg.batch_rows}: expected at least "
                             f"{cfg.batch_rows * record_size} bytes")
    node = _head()
    head = node["Resources"] if node else ray.cluster_resources()
    need = capacity * record_size
    if cfg.buffer == "ray" and need > head.get("memory", 0):
        raise PlacementError(f"a buffer of {capacity:,} transitions of {record_size} bytes needs {_gib(need)}: the "
                             f"head node, which holds the buffer shards, has {_gib(head.get('memory', 0))} of memory "
                             "for Ray; lower --buffer-capacity, or cap it with --buffer-bytes")
    call = cfg.steps_per_call * cfg.envs_per_actor
    # each actor: a batch being added and the next being made; the learner: a chunk and the prefetched one
    flight = (cfg.actors * 2 * call + 2 * cfg.batch_rows * cfg.updates_per_sample) * record_size
    if flight > head.get("object_store_memory", 0):
        raise PlacementError(f"transitions in flight need {_gib(flight)} ({cfg.actors} actors x 2 batches of {call:,}, "
                             f"and 2 sampled chunks): the head node's object store holds "
                             f"{_gib(head.get('object_store_memory', 0))}; lower --envs-per-actor or --actors")


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def actor_states(actors: list[ray.actor.ActorHandle]) -> list[dict[str, object]]:
    """Each actor's entry in the cluster's actor table (GCS): state, node, restarts. Read from the
    GCS, not by calling the actor, so a busy or pending actor is reported too. Ray's public state
    API needs the dashboard, which an embedded runtime does not start; this is the table behind it."""
    from ray._private import state

    return [state.actors(actor_id=a._actor_id.hex()) for a in actors]


def fleet(actors: list[ray.actor.ActorHandle]) -> dict[str, object]:
    """Rollout actors by where they run: "IP/node-id prefix" → count, plus those pending (waiting
    for a node with room, e.g. one an autoscaler is adding), restarting, and restarts so far."""
    per_node: Counter[str] = Counter()
    pending = restarting = restarts = 0
    for entry in actor_states(actors):
        restarts += int(entry.get("NumRestarts", 0))
        state = entry.get("State")
        if state == "ALIVE":
            address = entry["Address"]
            per_node[f"{address['IPAddress']}/{address['NodeID'][:8]}"] += 1
        elif state == "RESTARTING":
            restarting += 1
        elif state in ("DEPENDENCIES_UNREADY", "PENDING_CREATION"):
            pending += 1
    return {"per_node": dict(sorted(per_node.items())), "alive": sum(per_node.values()), "pending": pending,
            "restarting": restarting, "restarts": restarts}


def actors_per_node(actors: list[ray.actor.ActorHandle], timeout: float = 0.0) -> dict[str, int]:
    """"IP/node-id prefix" → how many of these actors are alive there, waiting up to `timeout`
    seconds for all of them to be up."""
    deadline = time.monotonic() + timeout
    while True:
        view = fleet(actors)
        if view["alive"] == len(actors) or time.monotonic() >= deadline:
            return view["per_node"]
        time.sleep(0.2)
