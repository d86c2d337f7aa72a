"""A multi-task `qdistill run` end to end on a real local Ray runtime: two tasks, a teacher each,
one multi-task student; through the Ray shards and through Redis."""

import json

import numpy as np
import pytest
import redis
import torch

from qdistill.cluster.cli import main
from qdistill.learners import checkpoint
from tests.support.teachers import untrained_teachers
from qdistill.learners.networks import QNetwork, as_input

pytestmark = pytest.mark.slow  # end-to-end runs on a real Ray runtime

TASKS = {"CartPole-v1": ((4,), 2), "Acrobot-v1": ((6,), 3)}


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """Untrained teachers: the plumbing is under test here, not the scores."""
    return untrained_teachers(tmp_path_factory.mktemp("teachers"), TASKS, seed=1)


def _run(out, teachers, *extra):
    args = ["run", "--quiet", "--out", str(out), "--students", "16x16", "--steps", "4000", "--no-target"]
    for env, path in teachers.items():
        args += ["--env", env, "--teacher", f"{env}={path}"]
    assert main([*args, *extra]) == 0
    return json.loads((out / "summary.json").read_text())


def _check(out, summary, teachers):
    assert summary["tasks"] == list(TASKS) and summary["stop_reason"] == "steps"
    buffer = summary["buffer"]
    assert buffer["inserted"] == summary["env_steps"] >= 4000 and buffer["lost"] == 0 and buffer["rejected"] == 0
    assert buffer["bytes_per_row"] == {"CartPole-v1": 61, "Acrobot-v1": 73}
    # equal balance: every sampled chunk the learner took split evenly between the two tasks
    taken = buffer["taken_per_task"]
    assert taken["CartPole-v1"] == taken["Acrobot-v1"] > 0 and taken["CartPole-v1"] % 2048 == 0
    student = summary["students"]["16x16"]
    one_task = {env: QNetwork("16x16", *TASKS[env]) for env in TASKS}
    assert student["params_of_one_task_students"] == sum(sum(p.numel() for p in n.parameters()) for n in one_task.values())
    assert student["params"] == student["params_of_one_task_students"] - (16 * 16 + 16)  # the trunk, counted once
    whole = checkpoint.load_multitask(student["checkpoint"])
    assert whole.env_ids == tuple(TASKS) and whole.inputs == "per-task"
    net = whole.network()
    for t, env in enumerate(TASKS):
        part = summary["per_task"][env]["students"]["16x16"]
        ckpt = checkpoint.load(part["checkpoint"], env_id=env)
        assert ckpt.version == whole.version and part["version"] == whole.version
        obs = np.random.default_rng(t).normal(size=(32, *TASKS[env][0])).astype(np.float32)
        with torch.no_grad():
            torch.testing.assert_close(ckpt.network()(as_input(obs)), net(as_input(obs), t), rtol=0, atol=1e-6)
        teacher = summary["per_task"][env]["teacher"]
        assert checkpoint.load(teacher["checkpoint"]).weights.keys() == checkpoint.load(teachers[env]).weights.keys()
        assert 0.0 <= part["agreement"] <= 1.0 and part["params"] == sum(p.numel() for p in ckpt.network().parameters())
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval/geomean_pct_of_teacher/16x16" in r]
    assert evals and all(f"eval/{env}/return/16x16" in r for r in evals for env in TASKS)
    report = (out / "report.md").read_text()
    assert "## CartPole-v1" in report and "## Acrobot-v1" in report


def test_two_tasks_distil_into_one_student_through_ray_shards(ray_session, teachers, tmp_path, capsys):
    out = tmp_path / "run"
    _check(out, _run(out, teachers), teachers)
    first = json.loads((out / "summary.json").read_text())
    assert main(["run", "--resume", str(out), "--steps", "8000", "--quiet"]) == 0  # carries on from its state
    resumed = json.loads((out / "summary.json").read_text())
    assert resumed["env_steps"] >= 8000 and resumed["learner_steps"] > first["learner_steps"]
    taken = resumed["buffer"]["taken_per_task"]
    assert taken["CartPole-v1"] == taken["Acrobot-v1"] > first["buffer"]["taken_per_task"]["CartPole-v1"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["learner/steps"] for r in records if r.get("event") == "resumed"] == [first["learner_steps"]]
    capsys.readouterr()
    assert main(["export", str(out), "--format", "torchscript", "--states", "200", "--episodes", "1"]) == 0
    sidecar = json.loads((out / "export" / "student-16x16.torchscript.json").read_text())
    assert [(t["env_id"], t["verification"]["agreement"]) for t in sidecar["tasks"]] == \
        [("CartPole-v1", 1.0), ("Acrobot-v1", 1.0)]
    assert main(["export", str(out), "--format", "torchscript", "--task", "LunarLander-v3"]) == 2
    assert capsys.readouterr().err.endswith(f"qdistill: error: --task 'LunarLander-v3' is not a task of run directory "
                                            f"{str(out)!r}: expected one of CartPole-v1, Acrobot-v1\n")


def test_two_tasks_through_redis_one_task_per_minibatch(ray_session, teachers, tmp_path, redis_server, redis_prefix):
    out = tmp_path / "run"
    summary = _run(out, teachers, "--buffer", redis_server.url, "--buffer-prefix", redis_prefix, "--task-batches", "one")
    _check(out, summary, teachers)
    client = redis.Redis.from_url(redis_server.url)
    try:  # each task's rows under its own prefix, in its own schema
        inserted = [int(client.get(f"{redis_prefix}:task{t}:inserted")) for t in range(2)]
    finally:
        client.close()
    assert sum(inserted) == summary["buffer"]["inserted"] and min(inserted) > 0


def test_a_multi_task_teacher_trains_one_network_and_each_task_distils_from_its_part(ray_session, tmp_path):
    out = tmp_path / "teacher"
    args = ["train-teacher", "--env", "CartPole-v1", "--env", "Acrobot-v1", "--steps", "4000", "--net", "32x32",
            "--quiet", "--out", str(out)]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"] == list(TASKS) and summary["env_steps"] >= 4000 and summary["learner_steps"] > 0
    whole = checkpoint.load_multitask(summary["teacher"]["checkpoint"])
    assert whole.env_ids == tuple(TASKS) and whole.net == "32x32"
    assert summary["teacher"]["params"] == sum(p.numel() for p in whole.network().parameters())
    net = whole.network()
    for t, env in enumerate(TASKS):
        part = checkpoint.load(summary["per_task"][env]["checkpoint"], env_id=env)
        assert part.version == whole.version == summary["teacher"]["version"]
        obs = np.random.default_rng(t).normal(size=(16, *TASKS[env][0])).astype(np.float32)
        with torch.no_grad():
            torch.testing.assert_close(part.network()(as_input(obs)), net(as_input(obs), t), rtol=0, atol=1e-6)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval/score/teacher" in r]
    assert evals and all(f"eval/{env}/return/teacher" in r for r in evals for env in TASKS)
    # the seed's direction: the multi-task teacher distilled into a student of one task
    student = tmp_path / "student"
    assert main(["run", "--env", "Acrobot-v1", "--teacher", summary["teacher"]["checkpoint"], "--students", "16",
                 "--steps", "2000", "--no-target", "--quiet", "--out", str(student)]) == 0
    distilled = json.loads((student / "summary.json").read_text())
    assert distilled["teacher"]["params"] == sum(p.numel() for p in part.network().parameters())
    kept = checkpoint.load(student / "checkpoints" / "teacher.pt")
    assert kept.env_id == "Acrobot-v1" and all(np.array_equal(kept.weights[k], part.weights[k]) for k in part.weights)


def test_a_run_without_teachers_trains_a_multi_task_teacher_first(ray_session, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--env", "CartPole-v1", "--env", "Acrobot-v1", "--students", "16x16", "--steps", "3000",
            "--teacher-steps", "3000", "--no-target", "--quiet", "--out", str(out)]
    assert main(args) == 0
    taught = json.loads((out / "teacher" / "summary.json").read_text())
    assert taught["tasks"] == list(TASKS) and taught["stop_reason"] == "steps" and taught["env_steps"] >= 3000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"] == list(TASKS) and summary["env_steps"] >= 3000
    whole = checkpoint.load_multitask(taught["teacher"]["checkpoint"])
    for env in TASKS:  # each task's teacher is its part of the network trained first
        kept = checkpoint.load(out / "checkpoints" / "tasks" / env / "teacher.pt", env_id=env)
        part = whole.task(env)
        assert kept.version == whole.version and all(np.array_equal(kept.weights[k], part.weights[k])
                                                     for k in part.weights)
    capsys.readouterr()  # a run given its teacher trains none
    assert main([*args[:-1], str(tmp_path / "other"), "--teacher", taught["teacher"]["checkpoint"]]) == 2
    assert capsys.readouterr().err.endswith("qdistill: error: --teacher-steps is the budget of a teacher the run "
                                            "trains first: the run has its teacher (--teacher or --teacher-learns), "
                                            "drop --teacher-steps\n")
