"""kill -9 of the evaluator at a random moment of a run: Ray restarts it, the run carries on
evaluating (the restarted evaluator gets the newest teacher again), and the student ends as good as
an undisturbed run's."""

import json
import os
import random
import signal
import threading
import time

from ray._private import state

from qdistill.cluster.cli import main


def _evaluations(out):
    metrics = out / "metrics.jsonl"
    if not metrics.exists():
        return []
    return [r for r in map(json.loads, metrics.read_text().splitlines()) if "eval/return/teacher" in r]


def _kill_the_evaluator(out, delay: float, killed: dict) -> None:
    """After the run's first evaluation and `delay` seconds more, SIGKILL its evaluator process."""
    deadline = time.monotonic() + 120
    while not _evaluations(out) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(delay)
    alive = [a for a in state.actors().values() if a["ActorClassName"] == "EvaluatorActor" and a["State"] == "ALIVE"]
    assert len(alive) == 1, alive
    killed["evaluations_before"] = len(_evaluations(out))
    os.kill(alive[0]["Pid"], signal.SIGKILL)


def _run(teacher: str, out) -> dict:
    assert main(["run", "--env", "CartPole-v1", "--teacher", teacher, "--time", "12", "--no-target",
                 "--seed", "5", "--out", str(out), "--quiet"]) == 0
    return json.loads((out / "summary.json").read_text())


def test_a_killed_evaluator_is_restarted_and_the_run_carries_on(small_teacher, tmp_path):
    teacher = small_teacher[1]["teacher"]["checkpoint"]
    undisturbed = _run(teacher, tmp_path / "undisturbed")
    out, killed = tmp_path / "killed", {}
    killer = threading.Thread(target=_kill_the_evaluator, args=(out, random.Random(5).uniform(0, 2), killed))
    killer.start()
    summary = _run(teacher, out)
    killer.join()
    assert summary["evaluator"]["restarts"] == 1 and undisturbed["evaluator"] == {"restarts": 0, "evaluations_lost": 0}
    assert summary["evaluator"]["evaluations_lost"] <= 1  # the one in flight when it died, if any
    assert len(_evaluations(out)) >= killed["evaluations_before"] + 2  # it went on evaluating
    ret, ref = summary["students"]["16x16"]["eval_return_mean"], undisturbed["students"]["16x16"]["eval_return_mean"]
    assert ret >= 0.95 * ref, (ret, ref)
