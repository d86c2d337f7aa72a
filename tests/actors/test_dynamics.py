"""The changing task: dynamics parameters set on single and vector envs, the wrapper that changes
them at a step, the rollout actor and evaluator playing the changed task, and the refusals."""

import gymnasium as gym
import numpy as np
import pytest
import ray

from qdistill.actors.dynamics import ChangingDynamics, check_change, parameters, set_dynamics
from qdistill.actors.envs import make_vector_env
from qdistill.actors.evaluate import evaluate
from qdistill.actors.evaluator import Evaluator
from qdistill.actors.remote import ParameterServerActor, RolloutActor
from qdistill.actors.buffer_client import ShardedBuffer
from qdistill.learners.networks import QNetwork, to_numpy

CARTPOLE_PARAMETERS = ("force_mag", "gravity", "length", "masscart", "masspole", "tau", "theta_threshold_radians",
                       "x_threshold")


def test_derived_parameters_follow_on_a_native_vector_env():
    env = make_vector_env("CartPole-v1", 3, {"length": 2.0, "masscart": 3.0})
    base = env.unwrapped
    assert (base.length, base.masscart, base.masspole) == (2.0, 3.0, 0.1)
    assert base.polemass_length == 0.1 * 2.0 and base.total_mass == 0.1 + 3.0
    assert tuple(parameters(gym.make("CartPole-v1"))) == CARTPOLE_PARAMETERS


def test_every_sub_env_of_a_sync_vector_env_changes():
    env = make_vector_env("Acrobot-v1", 3)
    set_dynamics(env, {"LINK_MASS_1": 2.5})
    assert [e.unwrapped.LINK_MASS_1 for e in env.envs] == [2.5, 2.5, 2.5]
    assert gym.make("Acrobot-v1").unwrapped.LINK_MASS_1 == 1.0  # the class is untouched


def _trajectory(env, actions):
    obs = [env.reset(seed=7)[0]]
    for a in actions:
        obs.append(env.step(a)[0])
    return np.array(obs)


def test_the_wrapper_changes_the_dynamics_at_its_step():
    actions = [0, 1, 1, 0, 1, 0, 0, 1]
    changing = _trajectory(ChangingDynamics(gym.make("CartPole-v1"), {"gravity": 30.0}, at_step=3), actions)
    plain = _trajectory(gym.make("CartPole-v1"), actions)
    # by hand: three steps as registered, then the change
    by_hand = gym.make("CartPole-v1")
    reference = [by_hand.reset(seed=7)[0]]
    for i, a in enumerate(actions):
        if i == 3:
            set_dynamics(by_hand, {"gravity": 30.0})
        reference.append(by_hand.step(a)[0])
    np.testing.assert_array_equal(changing, np.array(reference))
    np.testing.assert_array_equal(changing[:4], plain[:4])
    assert not np.array_equal(changing[4], plain[4])


def test_force_zero_makes_every_action_the_same():
    """With no force the policy cannot matter: a test of the physics the change reaches."""
    always = [evaluate("CartPole-v1", lambda obs, a=a: np.full(len(obs), a), episodes=6, seed=3,
                       dynamics={"force_mag": 0.0}).returns for a in (0, 1)]
    assert always[0] == always[1]
    pushed = [evaluate("CartPole-v1", lambda obs, a=a: np.full(len(obs), a), episodes=6, seed=3).returns
              for a in (0, 1)]
    assert pushed[0] != always[0]


@pytest.mark.parametrize("env_id, change, message", [
    ("CartPole-v1", {"colour": 1.0},
     "dynamics parameter 'colour' is not known for CartPole-v1: expected one of " + ", ".join(CARTPOLE_PARAMETERS)),
    ("CartPole-v1", {"length": float("nan")}, "dynamics parameter length=nan is not valid: expected a finite number"),
    ("LunarLander-v3", {"gravity": -5.0}, "env 'LunarLander-v3' has no dynamics parameters to change: expected a "
                                          "classic-control env such as 'CartPole-v1' or 'Acrobot-v1'"),
])
def test_bad_changes_are_refused(env_id, change, message):
    with pytest.raises(ValueError) as err:
        check_change(env_id, change)
    assert str(err.value) == message


def _cartpole_step_without_force(obs: np.ndarray, action: int) -> np.ndarray:
    env = gym.make("CartPole-v1").unwrapped
    set_dynamics(env, {"force_mag": 0.0})
    env.reset(seed=0)
    env.state = obs.astype(np.float64)
    return env.step(action)[0]


@pytest.mark.slow
def test_the_rollout_actor_collects_on_the_changed_task(ray_session):
    params = ParameterServerActor.options(name="test-dynamics-params").remote()
    ray.get(params.publish.remote(0, to_numpy(QNetwork("8", (4,), 2).state_dict())))
    buffer = ShardedBuffer(1, 10_000, name="test-dynamics")
    actor = RolloutActor.options(num_cpus=0).remote(
        "CartPole-v1", net="8", obs_shape=(4,), n_actions=2, num_envs=4, seed=0, actor_id=0,
        params="test-dynamics-params", sink=buffer.sink_for(0))
    try:
        ray.get(actor.collect.remote(10, 1.0, 1.0, {"force_mag": 0.0}))
        ray.get(actor.flush.remote())
        _, batch = buffer.sample(64)
        real = ~(batch.terminations | batch.truncations)
        expected = np.array([_cartpole_step_without_force(o, a) for o, a in zip(batch.observations, batch.actions)])
        np.testing.assert_allclose(batch.next_observations[real], expected[real], atol=1e-5)
    finally:
        for handle in [actor, params, *buffer.shards]:
            ray.kill(handle)


def test_the_evaluator_plays_the_changed_task_and_resets_its_reference():
    weights = to_numpy(QNetwork("8", (4,), 2).state_dict())
    evaluator = Evaluator("CartPole-v1", teacher_net="8", students=("4",), obs_shape=(4,), n_actions=2, episodes=5)
    evaluator.load_teacher(1, weights)
    evaluator.load_students(1, {"4": to_numpy(QNetwork("4", (4,), 2).state_dict())})
    evaluator.set_dynamics({"force_mag": 0.0})
    result = evaluator.evaluate()
    # with no force every policy plays the same episodes: teacher and student returns are equal
    assert result["eval/return/teacher"] == result["eval/return/4"]
    no_force = evaluate("CartPole-v1", lambda obs: np.zeros(len(obs), dtype=np.int64), episodes=5,
                        seed=evaluator.seed, dynamics={"force_mag": 0.0})
    assert result["eval/return/teacher"] == no_force.mean
