from collections import Counter

import numpy as np
import pytest
import torch

from qdistill.learners import checkpoint
from qdistill.learners.configs import DistillConfig
from qdistill.learners.distill import DistillLearner
from qdistill.learners.networks import QNetwork, from_numpy, to_numpy
from tests.support.batches import labelled_batch


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
    assert str(err.value) == f"checkpoint '{path}' has schema version 99, newer than this qdistill reads (2): " \
        "upgrade qdistill to load it"
    torch.save({"schema": 0, "net": "16"}, path)
    with pytest.raises(checkpoint.CheckpointError) as err:
        checkpoint.load(path)
    assert str(err.value) == f"checkpoint '{path}' has schema version 0; this qdistill reads 1 and 2"


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


DAMAGED = "is damaged: its checksum does not match its contents (a flipped or overwritten byte); "
ADVICE = {"checkpoint": "use another checkpoint or --resume from an earlier one",
          "run state": "restore it from a backup or start the run again"}


def _state() -> dict:
    """A small run state: a learner one step in (its students and Adam moments) and plain counters."""
    learner = DistillLearner(DistillConfig(students=("4",)), [((4,), 2)])
    learner.step(labelled_batch(np.ones((8, 4), np.float32), np.ones((8, 2), np.float32)))
    return {"learner": learner.state_dict(), "env_steps": 1_000, "epsilon": 0.25, "env": "CartPole-v1", "best": None}


def test_files_stay_plain_torch_files_sealed_with_a_digest(tmp_path):
    path = checkpoint.save(tmp_path / "t.pt", _ckpt())
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert sorted(payload) == ["digest", "env_id", "n_actions", "net", "obs_shape", "schema", "state_dict", "version"]
    assert payload["schema"] == 2 and len(payload["digest"]) == 64
    state = torch.load(checkpoint.save_state(tmp_path / "s.pt", _state()), weights_only=True)
    assert sorted(state) == ["digest", "schema", "state"]


@pytest.mark.parametrize("kind", ["checkpoint", "run state"])
def test_a_changed_value_or_a_missing_digest_is_refused_in_one_line(tmp_path, kind):
    save, load = (lambda p: checkpoint.save(p, _ckpt()), checkpoint.load) if kind == "checkpoint" else \
        (lambda p: checkpoint.save_state(p, _state()), checkpoint.load_state)
    path = save(tmp_path / "t.pt")
    payload = torch.load(path, weights_only=True)
    inner = payload["state_dict"] if kind == "checkpoint" else payload["state"]["learner"]["students"]["4"]
    next(iter(inner.values()))[0, 0] += 1e-6  # one weight, a hair off
    torch.save(payload, path)
    with pytest.raises(checkpoint.CheckpointError) as err:
        load(path)
    assert str(err.value) == f"{kind} '{path}' {DAMAGED}{ADVICE[kind]}"
    del payload["digest"]
    torch.save(payload, path)
    with pytest.raises(checkpoint.CheckpointError) as err:
        load(path)
    assert str(err.value) == f"{kind} '{path}' is damaged: schema version 2 but no checksum; {ADVICE[kind]}"
    payload["schema"] = 1  # as written before digests: read unchecked
    torch.save(payload, path)
    load(path)


def test_schema_1_files_written_before_digests_still_load(tmp_path):
    original = _ckpt()
    path = tmp_path / "old.pt"
    torch.save({"schema": 1, "net": original.net, "obs_shape": list(original.obs_shape), "n_actions": 2,
                "env_id": original.env_id, "version": 5, "state_dict": from_numpy(original.weights)}, path)
    loaded = checkpoint.load(path, env_id="CartPole-v1", net="16x16")
    assert (loaded.version, loaded.schema) == (5, 1) and _same_checkpoint(loaded, original)
    torch.save({"schema": 1, "state": {"env_steps": 7}}, tmp_path / "state.pt")
    assert checkpoint.load_state(tmp_path / "state.pt") == {"env_steps": 7}
    torch.save({"schema": 1, "net": "16x16"}, path)  # damaged where no digest looks: refused all the same
    with pytest.raises(checkpoint.CheckpointError) as err:
        checkpoint.load(path)
    assert str(err.value) == f"checkpoint '{path}' is not a qdistill checkpoint: a field is missing or malformed " \
        "(KeyError)"


def _same_checkpoint(a: checkpoint.Checkpoint, b: checkpoint.Checkpoint) -> bool:
    return (a.net, a.obs_shape, a.n_actions, a.env_id, a.version) == (b.net, b.obs_shape, b.n_actions, b.env_id,
                                                                      b.version) and _same(a.weights, b.weights)


def _same(a: object, b: object) -> bool:
    """Equal in every value, type, dtype, shape and bit."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (torch.Tensor, np.ndarray)):
        a, b = torch.as_tensor(a), torch.as_tensor(b) if isinstance(b, (torch.Tensor, np.ndarray)) else None
        return b is not None and (a.dtype, a.shape) == (b.dtype, b.shape) and torch.equal(a, b)
    return type(a) is type(b) and a == b


REFUSALS = [  # how a damaged file is refused, by the start of the message after its path
    ("cannot be read", "unreadable"), ("is not a qdistill checkpoint (unreadable", "unreadable"),
    ("is damaged: its checksum does not match", "checksum mismatch"), ("is damaged: schema version", "no checksum"),
    ("has schema version", "schema version"), ("is not a qdistill", "not a qdistill file"),
]


def _flips(path, positions: np.ndarray, load, same, rng: np.random.Generator) -> Counter:
    """Each position flipped in turn (by a random non-zero mask) and loaded: how it was refused, or
    "loaded the same"; a load that differs from the original fails the test."""
    data = path.read_bytes()
    outcomes: Counter = Counter()
    for pos in positions.tolist():
        damaged = bytearray(data)
        damaged[pos] ^= int(rng.integers(1, 256))
        path.write_bytes(damaged)
        try:
            loaded = load(path)
        except checkpoint.CheckpointError as exc:
            message = str(exc)
            assert "\n" not in message and message.startswith(f"{'checkpoint' if load is checkpoint.load else 'run state'} '{path}' ")
            why = message.split("' ", 1)[1]
            outcomes[next(kind for start, kind in REFUSALS if why.startswith(start))] += 1
            continue
        assert same(loaded), f"byte {pos} flipped loads other contents without an error"
        outcomes["loaded the same"] += 1
    return outcomes


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")  # torch.load on the damaged pickles: protocol and storage warnings
def test_no_flipped_byte_loads_other_contents(tmp_path):
    """Every byte of a small checkpoint and 2,000 bytes of a small run state, each flipped alone:
    refused in one line, or loaded identical (a byte torch.load never reads). Never silently other."""
    torch.manual_seed(20)
    rng = np.random.default_rng(20)
    original = _ckpt(net="4")
    path = checkpoint.save(tmp_path / "t.pt", original)
    ckpt = _flips(path, np.arange(path.stat().st_size), checkpoint.load,
                  lambda loaded: _same_checkpoint(loaded, original), rng)
    state = _state()
    path = checkpoint.save_state(tmp_path / "state.pt", state)
    run = _flips(path, rng.choice(path.stat().st_size, 2_000, replace=False), checkpoint.load_state,
                 lambda loaded: _same(loaded, state), rng)
    print(f"\ncheckpoint, every byte: {dict(ckpt)}\nrun state, 2,000 bytes: {dict(run)}")
    assert sum(ckpt.values()) >= 2_000 and sum(run.values()) == 2_000
    assert ckpt["checksum mismatch"] > 0 and run["checksum mismatch"] > 0  # what loaded silently before digests
