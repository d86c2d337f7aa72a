"""`qdistill run` as a Ray Job, submitted with `ray job submit` to a real head started with
`ray start --head` (token authentication, dashboard on a loopback port)."""

import json
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from qdistill.learners import checkpoint
from tests.support.ray_head import RAY, RayHead, new_token
from tests.support.stopping import learning

pytestmark = pytest.mark.slow  # a real Ray head, runs submitted as Ray Jobs

JOB_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def head():
    with RayHead(token=new_token(), num_cpus=4, dashboard=True) as head:
        yield head
    assert head.leftovers == []  # `ray start --block` took its node's processes down with it


def _submit(head: RayHead, env: dict[str, str], *entrypoint: str) -> tuple[str, subprocess.CompletedProcess]:
    """`ray job submit` (it waits for the job and streams its output); returns the submission id."""
    job_id = f"qd-{secrets.token_hex(4)}"
    result = subprocess.run([RAY, "job", "submit", "--address", head.dashboard_url, "--submission-id", job_id,
                             "--", *entrypoint], check=False, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    return job_id, result


def _job(head: RayHead, job_id: str) -> dict | None:
    """The job's record from the dashboard's REST API (with the cluster's token), None if unknown."""
    request = urllib.request.Request(f"{head.dashboard_url}/api/jobs/{job_id}",
                                     headers={"Authorization": f"Bearer {head.token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def _logs(head: RayHead, job_id: str) -> str:
    request = urllib.request.Request(f"{head.dashboard_url}/api/jobs/{job_id}/logs",
                                     headers={"Authorization": f"Bearer {head.token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["logs"]


def test_a_run_submitted_as_a_ray_job_joins_the_cluster_and_finishes(head, small_teacher, tmp_path):
    _, teacher_summary = small_teacher
    out = tmp_path / "run"
    # no --address: inside the job RAY_ADDRESS names the cluster, and the run joins it
    job_id, result = _submit(head, {**head.client_env(), "HOME": str(tmp_path)},
                             "qdistill", "run", "--env", "CartPole-v1",
                             "--teacher", teacher_summary["teacher"]["checkpoint"], "--steps", "20000", "--no-target",
                             "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    job = _job(head, job_id)
    assert (job["status"], job["driver_exit_code"]) == ("SUCCEEDED", 0)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] >= 20_000 and summary["stop_reason"] == "steps"
    student = checkpoint.load(summary["students"]["16x16"]["checkpoint"], env_id="CartPole-v1")
    assert student.net == "16x16" and Path(summary["students"]["16x16"]["checkpoint"]).parent == out / "checkpoints"
    # the run's rollout actor was on the job's cluster (the node the job's driver ran on), not in a
    # runtime of the job's own (that would be a node of its own)
    assert [(key.split("/")[1], n) for key, n in summary["actors"]["actors_per_node_at_start"].items()] == \
        [(job["driver_node_id"][:8], 1)]


def test_address_auto_in_a_job_is_the_jobs_cluster(head, tmp_path):
    """--address auto (as in the README) joins the job's cluster: an actor it cannot host is refused
    naming that cluster's 4 CPUs (this machine has 2, an embedded runtime would offer those)."""
    out = tmp_path / "run"
    job_id, result = _submit(head, {**head.client_env(), "HOME": str(tmp_path)},
                             "qdistill", "run", "--env", "CartPole-v1", "--address", "auto",
                             "--actor-resources", '{"gpu_box": 1}', "--out", str(out))
    assert result.returncode != 0
    job = _job(head, job_id)
    assert (job["status"], job["driver_exit_code"]) == ("FAILED", 2)
    logs = result.stdout.splitlines()
    assert "qdistill: error: no node can host a rollout actor asking for CPU 1, gpu_box 1: the nodes offer CPU 4" in logs
    assert not out.exists()


@pytest.mark.parametrize("token", ["wrong", None], ids=["wrong-token", "no-token"])
def test_job_submission_needs_the_clusters_token(head, tmp_path, token):
    env = {**head.client_env(token=new_token() if token else None), "HOME": str(tmp_path)}
    job_id, result = _submit(head, env, "true")
    assert result.returncode == 1 and result.stdout == ""
    last = "Authentication failed: Forbidden: Invalid authentication token" if token else \
        "Authentication required: Unauthorized: Missing authentication token"
    assert f"ray.exceptions.AuthenticationError: {last}\n" in result.stderr
    assert head.token not in result.stderr
    assert _job(head, job_id) is None  # nothing was submitted


@pytest.mark.parametrize("grace", [None, 60], ids=["ray-default-grace", "grace-60s"])
def test_ray_job_stop_writes_what_a_resume_needs_first(head, steady_teacher, tmp_path, grace):
    """`ray job stop` sends the job's entrypoint SIGTERM and kills it RAY_JOB_STOP_WAIT_TIME_S later
    (3 s unless the job's runtime env says otherwise): the run writes its state and last
    checkpoints first, then evaluates and reports; with a grace period it does it all."""
    out = tmp_path / "run"
    runtime_env = ["--runtime-env-json", json.dumps({"env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": str(grace)}})] if grace else []
    env = {**head.client_env(), "HOME": str(tmp_path)}
    job_id = f"qd-{secrets.token_hex(4)}"
    subprocess.run([RAY, "job", "submit", "--address", head.dashboard_url, "--submission-id", job_id, "--no-wait",
                    *runtime_env, "--", "qdistill", "run", "--env", "CartPole-v1", "--teacher", steady_teacher,
                    "--steps", "100000000", "--no-target", "--actors", "1", "--out", str(out), "--quiet"],
                   check=True, env=env, capture_output=True, timeout=60)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not learning(out):
        assert time.monotonic() < deadline and _job(head, job_id)["status"] in ("PENDING", "RUNNING"), _job(head, job_id)
        time.sleep(0.2)
    asked = time.time()
    subprocess.run([RAY, "job", "stop", "--address", head.dashboard_url, job_id], check=True, env=env,
                   capture_output=True, timeout=120)  # waits until the job is stopped
    took = time.time() - asked
    job = _job(head, job_id)
    assert job["status"] == "STOPPED"
    written = {p.name: round(p.stat().st_mtime - asked, 2) for p in [*(out / "checkpoints").iterdir(), out / "summary.json",
                                                                      out / "report.md"] if p.exists() and p.stat().st_mtime > asked}
    print(f"\nray job stop ({grace or 3} s grace): stopped after {took:.1f} s; written after the stop (s): {written}")
    assert {"state.pt", "student-16x16-last.pt"} <= set(written)
    if grace:  # all of it, and the run exited 0 on its own before the grace period was up
        assert {"summary.json", "report.md", "student-16x16-best.pt"} <= set(written)
        assert json.loads((out / "summary.json").read_text())["stop_reason"] == "stopped"
        logs = _logs(head, job_id)  # the command printed its summary: it ended on its own, not killed
        assert "stopping (SIGTERM): writing final checkpoints" in logs and "stopped        stopped after " in logs
    state = torch.load(out / "checkpoints" / "state.pt", weights_only=True)["state"]
    assert state["learner"]["steps"] > 0
