"""Q-networks built from a spec string: the same network everywhere.

MLP specs are hidden widths joined by 'x' (``256x256``). Conv specs are convolutions, then dense
widths, joined by '-' (``c16k3s1-128``: 16 filters 3×3 stride 1, then a dense layer of 128), or a
preset name (``nature``, ``minatar``). A conv network takes pixel observations as stored (uint8
0..255, channels first) and its first op turns them into floats in [0, 1], so checkpoints and
exports carry the scaling. An MLP spec led by ``norm-`` (``norm-256x256``) normalises its
observations first (`ObsNorm`: running mean and variance, clipped), its statistics buffers of the
network, so weights, checkpoints and exports carry them too."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

_WIDTHS = re.compile(r"^[1-9][0-9]*(x[1-9][0-9]*)*$")
_CONV = re.compile(r"^c([1-9][0-9]*)k([1-9][0-9]*)s([1-9][0-9]*)$")
_MAX_WIDTH = 65536
NORM = "norm"  # a spec's first part: the network normalises its observations (ObsNorm)
NORM_CLIP = 10.0  # normalised observations are clipped to ±this (as SB3's VecNormalize clips them)
NORM_EPS = 1e-8
PRESETS = {
    "nature": "c32k8s4-c64k4s2-c64k3s1-512",  # Mnih et al. 2015, the Atari DQN
    "minatar": "c16k3s1-128",  # Young & Tian 2019, MinAtar's DQN
}
SPEC_HELP = ("expected hidden layer widths joined by 'x' (e.g. '256x256' or '64'), convolutions then widths "
             f"joined by '-' (e.g. 'c16k3s1-128': 16 filters 3x3 stride 1, then 128), or a preset: {', '.join(PRESETS)}; "
             f"'{NORM}-' before widths normalises the observations (e.g. '{NORM}-256x256')")


@dataclass(frozen=True)
class Architecture:
    """What a spec says: convolutions (filters, kernel, stride), then dense hidden widths."""

    convs: tuple[tuple[int, int, int], ...]
    widths: tuple[int, ...]
    normalize: bool = False  # ObsNorm first

    @property
    def is_conv(self) -> bool:
        return bool(self.convs)


def parse_spec(spec: str) -> Architecture:
    """``"256x256"`` → widths (256, 256); ``"c16k3s1-128"`` → convs ((16, 3, 1),), widths (128,)."""
    text = spec.strip() if isinstance(spec, str) else ""
    normalize = text.startswith(NORM + "-")
    text = text[len(NORM) + 1:] if normalize else text
    text = PRESETS.get(text, text)
    convs, widths, ok = [], (), bool(text)
    for i, part in enumerate(text.split("-") if ok else ()):
        conv = _CONV.match(part)
        if conv and normalize:
            raise ValueError(f"network spec {spec!r} normalises frames: '{NORM}-' is for vector observations (a conv "
                             "net scales its frames to [0, 1] itself); drop it, or give widths such as "
                             f"'{NORM}-256x256'")
        if conv and not widths:
            convs.append(tuple(int(g) for g in conv.groups()))
        elif _WIDTHS.match(part) and not widths and (i > 0 or "-" not in text):
            widths = tuple(int(w) for w in part.split("x"))
        else:
            ok = False
    if not ok:
        raise ValueError(f"network spec {spec!r} is not valid: {SPEC_HELP}")
    if max((*widths, *(c[0] for c in convs))) > _MAX_WIDTH:
        raise ValueError(f"network spec {spec!r} has a layer wider than {_MAX_WIDTH}")
    return Architecture(tuple(convs), widths, normalize)


def normalized(spec: str) -> str:
    """The spec with observation normalisation (as it is, when it has it)."""
    return spec if parse_spec(spec).normalize else f"{NORM}-{spec.strip()}"


def is_conv(spec: str) -> bool:
    return parse_spec(spec).is_conv


def input_dtype(net: str | nn.Module) -> np.dtype:
    """The observations a network takes (a spec, or a module whose first op may be `Pixels`): uint8
    frames for conv nets, float32 vectors otherwise."""
    conv = is_conv(net) if isinstance(net, str) else any(isinstance(m, Pixels) for m in net.modules())
    return np.dtype(np.uint8) if conv else np.dtype(np.float32)


def check_fits(spec: str, obs_shape: tuple[int, ...], *, pixels: bool) -> None:
    """Refuse a network that cannot take these observations, in one line: an MLP for pixels, a
    conv net for vectors, or convolutions that shrink the frame to nothing."""
    arch = parse_spec(spec)
    if pixels and not arch.is_conv:
        raise ValueError(f"network spec {spec!r} is an MLP, but the env's observations are images of shape "
                         f"{tuple(obs_shape)}: give a conv spec such as 'minatar', 'nature' or 'c16k3s1-128'")
    if not pixels and arch.is_conv:
        raise ValueError(f"network spec {spec!r} is convolutional, but the env's observations are vectors of shape "
                         f"{tuple(obs_shape)}: give an MLP spec such as '256x256'")
    if arch.is_conv:
        conv_output_shape(arch, obs_shape, spec=spec)


def conv_output_shape(arch: Architecture, obs_shape: tuple[int, ...], *, spec: str = "") -> tuple[int, int, int]:
    """(channels, height, width) after the convolutions (no padding), or a one-line refusal."""
    c, h, w = obs_shape
    for i, (filters, kernel, stride) in enumerate(arch.convs):
        if kernel > h or kernel > w:
            raise ValueError(f"network spec {spec!r}: convolution {i + 1} has a {kernel}x{kernel} kernel but its "
                             f"input is {h}x{w}: use smaller kernels or strides for {tuple(obs_shape)} frames")
        c, h, w = filters, (h - kernel) // stride + 1, (w - kernel) // stride + 1
    return c, h, w


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
        arch = parse_spec(spec)
        if n_actions < 1:
            raise ValueError(f"action count {n_actions} is not valid: expected at least 1")
        self.spec = spec.strip()
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.n_actions = int(n_actions)
        layers: list[nn.Module] = []
        if arch.is_conv:
            if len(self.obs_shape) != 3:
                raise ValueError(f"network spec {spec!r} is convolutional: it needs (channels, height, width) "
                                 f"observations, not {self.obs_shape}")
            layers.append(Pixels())
            channels = self.obs_shape[0]
            for filters, kernel, stride in arch.convs:
                layers += [nn.Conv2d(channels, filters, kernel, stride), nn.ReLU()]
                channels = filters
            fan_in = int(np.prod(conv_output_shape(arch, self.obs_shape, spec=spec)))
        else:
            fan_in = int(np.prod(self.obs_shape))
        layers.append(nn.Flatten())
        if arch.normalize:
            layers.append(ObsNorm(fan_in))
        for width in arch.widths:
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
    """Acts from a Q-network's weights: inference only, on the calling thread.

    Each forward pass runs in numpy or torch, whichever is faster for the network and the batch
    (`benchmarks/inference.py`): numpy for MLPs (≈ 8 µs against torch's 25 µs per call at batch 1
    for 256x256 here, and no slower at batch 32+) and for small conv nets on small batches (a
    rollout actor's 8 frames) and at batch 1, torch for large conv nets and large batches (relabelling).
    Loaded weights must have the names and shapes of the spec's `QNetwork`; until the first load it
    acts with that network's initial ones. `backend` fixes one of BACKENDS.
    """

    def __init__(self, spec: str, obs_shape: tuple[int, ...], n_actions: int, *, backend: str | None = None) -> None:
        if backend is not None and backend not in BACKENDS:
            raise ValueError(f"inference backend {backend!r} is not known: expected one of {', '.join(BACKENDS)}")
        net = QNetwork(spec, obs_shape, n_actions).eval()
        self.spec = spec
        self.obs_shape = net.obs_shape
        self.shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        self.version = -1
        conv = is_conv(spec)
        self.backend = backend
        self.torch_from = 0 if backend == "torch" else (1 << 62) if backend == "numpy" or not conv else \
            max(2, -(-TORCH_BATCH_MACS // macs(spec, obs_shape)))  # batch sizes that run in torch
        self.net = net if self.torch_from < (1 << 62) else None
        self.numpy = numpy_forward(spec, self.obs_shape, to_numpy(net.state_dict())) if backend != "torch" else None

    def load(self, version: int, weights: dict[str, np.ndarray]) -> None:
        """Act with `weights` from now on; refuses weights of another network."""
        shapes = {k: tuple(np.shape(v)) for k, v in weights.items()}
        if shapes != self.shapes:
            raise ValueError(f"weights of shapes {shapes} do not fit network {self.spec!r}: expected {self.shapes}")
        if self.net is not None:
            self.net.load_state_dict(from_numpy(weights))
        if self.numpy is not None:
            self.numpy = numpy_forward(self.spec, self.obs_shape, weights)
        self.version = version

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        if len(obs) >= self.torch_from:
            with torch.inference_mode():
                return self.net(as_input(obs)).numpy()
        return self.numpy(obs)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.q_values(obs).argmax(axis=1)


BACKENDS = ("numpy", "torch")
# a conv net's batch runs in torch from this many multiply-adds (frames x MACs per frame), and from two frames:
# numpy won up to 1.3M a batch and at batch 1, torch from 5.4M (benchmarks/inference.py)
TORCH_BATCH_MACS = 3_000_000


def macs(spec: str, obs_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass for one observation."""
    arch = parse_spec(spec)
    total, shape = 0, tuple(obs_shape)
    if arch.is_conv:
        c, h, w = shape
        for filters, kernel, stride in arch.convs:
            h, w = (h - kernel) // stride + 1, (w - kernel) // stride + 1
            total += filters * h * w * c * kernel * kernel
            c = filters
        shape = (c, h, w)
    fan_in = int(np.prod(shape))
    for width in arch.widths:
        total += fan_in * width
        fan_in = width
    return total


def numpy_forward(spec: str, obs_shape: tuple[int, ...], weights: dict[str, np.ndarray]):
    """The network of `spec` as a numpy function from observations [B, *obs_shape] to Q-values.

    Convolutions are one matrix product each over the frame's windows (im2col), with activations
    kept channels-last; the first dense layer's rows are permuted once to match."""
    arch = parse_spec(spec)
    names = [k[: -len(".weight")] for k in weights if k.endswith(".weight")]
    params = [(np.asarray(weights[f"{k}.weight"], dtype=np.float32), np.asarray(weights[f"{k}.bias"], dtype=np.float32))
              for k in names]
    convs = []
    for (w, b), (_, kernel, stride) in zip(params, arch.convs):  # [F, C, k, k] → [k·k·C, F] for windows (i, j, c)
        convs.append((w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0]).copy(), b, kernel, stride))
    dense = [(w.T.copy(order="C"), b) for w, b in params[len(arch.convs):]]  # x @ w layout
    norm = next(((np.asarray(weights[k], dtype=np.float32), np.sqrt(np.asarray(weights[k[:-5] + ".var"], dtype=np.float32)
                                                                     + np.float32(NORM_EPS)))
                 for k in weights if k.endswith(".mean")), None) if arch.normalize else None
    if arch.is_conv:  # torch flattens (C, H, W); the activations here are (H, W, C)
        c, h, w = conv_output_shape(arch, tuple(obs_shape))
        first, bias = dense[0]
        dense[0] = (first.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(c * h * w, -1).copy(), bias)

    def forward(obs: np.ndarray) -> np.ndarray:
        n = len(obs)
        if convs:
            x = np.asarray(obs).transpose(0, 2, 3, 1).astype(np.float32) * np.float32(1 / 255)  # Pixels, channels-last
            for w, b, kernel, stride in convs:
                win = np.lib.stride_tricks.sliding_window_view(x, (kernel, kernel), axis=(1, 2))[:, ::stride, ::stride]
                ho, wo = win.shape[1], win.shape[2]  # win: [B, Ho, Wo, C, k, k] → rows of (i, j, c)
                x = win.transpose(0, 1, 2, 4, 5, 3).reshape(n * ho * wo, -1) @ w
                x += b
                np.maximum(x, 0.0, out=x)
                x = x.reshape(n, ho, wo, -1)
        else:
            x = np.asarray(obs, dtype=np.float32)
        x = x.reshape(n, -1)
        if norm is not None:
            x = np.clip((x - norm[0]) / norm[1], -NORM_CLIP, NORM_CLIP)
        last = len(dense) - 1
        for i, (w, b) in enumerate(dense):
            x = x @ w
            x += b
            if i < last:
                np.maximum(x, 0.0, out=x)
        return x

    return forward


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
