"""Rollout: steps a vector env, acting ε-greedy with the teacher or a student, labelling every
state with the teacher's Q-values, and cuts the steps into TransitionBatches."""

from __future__ import annotations

import numpy as np

from ..learners.batch import BEHAVIOUR_STUDENT, BEHAVIOUR_TEACHER, TransitionBatch
from ..learners.networks import GreedyPolicy
from .envs import as_float32, make_vector_env


class Rollout:
    """Plain class: the same code runs in-process (tests) and inside a RolloutActor.

    Behaviour is drawn per episode: the student acts with probability 1 − β, the teacher
    otherwise; the teacher labels every state either way (DAgger-style).
    """

    def __init__(
        self,
        env_id: str,
        *,
        net: str,
        obs_shape: tuple[int, ...],
        n_actions: int,
        num_envs: int = 8,
        seed: int = 0,
        actor_id: int = 0,
        student: str | None = None,
    ) -> None:
        self.env = make_vector_env(env_id, num_envs)
        self.teacher = GreedyPolicy(net, obs_shape, n_actions)
        self.student = GreedyPolicy(student, obs_shape, n_actions) if student else None
        self.n_actions = n_actions
        self.num_envs = num_envs
        self.actor_id = actor_id
        self.rng = np.random.default_rng(seed)
        self.obs = as_float32(self.env.reset(seed=seed)[0])
        # True where the previous step ended an episode: this step is the autoreset step.
        self.resetting = np.zeros(num_envs, dtype=bool)
        self.new_episode = np.ones(num_envs, dtype=bool)  # behaviour not drawn yet
        self.student_acting = np.zeros(num_envs, dtype=bool)
        self.episode_return = np.zeros(num_envs, dtype=np.float64)
        self.episode_length = np.zeros(num_envs, dtype=np.int64)
        self.env_steps = 0
        self.dropped_nonfinite = 0  # transitions dropped for NaN or inf

    def load_weights(self, version: int, weights: dict[str, np.ndarray]) -> None:
        """The teacher's weights (during teacher training: the learner's)."""
        self.teacher.load(version, weights)

    def load_student(self, version: int, weights: dict[str, np.ndarray]) -> None:
        if self.student is None:
            raise ValueError("this rollout has no student to load weights into")
        self.student.load(version, weights)

    def _act(self, teacher_q: np.ndarray, epsilon: float, beta: float) -> np.ndarray:
        if self.new_episode.any():
            draw = self.rng.random(self.num_envs) >= beta
            self.student_acting = np.where(self.new_episode, draw & (self.student is not None), self.student_acting)
            self.new_episode[:] = False
        actions = teacher_q.argmax(axis=1)
        if self.student_acting.any():
            actions = np.where(self.student_acting, self.student.act(self.obs), actions)
        explore = self.rng.random(self.num_envs) < epsilon
        random_actions = self.rng.integers(0, self.n_actions, self.num_envs)
        return np.where(explore, random_actions, actions).astype(np.int64)

    def collect(self, num_steps: int, epsilon: float, beta: float = 1.0) -> tuple[TransitionBatch, list[tuple[float, int]]]:
        """Step every sub-env `num_steps` times; returns the real transitions (step by step, sub-env
        by sub-env) and finished episodes. Transitions with a NaN or inf in them are dropped and
        counted (`dropped_nonfinite`). Steps are written into arrays made once per call."""
        e = self.num_envs
        obs = np.empty((num_steps, *self.obs.shape), dtype=np.float32)
        next_obs_all = np.empty_like(obs)
        actions_all = np.empty((num_steps, e), dtype=np.int64)
        rewards_all = np.empty((num_steps, e), dtype=np.float32)
        terms_all = np.empty((num_steps, e), dtype=bool)
        truncs_all = np.empty((num_steps, e), dtype=bool)
        q_all = np.empty((num_steps, e, self.n_actions), dtype=np.float32)
        keep_all = np.empty((num_steps, e), dtype=bool)
        student_all = np.empty((num_steps, e), dtype=bool)
        episodes: list[tuple[float, int]] = []
        for t in range(num_steps):
            teacher_q = self.teacher.q_values(self.obs)
            actions = self._act(teacher_q, epsilon, beta)
            next_obs, rewards, terms, truncs, _ = self.env.step(actions)
            next_obs = as_float32(next_obs)
            keep = ~self.resetting
            obs[t], next_obs_all[t], actions_all[t], rewards_all[t] = self.obs, next_obs, actions, rewards
            terms_all[t], truncs_all[t], q_all[t], keep_all[t] = terms, truncs, teacher_q, keep
            student_all[t] = self.student_acting
            self.episode_return += np.where(keep, rewards, 0.0)
            self.episode_length += keep
            done = keep & (terms_all[t] | truncs_all[t])
            for i in np.flatnonzero(done):
                episodes.append((float(self.episode_return[i]), int(self.episode_length[i])))
            self.episode_return[done] = 0.0
            self.episode_length[done] = 0
            self.new_episode |= self.resetting  # the episode after an autoreset step starts now
            self.resetting = done
            self.obs = next_obs
        keep = keep_all.reshape(-1)
        n = int(keep.sum())
        self.env_steps += n

        def rows(a: np.ndarray) -> np.ndarray:
            return a.reshape(num_steps * e, *a.shape[2:])[keep]

        batch = TransitionBatch(
            observations=rows(obs), actions=rows(actions_all), rewards=rows(rewards_all),
            next_observations=rows(next_obs_all), terminations=rows(terms_all), truncations=rows(truncs_all),
            teacher_q=rows(q_all), label_version=np.full(n, self.teacher.version, dtype=np.int64),
            behaviour=np.where(rows(student_all), BEHAVIOUR_STUDENT, BEHAVIOUR_TEACHER).astype(np.int8),
            actor_id=np.full(n, self.actor_id, dtype=np.int32),
        )
        finite = batch.finite_rows()
        if not finite.all():  # NaN or inf in an observation, reward or teacher label: never trained on
            self.dropped_nonfinite += int((~finite).sum())
            batch = batch.take(finite)
        return batch, episodes

    def close(self) -> None:
        self.env.close()
