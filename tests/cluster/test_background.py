"""A run in the background on a real `ray start` cluster (token auth), driven only through the CLI
as a user would: run --detach → status → scale → stop → run --resume."""

from __future__ import annotations

import json
import subprocess
import sys
import time


import pytest

from ray_head import RayHead, new_token

RUN = "bg-run"


@pytest.fixture(scope="module")
def head():
    with RayHead(token=new_token(), num_cpus=2) as h:  # room for two rollout actors, not three
        yield h


def _qdistill(head: RayHead, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qdistill.cluster.cli", *args], env=head.client_env(),
                          capture_output=True, text=True, timeout=timeout)


def _status(head: RayHead) -> dict:
    result = _qdistill(head, "status", RUN, "--address", head.address, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _until(head: RayHead, ok, what: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = _status(head)
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

    stopped = _qdistill(head, "stop", RUN, "--address", head.address)
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
