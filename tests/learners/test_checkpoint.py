import numpy as np
import pytest
import torch

from qdistill.learners import checkpoint
from qdistill.learners.networks import QNetwork, to_numpy


def _ckpt(env="CartPole-v1", net="16x16", obs=(4,), actions=2, version=5):
    return checkpoint.Checkpoint(net, obs, actions, env, version, to_numpy(QNetwork(net, obs, actions).state_dict()))


def test_round_trip(tmp_path):
    original = _ckpt()
    path = checkpoint.save(tmp_path / "t.pt", original)
    loaded = checkpoint.load(path, env_id="CartPole-v1", net="16x16", obs_shape=(4,), n_actions=2)
    assert (loaded.net, loaded.obs_shape, loaded.n_actions, loaded.env_id, loaded.version, loaded.schema) == (
        "16x16", (4,), 2, "CartPole-v1", 5, checkpoint.SCHEMA_VERSION)
    assert loaded.weights.keys() == original.weights.keys()
    for k in original.weights:
        np.testing.assert_array_equal(loaded.weights[k], original.weights[k])
    x = torch.randn(3, 4)
    torch.testing.assert_close(loaded.network()(x), original.network()(x))
    assert [p.name for p in tmp_path.iterdir()] == ["t.pt"]  # no temporary file left


@pytest.mark.parametrize(
    "expect, message",
    [
        ({"env_id": "Acrobot-v1"}, "was made for env 'CartPole-v1', not 'Acrobot-v1'"),
        ({"net": "64x64"}, "was made for network '16x16', not '64x64'"),
        ({"obs_shape": (6,)}, r"was made for observation shape \(4,\), not \(6,\)"),
        ({"n_actions": 3}, "was made for 2 actions, not 3"),
        ({"env_id": "Acrobot-v1", "obs_shape": (6,), "n_actions": 3},
         r"was made for env 'CartPole-v1', not 'Acrobot-v1'; observation shape \(4,\), not \(6,\); 2 actions, not 3"),
    ],
)
def test_each_mismatch_is_named(tmp_path, expect, message):
    path = checkpoint.save(tmp_path / "t.pt", _ckpt())
    with pytest.raises(checkpoint.CheckpointError, match=f"^checkpoint '{path}' {message}$"):
        checkpoint.load(path, **expect)


def test_schema_mismatch(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"schema": 99, "net": "16"}, path)
    with pytest.raises(checkpoint.CheckpointError) as err:
        checkpoint.load(path)
    assert str(err.value) == f"checkpoint '{path}' has schema version 99, newer than this qdistill reads (1): " \
        "upgrade qdistill to load it"
    torch.save({"schema": 0, "net": "16"}, path)
    with pytest.raises(checkpoint.CheckpointError) as err:
        checkpoint.load(path)
    assert str(err.value) == f"checkpoint '{path}' has schema version 0; this qdistill reads 1"


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(checkpoint.CheckpointError, match=f"^checkpoint '{path}' is not a qdistill checkpoint"):
        checkpoint.load(path)
    with pytest.raises(checkpoint.CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "missing.pt")


class _Arbitrary:
    """An object weights_only loading must refuse to rebuild."""


def test_load_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"schema": 1, "obj": _Arbitrary()}, path)
    with pytest.raises(checkpoint.CheckpointError, match="is not a qdistill checkpoint"):
        checkpoint.load(path)
