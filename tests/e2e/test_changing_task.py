"""A changing task in a run: at --change-at the dynamics change for the rollout actors and the
evaluator; best students and teacher are judged on the changed task; bad changes are refused."""

import json

import numpy as np
import pytest

from qdistill.actors.evaluate import evaluate
from qdistill.actors.evaluator import FINAL_OFFSET, HELDOUT_SEED
from qdistill.cluster.cli import main

NO_FORCE = {"force_mag": 0.0}  # every action does the same: all policies play the same episodes


def _no_force_return(seed: int, episodes: int = 20) -> float:
    return evaluate("CartPole-v1", lambda obs: np.zeros(len(obs), dtype=np.int64), episodes=episodes, seed=seed,
                    dynamics=NO_FORCE).mean


@pytest.mark.slow
def test_the_task_changes_at_its_step(ray_session, tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--env", "CartPole-v1", "--teacher-learns", "--steps", "9000", "--no-target",
                 "--change-at", "3000", "--change", "force_mag=0", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    change = summary["task_change"]
    # 2 actors of 8 envs x 32 steps: the change comes within one round of collects after step 3000
    assert change["at"] == 3000 and 3000 <= change["changed_at"] < 3000 + 2 * 256
    assert change["dynamics"] == NO_FORCE
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = [r for r in records if r.get("event") == "task_changed"]
    assert len(events) == 1 and events[0]["env_steps"] == change["changed_at"] and events[0]["dynamics"] == NO_FORCE
    evals = [r for r in records if "eval/return/teacher" in r]
    changed = [r for r in evals if r["eval/on_changed_task"]]
    assert changed and all(r["env_steps"] >= change["changed_at"] for r in changed)
    assert not any(r["eval/on_changed_task"] for r in evals if r["env_steps"] < change["changed_at"])
    # the evaluator plays the changed task: without force every policy's return is the same
    periodic = _no_force_return(HELDOUT_SEED)
    assert all(r["eval/return/teacher"] == r["eval/return/16x16"] == periodic for r in changed)
    final = _no_force_return(HELDOUT_SEED + FINAL_OFFSET)
    assert summary["teacher"]["eval_return_mean"] == summary["students"]["16x16"]["eval_return_mean"] == final
    config = json.loads((out / "config.json").read_text())
    assert config["change_at"] == 3000 and config["change"] == NO_FORCE
    assert (out / "return.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("flags, message", [
    (["--teacher-learns", "--change-at", "100"], "change_at needs a change: give --change NAME=VALUE, e.g. length=1.0"),
    (["--teacher-learns", "--change", "length=1"], "a change needs the step it happens at: give --change-at STEPS"),
    (["--teacher-learns", "--change-at", "0", "--change", "length=1"], "change_at 0 is not valid: expected an env step >= 1"),
    (["--teacher-learns", "--change-at", "100", "--change", "colour=1"],
     "dynamics parameter 'colour' is not known for CartPole-v1: expected one of force_mag, gravity, length, "
     "masscart, masspole, tau, theta_threshold_radians, x_threshold"),
    (["--change-at", "100", "--change", "length=1", "--mode", "offline"],
     "a changing task needs mode online: offline labels the states of one task once"),
])
def test_bad_changes_are_refused_before_anything_starts(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    assert main(["run", "--env", "CartPole-v1", *flags, "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"qdistill: error: {message}\n"
    assert not out.exists()


def test_a_change_that_is_not_name_equals_number_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--env", "CartPole-v1", "--change-at", "100", "--change", "length", "--out", str(tmp_path / "r")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == \
        "qdistill run: error: argument --change: 'length' is not NAME=VALUE with a number, e.g. length=1.0"
    assert not (tmp_path / "r").exists()
