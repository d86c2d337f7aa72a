"""Students served as moving averages of their weights (`DistillConfig.ema`)."""

import numpy as np
import torch

from qdistill.learners import checkpoint
from qdistill.learners.distill import DistillConfig, DistillLearner
from tests.support.batches import labelled_batch


def _batch(rng: np.random.Generator, n_obs: int = 4, n_actions: int = 2):
    return labelled_batch(rng.normal(size=(32, n_obs)).astype(np.float32),
                          rng.normal(size=(32, n_actions)).astype(np.float32))


def test_served_weights_are_the_warmed_up_moving_average_of_every_step():
    learner = DistillLearner(DistillConfig(students=("8",), ema=0.9, lr=1e-2), [((4,), 2)], seed=0)
    net = learner.students["8"]
    expected = {k: v.detach().clone() for k, v in net.named_parameters()}  # the average starts at the initial weights
    rng = np.random.default_rng(0)
    decays = []
    for t in range(100):
        learner.step(_batch(rng))
        decay = min(0.9, (1 + t) / (10 + t))
        decays.append(decay)
        for k, v in net.named_parameters():
            expected[k] = expected[k] * decay + v.detach() * (1 - decay)
    assert decays[0] == 0.1 and decays[-1] == 0.9  # warm-up first, then the configured decay
    served = learner.task_network("8").state_dict()
    for k, v in expected.items():
        torch.testing.assert_close(served[k], v, rtol=0, atol=1e-6)
        assert not torch.equal(served[k], net.state_dict()[k])  # not the trained weights themselves
    weights = learner.weights()["8"]
    assert all(np.array_equal(weights[k], served[k].numpy()) for k in weights)


def test_without_ema_the_trained_weights_are_served():
    learner = DistillLearner(DistillConfig(students=("8",)), [((4,), 2)], seed=0)
    learner.step(_batch(np.random.default_rng(0)))
    assert learner.averages == {} and learner.served is learner.students
    trained = learner.students["8"].state_dict()
    assert all(np.array_equal(v, trained[k].numpy()) for k, v in learner.weights()["8"].items())


def test_averages_resume_and_drop_with_their_students(tmp_path):
    cfg = DistillConfig(students=("16x16", "8"), ema=0.99)
    original = DistillLearner(cfg, [((4,), 2)], seed=0)
    for _ in range(5):
        original.step(_batch(np.random.default_rng(1)))
    checkpoint.save_state(tmp_path / "state.pt", {"learner": original.state_dict()})
    resumed = DistillLearner(cfg, [((4,), 2)], seed=9)
    resumed.load_state_dict(checkpoint.load_state(tmp_path / "state.pt")["learner"])
    for learner in (original, resumed):
        learner.step(_batch(np.random.default_rng(2)))
    for name in cfg.students:
        mine, theirs = resumed.weights()[name], original.weights()[name]
        assert all(np.array_equal(mine[k], theirs[k]) for k in mine)
    resumed.drop("8")
    assert set(resumed.averages) == set(resumed.students) == {"16x16"}


def test_a_multitask_student_serves_each_tasks_part_of_its_average():
    learner = DistillLearner(DistillConfig(students=("8x8",), ema=0.9, lr=1e-2), [((4,), 2), ((3,), 3)], seed=0)
    rng = np.random.default_rng(0)
    for _ in range(3):
        second = _batch(rng, n_obs=3, n_actions=3)
        second.task[:] = 1
        learner.step([_batch(rng), second])
    average, trained = learner.averages["8x8"], learner.students["8x8"]
    for task in (0, 1):
        served = learner.task_network("8x8", task).state_dict()
        assert served.keys() == average.task_network(task).state_dict().keys()
        assert all(torch.equal(v, average.task_network(task).state_dict()[k]) for k, v in served.items())
        assert not all(torch.equal(v, trained.task_network(task).state_dict()[k]) for k, v in served.items())
