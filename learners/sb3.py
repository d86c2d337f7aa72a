"""Stable-Baselines3 DQN and QR-DQN models as qdistill teachers (`--teacher sb3:PATH.zip`), read
without Stable-Baselines3.

A model saved by SB3 (`model.save("x.zip")`) is a zip holding `data`, a JSON document (the policy
class, its keyword arguments and the spaces, each a cloudpickle blob beside readable fields), and
`policy.pth`, a PyTorch state dict. This reader takes only the readable fields, the class a blob
names (read from its pickle opcodes, which runs nothing) and the state dict (`weights_only`): no
code from the file is executed, and a run needs neither SB3 nor its version of gymnasium.

SB3's DQN MlpPolicy is the same network as qdistill's Q-network: flatten, Linear/ReLU pairs, a
linear head. Its CnnPolicy is a conv spec's network: NatureCNN (three convolutions and a Linear
layer of `features_dim`, each with a ReLU, on uint8 frames divided by 255 as qdistill's `Pixels`
divides them), then the MlpPolicy's layers: `features_dim` 512 with `net_arch` [] is the `nature`
preset, with `net_arch` [256] it is `c32k8s4-c64k4s2-c64k3s1-512x256`. The weights are mapped, not
the preprocessing: the model's frames (shape, channel order, frame stack) must be the env's as they
are. QR-DQN's head gives `n_quantiles` values per action, laid out quantile-major
(`view(-1, n_quantiles, n_actions)`), and its Q-value is their mean: the mean of linear maps is the
linear map with the mean weights, so the head folds into one row per action.

A model trained behind SB3's `VecNormalize` is read with its statistics (vecnormalize.py).
"""

from __future__ import annotations

import base64
import io
import json
import pickletools
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from .checkpoint import Checkpoint, CheckpointError
from . import vecnormalize
from .specs import PRESETS, Architecture, conv_output_shape

_RELU = "torch.nn.modules.activation.ReLU"
_FLATTEN = "stable_baselines3.common.torch_layers.FlattenExtractor"
_NATURE = "stable_baselines3.common.torch_layers.NatureCNN"
_DQN, _QRDQN = ("DQN", "q_net.", "q_net.q_net."), ("QR-DQN", "quantile_net.", "quantile_net.quantile_net.")
# policy class -> ((algorithm, the online network's state-dict prefix, its Sequential's prefix), default extractor)
_POLICIES = {
    "stable_baselines3.dqn.policies.DQNPolicy": (_DQN, _FLATTEN),  # MlpPolicy
    "stable_baselines3.dqn.policies.CnnPolicy": (_DQN, _NATURE),
    "sb3_contrib.qrdqn.policies.QRDQNPolicy": (_QRDQN, _FLATTEN),  # MlpPolicy
    "sb3_contrib.qrdqn.policies.CnnPolicy": (_QRDQN, _NATURE),
}
_LAYER = re.compile(r"^([0-9]+)\.(weight|bias)$")
_EXTRACTOR = "features_extractor."  # NatureCNN's parameters: cnn.0, cnn.2, cnn.4 (convolutions), linear.0
_NATURE_LAYER = re.compile(r"^(cnn|linear)\.([0-9]+)\.(weight|bias)$")
_NATURE_CONVS = ((0, 8, 4), (2, 4, 2), (4, 3, 1))  # (index in cnn, kernel, stride): NatureCNN's, no padding


class _Model:
    """One model file's readable parts; `refuse` names the file in every message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise self.refuse("does not exist")
        try:
            self._read(path)
        except (zipfile.BadZipFile, zlib.error, EOFError):  # not a zip, or a torn one
            raise self.refuse("is not a readable zip file: expected a model saved by Stable-Baselines3's "
                              "`model.save()`") from None
        if not isinstance(self.data, dict) or not isinstance(self.state, dict):
            raise self.refuse("is not a Stable-Baselines3 model: unexpected contents of 'data' or 'policy.pth'")

    def _read(self, path: Path) -> None:
        with zipfile.ZipFile(path) as z:
            missing = [name for name in ("data", "policy.pth") if name not in z.namelist()]
            if missing:
                raise self.refuse(f"is not a Stable-Baselines3 model: the zip has no {' or '.join(missing)}")
            try:
                self.data = json.loads(z.read("data"))
            except ValueError:
                raise self.refuse("is not a Stable-Baselines3 model: its 'data' is not JSON") from None
            try:
                self.state = torch.load(io.BytesIO(z.read("policy.pth")), map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a foreign file
                raise self.refuse(f"is not a Stable-Baselines3 model: its 'policy.pth' is not a state dict "
                                  f"({type(exc).__name__})") from None

    def refuse(self, what: str) -> CheckpointError:
        return CheckpointError(f"Stable-Baselines3 model {str(self.path)!r} {what}")

    @property
    def policy_kwargs(self) -> dict:
        return self.data.get("policy_kwargs") or {}

    def field(self, name: str) -> dict:
        value = self.data.get(name)
        if not isinstance(value, dict):
            raise self.refuse(f"is not a Stable-Baselines3 model: its data has no {name!r}")
        return value


def _class_named(text: object) -> str:
    """`"<class 'torch.nn.modules.activation.ReLU'>"` (SB3's readable form of a class) → the dotted name."""
    match = re.fullmatch(r"<class '([^']+)'>", str(text))
    return match.group(1) if match else str(text)


def _pickled_class(blob: object) -> str | None:
    """The dotted name of the class a cloudpickle blob refers to, read from its opcodes
    (`pickletools.genops` decodes, it does not execute); None unless the blob is just such a
    reference (a class pickled by value, defined in a script, is not)."""
    try:
        ops = [(op.name, arg) for op, arg, _ in pickletools.genops(base64.b64decode(str(blob)))]
    except Exception:  # noqa: BLE001 - a corrupt blob: no name
        return None
    finds = [(name, arg) for name, arg in ops if "GLOBAL" in name]
    strings = [arg for name, arg in ops if name.endswith(("UNICODE", "STRING"))]
    if [name for name, _ in finds] == ["STACK_GLOBAL"] and len(strings) == 2:
        return ".".join(strings)
    if [name for name, _ in finds] == ["GLOBAL"]:
        return str(finds[0][1]).replace(" ", ".")
    return None


def _space(model: _Model, name: str) -> tuple[str, dict]:
    space = model.field(name)
    return _class_named(space.get(":type:", "?")).rsplit(".", 1)[-1], space


def _obs_shape(model: _Model) -> tuple[int, ...]:
    kind, space = _space(model, "observation_space")
    if kind != "Box":
        raise model.refuse(f"has a {kind} observation space: expected a Box (qdistill's Q-networks take "
                           "vector observations)")
    shape = tuple(int(d) for d in space.get("_shape", space.get("shape", ())))
    normalize = model.policy_kwargs.get("normalize_images", True)
    if space.get("dtype") == "uint8" and len(shape) == 3 and normalize is not False:
        raise model.refuse(f"has image observations of shape {shape} that Stable-Baselines3 divides by 255 for an "
                           "MLP: expected vector observations, or a CnnPolicy (NatureCNN) for images")
    return shape


def _env_gives(env_id: str | None, shape: tuple[int, ...] | None) -> str:
    """`; qdistill's env 'ALE/Pong-v5' gives (4, 84, 84): 84x84 greyscale, 4 stacked frames, channels
    first`: the env's observations in words, for a refusal; "" without an env."""
    if shape is None:
        return ""
    env, shape = f"qdistill's env {env_id!r}" if env_id else "the env", tuple(shape)
    if len(shape) != 3:
        return f"; {env} gives {shape}: vectors of {int(np.prod(shape))} values, for an MlpPolicy"
    c, h, w = shape
    atari = bool(env_id) and env_id.startswith("ALE/")
    frames = f"{h}x{w} greyscale, {c} stacked frame{'s' * (c != 1)}" if atari else f"{h}x{w}, {c} channels"
    return f"; {env} gives {shape}: {frames}, channels first"


def _frames(model: _Model, env_id: str | None, obs_shape: tuple[int, ...] | None) -> tuple[int, int, int]:
    """A CnnPolicy's observation shape: uint8 images (channels, height, width) that it divides by
    255, and the env's own when the env is given (qdistill's conv nets take its frames as they are)."""
    if model.policy_kwargs.get("normalize_images", True) is False:
        raise model.refuse("has normalize_images=False: qdistill's conv networks take uint8 frames and divide them by "
                           "255 (expected normalize_images=True, the default)")
    kind, space = _space(model, "observation_space")
    shape, env = tuple(int(d) for d in space.get("_shape", space.get("shape", ()))), _env_gives(env_id, obs_shape)
    if kind != "Box" or space.get("dtype") != "uint8" or len(shape) != 3:
        raise model.refuse(f"has {kind} observations of shape {shape} and dtype {space.get('dtype')}: expected uint8 "
                           f"images (channels, height, width){env}")
    if obs_shape is not None and shape == tuple(obs_shape):
        return shape
    if int(np.argmin(shape)) != 0:  # Stable-Baselines3's test: channels are the smallest dimension
        raise model.refuse(f"has channels-last image observations of shape {shape} (height, width, channels), which "
                           "its network convolves as they are: expected channels first, as Stable-Baselines3 makes "
                           f"them when it wraps the env in VecTransposeImage{env}")
    if obs_shape is not None:
        c, h, w = shape
        raise model.refuse(f"has image observations of shape {shape} ({c} channel{'s' * (c != 1)} of {h}x{w}): "
                           f"expected the env's frames as they are{env}")
    return shape


def _n_actions(model: _Model) -> int:
    kind, space = _space(model, "action_space")
    if kind != "Discrete":
        raise model.refuse(f"has a {kind} action space: expected Discrete")
    if int(space.get("start", 0)) != 0:
        raise model.refuse(f"has a Discrete action space starting at {space['start']}: expected one starting at 0")
    return int(space["n"])


def _check_policy(model: _Model) -> tuple[tuple[str, str, str], str]:
    """((algorithm, network prefix, layers prefix), features extractor), or a refusal naming what does not fit."""
    policy = model.field("policy_class")
    name = _pickled_class(policy.get(":serialized:")) or f"{policy.get('__module__', '?')}.<class pickled by value>"
    if name not in _POLICIES:
        raise model.refuse(f"has policy class {name}: expected the MlpPolicy or CnnPolicy of a DQN or QR-DQN model "
                           f"({', '.join(list(_POLICIES)[:-1])} or {list(_POLICIES)[-1]})")
    prefixes, default_extractor = _POLICIES[name]
    kwargs = model.policy_kwargs
    activation = _class_named(kwargs.get("activation_fn", _RELU))
    if activation != _RELU:
        raise model.refuse(f"uses activation {activation}: qdistill's Q-networks use ReLU "
                           "(expected activation_fn torch.nn.ReLU, the default)")
    extractor = _class_named(kwargs.get("features_extractor_class", default_extractor))
    if extractor not in (_FLATTEN, _NATURE):
        raise model.refuse(f"uses features extractor {extractor}: expected {_FLATTEN} (the MlpPolicy's, on vectors) "
                           f"or {_NATURE} (the CnnPolicy's, on images)")
    return prefixes, extractor


def _linear_layers(model: _Model, net: str, layers: str, *,
                   extractor: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The online network's Linear layers in order (after its features extractor's, read apart when
    `extractor`); refuses any other parameter in it (a features extractor's, a normalisation layer's)
    and any gap in the Linear/activation alternation."""
    found: dict[int, dict[str, torch.Tensor]] = {}
    others = []
    for key, value in model.state.items():
        if not key.startswith(net) or (extractor and key.startswith(net + _EXTRACTOR)):
            continue  # the target network, which SB3 does not act with; the features extractor
        match = _LAYER.match(key[len(layers):]) if key.startswith(layers) else None
        if match is None:
            others.append(key)
        else:
            found.setdefault(int(match.group(1)), {})[match.group(2)] = value
    expected = list(range(0, 2 * len(found), 2))
    if others or sorted(found) != expected or any(set(p) != {"weight", "bias"} for p in found.values()):
        odd = others or [f"{layers}{i}" for i in sorted(found)]
        raise model.refuse(f"has a network qdistill cannot map (parameters {', '.join(odd[:4])}"
                           f"{', ...' if len(odd) > 4 else ''}): expected Linear layers with a ReLU between each")
    return [(found[i]["weight"].float(), found[i]["bias"].float()) for i in expected]


def _nature_layers(model: _Model, net: str,
                   shape: tuple[int, int, int]) -> tuple[list, tuple[torch.Tensor, torch.Tensor]]:
    """NatureCNN's convolutions as (weight, bias, stride), and its Linear layer; refuses parameters
    of another shape (a class that kept NatureCNN's name but not its layers)."""
    prefix, found, others = net + _EXTRACTOR, {}, []
    for key, value in model.state.items():
        match = _NATURE_LAYER.match(key[len(prefix):]) if key.startswith(prefix) else None
        if match is None:
            others += [key] if key.startswith(prefix) else []
        else:
            found[(match.group(1), int(match.group(2)), match.group(3))] = value.float()
    expected = {(part, i, p) for part, i in [("cnn", c[0]) for c in _NATURE_CONVS] + [("linear", 0)]
                for p in ("weight", "bias")}
    kernels = [tuple(found.get(("cnn", i, "weight"), torch.zeros(0)).shape[2:]) for i, _, _ in _NATURE_CONVS]
    if others or set(found) != expected or kernels != [(k, k) for _, k, _ in _NATURE_CONVS]:
        odd = others or sorted(f"{prefix}{part}.{i}.{p}" for part, i, p in set(found) ^ expected) or [f"{prefix}cnn"]
        raise model.refuse(f"has a NatureCNN qdistill cannot map (parameters {', '.join(odd[:4])}"
                           f"{', ...' if len(odd) > 4 else ''}): expected three convolutions of kernels 8, 4 and 3 "
                           "(cnn.0, cnn.2, cnn.4) and one Linear layer (linear.0)")
    convs = [(found[("cnn", i, "weight")], found[("cnn", i, "bias")], stride) for i, _, stride in _NATURE_CONVS]
    if convs[0][0].shape[1] != shape[0]:
        raise model.refuse(f"has a first convolution of {convs[0][0].shape[1]} input channels for observations of "
                           f"shape {shape}: expected {shape[0]}")
    arch = Architecture(tuple((w.shape[0], w.shape[2], stride) for w, _, stride in convs), ())
    try:
        flat = int(np.prod(conv_output_shape(arch, shape)))
    except ValueError:  # not from NatureCNN, which SB3 cannot build for such frames
        raise model.refuse(f"has a NatureCNN for observations of shape {shape}, smaller than its kernels: expected "
                           "frames of at least 36x36") from None
    linear = found[("linear", 0, "weight")], found[("linear", 0, "bias")]
    if linear[0].shape[1] != flat:
        raise model.refuse(f"has a NatureCNN Linear layer of {linear[0].shape[1]} inputs for observations of shape "
                           f"{shape}: expected {flat}, what its convolutions give")
    return convs, linear


def _cnn(model: _Model, prefixes: tuple[str, str, str], env_id: str | None,
         obs_shape: tuple[int, ...] | None) -> tuple[tuple[int, ...], int, list, list]:
    """A CnnPolicy's (observation shape, actions, convolutions, Linear layers): NatureCNN's Linear
    layer, then the q_net's."""
    _, net, layers = prefixes
    shape, actions = _frames(model, env_id, obs_shape), _n_actions(model)
    convs, features = _nature_layers(model, net, shape)
    q_net = _linear_layers(model, net, layers, extractor=True)
    if not q_net:
        raise model.refuse(f"has no {layers[:-1]} layers: expected at least its output layer")
    if q_net[0][0].shape[1] != features[0].shape[0]:
        raise model.refuse(f"has a first {layers[:-1]} layer of {q_net[0][0].shape[1]} inputs after a NatureCNN of "
                           f"{features[0].shape[0]} features: expected {features[0].shape[0]}")
    return shape, actions, convs, [features, *q_net]


def _mlp(model: _Model, prefixes: tuple[str, str, str]) -> tuple[tuple[int, ...], int, list, list]:
    """An MlpPolicy's (observation shape, actions, no convolutions, Linear layers)."""
    _, net, layers_prefix = prefixes
    shape, actions = _obs_shape(model), _n_actions(model)
    layers = _linear_layers(model, net, layers_prefix)
    if len(layers) < 2:
        raise model.refuse("has no hidden layer (net_arch []): qdistill's Q-networks have at least one")
    if layers[0][0].shape[1] != int(np.prod(shape)):
        raise model.refuse(f"has a first layer of {layers[0][0].shape[1]} inputs for observations of shape "
                           f"{shape}: expected {int(np.prod(shape))}")
    return shape, actions, [], layers


def _spec(convs: list, layers: list) -> str:
    """`64x64`; `c32k8s4-c64k4s2-c64k3s1-512x256`, or its preset name (`nature`)."""
    widths = "x".join(str(w.shape[0]) for w, _ in layers[:-1])
    if not convs:
        return widths
    spec = "-".join([*(f"c{w.shape[0]}k{w.shape[2]}s{stride}" for w, _, stride in convs), widths])
    return next((name for name, preset in PRESETS.items() if preset == spec), spec)


def _state_dict(convs: list, layers: list) -> dict[str, np.ndarray]:
    """The weights under `networks.QNetwork`'s names: its Sequential is [Pixels, Conv, ReLU, ...,]
    Flatten, Linear, ReLU, ..., Linear."""
    first_linear = 2 + 2 * len(convs) if convs else 1
    at = [1 + 2 * i for i in range(len(convs))] + [first_linear + 2 * i for i in range(len(layers))]
    weights = {}
    for i, (w, b) in zip(at, [(w, b) for w, b, _ in convs] + layers):
        weights[f"layers.{i}.weight"] = w.numpy().copy()
        weights[f"layers.{i}.bias"] = b.numpy().copy()
    return weights


def _head(model: _Model, algorithm: str, weight: torch.Tensor, bias: torch.Tensor,
          n_actions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The last layer as one row per action: QR-DQN's quantile rows averaged per action."""
    rows = weight.shape[0]
    if algorithm == "DQN":
        if rows != n_actions:
            raise model.refuse(f"has {rows} outputs for {n_actions} actions: expected one per action")
        return weight, bias
    quantiles = int(model.data.get("n_quantiles", model.policy_kwargs.get("n_quantiles", 0)))
    if quantiles < 1 or rows != quantiles * n_actions:
        raise model.refuse(f"has {rows} outputs for {n_actions} actions and {quantiles} quantiles: expected "
                           "quantiles x actions")
    mean_w = weight.double().view(quantiles, n_actions, -1).mean(dim=0)
    mean_b = bias.double().view(quantiles, n_actions).mean(dim=0)
    return mean_w.float(), mean_b.float()


def read(path: str | Path, *, env_id: str | None = None, obs_shape: tuple[int, ...] | None = None,
         n_actions: int | None = None) -> Checkpoint:
    """An SB3 DQN or QR-DQN model as a qdistill checkpoint (`checkpoint.load` checks it against what
    the caller expects, as it checks a checkpoint file).

    The zip does not record its env id, only its spaces. A model is taken to be made for `env_id`
    when its observation shape and action count are that env's (`obs_shape` and `n_actions`,
    required with `env_id`: what a run can check): the checkpoint reports `env_id`, so the env
    checks downstream (the run's kept teacher.pt, `qdistill eval`) pass; read without an `env_id`,
    it reports "". Its version is 0: SB3 keeps no weight versions.
    """
    if env_id is not None and (obs_shape is None or n_actions is None):  # a caller's mistake
        raise ValueError(f"a Stable-Baselines3 model names no env: to take it as made for {env_id!r}, give that "
                         "env's obs_shape and n_actions to check it against")
    model = _Model(Path(path))
    prefixes, extractor = _check_policy(model)
    shape, actions, convs, layers = _cnn(model, prefixes, env_id, obs_shape) if extractor == _NATURE else \
        _mlp(model, prefixes)
    layers[-1] = _head(model, prefixes[0], *layers[-1], actions)
    spec, weights = _spec(convs, layers), _state_dict(convs, layers)
    if (stats := vecnormalize.statistics(model.path, model.refuse)) is not None:
        spec, weights = vecnormalize.normalising(spec, shape, actions, weights, stats)
    return Checkpoint(spec, shape, actions, env_id or "", 0, weights)

