"""DQN teacher learner: Double DQN, target network, Huber loss, Adam, gradient clipping."""

from __future__ import annotations

import numpy as np
import torch

from .batch import TransitionBatch, Update
from .configs import DQNConfig
from .multitask import build, forward, task_network, task_of
from .networks import as_input, count_params, from_numpy, obs_norm, to_numpy
from .optim import Adam
from .td import double_dqn_target, td_loss


def as_tensors(batch: TransitionBatch, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    def t(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(a, dtype=dtype, device=device)

    if batch.next_observations is None:
        raise ValueError("a DQN step needs rows with next observations: these were collected for a fixed teacher")
    tensors = {  # frames stay uint8 to the device: the network's first op scales them
        "observations": as_input(batch.observations, device),
        "actions": t(batch.actions, torch.int64),
        "rewards": t(batch.rewards, torch.float32),
        "next_observations": as_input(batch.next_observations, device),
        "terminations": t(batch.terminations, torch.float32),
    }
    if batch.horizon is not None:
        tensors["horizon"] = t(batch.horizon, torch.float32)
    return tensors


class DQNLearner:
    """Holds the online and target networks and the optimiser; `step` is one gradient step.

    `tasks`: (observation shape, action count) of each task; with two or more the network is one
    MultiTaskQNetwork (a shared trunk, a head per task) and a step may take one batch per task."""

    def __init__(self, config: DQNConfig, tasks: list[tuple[tuple[int, ...], int]], *, seed: int = 0,
                 device: str = "cpu", inputs: str = "per-task") -> None:
        torch.manual_seed(seed)
        self.config = config
        self.device = torch.device(device)
        self.n_tasks = len(tasks)
        self.q = build(config.net, tasks, inputs=inputs).to(self.device)
        self.q_target = build(config.net, tasks, inputs=inputs).to(self.device)
        self.q_target.load_state_dict(self.q.state_dict())
        self.q_target.requires_grad_(False)
        # a `norm-` network: the observation statistics follow the rows trained on, the target's with them
        self.norms = (obs_norm(self.q), obs_norm(self.q_target)) if obs_norm(self.q) is not None else None
        self.optimizer = Adam(self.q.parameters(), lr=config.lr)
        self.steps = 0

    @property
    def params(self) -> int:
        return count_params(self.q)

    def step(self, batch: TransitionBatch | list[TransitionBatch]) -> Update:
        """One double-DQN step on one task's rows, or on a list of batches of one task each (their
        losses averaged over all their rows); returns its metrics and the online network's Q-values
        for the observations from this step's own forward pass (before the update): an array, or
        one per batch of the list."""
        parts = batch if isinstance(batch, list) else [batch]
        rows = sum(len(b) for b in parts)
        loss = torch.zeros((), device=self.device)
        q_values, q_taken_sum = [], 0.0
        for part in parts:
            task, t = task_of(part.task, self.n_tasks), as_tensors(part, self.device)
            if self.norms:
                self.norms[0].update(t["observations"])
                self.norms[1].load_state_dict(self.norms[0].state_dict())
            q_all = forward(self.q, t["observations"], task)
            q_taken = q_all.gather(1, t["actions"].unsqueeze(1)).squeeze(1)
            with torch.no_grad():
                next_online = forward(self.q, t["next_observations"], task)
                next_target = forward(self.q_target, t["next_observations"], task)
                gamma = self.config.gamma ** t["horizon"] if "horizon" in t else self.config.gamma
                target = double_dqn_target(t["rewards"], next_online, next_target, t["terminations"], gamma)
            loss = loss + td_loss(q_taken, target) * (len(part) / rows)
            q_values.append(q_all.detach().cpu().numpy())
            q_taken_sum += float(q_taken.detach().sum())
        self.optimizer.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.q.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.steps += 1
        if self.steps % self.config.target_update == 0:
            self.q_target.load_state_dict(self.q.state_dict())
        return Update({
            "learner/td_loss": float(loss.detach()),
            "learner/q_mean": q_taken_sum / rows,
            "learner/grad_norm": float(grad_norm),
        }, q_values if isinstance(batch, list) else q_values[0])

    def weights(self, task: int = 0) -> dict[str, np.ndarray]:
        """The online network's weights for one task (a plain QNetwork's)."""
        return to_numpy(task_network(self.q, task).state_dict())

    def network_weights(self) -> dict[str, np.ndarray]:
        """The whole online network's weights (every task's, a multi-task network's)."""
        return to_numpy(self.q.state_dict())

    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Start from these weights of the whole network (a checkpoint's, or a swapped-in
        teacher's): online and target."""
        state = {k: v.to(self.device) for k, v in from_numpy(weights).items()}
        self.q.load_state_dict(state)
        self.q_target.load_state_dict(state)

    def state_dict(self) -> dict[str, object]:
        """Everything a resumed run needs: online and target networks, optimiser state, step count."""
        return {"steps": self.steps, "q": self.q.state_dict(), "q_target": self.q_target.state_dict(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.q.load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])
