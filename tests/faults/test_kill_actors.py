"""kill -9 of one of a run's actors at a random moment: Ray restarts it, the run carries on, what was
lost is reported, and the student ends within 5% of an undisturbed run's return.

- EvaluatorActor: the restarted evaluator gets the newest teacher again; an evaluation in flight is
  lost and counted.
- RolloutActor: the restarted actor collects again; a collect in flight is lost and counted.
"""

import json
import os
import random
import signal
import threading
import time

import pytest
from ray._private import state

from qdistill.cluster.cli import main


def _evaluations(out):
    metrics = out / "metrics.jsonl"
    if not metrics.exists():
        return []
    return [r for r in map(json.loads, metrics.read_text().splitlines()) if "eval/return/teacher" in r]


def _kill(actor_class: str, out, delay: float, killed: dict) -> None:
    """After the run's first evaluation and `delay` seconds more, SIGKILL one live `actor_class`."""
    deadline = time.monotonic() + 120
    while not _evaluations(out) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(delay)
    alive = [a for a in state.actors().values() if a["ActorClassName"] == actor_class and a["State"] == "ALIVE"]
    assert alive, f"no live {actor_class}"
    killed["evaluations_before"] = len(_evaluations(out))
    os.kill(alive[0]["Pid"], signal.SIGKILL)


def _run(teacher: str, out) -> dict:
    assert main(["run", "--env", "CartPole-v1", "--teacher", teacher, "--time", "12", "--no-target",
                 "--seed", "5", "--out", str(out), "--quiet"]) == 0
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def undisturbed(small_teacher, tmp_path_factory):
    teacher = small_teacher[1]["teacher"]["checkpoint"]
    return teacher, _run(teacher, tmp_path_factory.mktemp("undisturbed") / "run")


@pytest.mark.parametrize("actor_class", ["EvaluatorActor", "RolloutActor"])
def test_a_killed_actor_is_restarted_and_the_run_carries_on(undisturbed, tmp_path, actor_class):
    teacher, reference = undisturbed
    out, killed = tmp_path / "killed", {}
    killer = threading.Thread(target=_kill, args=(actor_class, out, random.Random(5).uniform(0, 2), killed))
    killer.start()
    summary = _run(teacher, out)
    killer.join()
    assert "evaluations_before" in killed  # the kill happened
    assert reference["evaluator"] == {"restarts": 0, "evaluations_lost": 0} and reference["actors"]["actor_restarts"] == 0
    if actor_class == "EvaluatorActor":
        assert summary["evaluator"]["restarts"] == 1 and summary["actors"]["actor_restarts"] == 0
        assert summary["evaluator"]["evaluations_lost"] <= 1  # the one in flight when it died, if any
    else:
        assert summary["actors"]["actor_restarts"] == 1 and summary["evaluator"]["restarts"] == 0
        # the collect in flight when it died, and one issued before Ray saw it die
        assert summary["actors"]["actor_failures"] <= 2
    assert len(_evaluations(out)) >= killed["evaluations_before"] + 2  # it went on evaluating
    ret, ref = summary["students"]["16x16"]["eval_return_mean"], reference["students"]["16x16"]["eval_return_mean"]
    assert ret >= 0.95 * ref, (ret, ref)
