"""Stable-Baselines3 DQN and QR-DQN models as qdistill teachers (`--teacher sb3:PATH.zip`), read
without Stable-Baselines3.

A model saved by SB3 (`model.save("x.zip")`) is a zip holding `data`, a JSON document (the policy
class, its keyword arguments and the spaces, each a cloudpickle blob beside readable fields), and
`policy.pth`, a PyTorch state dict. This reader takes only the readable fields, the class a blob
names (read from its pickle opcodes, which runs nothing) and the state dict (`weights_only`): no
code from the file is executed, and a run needs neither SB3 nor its version of gymnasium.

SB3's DQN MlpPolicy is the same network as qdistill's Q-network: flatten, Linear/ReLU pairs, a
linear head. QR-DQN's head gives `n_quantiles` values per action, laid out quantile-major
(`view(-1, n_quantiles, n_actions)`), and its Q-value is their mean: the mean of linear maps is the
linear map with the mean weights, so the head folds into one row per action.
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

# policy class -> (algorithm, the online network's state-dict prefix, its Sequential's prefix)
_POLICIES = {
    "stable_baselines3.dqn.policies.DQNPolicy": ("DQN", "q_net.", "q_net.q_net."),
    "sb3_contrib.qrdqn.policies.QRDQNPolicy": ("QR-DQN", "quantile_net.", "quantile_net.quantile_net."),
}
_RELU = "torch.nn.modules.activation.ReLU"
_FLATTEN = "stable_baselines3.common.torch_layers.FlattenExtractor"
_LAYER = re.compile(r"^([0-9]+)\.(weight|bias)$")


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
        raise model.refuse(f"has image observations of shape {shape} that Stable-Baselines3 divides by 255: "
                           "expected vector observations")
    return shape


def _n_actions(model: _Model) -> int:
    kind, space = _space(model, "action_space")
    if kind != "Discrete":
        raise model.refuse(f"has a {kind} action space: expected Discrete")
    if int(space.get("start", 0)) != 0:
        raise model.refuse(f"has a Discrete action space starting at {space['start']}: expected one starting at 0")
    return int(space["n"])


def _check_policy(model: _Model) -> tuple[str, str, str]:
    """(algorithm, network prefix, layers prefix), or a refusal naming what does not fit."""
    policy = model.field("policy_class")
    name = _pickled_class(policy.get(":serialized:")) or f"{policy.get('__module__', '?')}.<class pickled by value>"
    if name not in _POLICIES:
        raise model.refuse(f"has policy class {name}: expected the MlpPolicy of a DQN or QR-DQN model "
                           f"({' or '.join(_POLICIES)})")
    kwargs = model.policy_kwargs
    activation = _class_named(kwargs.get("activation_fn", _RELU))
    if activation != _RELU:
        raise model.refuse(f"uses activation {activation}: qdistill's Q-networks use ReLU "
                           "(expected activation_fn torch.nn.ReLU, the default)")
    extractor = _class_named(kwargs.get("features_extractor_class", _FLATTEN))
    if extractor != _FLATTEN:
        raise model.refuse(f"uses features extractor {extractor}: expected {_FLATTEN} (an MLP on flattened "
                           "observations, the default)")
    return _POLICIES[name]


def _linear_layers(model: _Model, net: str, layers: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The online network's Linear layers in order; refuses any other parameter in it (a features
    extractor's, a normalisation layer's) and any gap in the Linear/activation alternation."""
    found: dict[int, dict[str, torch.Tensor]] = {}
    others = []
    for key, value in model.state.items():
        if not key.startswith(net):
            continue  # the target network, which SB3 does not act with
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
    if len(found) < 2:
        raise model.refuse("has no hidden layer (net_arch []): qdistill's Q-networks have at least one")
    return [(found[i]["weight"].float(), found[i]["bias"].float()) for i in expected]


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
    algorithm, net_prefix, layers_prefix = _check_policy(model)
    shape, actions = _obs_shape(model), _n_actions(model)
    layers = _linear_layers(model, net_prefix, layers_prefix)
    if layers[0][0].shape[1] != int(np.prod(shape)):
        raise model.refuse(f"has a first layer of {layers[0][0].shape[1]} inputs for observations of shape "
                           f"{shape}: expected {int(np.prod(shape))}")
    layers[-1] = _head(model, algorithm, *layers[-1], actions)
    spec = "x".join(str(w.shape[0]) for w, _ in layers[:-1])
    weights = {}
    for i, (w, b) in enumerate(layers):  # qdistill's Sequential: Flatten, then Linear at 1, 3, 5, ...
        weights[f"layers.{2 * i + 1}.weight"] = w.numpy().copy()
        weights[f"layers.{2 * i + 1}.bias"] = b.numpy().copy()
    return Checkpoint(spec, shape, actions, env_id or "", 0, weights)
