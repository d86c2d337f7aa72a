"""Q-networks in torch, built from a spec string (`specs`): the same network everywhere.

A conv network takes pixel observations as stored (uint8 0..255, channels first) and its first op
turns them into floats in [0, 1], so checkpoints and exports carry the scaling. An MLP spec led by
``norm-`` (``norm-256x256``) normalises its observations first (`ObsNorm`: running mean and
variance, clipped), its statistics buffers of the network, so weights, checkpoints and exports
carry them too."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .specs import NORM_CLIP, NORM_EPS, is_conv, layers


def input_dtype(net: str | nn.Module) -> np.dtype:
    """The observations a network takes (a spec, or a module whose first op may be `Pixels`): uint8
    frames for conv nets, float32 vectors otherwise."""
    conv = is_conv(net) if isinstance(net, str) else any(isinstance(m, Pixels) for m in net.modules())
    return np.dtype(np.uint8) if conv else np.dtype(np.float32)


class Pixels(nn.Module):
    """The first op of a conv net: stored frames (uint8 0..255) → floats in [0, 1]."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.to(torch.float32) / 255.0


class ObsNorm(nn.Module):
    """Observation normalisation, the first op of a ``norm-`` network: (obs − mean) / √(var + ε),
    clipped to ±NORM_CLIP. The running mean and variance are buffers: `update` merges a batch into
    them (the DQN teacher's learner, on the rows it trains on); nothing else changes them, so they
    are frozen once training stops, and a student takes its teacher's as they are."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.eps, self.clip = NORM_EPS, NORM_CLIP  # attributes, so TorchScript compiles forward

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.clamp((obs - self.mean) / torch.sqrt(self.var + self.eps), -self.clip, self.clip)

    @torch.no_grad()
    def update(self, obs: torch.Tensor) -> None:
        """Merge a batch [B, dim] into the statistics (Chan et al.'s parallel update, in float64)."""
        x = obs.reshape(len(obs), -1).double()
        n, count = len(x), self.count
        if n == 0:
            return
        batch_mean, batch_var = x.mean(0), x.var(0, unbiased=False)
        total = count + n
        delta = batch_mean - self.mean.double()
        m2 = self.var.double() * count + batch_var * n + delta.square() * count * n / total
        self.mean.copy_(self.mean.double() + delta * n / total)
        self.var.copy_(m2 / total)
        self.count.copy_(total)


def obs_norm(net: nn.Module) -> ObsNorm | None:
    """A network's ObsNorm (its first, for a multi-task network's task 0), None without one."""
    return next((m for m in net.modules() if isinstance(m, ObsNorm)), None)


class QNetwork(nn.Module):
    """From an observation to one Q-value per action: an MLP over a flattened vector, or
    convolutions over a channels-first frame then dense layers."""

    def __init__(self, spec: str, obs_shape: tuple[int, ...], n_actions: int) -> None:
        super().__init__()
        plan = layers(spec, obs_shape, n_actions)
        self.spec = spec.strip()
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.n_actions = int(n_actions)
        self.layers = nn.Sequential(*(_module(layer.kind, layer.shape) for layer in plan))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.layers(obs)


def _module(kind: str, shape: tuple[int, ...]) -> nn.Module:
    if kind == "conv":
        channels, filters, kernel, stride = shape
        return nn.Conv2d(channels, filters, kernel, stride)
    if kind == "linear":
        return nn.Linear(*shape)
    if kind == "norm":
        return ObsNorm(*shape)
    return {"pixels": Pixels, "relu": nn.ReLU, "flatten": nn.Flatten}[kind]()


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def to_numpy(state_dict: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Weights as plain numpy arrays: what crosses process boundaries."""
    return {k: v.detach().cpu().numpy().copy() for k, v in state_dict.items()}


def from_numpy(weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.array(v, copy=True)) for k, v in weights.items()}


def action_latency_us(act, obs_shape: tuple[int, ...], *, dtype: np.dtype | None = None, repeats: int = 2_000) -> float:
    """Median µs for one greedy action at batch 1, on the calling thread (set one torch thread).
    `act`: a QNetwork (its greedy action in torch is timed, on observations of the dtype it takes)
    or any function from observations of `dtype` (default float32) to actions."""
    if isinstance(act, QNetwork):
        net, dtype = act, input_dtype(act.spec)
        act = lambda obs: greedy_actions(net, obs)  # noqa: E731
    import time

    obs = np.zeros((1, *obs_shape), dtype=dtype or np.float32)
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
        return net(as_input(obs, device)).argmax(dim=1).cpu().numpy()


def as_input(obs: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """Observations as a network takes them: uint8 frames as they are (the network scales them), vectors as float32."""
    obs = np.asarray(obs)
    return torch.as_tensor(obs, dtype=torch.uint8 if obs.dtype == np.uint8 else torch.float32, device=device)
