"""Both drivers answer state() and counts() before their loop ran, and a saved state restores."""

from __future__ import annotations

import time

from qdistill.actors.envs import describe
from qdistill.cluster.config import distill_config, teacher_config
from qdistill.cluster.control import RunControl
from qdistill.cluster.driver.distill import DistillDriver
from qdistill.cluster.driver.evaluation import StudentEvaluation
from qdistill.cluster.driver.teacher import TeacherDriver
from qdistill.cluster.rundir import RunDir
from qdistill.learners import checkpoint


def test_the_distillation_driver_answers_before_its_loop_ran(tmp_path, steady_teacher):
    info = describe("CartPole-v1")
    cfg = distill_config("CartPole-v1", str(tmp_path / "run"), teacher=steady_teacher, students=None)
    run = RunDir(cfg.out)
    try:
        driver = DistillDriver(cfg, info, checkpoint.load(steady_teacher), run=run, started=time.monotonic(),
                               control=RunControl())
        assert driver.counts() == {"env_steps": 0, "learner/steps": 0}
        state = driver.state()
        assert set(state) == {"learner", "env_steps", "distill_s", "student_version", "best", "dqn", "changed_at",
                              "teacher", "counters", "lag"}
        assert state["env_steps"] == 0 and state["teacher"]["version"] == 1 and state["best"] == {}
        state["env_steps"], state["student_version"] = 5_000, 3
        driver.restore(state)
        assert driver.counts() == {"env_steps": 5_000, "learner/steps": 0} and driver.student_version == 3
        assert driver.resumed_env_steps == 5_000 and driver.labels.version == 1
    finally:
        run.close()


def test_the_teacher_driver_answers_before_its_loop_ran(tmp_path):
    info = describe("CartPole-v1")
    cfg = teacher_config("CartPole-v1", str(tmp_path / "teacher"), steps=10_000, dqn={"net": "8"})
    driver = TeacherDriver(cfg, info, control=RunControl())
    try:
        assert driver.counts() == {"env_steps": 0, "learner/steps": 0}
        state = driver.state()
        assert set(state) == {"learner", "env_steps", "elapsed_s", "version", "best"}
        assert state["best"]["version"] == -1 and state["best"]["weights"] == {}
        state["env_steps"], state["version"] = 4_000, 2
        driver.restore(state)
        assert driver.counts() == {"env_steps": 4_000, "learner/steps": 0} and driver.version == 2
        assert driver.evaluation.next_at == max(cfg.eval_every, cfg.learning_starts, 4_001)
    finally:
        driver.run.close()


def test_a_students_best_is_its_highest_return_then_its_highest_agreement():
    saved = []
    evaluation = StudentEvaluation(("s",), every_s=1.0, target=None,
                                   save_best=lambda name, version, weights: saved.append(version))
    teacher = (0, {})
    for version, ret, agr in ((1, -21.0, 0.02), (2, -21.0, 0.90), (3, -21.0, 0.50), (4, -20.0, 0.10),
                              (5, -21.0, 1.00), (6, -20.0, 0.10)):
        evaluation.judge({"eval/return/teacher": -21.0, "eval/return/s": ret, "eval/agreement/s": agr},
                         (version, {"s": {}}), teacher)
    assert saved == [1, 2, 4]
    assert evaluation.best["s"][:2] == ((-20.0, 0.10), 4)


def test_returns_the_interval_cannot_tell_apart_are_decided_by_agreement():
    """A new version beats the best when its return's 95% interval lies above the best's return,
    loses when it lies below, and otherwise wins on a higher agreement: an early version that was
    lucky once does not stay the best."""
    saved = []
    evaluation = StudentEvaluation(("s",), every_s=1.0, target=None,
                                   save_best=lambda name, version, weights: saved.append(version))
    for version, ret, low, high, agr in ((1, 110.0, 70.0, 150.0, 0.79),  # the first
                                         (2, 101.0, 60.0, 140.0, 0.95),  # holds 110: agrees more
                                         (3, 180.0, 150.0, 210.0, 0.90),  # above 101: better, agreeing less
                                         (4, 160.0, 130.0, 190.0, 0.99),  # holds 180: agrees more
                                         (5, 120.0, 100.0, 140.0, 1.00),  # below 160: worse, agreeing more
                                         (6, 170.0, 140.0, 200.0, 0.98)):  # holds 160: agrees less
        evaluation.judge({"eval/return/teacher": 200.0, "eval/return/s": ret, "eval/return_ci_low/s": low,
                          "eval/return_ci_high/s": high, "eval/agreement/s": agr}, (version, {"s": {}}), (0, {}))
    assert saved == [1, 2, 3, 4]
    assert evaluation.best["s"][:2] == ((160.0, 0.99), 4)


def test_with_a_learning_teacher_the_newer_of_two_returns_told_apart_by_nothing_wins():
    """A learning teacher: each evaluation's agreement is with another version of it, so returns
    the interval cannot tell apart are decided by age, not agreement."""
    saved = []
    evaluation = StudentEvaluation(("s",), every_s=1.0, target=None, teacher_learns=True,
                                   save_best=lambda name, version, weights: saved.append(version))
    for version, ret, low, high, agr in ((1, 110.0, 70.0, 150.0, 0.79), (2, 101.0, 60.0, 140.0, 0.60),
                                         (3, 40.0, 10.0, 70.0, 0.99), (4, 90.0, 50.0, 130.0, 0.50)):
        evaluation.judge({"eval/return/teacher": 200.0, "eval/return/s": ret, "eval/return_ci_low/s": low,
                          "eval/return_ci_high/s": high, "eval/agreement/s": agr}, (version, {"s": {}}), (version, {}))
    assert saved == [1, 2, 4]


def test_an_evaluation_waits_for_its_env_steps_as_well_as_its_seconds(ray_session):
    """`every_steps`: the next evaluation is due once that many env steps passed since the last
    one started, and `every_s` seconds too (a learning teacher's run: its train-teacher preset's
    `eval_every`)."""
    import ray

    from qdistill.actors.remote import EvaluatorActor, ParameterServerActor
    from qdistill.learners.networks import QNetwork, to_numpy

    weights = to_numpy(QNetwork("8", (4,), 2).state_dict())
    params = ParameterServerActor.options(name="every-steps-teacher").remote()
    ray.get(params.publish.remote(1, weights))
    evaluation = StudentEvaluation(("8",), every_s=0.5, target=None, every_steps=1_000,
                                   save_best=lambda name, version, w: None)
    evaluation.evaluator = EvaluatorActor.remote("CartPole-v1", teacher_net="8", students=("8",), obs_shape=(4,),
                                                 n_actions=2, episodes=2, seed=0, tau=1.0,
                                                 teacher_params="every-steps-teacher")
    try:
        assert evaluation.due(time.monotonic(), 0)
        evaluation.start((1, {"8": weights}), (1, weights), task=None, dynamics=None, env_steps=600)
        started = time.monotonic()
        assert not evaluation.due(started + 10.0, 1_600)  # one in flight
        while evaluation.finished() is None:
            time.sleep(0.01)
        assert not evaluation.due(started + 10.0, 1_599)
        assert not evaluation.due(started + 0.4, 1_600)
        assert evaluation.due(started + 10.0, 1_600)
    finally:
        ray.kill(evaluation.evaluator)
        ray.kill(params)
