"""Rollout: steps a vector env, acting ε-greedy with the teacher or a student, labelling every
state with the teacher's Q-values, and cuts the steps into TransitionBatches."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..learners.batch import BEHAVIOUR_STUDENT, BEHAVIOUR_TEACHER, TransitionBatch
from ..learners.policy import GreedyPolicy
from .envs import as_stored, make_vector_env
from .pixels import td_rules


@dataclass(frozen=True)
class Episodes:
    """The episodes that ended in one collect call, in step order (sub-env by sub-env within a
    step): two arrays, so a call that ends thousands of episodes ships two buffers, not a list of
    thousands of tuples (which cost Ray about 15 ms to serialize for 7,000)."""

    returns: np.ndarray  # float64
    lengths: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.returns)


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
        task: int = 0,
        student: str | None = None,
        next_obs: bool = True,
        n_step: int = 1,
        gamma: float = 0.99,
    ) -> None:
        """`next_obs`: whether rows carry the next observation and their horizon (a learning
        teacher's TD target needs them); `n_step`, `gamma`: its rows' returns sum up to `n_step`
        rewards discounted by `gamma` (`n_step_returns`)."""
        self.env = make_vector_env(env_id, num_envs)
        self.next_obs = next_obs
        self.n_step, self.gamma = n_step, gamma
        self.td = td_rules(env_id)
        self.teacher = GreedyPolicy(net, obs_shape, n_actions)
        self.student = GreedyPolicy(student, obs_shape, n_actions) if student else None
        self.obs_shape = obs_shape
        self.n_actions = n_actions
        self.num_envs = num_envs
        self.actor_id = actor_id
        self.task = task
        self.rng = np.random.default_rng(seed)
        self.obs, info = self.env.reset(seed=seed)
        self.obs = as_stored(self.obs)
        self.lives = np.asarray(info.get("lives", np.zeros(num_envs)))  # Atari: a life lost ends the TD target
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

    def act_with(self, student: str) -> None:
        """Another student acts from now on, with its initial weights until the next `load_student`."""
        self.student = GreedyPolicy(student, self.obs_shape, self.n_actions)

    def _behaviour(self, beta: float) -> None:
        """Draw who acts for the sub-envs whose episode starts now (only with a student)."""
        if self.new_episode.any():
            draw = self.rng.random(self.num_envs) >= beta
            self.student_acting = np.where(self.new_episode, draw, self.student_acting)
            self.new_episode[:] = False

    def collect(self, num_steps: int, epsilon: float, beta: float = 1.0) -> tuple[TransitionBatch, Episodes]:
        """Step every sub-env `num_steps` times; returns the real transitions (step by step, sub-env
        by sub-env) and finished episodes. Transitions with a NaN or inf in them are dropped and
        counted (`dropped_nonfinite`).

        The hot loop is one batched teacher forward, one argmax and one vector-env step per step,
        written into arrays made once per call; exploration is drawn for the whole call at once and
        episode returns are summed afterwards."""
        e = self.num_envs
        obs = np.empty((num_steps + 1, *self.obs.shape), dtype=self.obs.dtype)  # obs[t + 1]: step t's next obs
        actions_all = np.empty((num_steps, e), dtype=np.int64)
        rewards_all = np.empty((num_steps, e), dtype=np.float32)
        terms_all = np.empty((num_steps, e), dtype=bool)
        truncs_all = np.empty((num_steps, e), dtype=bool)
        q_all = np.empty((num_steps, e, self.n_actions), dtype=np.float32)
        keep_all = np.empty((num_steps, e), dtype=bool)
        student_all = np.zeros((num_steps, e), dtype=bool)
        lives_all = np.empty((num_steps, e), dtype=self.lives.dtype) if self.td.life_loss else None
        explore = random_actions = None
        if epsilon > 0:
            explore = self.rng.random((num_steps, e)) < epsilon
            random_actions = self.rng.integers(0, self.n_actions, (num_steps, e))
        obs[0] = self.obs
        resetting_at_start = self.resetting
        for t in range(num_steps):
            q = self.teacher.q_values(obs[t])
            q_all[t] = q
            actions = q.argmax(axis=1)
            if self.student is not None:
                self._behaviour(beta)
                if self.student_acting.any():
                    actions = np.where(self.student_acting, self.student.act(obs[t]), actions)
                student_all[t] = self.student_acting
            if explore is not None:
                actions = np.where(explore[t], random_actions[t], actions)
            actions_all[t] = actions
            obs[t + 1], rewards_all[t], terms_all[t], truncs_all[t], info = self.env.step(actions)
            if lives_all is not None:
                lives_all[t] = info["lives"]
            if self.student is not None:
                self.new_episode |= self.resetting  # the episode after an autoreset step starts now
                self.resetting = terms_all[t] | truncs_all[t]
        # the step after an episode's end is its sub-env's autoreset step: not a transition (and an
        # autoreset step never ends an episode itself)
        ended = terms_all | truncs_all
        keep_all[0], keep_all[1:] = ~resetting_at_start, ~ended[:-1]
        self.resetting = ended[-1].copy()
        self.obs = obs[num_steps].copy()
        episodes = self._finished_episodes(rewards_all, keep_all, keep_all & ended)
        keep = keep_all.reshape(-1)
        n = int(keep.sum())
        self.env_steps += n

        def rows(a: np.ndarray) -> np.ndarray:
            return a.reshape(num_steps * e, *a.shape[2:])[keep]

        td = self._td_fields(obs, rewards_all, terms_all, truncs_all, lives_all)
        batch = TransitionBatch(
            observations=rows(obs[:-1]), actions=rows(actions_all),
            teacher_q=rows(q_all), label_version=np.full(n, self.teacher.version, dtype=np.int64),
            behaviour=np.where(rows(student_all), BEHAVIOUR_STUDENT, BEHAVIOUR_TEACHER).astype(np.int8),
            actor_id=np.full(n, self.actor_id, dtype=np.int32), task=np.full(n, self.task, dtype=np.int16),
            **{name: None if a is None else rows(a) for name, a in td.items()},
        )
        finite = batch.finite_rows()
        if not finite.all():  # NaN or inf in an observation, reward or teacher label: never trained on
            self.dropped_nonfinite += int((~finite).sum())
            batch = batch.take(finite)
        return batch, episodes

    def _td_fields(self, obs: np.ndarray, rewards: np.ndarray, terms: np.ndarray, truncs: np.ndarray,
                   lives: np.ndarray | None) -> dict[str, np.ndarray | None]:
        """What the teacher's TD target reads, per [step, sub-env]: rewards (Atari: clipped),
        terminations (Atari: a life lost too) and truncations; for a learning teacher also the next
        observation and the horizon, over up to `n_step` steps (`n_step_returns`)."""
        if self.td.clip_rewards:
            rewards = np.sign(rewards)
        td_terms = terms
        if lives is not None:
            td_terms = terms | (lives < np.concatenate([self.lives[None], lives[:-1]]))
            self.lives = lives[-1].copy()
        fields = {"rewards": rewards, "terminations": td_terms, "truncations": truncs,
                  "next_observations": None, "horizon": None}
        if not self.next_obs:
            return fields
        steps, envs = rewards.shape
        if self.n_step == 1:
            return {**fields, "next_observations": obs[1:], "horizon": np.ones((steps, envs), dtype=np.int8)}
        total, horizon = n_step_returns(rewards, td_terms | truncs, self.n_step, self.gamma)
        last, sub = np.arange(steps)[:, None] + horizon - 1, np.arange(envs)[None, :]  # each row's last step
        return {"rewards": total, "terminations": td_terms[last, sub], "truncations": truncs[last, sub],
                "next_observations": obs[last + 1, sub], "horizon": horizon}

    def _finished_episodes(self, rewards: np.ndarray, keep: np.ndarray, done: np.ndarray) -> Episodes:
        """The episodes that ended in this call, in step order; what is left of each sub-env's
        episode carries over to the next call."""
        cum_return = np.cumsum(np.where(keep, rewards, 0.0), axis=0) + self.episode_return
        cum_length = np.cumsum(keep, axis=0) + self.episode_length
        self.episode_return, self.episode_length = cum_return[-1], cum_length[-1]
        envs, steps = np.nonzero(done.T)  # sub-env by sub-env, in step order within each
        if len(envs) == 0:
            return Episodes(np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int64))
        ended_return, ended_length = cum_return[steps, envs], cum_length[steps, envs]
        first = np.r_[True, envs[1:] != envs[:-1]]  # a sub-env's first episode to end in this call
        returns = ended_return - np.where(first, 0.0, np.r_[0.0, ended_return[:-1]])
        lengths = ended_length - np.where(first, 0, np.r_[0, ended_length[:-1]])
        last = np.r_[envs[1:] != envs[:-1], True]
        self.episode_return[envs[last]] -= ended_return[last]
        self.episode_length[envs[last]] -= ended_length[last]
        order = np.lexsort((envs, steps))  # step by step, sub-env by sub-env
        return Episodes(returns[order], lengths[order])

    def close(self) -> None:
        self.env.close()


def n_step_returns(rewards: np.ndarray, ends: np.ndarray, n: int, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """[T, E] steps of E sub-envs → each step's n-step return and horizon: the discounted sum of
    its reward and the next n − 1, stopping after a step that ends the episode (`ends`) or at the
    call's last step, and how many steps it summed (int8, 1 to n). A row cut short by the call's
    end bootstraps sooner, with γ to the power of its own horizon: a shorter return, not a wrong one."""
    total = rewards.astype(np.float32)
    horizon = np.ones(rewards.shape, dtype=np.int8)
    open_ = ~ends  # the row's window takes the next step too
    for k in range(1, min(n, len(rewards))):
        late = len(rewards) - k
        joins = open_[:late]
        total[:late] += np.where(joins, np.float32(gamma ** k) * rewards[k:], np.float32(0.0))
        horizon[:late] += joins
        open_[:late] = joins & ~ends[k:]
        open_[late:] = False
    return total, horizon
