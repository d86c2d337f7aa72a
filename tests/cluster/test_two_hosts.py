"""Two real hosts: a Ray head and a worker node in two network namespaces joined by a veth pair (see
netns.py), token auth, and `qdistill run` driven from the head's namespace with one rollout actor
on each host. Needs root and iproute2."""

import json
import secrets
import subprocess

import pytest

from tests.support.records import evaluated_agreements
from tests.support.netns import VENV_BIN, ray_cluster, two_hosts
from qdistill.learners import checkpoint

pytestmark = pytest.mark.slow  # two Ray nodes in network namespaces and a run across them

# Run in the head's namespace: wait (with a deadline) until exactly the two nodes are alive, then run
# a task pinned to each, so both directions work (the worker joined the head's GCS; the head's
# driver reached the worker's raylet and a worker process there).
NODES = r"""
import json, sys, time
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

address, want, limit = sys.argv[1], set(sys.argv[2].split(",")), float(sys.argv[3])
deadline = time.monotonic() + limit
ray.init(address=address, logging_level="ERROR")
while True:
    nodes = {n["NodeManagerAddress"]: n for n in ray.nodes() if n["Alive"]}
    if set(nodes) == want:
        break
    if time.monotonic() > deadline:
        sys.exit(f"alive nodes {sorted(nodes)} after {limit} s, expected {sorted(want)}")
    time.sleep(0.1)

@ray.remote(num_cpus=0)
def where():
    return ray.util.get_node_ip_address()

pinned = {ip: where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
          for ip, n in nodes.items()}
print(json.dumps({ip: {"node_id": nodes[ip]["NodeID"], "resources": nodes[ip]["Resources"],
                       "task_ran_on": ray.get(ref, timeout=max(deadline - time.monotonic(), 5))}
                  for ip, ref in pinned.items()}))
"""

# connect, and say so
CONNECT = r"""
import sys
import ray
try:
    ray.init(address=sys.argv[1], logging_level="ERROR")
except ConnectionError as exc:
    sys.exit(f"refused: {exc}")
print("CONNECTED")
"""


def test_rollout_actors_run_on_two_hosts(small_teacher, tmp_path):
    _, teacher_summary = small_teacher
    python = str(VENV_BIN / "python")
    token = secrets.token_hex(32)
    with two_hosts() as (a, b), ray_cluster(a, b, tmp_path, token=token, resources={"rollout": 1}) as cluster:
        probe = subprocess.run(a.argv(python, "-c", NODES, cluster.address, f"{a.ip},{b.ip}", "30"),
                               check=False, env=cluster.env, capture_output=True, text=True, timeout=60)
        assert probe.returncode == 0, probe.stderr[-3000:]
        nodes = json.loads(probe.stdout.splitlines()[-1])
        assert set(nodes) == {a.ip, b.ip}
        for ip, node in nodes.items():
            assert node["task_ran_on"] == ip
            assert node["resources"]["rollout"] == 1 and node["resources"]["CPU"] == 2

        # the cluster wants the token: a client with another one is turned away (it gives up after
        # 2 s instead of the usual 20 s of retries)
        wrong = subprocess.run(a.argv(python, "-c", CONNECT, cluster.address), check=False,
                               env={**cluster.env, "RAY_AUTH_TOKEN": secrets.token_hex(32),
                                    "RAY_gcs_server_port_wait_time_s": "2"},
                               capture_output=True, text=True, timeout=60)
        assert wrong.returncode != 0 and "CONNECTED" not in wrong.stdout, wrong.stdout
        assert "InvalidAuthToken" in wrong.stderr, wrong.stderr[-2000:]

        out = tmp_path / "run"
        run = subprocess.run(a.argv(python, "-m", "qdistill.cluster.cli", "run", "--env", "CartPole-v1",
                                    "--teacher", teacher_summary["teacher"]["checkpoint"],
                                    "--address", cluster.address, "--actors", "2",
                                    "--actor-resources", '{"rollout": 1}', "--steps", "30000", "--no-target",
                                    "--out", out, "--quiet"),
                             check=False, env=cluster.env, capture_output=True, text=True, timeout=150)
        assert run.returncode == 0, f"{run.stdout[-2000:]}\n{run.stderr[-4000:]}"

    assert not cluster.killed, f"did not exit on SIGTERM: {cluster.killed}"
    summary = json.loads((out / "summary.json").read_text())
    # one rollout actor on each host, named "IP/node-id prefix"
    assert summary["actors"]["actors_per_node_at_start"] == {
        f"{ip}/{node['node_id'][:8]}": 1 for ip, node in nodes.items()}
    assert summary["actors"]["actor_failures"] == 0
    assert summary["stop_reason"] == "steps" and summary["env_steps"] >= 30_000
    assert summary["learner_steps"] > 0
    student = summary["students"]["16x16"]
    assert checkpoint.load(student["checkpoint"], env_id="CartPole-v1", net="16x16").version >= 1
    assert evaluated_agreements(out, "16x16")[-1] > 0.7
