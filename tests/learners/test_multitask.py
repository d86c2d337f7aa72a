"""Multi-task students: a shared trunk, a head per task, inputs per task or zero-padded."""

import numpy as np
import pytest
import torch

from qdistill.learners import checkpoint
from qdistill.learners.configs import DistillConfig
from qdistill.learners.distill import DistillLearner
from qdistill.learners.configs import DQNConfig
from qdistill.learners.dqn import DQNLearner
from qdistill.learners.multitask import MultiTaskQNetwork
from qdistill.learners.networks import QNetwork, count_params, to_numpy
from qdistill.learners.td import double_dqn_target, td_loss
from tests.support.batches import labelled_batch

CLASSIC = [((4,), 2), ((6,), 3), ((8,), 4)]  # CartPole, Acrobot, LunarLander
MINATAR = [((4, 10, 10), 3), ((6, 10, 10), 6), ((7, 10, 10), 3)]  # Breakout, SpaceInvaders, Freeway (channels first)


def _net(spec, tasks, inputs):
    torch.manual_seed(0)
    return MultiTaskQNetwork(spec, [s for s, _ in tasks], [a for _, a in tasks], inputs=inputs)


def _obs(shape, n, seed):
    rng = np.random.default_rng(seed)
    if len(shape) == 3:
        return torch.as_tensor(rng.integers(0, 2, (n, *shape)) * 255, dtype=torch.uint8)
    return torch.as_tensor(rng.normal(size=(n, *shape)), dtype=torch.float32)


@pytest.mark.parametrize("inputs", ["per-task", "pad"])
@pytest.mark.parametrize("spec,tasks", [("32x16", CLASSIC), ("c8k3s1-16", MINATAR)])
def test_each_task_has_its_own_head_and_its_own_network_computes_the_same_q_values(spec, tasks, inputs):
    net = _net(spec, tasks, inputs)
    for task, (shape, actions) in enumerate(tasks):
        obs = _obs(shape, 5, task)
        q = net(obs, task)
        assert q.shape == (5, actions)
        alone = net.task_network(task)
        assert isinstance(alone, QNetwork) and alone.obs_shape == shape and alone.n_actions == actions
        plain = QNetwork(spec, shape, actions)  # a fresh network of the task's shape takes its weights as they are
        plain.load_state_dict(alone.state_dict())
        torch.testing.assert_close(plain(obs), q, rtol=0, atol=1e-6)


def test_input_layers_per_task_share_everything_between_them_and_the_heads():
    net = _net("32x16", CLASSIC, "per-task")
    trunk = net.tasks[0].layers[3]  # Flatten, Linear(in, 32), ReLU, [Linear(32, 16)], ReLU, head
    assert all(t.layers[3] is trunk for t in net.tasks)
    assert len({id(t.layers[1]) for t in net.tasks}) == 3 and len({id(t.layers[-1]) for t in net.tasks}) == 3
    heads = sum(16 * a + a for _, a in CLASSIC)
    inputs = sum(s[0] * 32 + 32 for s, _ in CLASSIC)
    assert count_params(net) == inputs + (32 * 16 + 16) + heads


def test_padded_inputs_share_the_input_layer_too():
    net = _net("c8k3s1-16", MINATAR, "pad")
    assert net.padded == (7, 10, 10)
    assert all(t.layers[1] is net.tasks[0].layers[1] for t in net.tasks)
    conv = 7 * 8 * 9 + 8
    assert count_params(net) == conv + (8 * 8 * 8 * 16 + 16) + sum(16 * a + a for _, a in MINATAR)
    # fewer parameters than three single-task students of the same spec
    assert count_params(net) < sum(count_params(QNetwork("c8k3s1-16", s, a)) for s, a in MINATAR)


def test_a_gradient_step_on_one_task_moves_the_trunk_and_that_tasks_head_only():
    learner = DistillLearner(DistillConfig(students=("32x16",), lr=1e-2), CLASSIC)
    net = learner.students["32x16"]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    obs = np.random.default_rng(0).normal(size=(64, 6)).astype(np.float32)
    batch = labelled_batch(obs, np.random.default_rng(1).normal(size=(64, 3)).astype(np.float32))
    batch.task[:] = 1
    learner.step(batch)
    moved = {k for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    assert moved == {f"tasks.{t}.layers.3.{p}" for t in range(3) for p in ("weight", "bias")} | \
        {f"tasks.1.layers.{i}.{p}" for i in (1, 5) for p in ("weight", "bias")}


def test_a_mixed_step_averages_its_tasks_losses_over_their_rows():
    cfg = DistillConfig(students=("32x16",), loss="mse", lr=1e-2)
    rng = np.random.default_rng(0)
    parts = []
    for task, ((shape,), actions) in enumerate(CLASSIC[:2]):
        b = labelled_batch(rng.normal(size=(8 * (task + 1), shape)).astype(np.float32),
                           rng.normal(size=(8 * (task + 1), actions)).astype(np.float32))
        b.task[:] = task
        parts.append(b)
    learner = DistillLearner(cfg, CLASSIC[:2])
    net = learner.students["32x16"]
    with torch.no_grad():
        expected = sum(float(((net(torch.as_tensor(b.observations), t) - torch.as_tensor(b.teacher_q)) ** 2).mean())
                       * len(b) / 24 for t, b in enumerate(parts))
    assert learner.step(parts).metrics["learner/distill_loss/32x16"] == pytest.approx(expected, rel=1e-6)


def test_refusals_name_the_value():
    with pytest.raises(ValueError, match=r"^network spec '32' has one hidden layer: .* or pad the inputs$"):
        _net("32", CLASSIC, "per-task")
    with pytest.raises(ValueError, match=r"tasks' frames are \(4, 10, 10\), \(4, 84, 84\); a shared trunk needs one "
                                         r"height and width"):
        _net("c8k3s1-16", [((4, 10, 10), 3), ((4, 84, 84), 6)], "pad")
    with pytest.raises(ValueError, match=r"^multi-task inputs 'concat' are not known: expected one of per-task, pad$"):
        DistillLearner(DistillConfig(), CLASSIC, inputs="concat")
    learner = DistillLearner(DistillConfig(students=("32x16",)), CLASSIC)
    batch = labelled_batch(np.zeros((4, 4), np.float32), np.zeros((4, 2), np.float32))
    batch.task[:] = [0, 0, 1, 1]
    with pytest.raises(ValueError, match=r"^a learner batch holds rows of tasks \[0, 1\]: expected the rows of "
                                         r"one task among 0\.\.2$"):
        learner.step(batch)
    batch.task[:] = 3  # one task, but not one of this learner's
    with pytest.raises(ValueError, match=r"^a learner batch holds rows of tasks \[3\]: expected the rows of "
                                         r"one task among 0\.\.2$"):
        learner.step(batch)


@pytest.mark.parametrize("inputs", ["per-task", "pad"])
def test_a_multi_task_checkpoint_round_trips_and_gives_each_tasks_part_as_a_checkpoint(tmp_path, inputs):
    net = _net("c8k3s1-16", MINATAR, inputs)
    envs = ("MinAtar/Breakout-v1", "MinAtar/SpaceInvaders-v1", "MinAtar/Freeway-v1")
    path = checkpoint.save_multitask(tmp_path / "mt.pt", checkpoint.MultiTaskCheckpoint(
        "c8k3s1-16", envs, tuple(s for s, _ in MINATAR), tuple(a for _, a in MINATAR), inputs, 7,
        to_numpy(net.state_dict())))
    whole = checkpoint.load_multitask(path)
    assert (whole.env_ids, whole.inputs, whole.version) == (envs, inputs, 7)
    for task, env in enumerate(envs):
        part = checkpoint.load(path, env_id=env, obs_shape=MINATAR[task][0], n_actions=MINATAR[task][1])
        obs = _obs(MINATAR[task][0], 6, task)
        torch.testing.assert_close(part.network()(obs), net(obs, task), rtol=0, atol=1e-6)
        torch.testing.assert_close(whole.network()(obs, task), net(obs, task), rtol=0, atol=0)
    with pytest.raises(checkpoint.CheckpointError, match=rf"^checkpoint '{path}' is a multi-task network of "
                                                         r"MinAtar/Breakout-v1, MinAtar/SpaceInvaders-v1, "
                                                         r"MinAtar/Freeway-v1, none of them 'MinAtar/Asterix-v1'$"):
        checkpoint.load(path, env_id="MinAtar/Asterix-v1")
    with pytest.raises(checkpoint.CheckpointError, match=r"multi-task network of .*, so the task's env is needed$"):
        checkpoint.load(path)
    single = checkpoint.save(tmp_path / "one.pt", checkpoint.load(path, env_id=envs[0]))
    with pytest.raises(checkpoint.CheckpointError, match=rf"^checkpoint '{single}' is a single-task network of "
                                                         r"'MinAtar/Breakout-v1', not a multi-task one$"):
        checkpoint.load_multitask(single)


def _transitions(task, shape, actions, n, seed):
    rng = np.random.default_rng(seed)
    b = labelled_batch(rng.normal(size=(n, *shape)).astype(np.float32), np.zeros((n, actions), np.float32))
    b.next_observations = rng.normal(size=(n, *shape)).astype(np.float32)
    b.actions, b.rewards = rng.integers(0, actions, n), rng.normal(size=n).astype(np.float32)
    b.terminations, b.task[:] = rng.random(n) < 0.3, task
    return b


def test_a_multi_task_dqn_step_averages_the_tasks_td_losses_over_their_rows_and_returns_q_values_per_task():
    learner = DQNLearner(DQNConfig(net="32x16", gamma=0.9), CLASSIC, seed=0)
    parts = [_transitions(0, (4,), 2, 8, 1), _transitions(2, (8,), 4, 24, 2)]
    expected, before = 0.0, []
    with torch.no_grad():
        for b in parts:
            t = int(b.task[0])
            obs, nxt = torch.as_tensor(b.observations), torch.as_tensor(b.next_observations)
            q = learner.q(obs, t)
            target = double_dqn_target(torch.as_tensor(b.rewards), learner.q(nxt, t), learner.q_target(nxt, t),
                                       torch.as_tensor(b.terminations, dtype=torch.float32), 0.9)
            expected += float(td_loss(q.gather(1, torch.as_tensor(b.actions)[:, None]).squeeze(1), target)) * len(b) / 32
            before.append(q.numpy())
        head1 = learner.q.tasks[1].layers[-1].weight.clone()
    update = learner.step(parts)
    assert update.metrics["learner/td_loss"] == pytest.approx(expected, rel=1e-6)
    assert [q.shape for q in update.q_values] == [(8, 2), (24, 4)]
    assert all((q == b).all() for q, b in zip(update.q_values, before))
    assert torch.equal(learner.q.tasks[1].layers[-1].weight, head1)  # no rows of task 1: its head kept
    assert set(learner.weights(2)) == {f"layers.{i}.{p}" for i in (1, 3, 5) for p in ("weight", "bias")}
    assert learner.weights(2)["layers.1.weight"].shape == (32, 8)
