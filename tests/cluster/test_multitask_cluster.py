"""A multi-task run on a ray.cluster_utils.Cluster of three nodes (a head and two workers, in a
process of its own): each task's rollout actors spread over both workers; through the Ray shards,
and through Redis as a size search (`shrink`) of two multi-task candidates."""

import json
import subprocess
import sys

import pytest

from tests.support import multinode_run  # run as a script, in a process of its own
from tests.support.teachers import untrained_teachers

pytestmark = pytest.mark.slow  # a three-node cluster, twice

TASKS = {"CartPole-v1": ((4,), 2), "Acrobot-v1": ((6,), 3)}


@pytest.mark.parametrize("backend", ["ray", "redis"])
def test_each_tasks_actors_spread_over_the_workers(tmp_path, backend, request):
    teachers = untrained_teachers(tmp_path, TASKS)
    run_args = [arg for env, path in teachers.items() for arg in ("--env", env, "--teacher", f"{env}={path}")]
    if backend == "redis":
        server, prefix = request.getfixturevalue("redis_server"), request.getfixturevalue("redis_prefix")
        run_args += ["--buffer", server.url, "--buffer-prefix", prefix, "--candidates", "8x8,16x16", "--eval-ci", "200"]
    command = "shrink" if backend == "redis" else "run"
    result = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, multinode_run.__file__, "-", str(tmp_path / "run"), str(result),
                           "--steps", "3000", "--run-args", json.dumps(run_args), "--command", command],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(result.read_text())
    summary, workers = out["summary"], sorted(w[:8] for w in out["workers"])
    assert summary["tasks"] == list(TASKS) and summary["actors"]["actor_failures"] == 0
    # 4 actors (rollout resource on the two workers only): one of each task on each worker
    per_task = summary["actors"]["per_task_at_end"]
    assert {env: sorted((key.split("/")[1], n) for key, n in nodes.items()) for env, nodes in per_task.items()} == \
        {env: [(w, 1) for w in workers] for env in TASKS}
    assert summary["buffer"]["inserted"] == summary["env_steps"] >= 3000 and summary["buffer"]["lost"] == 0
    taken = summary["buffer"]["taken_per_task"]
    assert taken["CartPole-v1"] == taken["Acrobot-v1"] > 0
    if command == "shrink":  # two candidates halved to one at the first rung; the one left judged on both tasks
        search = summary["search"]
        assert [c["status"] for c in search["candidates"].values()].count("final") == 1
        (left,) = summary["students"]
        assert search["candidates"][left]["status"] == "final" and list(search["candidates"][left]["per_task"]) == \
            list(TASKS)
