import numpy as np
import pytest
import torch

from qdistill.actors.evaluate import evaluate
from qdistill.actors.evaluator import FINAL_OFFSET, Evaluator, percent_of
from qdistill.actors.intervals import mean_ci, percent_ci
from qdistill.learners.networks import QNetwork, to_numpy


def test_a_student_equal_to_its_teacher_matches_it_exactly():
    weights = to_numpy(QNetwork("16", (4,), 2).state_dict())
    ev = Evaluator("CartPole-v1", teacher_net="16", students=("16", "8"), obs_shape=(4,), n_actions=2,
                   episodes=5, heldout_states=300)
    ev.load_teacher(3, weights)
    ev.load_students(1, {"16": weights, "8": to_numpy(QNetwork("8", (4,), 2).state_dict())})
    m = ev.evaluate()
    assert m["eval/return/16"] == m["eval/return/teacher"]
    assert m["eval/pct_of_teacher/16"] == 100.0
    assert m["eval/agreement/16"] == 1.0 and m["eval/kl/16"] == pytest.approx(0.0, abs=1e-6)
    assert 0.0 <= m["eval/agreement/8"] <= 1.0 and m["eval/kl/8"] >= 0.0
    assert ev.heldout.shape == (300, 4)
    final = ev.evaluate(final=True)  # other episodes, same comparison
    assert final["eval/return/16"] == final["eval/return/teacher"]
    # the intervals: the bootstrap over the very episodes the final evaluation played, paired by seed
    teacher = evaluate("CartPole-v1", ev.teacher.act, episodes=5, seed=ev.seed + FINAL_OFFSET).returns
    student = evaluate("CartPole-v1", ev.students["8"].act, episodes=5, seed=ev.seed + FINAL_OFFSET).returns
    for name, returns in (("teacher", teacher), ("16", teacher), ("8", student)):
        ci = mean_ci(returns)
        assert (final[f"eval/return_ci_low/{name}"], final[f"eval/return_ci_high/{name}"]) == (ci.low, ci.high)
    pct = percent_ci(student, teacher)
    assert (final["eval/pct_of_teacher_ci_low/8"], final["eval/pct_of_teacher_ci_high/8"]) == (pct.low, pct.high)
    assert final["eval/pct_of_teacher_ci_low/16"] == final["eval/pct_of_teacher_ci_high/16"] == 100.0


def test_percent_of_teacher():
    assert percent_of(450.0, 500.0) == 90.0
    assert percent_of(-100.0, -80.0) == pytest.approx(80.0)  # negative returns: closer is higher
    assert np.isnan(percent_of(5.0, 0.0))


def _width(student, teacher) -> float:
    ci = percent_ci(student, teacher)
    return ci.high - ci.low


@pytest.mark.parametrize("width", [8.0, 1e-9])
def test_eval_ci_plays_rounds_until_each_interval_is_narrow_enough(width):
    """--eval-ci: the final evaluation adds rounds of `episodes` on the next seeds, teacher and
    students paired, and stops at the first round where every % of teacher's interval is at most
    `width` points wide (or at `max_episodes`); periodic evaluations play one round."""
    torch.manual_seed(3)
    teacher, student = QNetwork("16", (4,), 2), QNetwork("8", (4,), 2)
    ev = Evaluator("CartPole-v1", teacher_net="16", students=("8",), obs_shape=(4,), n_actions=2, episodes=5,
                   heldout_states=100, ci_width=width, max_episodes=40)
    ev.load_teacher(1, to_numpy(teacher.state_dict()))
    ev.load_students(1, {"8": to_numpy(student.state_dict())})
    assert ev.evaluate()["eval/episodes"] == 5

    final = ev.evaluate(final=True)
    played = int(final["eval/episodes"])
    seeds = range(ev.seed + FINAL_OFFSET, ev.seed + FINAL_OFFSET + played, 5)  # a round's seed: the next unplayed
    t = sum((evaluate("CartPole-v1", ev.teacher.act, episodes=5, seed=at).returns for at in seeds), ())
    s = sum((evaluate("CartPole-v1", ev.students["8"].act, episodes=5, seed=at).returns for at in seeds), ())
    assert played % 5 == 0 and 5 < played <= 40  # it played on, in whole rounds
    assert all(_width(s[:n], t[:n]) > width for n in range(5, played, 5))  # every earlier round was too wide
    assert _width(s, t) <= width or played == 40  # and it stopped at the first narrow enough, or the cap
    assert final["eval/return/teacher"] == pytest.approx(np.mean(t)) and final["eval/return/8"] == pytest.approx(np.mean(s))
    pct = percent_ci(s, t)
    assert (final["eval/pct_of_teacher_ci_low/8"], final["eval/pct_of_teacher_ci_high/8"]) == (pct.low, pct.high)
    if width == 1e-9:
        assert played == 40
