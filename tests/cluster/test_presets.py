"""What `qdistill run` resolves to: a fixed teacher's distillation preset, a teacher learning from
scratch (the train-teacher preset), and a trained teacher learning on."""

import pytest

from qdistill.cluster.config import ExplorationConfig, distill_config, teacher_config


def test_a_fixed_teacher_distills_with_the_distillation_preset(tmp_path):
    cfg = distill_config("CartPole-v1", str(tmp_path), teacher="t.pt")
    assert cfg.exploration == ExplorationConfig(start=0.05, end=0.05, steps=0)
    assert (cfg.replay_ratio, cfg.actors, cfg.updates_per_sample, cfg.eval_every_s) == (0.1, 1, 128, 2.0)
    assert cfg.distill.batch_size == 256 and cfg.distill.students == ("16x16",)
    assert cfg.chunk_rows == 32_768


def test_pixel_rows_are_sampled_in_smaller_chunks(tmp_path):
    for env in ("MinAtar/Breakout-v1", "ALE/Pong-v5"):
        cfg = distill_config(env, str(tmp_path), teacher="t.pt")
        assert (cfg.updates_per_sample, cfg.chunk_rows) == (16, 4_096)


def test_a_teacher_learning_from_scratch_learns_as_train_teacher_would(tmp_path):
    cfg = distill_config("CartPole-v1", str(tmp_path), teacher_learns=True)
    assert cfg.exploration == ExplorationConfig(start=1.0, end=0.04, steps=8_000)
    assert (cfg.dqn.net, cfg.dqn.lr, cfg.dqn.batch_size, cfg.dqn.target_update, cfg.dqn.n_step) == \
        ("256x256", 2.3e-3, 64, 128, 3)
    assert (cfg.replay_ratio, cfg.actors, cfg.updates_per_sample, cfg.steps) == (1.0, 2, 16, 300_000)
    assert cfg.eval_every_s == 1.0 and cfg.distill.batch_size == 256 and cfg.distill.students == ("16x16",)
    # evaluated as often in env steps as train-teacher evaluates; a fixed teacher's run by the clock alone
    assert cfg.eval_every == 2_000
    lunar = distill_config("LunarLander-v3", str(tmp_path), teacher_learns=True)
    assert (lunar.eval_every, lunar.replay_ratio, lunar.dqn.net, lunar.dqn.n_step) == (10_000, 1.0, "128x128", 3)
    # and collects as train-teacher does: LunarLander's one actor of 4 envs, 8 steps a call
    assert (lunar.actors, lunar.envs_per_actor, lunar.steps_per_call) == (1, 4, 8)
    assert distill_config("CartPole-v1", str(tmp_path), teacher="t.pt").eval_every is None


def test_the_students_of_a_learning_teacher_step_on_every_batch_unless_told(tmp_path):
    for env in ("CartPole-v1", "MinAtar/Breakout-v1", "ALE/Pong-v5"):
        assert distill_config(env, str(tmp_path), teacher_learns=True).student_every == 1
    assert distill_config("MinAtar/Breakout-v1", str(tmp_path), teacher_learns=True, student_every=4).student_every == 4
    with pytest.raises(ValueError, match=r"^student_every 2 is for a learning teacher's run: give --teacher-learns, "
                                         r"or drop it \(with a fixed teacher the students' steps follow --replay-ratio\)$"):
        distill_config("CartPole-v1", str(tmp_path), teacher="t.pt", student_every=2)


def test_rollout_actors_write_n_step_rows_only_for_a_learning_teacher(tmp_path):
    assert teacher_config("CartPole-v1", str(tmp_path), dqn={"n_step": 3, "gamma": 0.98}).td_rows == \
        {"next_obs": True, "n_step": 3, "gamma": 0.98}
    assert distill_config("CartPole-v1", str(tmp_path), teacher_learns=True, dqn={"n_step": 2}).td_rows == \
        {"next_obs": True, "n_step": 2, "gamma": 0.99}
    assert distill_config("CartPole-v1", str(tmp_path), teacher="t.pt").td_rows["next_obs"] is False


def test_a_trained_teacher_learning_on_explores_as_at_the_end_of_its_schedule(tmp_path):
    cfg = distill_config("CartPole-v1", str(tmp_path), teacher_learns=True, teacher="t.pt")
    assert cfg.exploration == ExplorationConfig(start=0.04, end=0.04, steps=0)
    assert cfg.dqn.net == "256x256" and cfg.replay_ratio == 1.0


def test_buffer_bytes_cap_the_capacity(tmp_path):
    cfg = distill_config("CartPole-v1", str(tmp_path), teacher="t.pt", buffer_bytes=1_000 * 67 + 66)
    assert cfg.capacity_for(67) == 1_000 and cfg.batch_rows == 256
    assert distill_config("CartPole-v1", str(tmp_path), teacher="t.pt").capacity_for(67) == 100_000
    assert distill_config("CartPole-v1", str(tmp_path), teacher_learns=True).batch_rows == 256


def test_a_teacher_trained_first_stops_at_the_runs_target(tmp_path):
    """`qdistill run` without --teacher: the teacher stops at --target-return (MinAtar has no reward
    threshold), else at the env's threshold, with --no-target too."""
    from qdistill.cluster.cli.parser import build_parser
    from qdistill.cluster.config.resolve import distill_run, teacher_first

    def teacher_target(*extra: str) -> float | None:
        args = build_parser().parse_args(["run", "--out", str(tmp_path / "run"), *extra])
        return teacher_first(args, *distill_run(args)).target_return

    assert teacher_target("--env", "MinAtar/Breakout-v1", "--target-return", "10") == 10.0
    assert teacher_target("--env", "MinAtar/Breakout-v1") is None
    assert teacher_target("--env", "CartPole-v1", "--target-return", "300") == 300.0
    assert teacher_target("--env", "CartPole-v1") == teacher_target("--env", "CartPole-v1", "--no-target") == 475.0
