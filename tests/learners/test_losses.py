import math

import pytest
import torch

from qdistill.learners.distill import METRICS_EVERY, DistillLearner
from qdistill.learners.configs import DistillConfig, parse_students
from qdistill.learners.losses import agreement, distill_loss, kl_loss, mse_loss, nll_loss
from tests.support.batches import labelled_batch


def test_mse_exact():
    # ((1 − 0)² + (2 − 4)²) / 2 = 2.5
    assert mse_loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 4.0]])).item() == pytest.approx(2.5)


def test_kl_exact():
    # τ = 1: p_T = softmax([0, ln 3]) = [¼, ¾], p_S = softmax([0, 0]) = [½, ½]
    expected = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    got = kl_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, math.log(3.0)]]), tau=1.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_kl_divides_both_sides_by_tau():
    # the same case at τ = 0.5 with Q-values halved is the same distribution pair
    got = kl_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 0.5 * math.log(3.0)]]), tau=0.5)
    assert got.item() == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5), rel=1e-6)


def test_nll_exact():
    # teacher argmax is action 0; student softmax([0, ln 3]) gives it ¼ → −log ¼ = ln 4
    got = nll_loss(torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([[5.0, 1.0]]))
    assert got.item() == pytest.approx(math.log(4.0), rel=1e-6)


@pytest.mark.parametrize("name", ["mse", "kl"])
def test_zero_when_student_equals_teacher(name):
    q = torch.tensor([[1.0, 2.0, 0.5], [3.0, -1.0, 0.0]])
    assert distill_loss(name, q.clone(), q).item() == pytest.approx(0.0, abs=1e-7)


def test_nll_vanishes_as_the_student_commits_to_the_teachers_action():
    teacher = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    losses = [nll_loss(teacher * scale, teacher).item() for scale in (1.0, 10.0, 100.0)]
    assert losses[0] > losses[1] > losses[2] and losses[2] < 1e-6


def test_tau_sharpens_the_teacher():
    """Small τ makes the teacher's target one-hot; large τ makes it uniform."""
    student = torch.tensor([[0.0, 0.0]])  # uniform at any τ
    teacher = torch.tensor([[0.0, 1.0]])
    assert kl_loss(student, teacher, tau=0.01).item() == pytest.approx(math.log(2.0), rel=1e-6)
    assert kl_loss(student, teacher, tau=100.0).item() < 1e-4
    taus = [0.1, 0.5, 1.0, 5.0]
    kls = [kl_loss(student, teacher, tau=t).item() for t in taus]
    assert kls == sorted(kls, reverse=True)


def test_agreement():
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    teacher = torch.tensor([[5.0, 0.0], [0.0, 1.0], [1.0, 2.0], [0.0, 9.0]])
    assert agreement(student, teacher) == 0.75


def test_unknown_loss():
    with pytest.raises(ValueError, match="^loss 'l1' is not known: expected one of mse, kl, nll$"):
        distill_loss("l1", torch.zeros(1, 2), torch.zeros(1, 2))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"loss": "hinge"}, "loss 'hinge' is not known: expected one of mse, kl, nll"),
        ({"tau": 0.0}, "tau 0.0 is not valid: expected a temperature > 0"),
        ({"tau": -1.0}, "tau -1.0 is not valid: expected a temperature > 0"),
        ({"students": ()}, "student spec list is empty: give at least one network spec, e.g. '16x16'"),
        ({"students": ("16x16", "16x16")}, "students name '16x16' twice: give each student spec once"),
        ({"students": ("16y16",)}, "network spec '16y16' is not valid"),
    ],
)
def test_distill_config_refuses(kwargs, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        DistillConfig(**kwargs)


def test_parse_students():
    assert parse_students("64x64, 16x16") == ("64x64", "16x16")
    with pytest.raises(ValueError, match="^student spec list '' is empty"):
        parse_students("")


def test_every_student_trains_on_the_same_batch():
    learner = DistillLearner(DistillConfig(students=("8", "4x4"), loss="mse", lr=1e-2), [((3,), 2)])
    gen = torch.Generator().manual_seed(0)
    obs = torch.randn(64, 3, generator=gen)
    target = (obs @ torch.randn(3, 2, generator=gen)).numpy()  # a target the students can fit
    obs = obs.numpy()
    batch = labelled_batch(obs, target)
    first = learner.step(batch).metrics
    measured = [learner.step(batch).metrics for _ in range(300)]
    assert set(first) == {"learner/distill_loss/8", "learner/distill_loss/4x4", "learner/agreement/8", "learner/agreement/4x4"}
    # measured on the first step and one in METRICS_EVERY after (steps 16, 32, ..., 288): the rest give none
    assert [i + 1 for i, m in enumerate(measured) if m] == list(range(METRICS_EVERY, 301, METRICS_EVERY))
    assert all(set(m) == set(first) for m in measured if m)
    last = [m for m in measured if m][-1]
    for name in ("8", "4x4"):
        assert last[f"learner/distill_loss/{name}"] < first[f"learner/distill_loss/{name}"] / 5
    assert learner.steps == 301 and learner.params() == {"8": 3 * 8 + 8 + 8 * 2 + 2, "4x4": 3 * 4 + 4 + 4 * 4 + 4 + 4 * 2 + 2}
