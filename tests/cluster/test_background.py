"""A run in the background on a real `ray start` cluster (token auth), driven only through the CLI
as a user would: run --detach → status → scale → stop → run --resume."""

from __future__ import annotations

import json
import subprocess
import sys
import time


import pytest

from tests.support.ray_head import RayHead, new_token

pytestmark = pytest.mark.slow  # a real Ray head and a detached run driven through the CLI

RUN = "bg-run"


@pytest.fixture(scope="module")
def head():
    with RayHead(token=new_token(), num_cpus=2) as h:  # room for two rollout actors, not three
        yield h


def _qdistill(head: RayHead, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qdistill.cluster.cli", *args], env=head.client_env(),
                          capture_output=True, text=True, timeout=timeout)


def _status(head: RayHead, run: str = RUN) -> dict:
    result = _qdistill(head, "status", run, "--address", head.address, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _until(head: RayHead, ok, what: str, timeout: float = 120, run: str = RUN) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = _status(head, run)
        if ok(status):
            return status
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s; last status {status}"
        time.sleep(1)


def _evals(path) -> list[tuple[int, float]]:
    """(line number, student return) of each periodic evaluation in metrics.jsonl."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [(i, r["eval/return/16x16"]) for i, r in enumerate(lines) if "eval/return/16x16" in r]


def test_detach_status_scale_stop_resume(head, small_teacher, tmp_path):
    teacher = small_teacher[1]["teacher"]["checkpoint"]
    out = tmp_path / RUN
    started = _qdistill(head, "run", "--env", "CartPole-v1", "--teacher", teacher, "--steps", "100000000",
                        "--no-target", "--out", str(out), "--address", head.address, "--detach")
    assert started.returncode == 0, started.stderr
    assert started.stdout.splitlines()[0] == f"run            {RUN} started in the background (running, distill)"

    # the command has returned; the run goes on and shows its progress
    status = _until(head, lambda s: s["env_steps"] >= 20_000 and s["returns"]["16x16"] is not None, "progress")
    assert status["state"] == "running" and status["detached"] and status["phase"] == "distill"
    assert status["actors"]["wanted"] == 1 and status["actors"]["alive"] == 1
    assert status["buffer"]["capacity"] == 100_000 and status["buffer"]["size"] > 0
    assert status["label_staleness"] == 0.0  # a fixed teacher: every label is of its one version
    text = _qdistill(head, "status", "--address", head.address)
    assert text.returncode == 0 and text.stdout.startswith(f"run              {RUN}: running, distill phase (detached)")

    # scale up past what the cluster holds (2 CPUs): two actors run, the third waits as pending
    scaled = _qdistill(head, "scale", RUN, "--actors", "3", "--address", head.address)
    assert scaled.returncode == 0, scaled.stderr
    assert scaled.stdout.startswith(f"run {RUN}: rollout actors 1 → 3")
    _until(head, lambda s: (s["actors"]["wanted"], s["actors"]["alive"], s["actors"]["pending"]) == (3, 2, 1),
           "two actors up, one pending")
    steps = _status(head)["env_steps"]
    _until(head, lambda s: s["env_steps"] > steps + 10_000, "collection goes on with a pending actor")
    # and down again: the pending actor goes first
    assert _qdistill(head, "scale", RUN, "--actors", "1", "--address", head.address).returncode == 0
    _until(head, lambda s: (s["actors"]["wanted"], s["actors"]["alive"], s["actors"]["pending"]) == (1, 1, 0),
           "back to one actor")

    stopped = _qdistill(head, "stop", "--all", "--address", head.address)  # the one run there
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.splitlines()[0] == f"run            {RUN} finished (stopped)"
    first = json.loads((out / "summary.json").read_text())
    assert first["stop_reason"] == "stopped" and (out / "checkpoints" / "state.pt").is_file()
    gone = _qdistill(head, "status", RUN, "--address", head.address)
    assert gone.returncode == 2 and gone.stderr == (f"qdistill: error: no run named '{RUN}' on this cluster: "
                                                    "the runs here are none\n")

    # resume, attached this time, for 20,000 more env steps
    budget = first["env_steps"] + 20_000
    resumed = _qdistill(head, "run", "--resume", str(out), "--steps", str(budget), "--address", head.address,
                        "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    second = json.loads((out / "summary.json").read_text())
    assert second["stop_reason"] == "steps" and second["env_steps"] >= budget
    assert second["learner_steps"] > first["learner_steps"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    mark = next(i for i, r in enumerate(records) if r.get("event") == "resumed")
    assert records[mark]["env_steps"] == first["env_steps"] and records[mark]["learner/steps"] == first["learner_steps"]
    # the counters carry on from where they were, never from zero
    assert min(r["env_steps"] for r in records[mark:] if "env_steps" in r) == first["env_steps"]
    assert min(r["learner/steps"] for r in records[mark + 1:] if "learner/steps" in r) >= first["learner_steps"]
    # the students' evaluation does not drop: the first after resuming against the last before
    before = [r for i, r in _evals(out / "metrics.jsonl") if i < mark]
    after = [r for i, r in _evals(out / "metrics.jsonl") if i > mark]
    assert after[0] >= 0.9 * before[-1], (before[-3:], after[:3])


def test_swap_teacher_hands_a_running_run_a_new_teacher(head, small_teacher, tmp_path):
    from qdistill.learners import checkpoint
    from qdistill.learners.networks import QNetwork, to_numpy

    teacher_dir, summary = small_teacher
    run = "swap-run"
    out = tmp_path / run
    started = _qdistill(head, "run", "--env", "CartPole-v1", "--teacher", summary["teacher"]["checkpoint"],
                        "--steps", "100000000", "--no-target", "--out", str(out), "--address", head.address,
                        "--detach")
    assert started.returncode == 0, started.stderr

    def status() -> dict:
        return _status(head, run)

    def until(ok, what: str) -> dict:
        return _until(head, ok, what, run=run)

    before = until(lambda s: s["state"] == "running" and s["buffer"]["size"] >= 20_000, "a filled buffer")
    version = before["teacher"]["version"]
    # refused: another env, another network; nothing changes
    acrobot = tmp_path / "acrobot.pt"
    checkpoint.save(acrobot, checkpoint.Checkpoint("64", (6,), 3, "Acrobot-v1", 1,
                                                   to_numpy(QNetwork("64", (6,), 3).state_dict())))
    small = tmp_path / "small.pt"
    checkpoint.save(small, checkpoint.Checkpoint("64", (4,), 2, "CartPole-v1", 1,
                                                 to_numpy(QNetwork("64", (4,), 2).state_dict())))
    for path, why in [(acrobot, "env 'Acrobot-v1', not 'CartPole-v1'; network '64', not '256x256'; "
                                "observation shape (6,), not (4,); 3 actions, not 2"),
                      (small, "network '64', not '256x256'")]:
        refused = _qdistill(head, "swap-teacher", run, str(path), "--address", head.address)
        assert (refused.returncode, refused.stdout) == (2, "")
        assert refused.stderr == f"qdistill: error: checkpoint '{path}' was made for {why}\n"
    assert status()["teacher"]["version"] == version

    newer = teacher_dir / "checkpoints" / "teacher-last.pt"
    swapped = _qdistill(head, "swap-teacher", run, str(newer), "--address", head.address)
    assert swapped.returncode == 0, swapped.stderr
    assert swapped.stdout == (f"run {run}: teacher {newer} handed over; it becomes version {version + 1} or later, "
                              "and labels older than it are refreshed\n")
    # the new version reaches the run; every label in the buffer is refreshed to it
    until(lambda s: s["teacher"]["version"] == version + 1, "the new teacher version")
    until(lambda s: s["label_staleness"] == 0.0 and s["env_steps"] > before["env_steps"] + 20_000,
          "labels refreshed to the new teacher")
    assert _qdistill(head, "stop", run, "--address", head.address).returncode == 0
    final = json.loads((out / "summary.json").read_text())
    assert final["labels"]["teacher/swaps"] == 1 and final["teacher"]["version"] == version + 1
    assert final["labels"]["labels/relabelled_in_shards"] + final["labels"]["labels/relabelled_on_sample"] > 0
    # the students were measured against the new teacher, whose checkpoint the run keeps
    kept = checkpoint.load(out / "checkpoints" / "teacher.pt")
    assert kept.version == version + 1 and all((kept.weights[k] == checkpoint.load(newer).weights[k]).all()
                                               for k in kept.weights)


def test_a_multi_task_run_scales_each_tasks_actors(head, tmp_path):
    from tests.support.teachers import untrained_teachers

    (tmp_path / "teachers").mkdir()
    teachers = untrained_teachers(tmp_path / "teachers", {"CartPole-v1": ((4,), 2), "Acrobot-v1": ((6,), 3)}, seed=1)
    run, out = "bg-tasks", tmp_path / "bg-tasks"
    args = [a for env, path in teachers.items() for a in ("--env", env, "--teacher", f"{env}={path}")]
    started = _qdistill(head, "run", *args, "--students", "16x16", "--steps", "100000000", "--out", str(out),
                        "--address", head.address, "--detach")
    assert started.returncode == 0, started.stderr

    def status() -> dict:
        return _status(head, run)

    def until(ok, what: str) -> dict:
        return _until(head, ok, what, run=run)

    until(lambda s: s.get("actors", {}).get("alive") == 2, "one actor per task up")
    assert status()["actors"]["per_task"] == {"CartPole-v1": 1, "Acrobot-v1": 1}
    text = _qdistill(head, "status", run, "--address", head.address)
    assert text.returncode == 0, text.stderr
    assert "actors per task  CartPole-v1: 1, Acrobot-v1: 1" in text.stdout
    assert "greedy return    CartPole-v1 teacher " in text.stdout  # each task's, once evaluated ("-" before)
    for extra, message in [
        (["--task", "LunarLander-v3", "--actors", "2"],
         f"--task 'LunarLander-v3' is not a task of run '{run}': expected one of CartPole-v1, Acrobot-v1"),
        (["--actors", "3"], f"--actors 3 do not divide over run '{run}''s 2 tasks: give a multiple of 2, or one "
                            "task's with --task ENV"),
    ]:
        refused = _qdistill(head, "scale", run, *extra, "--address", head.address)
        assert (refused.returncode, refused.stderr) == (2, f"qdistill: error: {message}\n")

    # Acrobot's actors 1 → 2: the cluster's 2 CPUs hold two, the third waits
    scaled = _qdistill(head, "scale", run, "--task", "Acrobot-v1", "--actors", "2", "--address", head.address)
    assert scaled.returncode == 0, scaled.stderr
    assert scaled.stdout.startswith(f"run {run}: rollout actors of Acrobot-v1 1 → 2")
    s = until(lambda s: (s["actors"]["wanted"], s["actors"]["alive"], s["actors"]["pending"]) == (3, 2, 1),
              "Acrobot's second actor pending")
    assert s["actors"]["per_task"] == {"CartPole-v1": 1, "Acrobot-v1": 2}
    # in all, split evenly: back to one each, Acrobot's newest (the pending one) retired
    assert _qdistill(head, "scale", run, "--actors", "2", "--address", head.address).returncode == 0
    s = until(lambda s: (s["actors"]["wanted"], s["actors"]["alive"], s["actors"]["pending"]) == (2, 2, 0),
              "one actor per task again")
    assert s["actors"]["per_task"] == {"CartPole-v1": 1, "Acrobot-v1": 1}

    stopped = _qdistill(head, "stop", run, "--address", head.address)
    assert stopped.returncode == 0, stopped.stderr
    per_task = json.loads((out / "summary.json").read_text())["actors"]["per_task_at_end"]
    assert {env: sum(nodes.values()) for env, nodes in per_task.items()} == {"CartPole-v1": 1, "Acrobot-v1": 1}
