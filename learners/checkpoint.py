"""Checkpoint format: a Q-network's weights with everything needed to rebuild and check it.

A checkpoint (and a run state) is a dict saved with torch.save, readable with plain torch.load.
Schema 2 adds `digest`: sha256 of everything else in the dict, fed in a canonical form (each value
with its type and length; tensors with name, dtype, shape and bytes; dict keys sorted), because
torch.load checks no checksum: a flipped byte can load as other weights without an error. Schema 1
files, written before, carry none and are read as they are."""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .policy import GreedyPolicy

if TYPE_CHECKING:
    from .multitask import MultiTaskQNetwork
    from .networks import QNetwork

SCHEMA_VERSION = 2
READS = (1, SCHEMA_VERSION)  # schema 1: the same, without a digest
DAMAGED = {  # what to do with a damaged file, by kind
    "checkpoint": "use another checkpoint or --resume from an earlier one",
    "run state": "restore it from a backup or start the run again",
}


def _torch():
    """torch, imported where a checkpoint is written, read or rebuilt: the command line imports this
    module to name and check files, and starts without torch."""
    import torch

    return torch


def _from_numpy(weights: dict[str, np.ndarray]) -> dict:
    from .networks import from_numpy

    return from_numpy(weights)


def _to_numpy(state_dict: dict) -> dict[str, np.ndarray]:
    from .networks import to_numpy

    return to_numpy(state_dict)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit what it is loaded for."""


def _feed(h: hashlib._Hash, value: object) -> None:
    """`value` into the hash, tagged with its type and length so that no two payloads feed the same bytes."""
    def chunk(tag: bytes, data: bytes) -> None:
        h.update(tag + struct.pack("<Q", len(data)) + data)

    if isinstance(value, dict):
        chunk(b"d", b"%d" % len(value))
        for key, item in sorted(value.items(), key=lambda kv: (type(kv[0]).__name__, str(kv[0]))):
            _feed(h, key)
            _feed(h, item)
    elif isinstance(value, (list, tuple)):
        chunk(b"l", b"%d" % len(value))
        for item in value:
            _feed(h, item)
    elif isinstance(value, _torch().Tensor):
        t = value.detach().cpu().contiguous()
        chunk(b"t", f"{t.dtype} {tuple(t.shape)}".encode())
        chunk(b"b", t.reshape(-1).view(_torch().uint8).numpy().tobytes())
    elif isinstance(value, str):
        chunk(b"s", value.encode("utf-8", "surrogatepass"))
    elif isinstance(value, bytes):
        chunk(b"y", value)
    elif isinstance(value, float):
        chunk(b"f", value.hex().encode())
    else:  # bool, int, None, and what torch.load may rebuild (torch.dtype, torch.device, …)
        chunk(b"r", f"{type(value).__qualname__} {value!r}".encode())


def _digest(payload: dict) -> str:
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != "digest"})
    return h.hexdigest()


def _check_digest(payload: dict, what: str, kind: str) -> None:
    """Refuse a payload whose digest does not match its contents, or a schema-2 one without one
    (a byte flipped in `schema` cannot pass a file off as schema 1: a digest there is checked too)."""
    if payload.get("schema") == 1 and "digest" not in payload:
        return
    if not isinstance(payload.get("digest"), str):
        raise CheckpointError(f"{what} is damaged: schema version {payload.get('schema')} but no checksum; "
                              f"{DAMAGED[kind]}")
    if payload["digest"] != _digest(payload):
        raise CheckpointError(f"{what} is damaged: its checksum does not match its contents (a flipped or "
                              f"overwritten byte); {DAMAGED[kind]}")


@dataclass(frozen=True)
class Checkpoint:
    net: str
    obs_shape: tuple[int, ...]
    n_actions: int
    env_id: str
    version: int
    weights: dict[str, np.ndarray]
    schema: int = SCHEMA_VERSION

    def network(self) -> QNetwork:
        from .networks import QNetwork

        q = QNetwork(self.net, self.obs_shape, self.n_actions)
        q.load_state_dict(_from_numpy(self.weights))
        return q

    def policy(self) -> GreedyPolicy:
        """The checkpoint's greedy policy, its weights loaded (numpy or torch, whichever is faster)."""
        policy = GreedyPolicy(self.net, self.obs_shape, self.n_actions)
        policy.load(self.version, self.weights)
        return policy


@dataclass(frozen=True)
class MultiTaskCheckpoint:
    """A multi-task network (learners/multitask.py): one spec, per task an env, observation shape
    and action count. `task(env_id)` is that task's path as an ordinary Checkpoint."""

    net: str
    env_ids: tuple[str, ...]
    obs_shapes: tuple[tuple[int, ...], ...]
    n_actions: tuple[int, ...]
    inputs: str
    version: int
    weights: dict[str, np.ndarray]

    def network(self) -> MultiTaskQNetwork:
        from .multitask import MultiTaskQNetwork

        q = MultiTaskQNetwork(self.net, list(self.obs_shapes), list(self.n_actions), inputs=self.inputs)
        q.load_state_dict(_from_numpy(self.weights))
        return q

    def task(self, env_id: str) -> Checkpoint:
        if env_id not in self.env_ids:
            raise CheckpointError(f"multi-task network {self.net!r} was made for {', '.join(self.env_ids)}, "
                                  f"not {env_id!r}")
        t = self.env_ids.index(env_id)
        weights = _to_numpy(self.network().task_network(t).state_dict())
        return Checkpoint(self.net, self.obs_shapes[t], self.n_actions[t], env_id, self.version, weights)


def _atomic_save(path: Path, payload: dict) -> None:
    """Sealed with its digest, then a temporary file in the same folder, fsync, rename: a kill
    never leaves a torn file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            _torch().save({**payload, "digest": _digest(payload)}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_state(path: str | Path, state: dict) -> Path:
    """A run's resumable state (learner, optimisers, counters): tensors and plain values only."""
    path = Path(path)
    _atomic_save(path, {"schema": SCHEMA_VERSION, "state": state})
    return path


def load_state(path: str | Path) -> dict:
    try:
        payload = _torch().load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a torn or foreign file
        raise CheckpointError(f"run state {str(path)!r} cannot be read: {type(exc).__name__}") from None
    if not isinstance(payload, dict) or payload.get("schema") not in READS or not isinstance(payload.get("state"), dict):
        raise CheckpointError(f"run state {str(path)!r} is not a qdistill run state of schema "
                              f"{' or '.join(map(str, READS))}")
    _check_digest(payload, f"run state {str(path)!r}", "run state")
    return payload["state"]


def save(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write atomically: a temporary file in the same folder, fsync, rename."""
    path = Path(path)
    payload = {
        "schema": SCHEMA_VERSION,
        "net": ckpt.net,
        "obs_shape": list(ckpt.obs_shape),
        "n_actions": ckpt.n_actions,
        "env_id": ckpt.env_id,
        "version": ckpt.version,
        "state_dict": _from_numpy(ckpt.weights),
    }
    _atomic_save(path, payload)
    return path


def save_multitask(path: str | Path, ckpt: MultiTaskCheckpoint) -> Path:
    path = Path(path)
    _atomic_save(path, {"schema": SCHEMA_VERSION, "net": ckpt.net, "inputs": ckpt.inputs, "version": ckpt.version,
                        "tasks": [{"env_id": e, "obs_shape": list(s), "n_actions": a}
                                  for e, s, a in zip(ckpt.env_ids, ckpt.obs_shapes, ckpt.n_actions)],
                        "state_dict": _from_numpy(ckpt.weights)})
    return path


SB3_PREFIX = "sb3:"  # `sb3:PATH.zip`: a Stable-Baselines3 DQN or QR-DQN model (learners/sb3.py)


def absolute(ref: str) -> str:
    """A checkpoint reference as an absolute path, its `sb3:` prefix kept: what a run stores, so
    that it (and a resumed run) loads the same teacher from any working directory."""
    prefix = SB3_PREFIX if ref.startswith(SB3_PREFIX) else ""
    return prefix + str(Path(ref[len(prefix):]).absolute())


def _mismatches(
    ckpt: Checkpoint,
    *,
    env_id: str | None = None,
    net: str | None = None,
    obs_shape: tuple[int, ...] | None = None,
    n_actions: int | None = None,
) -> list[str]:
    """Each expectation given that `ckpt` does not meet, named."""
    problems = []
    if env_id is not None and ckpt.env_id != env_id:
        problems.append(f"env {ckpt.env_id!r}, not {env_id!r}")
    if net is not None and ckpt.net != net:
        problems.append(f"network {ckpt.net!r}, not {net!r}")
    if obs_shape is not None and ckpt.obs_shape != tuple(obs_shape):
        problems.append(f"observation shape {ckpt.obs_shape}, not {tuple(obs_shape)}")
    if n_actions is not None and ckpt.n_actions != n_actions:
        problems.append(f"{ckpt.n_actions} actions, not {n_actions}")
    return problems


def load(
    path: str | Path,
    *,
    env_id: str | None = None,
    net: str | None = None,
    obs_shape: tuple[int, ...] | None = None,
    n_actions: int | None = None,
) -> Checkpoint:
    """Read a checkpoint; when expectations are given, name every one it does not meet.
    `sb3:PATH.zip` reads a Stable-Baselines3 model instead (learners/sb3.py)."""
    if str(path).startswith(SB3_PREFIX):
        from . import sb3

        zip_path = str(path)[len(SB3_PREFIX):]
        ckpt, what = sb3.read(zip_path, env_id=env_id, obs_shape=obs_shape, n_actions=n_actions), \
            f"Stable-Baselines3 model {zip_path!r}"
    else:
        ckpt, what = _read(Path(path)), f"checkpoint {str(path)!r}"
        if isinstance(ckpt, MultiTaskCheckpoint):  # the path of the task asked for
            if env_id not in ckpt.env_ids:
                raise CheckpointError(f"{what} is a multi-task network of {', '.join(ckpt.env_ids)}, "
                                      + (f"none of them {env_id!r}" if env_id else "so the task's env is needed"))
            ckpt = ckpt.task(env_id)
    problems = _mismatches(ckpt, env_id=env_id, net=net, obs_shape=obs_shape, n_actions=n_actions)
    if problems:
        raise CheckpointError(f"{what} was made for " + "; ".join(problems))
    return ckpt


def load_multitask(path: str | Path) -> MultiTaskCheckpoint:
    """A whole multi-task network's checkpoint."""
    ckpt = _read(Path(path))
    if not isinstance(ckpt, MultiTaskCheckpoint):
        raise CheckpointError(f"checkpoint {str(path)!r} is a single-task network of {ckpt.env_id!r}, not a "
                              "multi-task one")
    return ckpt


def _read(path: Path) -> Checkpoint | MultiTaskCheckpoint:
    """A qdistill checkpoint file, its schema checked."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        payload = _torch().load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise CheckpointError(f"checkpoint {str(path)!r} is not a qdistill checkpoint (unreadable: truncated, or "
                              f"another kind of file): {type(exc).__name__}") from None
    if not isinstance(payload, dict) or "schema" not in payload:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a qdistill checkpoint: no schema version")
    if isinstance(payload["schema"], int) and payload["schema"] > SCHEMA_VERSION:
        raise CheckpointError(f"checkpoint {str(path)!r} has schema version {payload['schema']}, newer than this "
                              f"qdistill reads ({SCHEMA_VERSION}): upgrade qdistill to load it")
    if payload["schema"] not in READS:
        raise CheckpointError(f"checkpoint {str(path)!r} has schema version {payload['schema']}; this qdistill "
                              f"reads {' and '.join(map(str, READS))}")
    _check_digest(payload, f"checkpoint {str(path)!r}", "checkpoint")
    try:
        if "tasks" in payload:
            tasks = payload["tasks"]
            return MultiTaskCheckpoint(
                net=payload["net"], env_ids=tuple(t["env_id"] for t in tasks),
                obs_shapes=tuple(tuple(t["obs_shape"]) for t in tasks), n_actions=tuple(int(t["n_actions"]) for t in tasks),
                inputs=payload["inputs"], version=int(payload["version"]), weights=_to_numpy(payload["state_dict"]))
        return Checkpoint(
            net=payload["net"],
            obs_shape=tuple(payload["obs_shape"]),
            n_actions=int(payload["n_actions"]),
            env_id=payload["env_id"],
            version=int(payload["version"]),
            weights=_to_numpy(payload["state_dict"]),
            schema=payload["schema"],
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # schema 1: nothing checked its contents
        raise CheckpointError(f"checkpoint {str(path)!r} is not a qdistill checkpoint: a field is missing or "
                              f"malformed ({type(exc).__name__})") from None
