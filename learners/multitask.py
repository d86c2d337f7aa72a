"""A multi-task Q-network: one spec, a trunk shared by every task, one head per task (action
counts may differ) and, where observation shapes differ, one input layer per task or inputs
zero-padded to the widest task (Rusu et al. 2016: a shared trunk, a head per game).

Each task's path through the network is an ordinary `QNetwork` of that task's observation shape
and action count (`task_network`), so evaluation, rollout actors, checkpoints and export handle
one task's student exactly as they handle a single-task one. With input layers per task the
task networks share their middle modules; with padding they share the input layer too, and a
task network's input layer holds the shared weights for that task's own channels (a zero-padded
channel adds nothing, so the two compute the same Q-values)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .networks import QNetwork
from .specs import INPUTS, check_shares, padded_shape

class MultiTaskQNetwork(nn.Module):
    """`forward(obs, task)`: Q-values [B, n_actions[task]] for a batch of one task's observations."""

    def __init__(self, spec: str, obs_shapes: list[tuple[int, ...]], n_actions: list[int], *,
                 inputs: str = "per-task") -> None:
        super().__init__()
        if inputs not in INPUTS:
            raise ValueError(f"multi-task inputs {inputs!r} are not known: expected one of {', '.join(INPUTS)}")
        if len(obs_shapes) != len(n_actions) or len(obs_shapes) < 2:
            raise ValueError(f"a multi-task network needs two tasks or more, each with an observation shape and an "
                             f"action count: got {len(obs_shapes)} shapes and {len(n_actions)} action counts")
        self.spec = spec.strip()
        self.inputs = inputs
        self.obs_shapes = [tuple(int(d) for d in s) for s in obs_shapes]
        self.n_actions = [int(a) for a in n_actions]
        self.padded = padded_shape(self.obs_shapes, spec=spec) if inputs == "pad" else None
        shapes = [self.padded] * len(obs_shapes) if self.padded else self.obs_shapes
        self.tasks = nn.ModuleList(QNetwork(spec, s, a) for s, a in zip(shapes, self.n_actions))
        layers = self.tasks[0].layers
        weighted = [i for i, m in enumerate(layers) if isinstance(m, (nn.Linear, nn.Conv2d))]
        self.input_index = weighted[0]  # the first weighted layer: per task, or shared over padded inputs
        shared = [i for i in range(len(layers)) if weighted[0] < i < weighted[-1]] if inputs == "per-task" else \
            [i for i in range(len(layers)) if i < weighted[-1]]
        check_shares(spec, inputs)
        for net in self.tasks[1:]:
            for i in shared:
                net.layers[i] = layers[i]

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    def forward(self, obs: torch.Tensor, task: int) -> torch.Tensor:
        if self.padded is not None:
            obs = pad(obs, self.padded, self.obs_shapes[task])
        return self.tasks[task](obs)

    def task_network(self, task: int) -> QNetwork:
        """Task `task`'s path as a plain QNetwork of its own observation shape: the same Q-values."""
        if self.padded is None:
            return self.tasks[task]
        net = QNetwork(self.spec, self.obs_shapes[task], self.n_actions[task])
        state = self.tasks[task].state_dict()
        key = f"layers.{self.input_index}.weight"
        state[key] = input_weights(state[key], self.obs_shapes[task], self.padded)
        net.load_state_dict(state)
        return net


def task_of(rows: np.ndarray, n_tasks: int) -> int:
    """The one task a learner batch's rows (their `task` column) belong to; mixed rows are refused.
    (A min and a max, not np.unique: this runs on every learner step, and a sort cost 4% of a small
    student's step.)"""
    if len(rows):
        lo, hi = int(rows.min()), int(rows.max())
        if lo == hi and 0 <= lo < n_tasks:
            return lo
    raise ValueError(f"a learner batch holds rows of tasks {np.unique(rows).tolist()}: expected the rows of one task "
                     f"among 0..{n_tasks - 1}")


def build(spec: str, tasks: list[tuple[tuple[int, ...], int]], *, inputs: str = "per-task") -> nn.Module:
    """A QNetwork for one task, a MultiTaskQNetwork for several: (observation shape, action count) each."""
    if len(tasks) == 1:
        return QNetwork(spec, *tasks[0])
    return MultiTaskQNetwork(spec, [s for s, _ in tasks], [a for _, a in tasks], inputs=inputs)


def forward(net: nn.Module, obs: torch.Tensor, task: int) -> torch.Tensor:
    """Q-values of one task's observations, from a single- or multi-task network."""
    return net(obs, task) if isinstance(net, MultiTaskQNetwork) else net(obs)


def task_network(net: nn.Module, task: int) -> QNetwork:
    return net.task_network(task) if isinstance(net, MultiTaskQNetwork) else net


def pad(obs: torch.Tensor, shape: tuple[int, ...], own: tuple[int, ...]) -> torch.Tensor:
    """Observations [B, *own] zero-padded to [B, *shape]: more channels, or a longer vector. The
    widths come from the shapes, not the tensor, so a traced or exported graph takes any batch."""
    if len(shape) == 1:
        return F.pad(obs.flatten(1), (0, shape[0] - int(np.prod(own))))
    return F.pad(obs, (0, 0, 0, 0, 0, shape[0] - own[0]))  # F.pad's widths: the last dimension's first


def input_weights(weight: torch.Tensor, obs_shape: tuple[int, ...], padded: tuple[int, ...]) -> torch.Tensor:
    """The padded input layer's weights that a task's own observations meet: its channels (a
    conv's [F, C, k, k]) or its vector's entries (a linear's [W, D])."""
    keep = obs_shape[0] if len(padded) == 3 else int(np.prod(obs_shape))
    return weight[:, :keep].clone()
