"""Temporal-difference math for the DQN teacher, as pure functions."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def double_dqn_target(
    rewards: torch.Tensor,
    next_q_online: torch.Tensor,
    next_q_target: torch.Tensor,
    terminations: torch.Tensor,
    gamma: float | torch.Tensor,
) -> torch.Tensor:
    """Double DQN target (van Hasselt et al. 2016).

    y = r + γ · (1 − terminated) · Q_target(s', argmax_a Q_online(s', a))

    Only a termination cuts the bootstrap; a truncation (time limit) still bootstraps. For n-step
    rows (r the discounted sum of n rewards, s' the state n steps on) `gamma` is each row's γⁿ.
    """
    best = next_q_online.argmax(dim=1, keepdim=True)
    next_value = next_q_target.gather(1, best).squeeze(1)
    return rewards + gamma * (1.0 - terminations) * next_value


def td_loss(q_taken: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Huber loss on the TD error δ = y − Q(s, a), averaged over the batch.

    L = mean( ½δ² if |δ| ≤ 1 else |δ| − ½ )
    """
    return F.smooth_l1_loss(q_taken, target.detach())
