"""int8 weights for the exported students' inner layers, rounded so the greedy action's margin
stays close to float.

Each layer gets symmetric per-output-channel scales, row max / 127, the scales onnxruntime's
quantiser computes. Rounding each weight to its nearest step (what the quantisers do) ignores that
the errors of one output's weights add up over its inputs; on LunarLander students whose greedy
actions are decided by Q-value gaps of 1e-3, that flipped 5% of actions. Here the weights are
rounded one input column at a time, and each column's rounding error is pushed onto the columns not
yet rounded, weighted by how the inputs co-vary on calibration states (GPTQ: Frantar et al., 2023,
"Optimal Brain Compression" without the pruning). What is kept is not the layer's outputs alike but
the margin between the network's two best actions: each output's error counts, state by state, as
much as that output moves the margin there (one second-moment matrix per output row), so errors go
where they change no decision. Each row's largest weight is exactly 127 steps and is never changed,
so a quantiser that computes its own scales finds the same ones and leaves the rounding as it is.

Before rounding, each inner layer's inputs are rescaled unit by unit, the float function unchanged
(`equalised`): dynamic quantisation gives a layer's whole input one int8 step per call, set by its
largest value, so a unit with a wide range but little influence coarsens every other unit's step.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

QMAX = 127
DAMP = 0.01  # added to the inputs' second moments, as a fraction of their mean, so they invert stably
ROW_MOMENTS_FLOPS = 2e11  # per-row second moments: every state up to 256x256 at 10,000 states (seconds here)
ROW_MOMENTS_BYTES = 256 * 2**20  # per-row second moments held at once


def scales(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel steps, row max / 127; 1 for an all-zero row (whose weights stay 0)."""
    top = weight.abs().amax(dim=1) / QMAX
    return torch.where(top > 0, top, torch.ones_like(top))


def round_weight(weight: torch.Tensor, inputs: torch.Tensor, sensitivity: torch.Tensor | None = None) -> torch.Tensor:
    """`weight` [out, in] on its int8 grid (multiples of `scales(weight)`, at most 127 of them),
    rounded to keep `inputs` [N, in] @ weight.T closest to float: each output's error, squared and
    summed over the N states, weighted state by state by its `sensitivity` [N, out] squared (how
    much that output moves what must be kept); without one, every output and state count alike.

    With a sensitivity each output row has its own second-moment matrix, at out · N · in² operations:
    for wide layers the states are thinned, evenly, to keep that under `ROW_MOMENTS_FLOPS`."""
    w = weight.detach().double()
    x = inputs.detach().double()
    if sensitivity is None:
        return _round_rows(w, (x.T @ x)[None]).to(weight.dtype)  # one matrix for all rows
    rows, width = w.shape
    keep = min(len(x), max(2 * width, int(ROW_MOMENTS_FLOPS // (rows * width ** 2))))
    states = torch.linspace(0, len(x) - 1, keep).round().long()
    x, weights = x[states], sensitivity.detach().double()[states] ** 2
    chunk = max(1, int(ROW_MOMENTS_BYTES // (8 * width ** 2)))
    return torch.cat([
        _round_rows(w[start:start + chunk], torch.stack([(x * weights[:, [row]]).T @ x
                                                         for row in range(start, min(start + chunk, rows))]))
        for start in range(0, rows, chunk)]).to(weight.dtype)


def _round_rows(w: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Rows `w` [R, in] rounded column by column, each column's error spread over the columns after
    it through `second` [R or 1, in, in], the second moments of the inputs each row is judged on."""
    w = w.clone()
    step = scales(w)
    frozen = torch.zeros_like(w, dtype=torch.bool)
    frozen[torch.arange(len(w)), w.abs().argmax(dim=1)] = True  # on the grid already: keeps the scale
    diagonal = second.diagonal(dim1=1, dim2=2)
    diagonal[diagonal == 0] = 1.0  # inputs that never fire (or never matter): nothing to compensate through them
    second += DAMP * diagonal.mean(dim=1)[:, None, None] * torch.eye(w.shape[1], dtype=second.dtype)
    # upper Cholesky factor of the inverse: row j spreads column j's error over the columns after it
    spread = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(second)), upper=True)
    rounded = torch.empty_like(w)
    for j in range(w.shape[1]):
        rounded[:, j] = torch.clamp(torch.round(w[:, j] / step), -QMAX, QMAX) * step
        error = (w[:, j] - rounded[:, j]) / spread[:, j, j]
        w[:, j + 1:] -= error[:, None] * spread[:, j, j + 1:] * ~frozen[:, j + 1:]
    return rounded


def _margin_sensitivity(net: nn.Module, layer: nn.Module, obs: torch.Tensor) -> torch.Tensor | None:
    """d(q[best] − q[second best]) / d(`layer`'s outputs), state by state, for `net` on `obs`: how
    much each output moves the margin of the greedy action (None with fewer than two actions)."""
    seen: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda _m, _args, out: seen.append(out))
    try:
        with torch.enable_grad():
            q = net(obs)
            if q.shape[1] < 2:
                return None
            top = q.detach().topk(2, dim=1).indices
            margin = q.gather(1, top[:, :1]) - q.gather(1, top[:, 1:])
            (grad,) = torch.autograd.grad(margin.sum(), seen[0])
    finally:
        hook.remove()
    return grad


def _inputs(net: nn.Module, layer: nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """What `layer` gets when `net` runs on `obs`."""
    seen: list[torch.Tensor] = []
    hook = layer.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            net(obs)
    finally:
        hook.remove()
    return seen[0]


def equalised(net: nn.Module, layers: list[str], calibration: np.ndarray) -> nn.Module:
    """A copy of `net` computing the same function, with unit i of each of `layers`' inputs scaled by
    s_i (the linear layer before it by s_i, this layer's column i by 1 / s_i: ReLU(s·z) = s·ReLU(z)
    for s > 0, so every layer in `layers` must follow a linear layer and a ReLU, as in a QNetwork).

    With one step per call for the whole input, step² ≈ Σ_i (s_i r_i)² / 255² (r_i: unit i's RMS on
    `calibration` observations) and the output error it causes ≈ step² Σ_i c_i² / s_i² (c_i: the
    norm of column i). By Cauchy–Schwarz their product is least at s_i = √(c_i / r_i): afterwards
    c_i / r_i is the same for every unit. Units that never fire or feed nothing keep s_i = 1; the
    others are normalised to a geometric mean of 1. Layers are taken last first: scaling a layer's
    inputs rescales the rows of the layer before, which would change that layer's column norms."""
    net = copy.deepcopy(net).eval()
    obs = torch.as_tensor(np.asarray(calibration, dtype=np.float32))
    modules = dict(net.named_modules())
    linears = [name for name, m in modules.items() if isinstance(m, nn.Linear)]
    for name in reversed(layers):
        layer, before = modules[name], modules[linears[linears.index(name) - 1]]
        rms = _inputs(net, layer, obs).double().pow(2).mean(dim=0).sqrt()
        norm = layer.weight.detach().double().norm(dim=0)
        live = (rms > 0) & (norm > 0)
        scale = torch.ones_like(rms)
        scale[live] = (norm[live] / rms[live]).sqrt()
        scale[live] /= scale[live].log().mean().exp()
        scale = scale.to(layer.weight.dtype)
        with torch.no_grad():
            before.weight.mul_(scale[:, None])
            before.bias.mul_(scale)
            layer.weight.div_(scale)
    return net


def for_int8(net: nn.Module, layers: list[str], calibration: np.ndarray) -> nn.Module:
    """`net` equalised, then its `layers` rounded, both on `calibration`: one of the two
    preparations int8 export tries (the other rounds without equalising)."""
    return on_int8_grid(equalised(net, layers, calibration), layers, calibration)


def on_int8_grid(net: nn.Module, layers: list[str], calibration: np.ndarray, *, by_margin: bool = True) -> nn.Module:
    """A copy of `net` whose `layers` (names of nn.Linear) hold int8-grid weights, rounded in order,
    each on the inputs it gets from `calibration` observations through the layers rounded before it,
    its outputs weighted by how much they move the greedy action's margin there (`by_margin`; else
    all alike, plain GPTQ: benchmarks/int8_rounding.py compares them)."""
    net = copy.deepcopy(net).eval()
    obs = torch.as_tensor(np.asarray(calibration, dtype=np.float32))
    modules = dict(net.named_modules())
    for name in layers:
        layer = modules[name]
        sensitivity = _margin_sensitivity(net, layer, obs) if by_margin else None
        rounded = round_weight(layer.weight, _inputs(net, layer, obs), sensitivity)
        with torch.no_grad():
            layer.weight.copy_(rounded)
    return net
