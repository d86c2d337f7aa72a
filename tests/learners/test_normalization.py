"""Observation normalisation (`norm-` networks, `--normalize-obs`): running statistics merged
exactly, updated only by the DQN teacher's learner (frozen everywhere else), carried by weights,
checkpoints and both export formats, and taken by students from their teacher."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from qdistill.cluster import export as ex
from qdistill.learners import checkpoint
from qdistill.learners import export as formats
from qdistill.learners.batch import TransitionBatch
from qdistill.learners.configs import DistillConfig
from qdistill.learners.distill import DistillLearner
from qdistill.learners.configs import DQNConfig
from qdistill.learners.dqn import DQNLearner
from qdistill.learners.networks import QNetwork, obs_norm, to_numpy
from qdistill.learners.policy import GreedyPolicy, numpy_forward
from qdistill.learners.specs import NORM_CLIP, parse_spec
from tests.support.batches import labelled_batch

RNG = np.random.default_rng(0)
OBS = (RNG.normal(size=(600, 4)) * [1.0, 5.0, 0.1, 30.0] + [0.0, -3.0, 1.0, 100.0]).astype(np.float32)


def _batch(obs: np.ndarray) -> TransitionBatch:
    """Rows of these observations (their own next observations), labelled 0: a teacher learner's
    and a student's input alike."""
    batch = labelled_batch(obs, np.zeros((len(obs), 2), np.float32))
    return dataclasses.replace(batch, next_observations=obs)


def test_the_spec_and_the_statistics_merge_exactly():
    assert parse_spec("norm-64x64").normalize and parse_spec("norm-64x64").widths == (64, 64)
    assert not parse_spec("64x64").normalize
    norm = obs_norm(QNetwork("norm-16", (4,), 2))
    for chunk in np.array_split(OBS, [1, 50, 51, 333]):  # uneven batches, one of a single row
        norm.update(torch.as_tensor(chunk))
    assert norm.count.item() == 600
    np.testing.assert_allclose(norm.mean.numpy(), OBS.astype(np.float64).mean(0), rtol=1e-6)
    np.testing.assert_allclose(norm.var.numpy(), OBS.astype(np.float64).var(0), rtol=1e-5)
    # what the network sees: standardised, clipped at ±NORM_CLIP
    out = norm(torch.as_tensor(np.vstack([OBS[:5], [[0.0, 0.0, 50.0, 100.0]]])))
    expected = (np.vstack([OBS[:5], [[0.0, 0.0, 50.0, 100.0]]]) - OBS.mean(0)) / OBS.std(0)
    np.testing.assert_allclose(out.numpy(), np.clip(expected, -NORM_CLIP, NORM_CLIP), rtol=1e-4, atol=1e-5)
    assert out[5, 2].item() == NORM_CLIP


def test_the_teacher_learner_updates_them_and_everything_else_keeps_them(tmp_path):
    learner = DQNLearner(DQNConfig(net="norm-32x32", batch_size=100), [((4,), 2)])
    for chunk in np.array_split(OBS, 6):
        learner.step(_batch(chunk))
    online, target = obs_norm(learner.q), obs_norm(learner.q_target)
    assert online.count.item() == 600
    np.testing.assert_allclose(online.mean.numpy(), OBS.astype(np.float64).mean(0), rtol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(online.state_dict().values(), target.state_dict().values()))
    weights = learner.weights()
    assert {"layers.1.mean", "layers.1.var", "layers.1.count"} <= set(weights)

    # acting (both inference backends) reads them and changes nothing
    for backend in ("numpy", "torch"):
        policy = GreedyPolicy("norm-32x32", (4,), 2, backend=backend)
        policy.load(1, weights)
        with torch.no_grad():
            np.testing.assert_allclose(policy.q_values(OBS), learner.q(torch.as_tensor(OBS)).numpy(), rtol=1e-5,
                                       atol=1e-5)
    np.testing.assert_allclose(numpy_forward("norm-32x32", (4,), weights)(OBS[:3]),
                               learner.q(torch.as_tensor(OBS[:3])).detach().numpy(), rtol=1e-5, atol=1e-5)

    # a checkpoint carries them
    path = tmp_path / "teacher.pt"
    checkpoint.save(path, checkpoint.Checkpoint("norm-32x32", (4,), 2, "CartPole-v1", 3, weights))
    loaded = checkpoint.load(path)
    assert all(np.array_equal(loaded.weights[k], weights[k]) for k in weights)

    # a student takes them and keeps them while it learns
    student = DistillLearner(DistillConfig(students=("norm-8",), batch_size=64), [((4,), 2)])
    student.take_statistics(loaded.weights)
    before = {k: v.clone() for k, v in obs_norm(student.students["norm-8"]).state_dict().items()}
    for chunk in np.array_split(OBS, 3):
        student.step(_batch(chunk + 7.0))
    after = obs_norm(student.students["norm-8"]).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert np.array_equal(before["mean"].numpy(), weights["layers.1.mean"])
    assert np.array_equal(student.weights()["norm-8"]["layers.1.var"], weights["layers.1.var"])


def test_a_student_cannot_normalise_without_its_teachers_statistics():
    student = DistillLearner(DistillConfig(students=("norm-8", "8")), [((4,), 2)])
    with pytest.raises(ValueError, match=r"^student 'norm-8' normalises its observations with its teacher's "
                                         r"statistics, but the teacher has none: train the teacher with "
                                         r"--normalize-obs, or drop 'norm-'$"):
        student.take_statistics(to_numpy(QNetwork("16", (4,), 2).state_dict()))


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_an_exported_normalised_student_normalises_inside_and_passes_the_gate(tmp_path, fmt):
    torch.manual_seed(0)
    net = QNetwork("norm-16x16", (4,), 2).eval()
    norm = obs_norm(net)
    norm.update(torch.as_tensor(OBS))
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    weights = to_numpy(net.state_dict())
    checkpoint.save(run / "checkpoints" / "teacher.pt", checkpoint.Checkpoint("norm-16x16", (4,), 2, "CartPole-v1", 3,
                                                                              weights))
    checkpoint.save(run / "checkpoints" / "student-norm-16x16-best.pt",
                    checkpoint.Checkpoint("norm-16x16", (4,), 2, "CartPole-v1", 7, weights))
    (run / "summary.json").write_text(json.dumps({"students": {"norm-16x16": {"eval_return_mean": 9.0}}}))
    sidecar = ex.export(ex.Request(run, None, fmt, False, None, 0.99, 300, 2))
    assert sidecar["input"]["scaling"] == "normalised inside the model (obs_normalisation)"
    stats = sidecar["obs_normalisation"]
    assert stats["in_graph"] is True and stats["count"] == 600
    assert np.allclose(stats["mean"], weights["layers.1.mean"]) and np.allclose(stats["var"], weights["layers.1.var"])
    assert sidecar["verification"]["agreement"] == 1.0
    # the file itself takes raw observations and gives the float network's Q-values
    raw = OBS[:64]
    with torch.no_grad():
        expected = net(torch.as_tensor(raw)).numpy()
    np.testing.assert_allclose(formats.runner(run / "export" / f"student-norm-16x16{formats.SUFFIX[fmt]}", fmt)(raw),
                               expected, rtol=1e-5, atol=1e-5)
