"""Several nodes on one machine (ray.cluster_utils.Cluster), in a process of their own."""

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def _run(teacher: str, tmp_path: Path, *extra: str) -> dict:
    tmp_path.mkdir()
    result = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, str(HERE / "multinode_run.py"), teacher, str(tmp_path / "run"),
                           str(result), *extra], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(result.read_text())


def test_actors_spread_over_nodes_and_come_back_after_a_node_dies(steady_teacher, tmp_path):
    undisturbed = _run(steady_teacher, tmp_path / "undisturbed")["summary"]
    out = _run(steady_teacher, tmp_path / "killed", "--kill-after", "300")
    summary, workers, killed = out["summary"], out["workers"], out["killed"]
    start = summary["actors"]["actors_per_node_at_start"]
    end = summary["actors"]["actors_per_node_at_end"]
    node = {w[:8]: w for w in workers}
    # SPREAD: two actors on each worker node, none on the head (it has no "rollout" resource)
    assert sorted((key.split("/")[1], n) for key, n in start.items()) == sorted((w[:8], 2) for w in workers)
    # the killed node's actors were restarted on the survivor: all four end there
    survivor = next(w for w in workers if w != killed)
    assert {key.split("/")[1]: n for key, n in end.items()} == {survivor[:8]: 4}
    assert node[killed[:8]] == killed
    assert summary["actors"]["actor_failures"] >= 1  # the collects lost with the node, counted
    assert summary["env_steps"] >= 150_000 and summary["stop_reason"] == "steps"
    # as good as the undisturbed run's student: greedy return on the same held-out episodes, within 5%
    student, calm = summary["students"]["16x16"], undisturbed["students"]["16x16"]
    assert undisturbed["actors"]["actor_failures"] == 0 and undisturbed["env_steps"] >= 150_000
    assert student["eval_return_mean"] >= 0.95 * calm["eval_return_mean"], (student, calm)
