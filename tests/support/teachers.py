"""Untrained teacher checkpoints: for tests of plumbing, not of scores."""

from pathlib import Path

import torch

from qdistill.learners import checkpoint
from qdistill.learners.networks import QNetwork, to_numpy


def untrained_teachers(folder: Path, tasks: dict[str, tuple[tuple[int, ...], int]], *, net: str = "32",
                       seed: int = 0) -> dict[str, str]:
    """A checkpoint of a freshly initialised `net` per env (env → (observation shape, actions)): env → path."""
    paths = {}
    for env, (shape, actions) in tasks.items():
        torch.manual_seed(seed)
        q = QNetwork(net, shape, actions)
        paths[env] = str(checkpoint.save(folder / f"{env.replace('/', '-')}.pt", checkpoint.Checkpoint(
            net, shape, actions, env, 0, to_numpy(q.state_dict()))))
    return paths
