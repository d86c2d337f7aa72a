"""kill -9 of one of a run's actors at a random moment: Ray restarts it, the run carries on, what was
lost is reported, and the student ends within 5% of an undisturbed run's return.

- EvaluatorActor: the restarted evaluator gets the newest teacher again; an evaluation in flight is
  lost and counted.
- RolloutActor: the restarted actor collects again; a collect in flight is lost and counted.
- RunActor, the learner: restarted, it resumes from the run directory's last state (written every
  2 s here); the Ray buffer's contents and the learning since that state are lost, and the
  `resumed` event says where it carried on from.
- BufferShard: its contents are lost; the learner restarts itself and resumes as above.
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

pytestmark = pytest.mark.slow  # fault injection in whole runs


RESUMING = ("RunActor", "BufferShard")  # the run resumes from its last state when one of these is killed
# long enough that a kill after the first evaluation and saved state finds the run still going
STEPS = 60_000


def _evaluations(out):
    metrics = out / "metrics.jsonl"
    if not metrics.exists():
        return []
    return [r for r in map(json.loads, metrics.read_text().splitlines()) if "eval/return/teacher" in r]


def _kill(actor_class: str, out, delay: float, killed: dict) -> None:
    """After the run's first evaluation (and, for the learner, its first saved state) and `delay`
    seconds more, SIGKILL one live `actor_class`."""
    deadline = time.monotonic() + 120
    while not (_evaluations(out) and (actor_class not in RESUMING or (out / "checkpoints" / "state.pt").exists())) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(delay)
    alive = [a for a in state.actors().values() if a["ActorClassName"] == actor_class and a["State"] == "ALIVE"]
    assert alive, f"no live {actor_class}"
    pid = alive[0]["Pid"]
    if actor_class == "EvaluatorActor":  # just after an evaluation starts: idle, then busy
        deadline = time.monotonic() + 30
        while _busy(pid) and time.monotonic() < deadline:
            pass
        while not _busy(pid) and time.monotonic() < deadline:
            pass
    killed["evaluations_before"] = len(_evaluations(out))
    os.kill(pid, signal.SIGKILL)


def _busy(pid: int, window: float = 0.05) -> bool:
    """Whether process `pid` used at least 40% of a core over the next `window` seconds: an idle
    Ray actor waits on its socket, one running a task computes."""
    def cpu_s() -> float:
        fields = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    start = cpu_s()
    time.sleep(window)
    return cpu_s() - start >= 0.4 * window


def _run(teacher: str, out, *extra: str, budget: tuple[str, str] = ("--steps", str(STEPS))) -> dict:
    assert main(["run", "--env", "CartPole-v1", "--teacher", teacher, *budget, "--no-target",
                 "--seed", "5", "--out", str(out), "--quiet", *extra]) == 0
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def undisturbed(steady_teacher, tmp_path_factory):
    return steady_teacher, _run(steady_teacher, tmp_path_factory.mktemp("undisturbed") / "run")


# the budget of the killed run. The evaluator's: a time, as the run must outlast a kill up to 2 s
# after its first evaluation (which comes 5-15 s into the budget, Ray's start included), the
# restart (5-20 s: Ray reports the death, a new worker imports torch) and two more evaluations
# (every 2 s), however fast the learner gets through env steps.
# A rollout actor's: the undisturbed run's steps, so that both students learn from as many (the
# other actor collects while it restarts, and the evaluations go on).
KILLED_BUDGET = {"EvaluatorActor": ("--time", "45"), "RolloutActor": ("--steps", str(STEPS))}


@pytest.mark.parametrize("actor_class", ["EvaluatorActor", "RolloutActor"])
def test_a_killed_actor_is_restarted_and_the_run_carries_on(undisturbed, tmp_path, actor_class):
    teacher, reference = undisturbed
    out, killed = tmp_path / "killed", {}
    killer = threading.Thread(target=_kill, args=(actor_class, out, random.Random(5).uniform(0, 2), killed))
    killer.start()
    extra = ()
    if actor_class == "EvaluatorActor":  # 100 episodes an evaluation (20 by default): the kill, just
        # after one starts, finds it in flight
        (tmp_path / "eval.toml").write_text("eval_episodes = 100\n")
        extra = ("--config", str(tmp_path / "eval.toml"))
    summary = _run(teacher, out, *extra, budget=KILLED_BUDGET[actor_class])
    killer.join()
    assert "evaluations_before" in killed  # the kill happened
    assert reference["evaluator"] == {"restarts": 0, "evaluations_lost": 0} and reference["actors"]["actor_restarts"] == 0
    # one call lost per kill, the one in flight (a kill between evaluations loses none: a call sent
    # while Ray restarts the actor waits for it); none is sent again until Ray has the actor up
    if actor_class == "EvaluatorActor":
        assert summary["evaluator"] == {"restarts": 1, "evaluations_lost": 1} and summary["actors"]["actor_restarts"] == 0
    else:
        assert summary["actors"]["actor_restarts"] == 1 and summary["actors"]["actor_failures"] == 1
        assert summary["evaluator"] == {"restarts": 0, "evaluations_lost": 0}
    assert len(_evaluations(out)) >= killed["evaluations_before"] + 2  # it went on evaluating
    ret, ref = summary["students"]["16x16"]["eval_return_mean"], reference["students"]["16x16"]["eval_return_mean"]
    assert ret >= 0.95 * ref, (ret, ref)


@pytest.mark.parametrize("actor_class", RESUMING)
def test_a_killed_learner_or_buffer_shard_resumes_the_run_from_its_last_state(undisturbed, tmp_path, actor_class):
    teacher, reference = undisturbed
    out, killed = tmp_path / "killed", {}
    killer = threading.Thread(target=_kill, args=(actor_class, out, random.Random(6).uniform(0, 2), killed))
    killer.start()
    summary = _run(teacher, out, "--checkpoint-every", "2")
    killer.join()
    assert "evaluations_before" in killed
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    resumed = [i for i, r in enumerate(records) if r.get("event") == "resumed"]
    assert len(resumed) == 1
    at = records[resumed[0]]
    # it carried on from the saved state, not from nothing: nothing after it counts from below it
    assert at["env_steps"] > 0 and at["learner/steps"] > 0
    # what the Ray buffer held, as last logged before the kill, is reported lost
    assert at["buffer/lost"] == [r["buffer/size"] for r in records[:resumed[0]] if "buffer/size" in r][-1] > 0
    assert all(r["env_steps"] >= at["env_steps"] for r in records[resumed[0]:] if "env_steps" in r)
    assert summary["stop_reason"] == "steps" and summary["env_steps"] >= STEPS > at["env_steps"]
    ret, ref = summary["students"]["16x16"]["eval_return_mean"], reference["students"]["16x16"]["eval_return_mean"]
    assert ret >= 0.95 * ref, (ret, ref)
