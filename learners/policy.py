"""Acting greedily from a Q-network's weights, in numpy or torch: what rollout actors, evaluators
and label refreshers run. Torch is imported only for the networks and batches that run in it."""

from __future__ import annotations

import numpy as np

from .specs import NORM_CLIP, NORM_EPS, conv_output_shape, initial_weights, is_conv, macs, parse_spec


class GreedyPolicy:
    """Acts from a Q-network's weights: inference only, on the calling thread.

    Each forward pass runs in numpy or torch, whichever is faster for the network and the batch
    (`benchmarks/inference.py`): numpy for MLPs (≈ 8 µs against torch's 25 µs per call at batch 1
    for 256x256 here, and no slower at batch 32+) and for small conv nets on small batches (a
    rollout actor's 8 frames) and at batch 1, torch for large conv nets and large batches (relabelling).
    Loaded weights must have the names and shapes of the spec's `QNetwork`; until the first load it
    acts with weights drawn as torch initialises that network (`specs.initial_weights`). Torch is
    imported only where a batch runs in torch. `backend` fixes one of BACKENDS.
    """

    def __init__(self, spec: str, obs_shape: tuple[int, ...], n_actions: int, *, backend: str | None = None) -> None:
        if backend is not None and backend not in BACKENDS:
            raise ValueError(f"inference backend {backend!r} is not known: expected one of {', '.join(BACKENDS)}")
        self.spec = spec
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.n_actions = int(n_actions)
        weights = initial_weights(spec, self.obs_shape, n_actions)
        self.shapes = {k: tuple(np.shape(v)) for k, v in weights.items()}
        self.version = -1
        self.backend = backend
        self.torch_from = 0 if backend == "torch" else (1 << 62) if backend == "numpy" or not is_conv(spec) else \
            max(2, -(-TORCH_BATCH_MACS // macs(spec, obs_shape)))  # batch sizes that run in torch
        self.torch = None  # the torch network's forward, built (and torch imported) where a batch runs in torch
        self.numpy = None
        self._use(weights)

    def load(self, version: int, weights: dict[str, np.ndarray]) -> None:
        """Act with `weights` from now on; refuses weights of another network."""
        shapes = {k: tuple(np.shape(v)) for k, v in weights.items()}
        if shapes != self.shapes:
            raise ValueError(f"weights of shapes {shapes} do not fit network {self.spec!r}: expected {self.shapes}")
        self._use(weights)
        self.version = version

    def _use(self, weights: dict[str, np.ndarray]) -> None:
        if self.torch_from < (1 << 62):
            self.torch = self.torch or _TorchForward(self.spec, self.obs_shape, self.n_actions)
            self.torch.load(weights)
        if self.backend != "torch":
            self.numpy = numpy_forward(self.spec, self.obs_shape, weights)

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        if len(obs) >= self.torch_from:
            return self.torch(obs)
        return self.numpy(obs)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.q_values(obs).argmax(axis=1)


BACKENDS = ("numpy", "torch")
# a conv net's batch runs in torch from this many multiply-adds (frames x MACs per frame), and from two frames:
# numpy won up to 1.3M a batch and at batch 1, torch from 5.4M (benchmarks/inference.py)
TORCH_BATCH_MACS = 3_000_000


class _TorchForward:
    """A QNetwork's forward pass from numpy to numpy, under inference mode."""

    def __init__(self, spec: str, obs_shape: tuple[int, ...], n_actions: int) -> None:
        import torch

        from .networks import QNetwork, as_input, from_numpy

        self.torch, self.as_input, self.from_numpy = torch, as_input, from_numpy
        self.net = QNetwork(spec, obs_shape, n_actions).eval()

    def load(self, weights: dict[str, np.ndarray]) -> None:
        self.net.load_state_dict(self.from_numpy(weights))

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.net(self.as_input(obs)).numpy()


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
