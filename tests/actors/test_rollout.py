import gymnasium as gym
import numpy as np
import pytest
import ray
import torch

from qdistill.actors.envs import EnvError, describe
from qdistill.actors.evaluate import evaluate
from qdistill.actors.params import ParameterServer
from qdistill.actors.remote import ParameterServerActor, RolloutActor
from qdistill.actors.buffer_client import ShardedBuffer
from qdistill.actors.rollout import Rollout, n_step_returns
from qdistill.learners.networks import QNetwork, to_numpy

CARTPOLE = describe("CartPole-v1")


def _rollout(env_id="CartPole-v1", num_envs=1, seed=0, n_step=1):
    info = describe(env_id)
    r = Rollout(env_id, net="8", obs_shape=info.obs_shape, n_actions=info.n_actions, num_envs=num_envs, seed=seed, actor_id=3,
                task=2, n_step=n_step, gamma=0.5)
    r.load_weights(0, to_numpy(QNetwork("8", info.obs_shape, info.n_actions).state_dict()))
    return r


def test_batch_shapes_and_dtypes():
    r = _rollout(num_envs=4)
    batch, _ = r.collect(50, epsilon=1.0)
    n = len(batch)
    assert batch.observations.shape == (n, 4) and batch.observations.dtype == np.float32
    assert batch.next_observations.shape == (n, 4) and batch.next_observations.dtype == np.float32
    assert batch.actions.dtype == np.int64 and set(np.unique(batch.actions)) <= {0, 1}
    assert batch.rewards.dtype == np.float32 and batch.rewards.shape == (n,)
    assert batch.terminations.dtype == bool and batch.truncations.dtype == bool
    assert (batch.actor_id == 3).all() and (batch.behaviour == 0).all() and (batch.task == 2).all()


def test_episode_boundaries_on_cartpole():
    """Random CartPole episodes end by termination; the autoreset step is not a transition."""
    r = _rollout(num_envs=1)
    batch, episodes = r.collect(300, epsilon=1.0)
    ends = np.flatnonzero(batch.terminations | batch.truncations)
    assert len(ends) == len(episodes) >= 5
    assert not batch.truncations.any()  # random play never lasts 500 steps
    assert len(batch) == 300 - len(episodes) + (1 if ends[-1] == len(batch) - 1 else 0)
    # within an episode the chain s → s' is unbroken; across an end it restarts from a reset state
    chained = ~(batch.terminations | batch.truncations)[:-1]
    np.testing.assert_array_equal(batch.next_observations[:-1][chained], batch.observations[1:][chained])
    assert not np.allclose(batch.next_observations[ends[0]], batch.observations[ends[0] + 1])
    lengths = np.diff(np.concatenate([[-1], ends]))
    assert episodes.lengths.tolist() == lengths.tolist()
    assert episodes.returns.tolist() == [float(x) for x in lengths]  # reward 1 per step


def test_truncations_are_kept_apart_from_terminations():
    """Random Acrobot almost never swings up: its episodes end by the 500-step time limit."""
    r = _rollout("Acrobot-v1", num_envs=2)
    batch, episodes = r.collect(501, epsilon=1.0)
    assert episodes.lengths.tolist() == [500, 500]
    assert batch.truncations.sum() == 2 and not batch.terminations.any()
    assert len(batch) == 2 * 500  # each sub-env's 501st step is its autoreset step, not a transition
    assert episodes.returns.tolist() == [-500.0, -500.0]


def test_n_step_returns_stop_at_an_episodes_end_and_at_the_calls_end():
    # one sub-env, 6 steps, the episode ending at step 2; n = 3, γ = 0.5
    rewards = np.array([[1.0], [2.0], [4.0], [8.0], [16.0], [32.0]], np.float32)
    ends = np.array([[False], [False], [True], [False], [False], [False]])
    total, horizon = n_step_returns(rewards, ends, 3, 0.5)
    # step 0: 1 + 1 + 1 (3 steps); step 1: 2 + 2 (ends at 2); step 2: 4 (it ends there);
    # step 3: 8 + 8 + 8; step 4: 16 + 16 (the call ends); step 5: 32
    assert total[:, 0].tolist() == [3.0, 4.0, 4.0, 24.0, 32.0, 32.0]
    assert horizon[:, 0].tolist() == [3, 2, 1, 3, 2, 1] and horizon.dtype == np.int8
    one, one_horizon = n_step_returns(rewards, ends, 1, 0.5)
    assert one.tolist() == rewards.tolist() and (one_horizon == 1).all()


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1"])
def test_n_step_rows_are_the_one_step_rows_summed_within_each_episode(env_id):
    """The same seed gives the same steps with n = 1 and n = 3; each n-step row is its sub-env's
    next one or three one-step rows: rewards summed with γ = 0.5, the last one's next observation
    and end, never across an episode's end or the call's end. CartPole's episodes end by
    termination, random Acrobot's by the time limit."""
    steps, envs = 520, 3
    one, _ = _rollout(env_id, num_envs=envs).collect(steps, epsilon=1.0)
    three, _ = _rollout(env_id, num_envs=envs, n_step=3).collect(steps, epsilon=1.0)
    assert len(one) == len(three) and (one.horizon == 1).all()
    np.testing.assert_array_equal(three.observations, one.observations)
    np.testing.assert_array_equal(three.actions, one.actions)
    ends = one.terminations | one.truncations
    assert ends.any() and (three.horizon == 3).sum() > len(three) // 2
    def successor(i):  # the row of the same sub-env's next step: its observation is row i's next one
        later = np.flatnonzero((one.observations[i + 1:i + 1 + 2 * envs] == one.next_observations[i]).all(axis=1))
        return None if ends[i] or len(later) == 0 else i + 1 + int(later[0])

    expected_h = []
    for i in range(len(one)):
        chain = [i]
        while len(chain) < 3 and (nxt := successor(chain[-1])) is not None:
            chain.append(nxt)
        expected_h.append(len(chain))
        last = chain[-1]
        assert three.rewards[i] == pytest.approx(sum(one.rewards[j] * 0.5 ** k for k, j in enumerate(chain)))
        np.testing.assert_array_equal(three.next_observations[i], one.next_observations[last])
        assert (three.terminations[i], three.truncations[i]) == (one.terminations[last], one.truncations[last])
    assert three.horizon.tolist() == expected_h


def test_env_validation_messages():
    with pytest.raises(EnvError, match="^unknown env id 'NoSuchEnv-v0': expected a registered Gymnasium id"):
        describe("NoSuchEnv-v0")
    with pytest.raises(EnvError, match="^env 'Pendulum-v1' has a Box action space: DQN needs a Discrete action space"):
        describe("Pendulum-v1")
    assert (CARTPOLE.obs_shape, CARTPOLE.n_actions, CARTPOLE.reward_threshold) == ((4,), 2, 475.0)


def test_parameter_server_serves_only_newer_versions():
    ps = ParameterServer()
    assert ps.pull(-1) == (-1, None)
    ps.publish(0, {"w": np.zeros(1)})
    version, weights = ps.pull(-1)
    assert version == 0 and weights is not None
    assert ps.pull(0) == (0, None)
    with pytest.raises(ValueError, match="weights version 0 is not newer than the published 0"):
        ps.publish(0, {})


def test_evaluate_runs_each_episode_to_its_end():
    result = evaluate("CartPole-v1", lambda obs: np.zeros(len(obs), np.int64), episodes=5, seed=0)
    assert result.episodes == 5
    assert all(8 <= r <= 12 for r in result.returns)  # always pushing left falls within ~10 steps


@pytest.mark.slow
def test_rollout_actor_pulls_weights_and_streams_to_its_shard(ray_session):
    params = ParameterServerActor.options(name="test-rollout-params").remote()
    buffer = ShardedBuffer(1, 10_000)
    net = QNetwork("8", (4,), 2)
    ray.get(params.publish.remote(4, to_numpy(net.state_dict())))
    actor = RolloutActor.options(num_cpus=0).remote(
        "CartPole-v1", net="8", obs_shape=(4,), n_actions=2, num_envs=4, seed=0, actor_id=0,
        params="test-rollout-params", sink=buffer.sink_for(0), n_step=3, gamma=0.5)
    try:
        first = ray.get(actor.collect.remote(20, 0.5))
        assert first["weights_version"] == 4 and first["latest_version"] == 4
        ray.get(params.publish.remote(9, to_numpy(net.state_dict())))
        second = ray.get(actor.collect.remote(20, 0.5))
        assert second["weights_version"] == 9
        # told the versions it holds, it does not ask; told a newer one, it pulls before collecting
        asked = ray.get(params.pulls_answered.remote())
        third = ray.get(actor.collect.remote(20, 0.5, versions=(9, 0)))
        assert ray.get(params.pulls_answered.remote()) == asked
        assert third["weights_version"] == 9 and third["latest_version"] == 9
        ray.get(params.publish.remote(10, to_numpy(net.state_dict())))
        fourth = ray.get(actor.collect.remote(20, 0.5, versions=(10, 0)))
        assert ray.get(params.pulls_answered.remote()) == asked + 1
        assert fourth["weights_version"] == 10
        total = ray.get(actor.flush.remote())
        assert total == sum(r["env_steps"] for r in (first, second, third, fourth))
        assert buffer.stats()["buffer/size"] == total
        _, rows = buffer.sample(total)  # three-step rows: CartPole's reward 1 summed with γ 0.5
        assert set(rows.horizon.tolist()) == {1, 2, 3}
        np.testing.assert_allclose(rows.rewards, [{1: 1.0, 2: 1.5, 3: 1.75}[h] for h in rows.horizon])
    finally:
        for handle in [actor, params, *buffer.shards]:
            ray.kill(handle)


def _policy_weights(spec, seed, obs_shape=(4,), n_actions=2):
    torch.manual_seed(seed)
    return to_numpy(QNetwork(spec, obs_shape, n_actions).state_dict())


def test_every_state_carries_the_teachers_label():
    r = Rollout("CartPole-v1", net="8", obs_shape=(4,), n_actions=2, num_envs=4, seed=1)
    weights = _policy_weights("8", 5)
    r.load_weights(11, weights)
    batch, _ = r.collect(40, epsilon=0.3)
    net = QNetwork("8", (4,), 2)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    with torch.no_grad():
        np.testing.assert_allclose(batch.teacher_q, net(torch.from_numpy(batch.observations)).numpy(),
                                       rtol=1e-5, atol=1e-7)  # numpy and torch: float32 rounding apart
    assert batch.teacher_q.dtype == np.float32 and (batch.label_version == 11).all()


def _mixed_rollout(num_envs=1):
    r = Rollout("CartPole-v1", net="8", obs_shape=(4,), n_actions=2, num_envs=num_envs, seed=2, student="4")
    r.load_weights(1, _policy_weights("8", 0))
    r.load_student(1, _policy_weights("4", 1))
    return r


@pytest.mark.parametrize("beta, expected", [(1.0, {0}), (0.0, {1})])
def test_beta_one_is_all_teacher_and_zero_all_student(beta, expected):
    batch, _ = _mixed_rollout(num_envs=4).collect(60, epsilon=0.0, beta=beta)
    assert set(np.unique(batch.behaviour)) == expected


def test_mixed_behaviour_is_drawn_per_episode():
    r = _mixed_rollout(num_envs=1)
    batch, episodes = r.collect(2_000, epsilon=1.0, beta=0.5)
    ends = np.flatnonzero(batch.terminations | batch.truncations)
    starts = np.concatenate([[0], ends[:-1] + 1])
    per_episode = [np.unique(batch.behaviour[s:e + 1]) for s, e in zip(starts, ends)]
    assert all(len(u) == 1 for u in per_episode)  # one actor for a whole episode
    share = np.mean([u[0] for u in per_episode])
    assert len(per_episode) > 50 and 0.3 < share < 0.7


def test_student_actions_are_the_students_greedy_actions():
    r = _mixed_rollout(num_envs=2)
    batch, _ = r.collect(30, epsilon=0.0, beta=0.0)
    student = QNetwork("4", (4,), 2)
    student.load_state_dict({k: torch.from_numpy(v) for k, v in _policy_weights("4", 1).items()})
    with torch.no_grad():
        np.testing.assert_array_equal(batch.actions, student(torch.from_numpy(batch.observations)).argmax(1).numpy())


def test_another_student_acts_once_told_with_its_own_weights():
    r = _mixed_rollout(num_envs=2)
    r.act_with("16")
    r.load_student(2, _policy_weights("16", 3))
    batch, _ = r.collect(30, epsilon=0.0, beta=0.0)
    student = QNetwork("16", (4,), 2)
    student.load_state_dict({k: torch.from_numpy(v) for k, v in _policy_weights("16", 3).items()})
    with torch.no_grad():
        np.testing.assert_array_equal(batch.actions, student(torch.from_numpy(batch.observations)).argmax(1).numpy())
    assert (r.student.spec, r.student.version) == ("16", 2)


@pytest.mark.slow
def test_an_actor_switches_to_the_student_each_call_names(ray_session):
    """A size search's acting candidate comes with every collect; one dropped since the call was
    made (no weights published for it) acts on with what it has."""
    teacher = ParameterServerActor.options(name="test-acting-teacher").remote()
    students = ParameterServerActor.options(name="test-acting-students").remote()
    buffer = ShardedBuffer(1, 10_000)
    ray.get(teacher.publish.remote(1, _policy_weights("8", 0)))
    ray.get(students.publish.remote(3, {"4": _policy_weights("4", 1), "16": _policy_weights("16", 2)}))
    actor = RolloutActor.options(num_cpus=0).remote(
        "CartPole-v1", net="8", obs_shape=(4,), n_actions=2, num_envs=2, seed=0, actor_id=0,
        params="test-acting-teacher", sink=buffer.sink_for(0), student="4", student_params="test-acting-students")

    def acting():
        return ray.get(actor.__ray_call__.remote(lambda self: (self.student_name, self.rollout.student.spec,
                                                               self.rollout.student.version)))
    try:
        first = ray.get(actor.collect.remote(10, 0.0, 0.0, None, (1, 3), "4"))
        assert first["student_steps"] == first["env_steps"] > 0
        assert acting() == ("4", "4", 3)
        ray.get(actor.collect.remote(10, 0.0, 0.0, None, (1, 3), "16"))  # told another: switches and pulls its weights
        assert acting() == ("16", "16", 3)
        ray.get(students.publish.remote(4, {"4": _policy_weights("4", 1)}))  # "16" dropped after the call was made
        last = ray.get(actor.collect.remote(10, 0.0, 0.0, None, (1, 4), "16"))
        assert last["student_steps"] == last["env_steps"] > 0
        assert acting() == ("16", "16", 3)
    finally:
        for handle in [actor, teacher, students, *buffer.shards]:
            ray.kill(handle)


class _NaNOnce(gym.Env):
    """Counts its steps in the observation; the third step's observation is NaN; never ends."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(4, np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.full(4, np.nan if self.t == 3 else self.t, np.float32)
        return obs, 1.0, False, False, {}


def test_transitions_with_nan_are_dropped_and_counted():
    gym.register("qdistill-test/NaNOnce-v0", entry_point=_NaNOnce)
    try:
        r = Rollout("qdistill-test/NaNOnce-v0", net="8", obs_shape=(4,), n_actions=2, num_envs=1, seed=0)
        r.load_weights(0, to_numpy(QNetwork("8", (4,), 2).state_dict()))
        batch, _ = r.collect(8, epsilon=1.0)
    finally:
        gym.registry.pop("qdistill-test/NaNOnce-v0")
    # step 3 gave a NaN next observation and step 4 started from it: both dropped, the rest kept
    assert r.dropped_nonfinite == 2 and len(batch) == 6
    assert batch.observations[:, 0].tolist() == [0, 1, 4, 5, 6, 7]
    assert np.isfinite(batch.next_observations).all() and np.isfinite(batch.teacher_q).all()
