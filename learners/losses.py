"""Distillation losses: pure functions of student and teacher Q-values, [B, A] each."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .configs import DEFAULT_TAU, LOSSES


def mse_loss(student_q: torch.Tensor, teacher_q: torch.Tensor) -> torch.Tensor:
    """The seed document's loss, averaged instead of summed:

    L = 1/(B·A) Σ_i Σ_a (q_T(s_i, a) − q_S(s_i, a))²
    """
    return F.mse_loss(student_q, teacher_q)


def kl_loss(student_q: torch.Tensor, teacher_q: torch.Tensor, tau: float = DEFAULT_TAU) -> torch.Tensor:
    """KL divergence from the teacher's to the student's softmax policy, temperature τ on both:

    L = 1/B Σ_i Σ_a p_T(a|s_i) · (log p_T(a|s_i) − log p_S(a|s_i)),
    p_T = softmax(q_T / τ),  p_S = softmax(q_S / τ)

    Rusu et al. (2016) sharpen only the teacher (p_S = softmax(q_S)); dividing the student by τ too
    keeps its Q-values on the teacher's scale and makes L = 0 exactly when q_S = q_T.
    """
    log_p_teacher = F.log_softmax(teacher_q / tau, dim=1)
    log_p_student = F.log_softmax(student_q / tau, dim=1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)


def nll_loss(student_q: torch.Tensor, teacher_q: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of the teacher's greedy action under the student's softmax:

    L = −1/B Σ_i log softmax(q_S(s_i))[argmax_a q_T(s_i, a)]
    """
    return F.cross_entropy(student_q, teacher_q.argmax(dim=1))


def distill_loss(name: str, student_q: torch.Tensor, teacher_q: torch.Tensor, *, tau: float = DEFAULT_TAU) -> torch.Tensor:
    if name == "mse":
        return mse_loss(student_q, teacher_q)
    if name == "kl":
        return kl_loss(student_q, teacher_q, tau)
    if name == "nll":
        return nll_loss(student_q, teacher_q)
    raise ValueError(f"loss {name!r} is not known: expected one of {', '.join(LOSSES)}")


def agreement(student_q: torch.Tensor, teacher_q: torch.Tensor) -> float:
    """Fraction of states where the student's greedy action is the teacher's."""
    return float((student_q.argmax(dim=1) == teacher_q.argmax(dim=1)).float().mean())
