"""Run by tests/faults/test_kill_node.py in its own process (it needs its own Ray runtime): a head and two
worker nodes on ray.cluster_utils.Cluster, a distillation run with rollout actors spread over the
workers, and — with --kill-after N — one worker node removed once the learner has logged N steps
(metrics.jsonl, every 2 s: the learner step logged at the kill is recorded too).

    python tests/support/multinode_run.py TEACHER.pt OUT RESULT.json --steps ENV_STEPS [--kill-after LEARNER_STEPS]
        [--run-args JSON]

`--run-args`: the run's env and teacher flags as a JSON list, instead of CartPole-v1 and TEACHER.pt
(tests/cluster/test_multitask_cluster.py: a run of several tasks), and any further flags.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from qdistill.cluster.cli import main as qdistill


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("teacher")
    parser.add_argument("out")
    parser.add_argument("result")
    parser.add_argument("--steps", type=int, required=True, help="the run's budget of env steps")
    parser.add_argument("--kill-after", type=int, help="learner steps after which a worker node dies")
    parser.add_argument("--run-args", help="the run's env and teacher flags, as a JSON list")
    parser.add_argument("--command", default="run", choices=("run", "shrink"), help="the qdistill command to run")
    args = parser.parse_args()
    # a dead node is declared dead within ~2 s (the default takes tens of seconds)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "_system_config": {
        "health_check_period_ms": 500, "health_check_failure_threshold": 3}})
    try:
        workers = [cluster.add_node(num_cpus=4, resources={"rollout": 4}) for _ in range(2)]
        cluster.wait_for_nodes()
        ips = {w.node_id: w.node_ip_address for w in workers}
        killed = {}
        if args.kill_after is not None:
            def kill() -> None:  # once the run is learning, mid-run
                metrics = Path(args.out) / "metrics.jsonl"
                while True:
                    logged = [json.loads(line).get("learner/steps", 0)
                              for line in (metrics.read_text().splitlines() if metrics.exists() else [])]
                    if logged and max(logged) >= args.kill_after:
                        break
                    time.sleep(0.1)
                killed["learner_steps"] = max(logged)
                killed["node_id"] = workers[1].node_id
                cluster.remove_node(workers[1], allow_graceful=False)
            threading.Thread(target=kill, daemon=True).start()
        given = json.loads(args.run_args) if args.run_args else ["--env", "CartPole-v1", "--teacher", args.teacher]
        code = qdistill([args.command, *given, "--steps", str(args.steps),
                         "--no-target", "--actors", "4", "--actor-cpus", "1", "--actor-resources", '{"rollout": 1}',
                         "--envs-per-actor", "4", "--address", cluster.address, "--out", args.out, "--quiet"])
        if code != 0:
            raise SystemExit(code)
        summary = json.loads((Path(args.out) / "summary.json").read_text())
        # which nodes the actors ran on, by node id (all nodes of a local Cluster share one IP)
        json.dump({"summary": summary, "workers": list(ips), "killed": killed.get("node_id"),
                   "killed_at_learner_steps": killed.get("learner_steps")}, open(args.result, "w"))
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
