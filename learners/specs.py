"""Network specs, without torch: what a spec string says, the layers it makes, and the weights they
start from. MLP specs are hidden widths joined by 'x' (``256x256``). Conv specs are convolutions,
then dense widths, joined by '-' (``c16k3s1-128``: 16 filters 3×3 stride 1, then a dense layer of
128), or a preset name (``nature``, ``minatar``). An MLP spec led by ``norm-`` (``norm-256x256``)
normalises its observations first. `networks.QNetwork` builds its modules from `layers`, and
`policy.GreedyPolicy` acts in numpy from `initial_weights` until it is given a network's weights, so
processes that only act (rollout actors with MLP teachers, buffer shards, parameter servers) never
import torch."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

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


@dataclass(frozen=True)
class Layer:
    """One module of a QNetwork, in order: `kind` is pixels, conv, relu, flatten, norm or linear;
    `shape` is (in channels, filters, kernel, stride) for conv, (fan in, width) for linear, (dim,) for norm."""

    kind: str
    shape: tuple[int, ...] = ()


def layers(spec: str, obs_shape: tuple[int, ...], n_actions: int) -> list[Layer]:
    """The modules a network of `spec` is made of, for these observations and actions."""
    arch = parse_spec(spec)
    if n_actions < 1:
        raise ValueError(f"action count {n_actions} is not valid: expected at least 1")
    obs_shape = tuple(int(d) for d in obs_shape)
    plan: list[Layer] = []
    if arch.is_conv:
        if len(obs_shape) != 3:
            raise ValueError(f"network spec {spec!r} is convolutional: it needs (channels, height, width) "
                             f"observations, not {obs_shape}")
        plan.append(Layer("pixels"))
        channels = obs_shape[0]
        for filters, kernel, stride in arch.convs:
            plan += [Layer("conv", (channels, filters, kernel, stride)), Layer("relu")]
            channels = filters
        fan_in = int(np.prod(conv_output_shape(arch, obs_shape, spec=spec)))
    else:
        fan_in = int(np.prod(obs_shape))
    plan.append(Layer("flatten"))
    if arch.normalize:
        plan.append(Layer("norm", (fan_in,)))
    for width in arch.widths:
        plan += [Layer("linear", (fan_in, width)), Layer("relu")]
        fan_in = width
    plan.append(Layer("linear", (fan_in, int(n_actions))))
    return plan


def initial_weights(spec: str, obs_shape: tuple[int, ...], n_actions: int,
                    rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """Starting weights of a network of `spec`, named as its QNetwork's state dict: each conv and
    linear layer's weight and bias uniform in ±1/√(fan in), as torch initialises them; a norm
    layer's mean 0, variance 1 and count 0."""
    rng = rng or np.random.default_rng()
    weights: dict[str, np.ndarray] = {}
    for i, layer in enumerate(layers(spec, obs_shape, n_actions)):
        name = f"layers.{i}"
        if layer.kind in ("conv", "linear"):
            if layer.kind == "conv":
                channels, filters, kernel, _ = layer.shape
                shape, fan_in = (filters, channels, kernel, kernel), channels * kernel * kernel
            else:
                fan_in, width = layer.shape
                shape = (width, fan_in)
            bound = 1.0 / np.sqrt(fan_in)
            weights[f"{name}.weight"] = rng.uniform(-bound, bound, shape).astype(np.float32)
            weights[f"{name}.bias"] = rng.uniform(-bound, bound, shape[:1]).astype(np.float32)
        elif layer.kind == "norm":
            weights.update({f"{name}.mean": np.zeros(layer.shape, np.float32),
                            f"{name}.var": np.ones(layer.shape, np.float32), f"{name}.count": np.zeros((), np.float64)})
    return weights


# several tasks in one network (learners/multitask.py)
INPUTS = ("per-task", "pad")  # an input layer per task, or observations zero-padded to the widest task


def padded_shape(obs_shapes: list[tuple[int, ...]], *, spec: str) -> tuple[int, ...]:
    """The shape every task's observations are padded to: the most channels (frames) or the
    longest vector; frames of different heights or widths are refused in one line."""
    shapes = [tuple(int(d) for d in s) for s in obs_shapes]
    if parse_spec(spec).is_conv:
        if len({s[1:] for s in shapes}) > 1:
            raise ValueError(f"network spec {spec!r}: the tasks' frames are {', '.join(map(str, shapes))}; a shared "
                             "trunk needs one height and width: resize them to one size (gymnasium's ResizeObservation)")
        return (max(s[0] for s in shapes), *shapes[0][1:])
    return (max(int(np.prod(s)) for s in shapes),)


def shares(spec: str, inputs: str) -> bool:
    """Whether a multi-task network of `spec` shares a weighted layer between its tasks: with an
    input layer per task and a head per task, it needs two hidden layers or more."""
    arch = parse_spec(spec)
    return inputs != "per-task" or len(arch.convs) + len(arch.widths) >= 2


def check_shares(spec: str, inputs: str) -> None:
    if not shares(spec, inputs):
        raise ValueError(f"network spec {spec!r} has one hidden layer: with an input layer per task and a head per "
                         "task nothing is left to share; give two layers or more (e.g. '64x64'), or pad the inputs")
