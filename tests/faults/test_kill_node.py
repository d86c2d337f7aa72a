"""A worker node dies mid-run (ray.cluster_utils.Cluster: a head and two worker nodes, in a process
of its own) at a random learner step: its two rollout actors come back on the other worker, what
was lost with them is reported, and the student ends within 5% of an undisturbed run's return.
"""

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import multinode_run  # run as a script, in a process of its own

pytestmark = pytest.mark.slow  # fault injection: a multi-node cluster loses a node mid-run

STEPS = 150_000  # env steps a run: long enough after the kill for both restarted actors to be up at the end
SEED = 7
# the learner step after which the node dies: past the first few hundred (the run is learning), and
# within the first 40% of the run (its actors have most of the run to come back in)
KILL_AFTER = (300, 2_400)


def _run(teacher: str, tmp_path: Path, *extra: str) -> dict:
    tmp_path.mkdir()
    result = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, multinode_run.__file__, teacher, str(tmp_path / "run"),
                           str(result), "--steps", str(STEPS), *extra], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(result.read_text())


def test_actors_spread_over_nodes_and_come_back_after_a_node_dies(steady_teacher, tmp_path):
    kill_after = random.Random(SEED).randint(*KILL_AFTER)
    print(f"seed {SEED}: the worker node dies once the learner has logged {kill_after} steps")
    undisturbed = _run(steady_teacher, tmp_path / "undisturbed")["summary"]
    out = _run(steady_teacher, tmp_path / "killed", "--kill-after", str(kill_after))
    summary, workers, killed = out["summary"], out["workers"], out["killed"]
    config = json.loads((tmp_path / "killed" / "run" / "config.json").read_text())
    call = config["steps_per_call"] * config["envs_per_actor"]  # the most rows one collect hands over
    print(f"killed at learner step {out['killed_at_learner_steps']} of {summary['learner_steps']}; "
          f"actors {summary['actors']}; buffer {summary['buffer']}; undisturbed buffer {undisturbed['buffer']}")
    assert killed is not None and out["killed_at_learner_steps"] >= kill_after  # the kill happened, mid-run
    assert summary["learner_steps"] > out["killed_at_learner_steps"]
    start = summary["actors"]["actors_per_node_at_start"]
    end = summary["actors"]["actors_per_node_at_end"]
    node = {w[:8]: w for w in workers}
    # SPREAD: two actors on each worker node, none on the head (it has no "rollout" resource)
    assert sorted((key.split("/")[1], n) for key, n in start.items()) == sorted((w[:8], 2) for w in workers)
    # the killed node's actors were restarted on the survivor, once each: all four end there
    survivor = next(w for w in workers if w != killed)
    assert {key.split("/")[1]: n for key, n in end.items()} == {survivor[:8]: 4}
    assert node[killed[:8]] == killed
    assert summary["actors"]["actor_restarts"] == 2
    # the collects lost with the node, counted: at most the one each of its two actors had in
    # flight; none is asked of an actor until Ray has it up again
    failures = summary["actors"]["actor_failures"]
    assert 1 <= failures <= 2, summary["actors"]
    # rows: the actors reported them but the buffer does not have them — at most the add each of
    # the node's two actors had on its way when it died; fewer than none when failed collects ran
    # and handed their rows over (at most one call's rows each)
    assert -failures * call <= summary["buffer"]["lost"] <= 2 * call, (kill_after, summary["buffer"], failures)
    assert summary["env_steps"] >= STEPS and summary["stop_reason"] == "steps"
    # as good as the undisturbed run's student: greedy return on the same held-out episodes, within 5%
    student, calm = summary["students"]["16x16"], undisturbed["students"]["16x16"]
    assert undisturbed["actors"]["actor_failures"] == 0 and undisturbed["env_steps"] >= STEPS
    assert undisturbed["buffer"] == {"inserted": undisturbed["env_steps"], "lost": 0, "rejected": 0, "bytes_per_row": 61}
    assert student["eval_return_mean"] >= 0.95 * calm["eval_return_mean"], (kill_after, student, calm)
