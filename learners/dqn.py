"""DQN teacher learner: Double DQN, target network, Huber loss, Adam, gradient clipping."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .batch import TransitionBatch, Update
from .networks import QNetwork, as_input, count_params, from_numpy, to_numpy
from .td import double_dqn_target, td_loss


@dataclass(frozen=True)
class DQNConfig:
    net: str = "256x256"
    lr: float = 1e-3
    gamma: float = 0.99
    batch_size: int = 128
    target_update: int = 200  # learner steps between hard target-network copies
    max_grad_norm: float = 10.0

    def __post_init__(self) -> None:
        from .networks import parse_spec

        parse_spec(self.net)
        _positive("lr", self.lr)
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma {self.gamma} is not valid: expected a number in [0, 1]")
        _positive("batch_size", self.batch_size)
        _positive("target_update", self.target_update)
        _positive("max_grad_norm", self.max_grad_norm)


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} {value} is not valid: expected a number > 0")


def as_tensors(batch: TransitionBatch, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    def t(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(a, dtype=dtype, device=device)

    if batch.next_observations is None:
        raise ValueError("a DQN step needs rows with next observations: these were collected for a fixed teacher")
    return {  # frames stay uint8 to the device: the network's first op scales them
        "observations": as_input(batch.observations, device),
        "actions": t(batch.actions, torch.int64),
        "rewards": t(batch.rewards, torch.float32),
        "next_observations": as_input(batch.next_observations, device),
        "terminations": t(batch.terminations, torch.float32),
    }


class DQNLearner:
    """Holds the online and target networks and the optimiser; `step` is one gradient step."""

    def __init__(self, config: DQNConfig, obs_shape: tuple[int, ...], n_actions: int, *, seed: int = 0,
                 device: str = "cpu") -> None:
        torch.manual_seed(seed)
        self.config = config
        self.device = torch.device(device)
        self.q = QNetwork(config.net, obs_shape, n_actions).to(self.device)
        self.q_target = QNetwork(config.net, obs_shape, n_actions).to(self.device)
        self.q_target.load_state_dict(self.q.state_dict())
        self.q_target.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.q.parameters(), lr=config.lr, fused=True)
        self.steps = 0

    @property
    def params(self) -> int:
        return count_params(self.q)

    def step(self, batch: TransitionBatch) -> Update:
        """One double-DQN step; returns its metrics and the online network's Q-values for the
        batch's observations from this step's own forward pass (before the update)."""
        t = as_tensors(batch, self.device)
        q_all = self.q(t["observations"])
        q_taken = q_all.gather(1, t["actions"].unsqueeze(1)).squeeze(1)
        with torch.no_grad():
            next_online = self.q(t["next_observations"])
            next_target = self.q_target(t["next_observations"])
            target = double_dqn_target(t["rewards"], next_online, next_target, t["terminations"], self.config.gamma)
        loss = td_loss(q_taken, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.q.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.steps += 1
        if self.steps % self.config.target_update == 0:
            self.q_target.load_state_dict(self.q.state_dict())
        return Update({
            "learner/td_loss": float(loss.detach()),
            "learner/q_mean": float(q_taken.detach().mean()),
            "learner/grad_norm": float(grad_norm),
        }, q_all.detach().cpu().numpy())

    def weights(self) -> dict[str, np.ndarray]:
        return to_numpy(self.q.state_dict())

    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Start from these Q-network weights (a checkpoint's, or a swapped-in teacher's): online and target."""
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
