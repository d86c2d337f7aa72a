"""Where actors go: rollout actors spread over the nodes and restarted when they fail; the buffer
shards, parameter servers and evaluator on the head node, so a lost worker node takes only rollout
actors with it (losing the head loses the cluster anyway)."""

from __future__ import annotations

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


def on_head() -> dict[str, object]:
    head = next((n["NodeID"] for n in ray.nodes() if n["Alive"] and "node:__internal_head__" in n["Resources"]),
                ray.get_runtime_context().get_node_id())
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(head, soft=False)}


def check_feasible(cfg: RunConfig) -> None:
    """Refuse at once a rollout actor that no live node could host (instead of pending forever)."""
    need = {"CPU": cfg.actor_cpus, **cfg.actor_resources}
    need = {k: v for k, v in need.items() if v > 0}
    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    if any(all(node.get(k, 0) >= v for k, v in need.items()) for node in nodes):
        return
    offers = "; ".join(", ".join(f"{k} {v:g}" for k, v in sorted(node.items()) if k in need or k == "CPU")
                       for node in nodes) or "no live nodes"
    raise PlacementError(f"no node can host a rollout actor asking for "
                         f"{', '.join(f'{k} {v:g}' for k, v in need.items())}: the nodes offer {offers}")


def actors_per_node(actors: list[ray.actor.ActorHandle], timeout: float = 10.0) -> dict[str, int]:
    """"IP/node-id prefix" → how many of these actors run there (actors not answering in time are
    left out)."""
    refs = [a.node.remote() for a in actors]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
    counts: Counter[str] = Counter()
    for ref in ready:
        try:
            counts[ray.get(ref)] += 1
        except ray.exceptions.RayActorError:
            pass
    return dict(counts)
