"""Stable-Baselines3's `VecNormalize` statistics for a model read as a teacher (sb3.py).

A model trained behind VecNormalize acts on normalised observations. SB3 saves the statistics as a
pickle (`vecnormalize.pkl`, beside the model or in a folder of the model's name, as RL-Zoo keeps
it), which is refused, never loaded (unpickling runs the file's code); the same statistics as an
NPZ of arrays (`vecnormalize.npz`: mean, var, count, clip_obs, epsilon) make the teacher a `norm-`
network, normalising exactly as VecNormalize does."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .checkpoint import CheckpointError
from .networks import QNetwork
from .specs import NORM_CLIP, NORM_EPS, normalized

VECNORMALIZE = "vecnormalize"  # the files' name: NAME.pkl (refused) or NAME.npz (read)


def statistics(path: Path, refuse: Callable[[str], Exception]) -> dict[str, np.ndarray] | None:
    """The VecNormalize statistics saved beside the model (or in a folder of its name), from an NPZ;
    None without any. A pickle alone is refused: loading it would run its code."""
    places = [path.parent, path.parent / path.stem]
    found = {ext: next((p / f"{name}{ext}" for p in places for name in (VECNORMALIZE, "vec_normalize")
                        if (p / f"{name}{ext}").is_file()), None) for ext in (".npz", ".pkl")}
    if found[".npz"] is None:
        if found[".pkl"] is not None:
            raise refuse(f"was trained behind VecNormalize, whose statistics {str(found['.pkl'])!r} are a pickle, "
                         "which qdistill does not load (unpickling runs the file's code): save them beside it as "
                         f"{VECNORMALIZE}.npz (mean, var, count, clip_obs, epsilon of its obs_rms; see "
                         "docs/teacher.md)")
        return None
    where = str(found[".npz"])
    try:
        with np.load(found[".npz"], allow_pickle=False) as npz:
            stats = {k: np.asarray(npz[k]) for k in ("mean", "var", "count", "clip_obs", "epsilon")}
    except (KeyError, ValueError, OSError) as exc:
        raise refuse(f"has VecNormalize statistics {where!r} that cannot be read ({exc}): expected an NPZ of "
                     "mean, var, count, clip_obs and epsilon") from None
    if float(stats["clip_obs"]) != NORM_CLIP or float(stats["epsilon"]) != NORM_EPS:
        raise refuse(f"was normalised with clip_obs {float(stats['clip_obs']):g} and epsilon "
                     f"{float(stats['epsilon']):g} ({where}): qdistill normalises with VecNormalize's defaults, "
                     f"clip_obs {NORM_CLIP:g} and epsilon {NORM_EPS:g}")
    return stats


def normalising(spec: str, shape: tuple[int, ...], actions: int, weights: dict[str, np.ndarray],
                 stats: dict[str, np.ndarray]) -> tuple[str, dict[str, np.ndarray]]:
    """The `norm-` network of the same layers, with VecNormalize's statistics in its ObsNorm."""
    spec = normalized(spec)
    if len(shape) != 1 or stats["mean"].shape != shape or stats["var"].shape != shape:
        raise CheckpointError(f"VecNormalize statistics of shape {stats['mean'].shape} do not fit observations of "
                              f"shape {shape}: expected one mean and variance per observation entry")
    net = QNetwork(spec, shape, actions)
    names = [k for k in net.state_dict() if k.endswith((".weight", ".bias"))]
    state = dict(zip(names, weights.values()))  # the same layers in the same order, one index further on
    state.update({k: np.asarray(stats[k.rsplit(".", 1)[1]], dtype=np.float64 if k.endswith("count") else np.float32)
                  for k in net.state_dict() if k.endswith((".mean", ".var", ".count"))})
    return spec, state
