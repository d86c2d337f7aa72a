"""Q-networks built from a spec string such as ``256x256``: the same network everywhere."""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

_SPEC = re.compile(r"^[1-9][0-9]*(x[1-9][0-9]*)*$")
_MAX_WIDTH = 65536


def parse_spec(spec: str) -> tuple[int, ...]:
    """``"256x256"`` → ``(256, 256)``: the hidden layer widths of an MLP."""
    if not isinstance(spec, str) or not _SPEC.match(spec.strip()):
        raise ValueError(
            f"network spec {spec!r} is not valid: expected hidden layer widths joined by 'x', "
            "each a positive integer, e.g. '256x256' or '64'"
        )
    widths = tuple(int(w) for w in spec.strip().split("x"))
    if max(widths) > _MAX_WIDTH:
        raise ValueError(f"network spec {spec!r} has a layer wider than {_MAX_WIDTH}")
    return widths


class QNetwork(nn.Module):
    """MLP from a flattened observation to one Q-value per action."""

    def __init__(self, spec: str, obs_shape: tuple[int, ...], n_actions: int) -> None:
        super().__init__()
        widths = parse_spec(spec)
        if n_actions < 1:
            raise ValueError(f"action count {n_actions} is not valid: expected at least 1")
        self.spec = spec.strip()
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.n_actions = int(n_actions)
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = int(np.prod(self.obs_shape))
        for width in widths:
            layers += [nn.Linear(fan_in, width), nn.ReLU()]
            fan_in = width
        layers.append(nn.Linear(fan_in, self.n_actions))
        self.layers = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.layers(obs)


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def to_numpy(state_dict: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Weights as plain numpy arrays: what crosses process boundaries."""
    return {k: v.detach().cpu().numpy().copy() for k, v in state_dict.items()}


def from_numpy(weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.array(v, copy=True)) for k, v in weights.items()}


class GreedyPolicy:
    """Acts from a Q-network's weights: inference only, in numpy.

    For the small MLPs qdistill runs, a numpy forward pass costs a fraction of torch's per-call
    overhead (≈ 8 µs against 25 µs at batch 1 for 256x256 here) and no less at batch 32+, so the
    rollout and evaluation hot loops never enter torch. Loaded weights must have the names and
    shapes of the spec's `QNetwork`; until the first load it acts with that network's initial ones.
    """

    def __init__(self, spec: str, obs_shape: tuple[int, ...], n_actions: int) -> None:
        initial = to_numpy(QNetwork(spec, obs_shape, n_actions).state_dict())
        self.spec = spec
        self.shapes = {k: v.shape for k, v in initial.items()}
        self.version = -1
        self.layers = self._numpy_layers(initial)

    @staticmethod
    def _numpy_layers(weights: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        linear = [k[: -len(".weight")] for k in weights if k.endswith(".weight")]
        return [(np.array(weights[f"{k}.weight"], dtype=np.float32).T.copy(order="C"),  # own copies, x @ w layout
                 np.array(weights[f"{k}.bias"], dtype=np.float32)) for k in linear]

    def load(self, version: int, weights: dict[str, np.ndarray]) -> None:
        """Act with `weights` from now on; refuses weights of another network."""
        shapes = {k: np.shape(v) for k, v in weights.items()}
        if shapes != self.shapes:
            raise ValueError(f"weights of shapes {shapes} do not fit network {self.spec!r}: expected {self.shapes}")
        self.layers = self._numpy_layers(weights)
        self.version = version

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float32).reshape(len(obs), -1)
        last = len(self.layers) - 1
        for i, (w, b) in enumerate(self.layers):
            x = x @ w
            x += b
            if i < last:
                np.maximum(x, 0.0, out=x)
        return x

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.q_values(obs).argmax(axis=1)


def action_latency_us(act, obs_shape: tuple[int, ...], *, repeats: int = 2_000) -> float:
    """Median µs for one greedy action at batch 1, on the calling thread (set one torch thread).
    `act`: a network (its greedy action is timed) or any function from observations to actions."""
    if isinstance(act, nn.Module):
        net = act
        act = lambda obs: greedy_actions(net, obs)  # noqa: E731
    import time

    obs = np.zeros((1, *obs_shape), dtype=np.float32)
    for _ in range(100):
        act(obs)
    samples = []
    for _ in range(repeats // 100):
        start = time.perf_counter()
        for _ in range(100):
            act(obs)
        samples.append((time.perf_counter() - start) / 100 * 1e6)
    return float(np.median(samples))


def greedy_actions(net: nn.Module, obs: np.ndarray) -> np.ndarray:
    """argmax_a Q(s, a) for a batch of observations."""
    device = next(net.parameters()).device
    with torch.inference_mode():
        return net(torch.as_tensor(obs, dtype=torch.float32, device=device)).argmax(dim=1).cpu().numpy()
