import numpy as np
import pytest
import torch

from qdistill.learners.batch import TransitionBatch
from qdistill.learners.configs import DQNConfig
from qdistill.learners.dqn import DQNLearner
from qdistill.learners.schedule import LinearSchedule
from qdistill.learners.td import double_dqn_target, td_loss


def test_double_dqn_target_hand_computed():
    rewards = torch.tensor([1.0, 0.5, -1.0])
    next_q_online = torch.tensor([[1.0, 3.0], [2.0, 0.0], [0.0, 5.0]])  # argmax: 1, 0, 1
    next_q_target = torch.tensor([[10.0, 20.0], [30.0, 40.0], [7.0, 8.0]])  # picks 20, 30, 8
    terminations = torch.tensor([0.0, 1.0, 0.0])
    target = double_dqn_target(rewards, next_q_online, next_q_target, terminations, gamma=0.9)
    # 1 + 0.9·20 = 19;  terminated: 0.5;  −1 + 0.9·8 = 6.2
    torch.testing.assert_close(target, torch.tensor([19.0, 0.5, 6.2]))


def test_double_dqn_uses_online_argmax_not_target_max():
    target = double_dqn_target(torch.zeros(1), torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 100.0]]),
                               torch.zeros(1), gamma=1.0)
    assert target.item() == 2.0


def test_td_loss_is_huber_mean():
    q = torch.tensor([0.0, 3.0, 1.0])
    target = torch.tensor([0.5, 0.0, 1.0])
    # δ = −0.5, 3, 0 → ½·0.25 = 0.125, 3 − ½ = 2.5, 0 → mean 2.625 / 3
    assert td_loss(q, target).item() == pytest.approx(2.625 / 3)


def _batch(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return TransitionBatch(
        observations=rng.normal(size=(n, 4)).astype(np.float32),
        actions=rng.integers(0, 2, n),
        rewards=np.ones(n, np.float32),
        next_observations=rng.normal(size=(n, 4)).astype(np.float32),
        terminations=np.array([False, True] * (n // 2)),
        truncations=np.zeros(n, bool),
        teacher_q=np.zeros((n, 2), np.float32),
        label_version=np.zeros(n, np.int64),
        behaviour=np.zeros(n, np.int8),
        actor_id=np.zeros(n, np.int32),
        task=np.zeros(n, np.int16),
    )


def test_learner_step_loss_matches_the_pure_functions():
    learner = DQNLearner(DQNConfig(net="8", gamma=0.9), [((4,), 2)], seed=3)
    batch = _batch()
    obs, nxt = torch.from_numpy(batch.observations), torch.from_numpy(batch.next_observations)
    with torch.no_grad():
        q_taken = learner.q(obs).gather(1, torch.from_numpy(batch.actions)[:, None]).squeeze(1)
        target = double_dqn_target(torch.ones(4), learner.q(nxt), learner.q_target(nxt),
                                   torch.tensor([0.0, 1.0, 0.0, 1.0]), 0.9)
        expected = td_loss(q_taken, target).item()
        before = learner.q(obs).numpy()
    update = learner.step(batch)
    assert update.metrics["learner/td_loss"] == pytest.approx(expected, rel=1e-6)
    assert learner.steps == 1
    # the Q-values returned are the online network's for these observations before the update
    assert update.q_values.shape == (4, 2) and (update.q_values == before).all()
    with torch.no_grad():
        assert not (learner.q(obs).numpy() == before).all()


def test_an_n_step_row_bootstraps_with_gamma_to_its_own_horizon():
    """Rows of horizons 1, 2, 3, 2 trained with γ 0.9 give the loss of the pure functions with γ
    0.9, 0.81, 0.729, 0.81 per row; without horizons every row bootstraps with γ."""
    batch = _batch()
    batch.horizon = np.array([1, 2, 3, 2], np.int8)
    obs, nxt = torch.from_numpy(batch.observations), torch.from_numpy(batch.next_observations)
    losses = {}
    for gammas in ((0.9, 0.81, 0.729, 0.81), (0.9,) * 4):
        learner = DQNLearner(DQNConfig(net="8", gamma=0.9), [((4,), 2)], seed=3)
        with torch.no_grad():
            q_taken = learner.q(obs).gather(1, torch.from_numpy(batch.actions)[:, None]).squeeze(1)
            target = double_dqn_target(torch.ones(4), learner.q(nxt), learner.q_target(nxt),
                                       torch.tensor([0.0, 1.0, 0.0, 1.0]), torch.tensor(gammas))
        losses[gammas] = td_loss(q_taken, target).item()
    learner = DQNLearner(DQNConfig(net="8", gamma=0.9), [((4,), 2)], seed=3)
    assert learner.step(batch).metrics["learner/td_loss"] == pytest.approx(losses[(0.9, 0.81, 0.729, 0.81)], rel=1e-6)
    batch.horizon = None
    learner = DQNLearner(DQNConfig(net="8", gamma=0.9), [((4,), 2)], seed=3)
    assert learner.step(batch).metrics["learner/td_loss"] == pytest.approx(losses[(0.9,) * 4], rel=1e-6)
    assert losses[(0.9,) * 4] != pytest.approx(losses[(0.9, 0.81, 0.729, 0.81)], rel=1e-3)


def test_target_network_copies_every_target_update_steps():
    learner = DQNLearner(DQNConfig(net="8", target_update=3), [((4,), 2)])
    first = [p.clone() for p in learner.q_target.parameters()]
    for _ in range(2):
        learner.step(_batch())
    assert all(torch.equal(a, b) for a, b in zip(first, learner.q_target.parameters()))
    learner.step(_batch())
    assert all(torch.equal(a, b) for a, b in zip(learner.q.parameters(), learner.q_target.parameters()))


def test_learning_reduces_td_loss_on_a_fixed_batch():
    learner = DQNLearner(DQNConfig(net="32", lr=1e-2, target_update=10_000), [((4,), 2)])
    batch = _batch(32)
    first = learner.step(batch).metrics["learner/td_loss"]
    for _ in range(200):
        last = learner.step(batch).metrics["learner/td_loss"]
    assert last < first / 10


def test_linear_schedule():
    eps = LinearSchedule(1.0, 0.1, 100)
    assert [eps(0), eps(50), eps(100), eps(1000)] == pytest.approx([1.0, 0.55, 0.1, 0.1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lr": 0.0}, "lr 0.0 is not valid: expected a number > 0"),
        ({"gamma": 1.5}, r"gamma 1.5 is not valid: expected a number in \[0, 1\]"),
        ({"batch_size": 0}, "batch_size 0 is not valid: expected a number > 0"),
        ({"net": "64y64"}, "network spec '64y64' is not valid"),
        ({"n_step": 0}, r"n_step 0 is not valid: expected an integer in \[1, 100\]"),
        ({"n_step": 101}, r"n_step 101 is not valid: expected an integer in \[1, 100\]"),
        ({"n_step": 2.5}, r"n_step 2.5 is not valid: expected an integer in \[1, 100\]"),
    ],
)
def test_dqn_config_refuses_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DQNConfig(**kwargs)


def test_behaviour_beta():
    from qdistill.learners.schedule import behaviour_beta

    schedule = LinearSchedule(1.0, 0.2, 1000)
    assert [behaviour_beta("mixed", schedule, t) for t in (0, 500, 1000, 5000)] == pytest.approx([1.0, 0.6, 0.2, 0.2])
    assert behaviour_beta("teacher", schedule, 500) == 1.0 and behaviour_beta("student", schedule, 0) == 0.0
    with pytest.raises(ValueError, match="^behaviour 'random' is not known: expected one of teacher, student, mixed$"):
        behaviour_beta("random", schedule, 0)
