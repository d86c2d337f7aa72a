"""A teacher that keeps learning in the run: versions move, labels are kept within the staleness
bound (or, with refresh off, drift), the students distill from it all along."""

import json

import pytest

from qdistill.cluster.cli import main
from qdistill.learners import checkpoint


def _run(tmp_path, *extra: str) -> dict:
    out = tmp_path / "run"
    code = main(["run", "--env", "CartPole-v1", "--teacher-learns", "--steps", "6000", "--no-target",
                 "--out", str(out), "--quiet", *extra])
    assert code == 0
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_labels_stay_within_the_staleness_bound(ray_session, tmp_path):
    summary = _run(tmp_path, "--max-label-staleness", "1")
    labels = summary["labels"]
    # the teacher learned: a version every 32 of its steps, all published to actors and buffer;
    # the student took one step per 256 rows: four of the teacher's 64-row minibatches
    assert labels["teacher_versions"] == summary["teacher_steps"] // 32
    assert summary["learner_steps"] == summary["teacher_steps"] // 4
    # the learn phase's parts are timed: the teacher's steps, the labels' bound, the students' steps
    loop = summary["loop_s"]
    assert {"learn/teacher", "learn/labels", "learn/students"} <= set(loop)
    assert loop["learn/teacher"] + loop["learn/labels"] + loop["learn/students"] <= loop["learn"] + 0.001
    assert labels["teacher_versions"] > 50
    # sampled labels went stale (the buffer holds labels of many versions) ...
    assert labels["staleness_p95_sampled"] > 1
    # ... and every row was trained on with the learning teacher's own Q-values from its step on it:
    # the version it had then, one behind for the rows of the student step in which it published
    # the next (1 in 8: 12.5% of rows, so the p95 too); no extra relabelling
    assert labels["labels/from_teacher_step"] == labels["sampled"] == summary["learner_steps"] * 256
    assert labels["labels/relabelled_on_sample"] == 0
    assert labels["labels/relabelled_in_shards"] == 0  # nor relabelling in the background: no use for it
    assert labels["staleness_max_used"] == 1 and labels["staleness_p95_used"] == 1
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["teacher_learns"] is True and config["max_label_staleness"] == 1
    assert config["dqn"]["net"] == "256x256" and config["exploration"]["start"] == 1.0  # the teacher's preset
    # the reported teacher is a version the run published, saved in the run directory
    teacher = checkpoint.load(tmp_path / "run" / "checkpoints" / "teacher.pt", env_id="CartPole-v1")
    assert 0 <= teacher.version <= labels["teacher_versions"] and teacher.version == summary["teacher"]["version"]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("learner/td_loss" in r and "learner/distill_loss/16x16" in r for r in records)
    used = [r["buffer/label_staleness_used_max"] for r in records if "buffer/label_staleness_used_max" in r]
    assert used and max(used) <= 1  # per chunk, as the report plots it


@pytest.mark.slow
def test_on_sample_refresh_trains_on_the_newest_version(ray_session, tmp_path):
    summary = _run(tmp_path, "--refresh", "on-sample")
    labels = summary["labels"]
    assert labels["staleness_max_used"] == 0
    # the teacher's own labels lag one version only when its step just published the next (every
    # 32 steps, the last of a student's four minibatches): those 256 rows are relabelled
    assert labels["labels/relabelled_on_sample"] == 256 * labels["teacher_versions"] > 0
    assert labels["labels/from_teacher_step"] == labels["sampled"]


@pytest.mark.slow
def test_with_refresh_off_labels_drift(ray_session, tmp_path):
    labels = _run(tmp_path, "--refresh", "off")["labels"]
    assert labels["labels/relabelled_on_sample"] == 0 and labels["labels/relabelled_in_shards"] == 0
    assert labels["labels/from_teacher_step"] == 0
    assert labels["staleness_p95_used"] == labels["staleness_p95_sampled"] > 2


@pytest.mark.slow
def test_the_students_can_step_on_one_batch_of_the_learning_teachers_rows_in_several(ray_session, tmp_path):
    summary = _run(tmp_path, "--student-every", "2", "--steps", "3000")
    # a chunk is 16 teacher steps of 64 rows: four 256-row batches, the students step on two of them
    assert summary["teacher_steps"] > 0 and summary["teacher_steps"] % 16 == 0
    assert summary["learner_steps"] == summary["teacher_steps"] // 8
    # labels are kept within the bound on the batches the students train on, and only on those
    assert summary["labels"]["sampled"] == summary["labels"]["labels/from_teacher_step"] == summary["learner_steps"] * 256
    assert json.loads((tmp_path / "run" / "config.json").read_text())["student_every"] == 2


@pytest.mark.parametrize("flags, message", [
    (["--student-every", "0"], "student_every 0 is not valid: expected an integer >= 1 (1: the students step on every "
                               "batch of the learning teacher's rows)"),
    (["--mode", "offline"], "teacher_learns needs mode online: offline labels a fixed teacher's states once"),
    (["--max-label-staleness", "-1"], "max_label_staleness -1 is not valid: expected an integer >= 0 (versions)"),
])
def test_bad_learning_teacher_flags(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    assert main(["run", "--env", "CartPole-v1", "--teacher-learns", *flags, "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"qdistill: error: {message}\n"
    assert not out.exists()
