"""train-teacher end to end on a real local Ray runtime, with a small budget."""

import json

import numpy as np
import pytest

from qdistill.actors.evaluate import evaluate
from qdistill.cluster.cli import main
from qdistill.cluster.driver.teacher import FINAL_SEED
from qdistill.learners import checkpoint

pytestmark = pytest.mark.slow  # trains a teacher end to end


def test_train_teacher_small_budget(small_teacher, capsys):
    out, summary = small_teacher
    assert summary["env"] == "CartPole-v1" and summary["stop_reason"] == "steps"
    assert summary["env_steps"] >= 10_000
    # the learner stepped, and every publish_every (32) learner steps made a new weights version
    assert summary["learner_steps"] > 1_500
    assert summary["weights_version"] == summary["learner_steps"] // 32
    teacher = summary["teacher"]
    assert teacher["params"] == 67_586 and teacher["eval_episodes"] == 20
    assert set(summary) >= {"env", "wall_s", "env_steps"}
    # where the run loop's time went: every phase ran, and together they fit in the run's wall time
    assert set(summary["loop_s"]) == {"launch", "wait", "take", "learn", "evaluate", "record"}
    assert 0 < sum(summary["loop_s"].values()) <= summary["wall_s"]
    assert set(teacher) >= {"params", "eval_return_mean", "eval_return_std", "eval_episodes", "checkpoint"}

    # the rollout actors acted with versions the learner published after the start
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r.get("rollout/weights_version", -1) for r in records) > 0
    assert any("eval/return/teacher" in r for r in records)

    # the teacher beats a random policy on the same held-out seeds
    rng = np.random.default_rng(0)
    random = evaluate("CartPole-v1", lambda obs: rng.integers(0, 2, len(obs)), episodes=20, seed=FINAL_SEED)
    assert teacher["eval_return_mean"] > 3 * random.mean

    best = checkpoint.load(teacher["checkpoint"], env_id="CartPole-v1", net="256x256", obs_shape=(4,), n_actions=2)
    assert 0 < best.version <= summary["weights_version"]
    assert checkpoint.load(teacher["last_checkpoint"]).version == summary["weights_version"]
    assert json.loads((out / "config.json").read_text())["env"] == "CartPole-v1"
    # the eval command reads the checkpoint back
    assert main(["eval", teacher["checkpoint"], "--episodes", "3"]) == 0
    assert "CartPole-v1  256x256  greedy return" in capsys.readouterr().out


def test_normalize_obs_from_teacher_training_to_its_students(ray_session, tmp_path):
    """--normalize-obs: the teacher's learner merges every minibatch it trains on into the
    statistics (learner steps x batch rows, checkpoint included); the run distilling it gives its
    students exactly those statistics, and they keep them."""
    teacher_dir, run_dir = tmp_path / "teacher", tmp_path / "run"
    assert main(["train-teacher", "--env", "Acrobot-v1", "--normalize-obs", "--steps", "4000", "--no-target",
                 "--net", "64", "--batch-size", "32", "--out", str(teacher_dir), "--quiet"]) == 0
    summary = json.loads((teacher_dir / "summary.json").read_text())
    last = checkpoint.load(summary["teacher"]["last_checkpoint"])
    assert last.net == "norm-64" and summary["teacher"]["net"] == "norm-64"
    assert last.weights["layers.1.count"] == summary["learner_steps"] * 32 > 0
    assert np.all(last.weights["layers.1.var"] > 0) and not np.allclose(last.weights["layers.1.var"], 1.0)
    best = summary["teacher"]["checkpoint"]

    assert main(["run", "--env", "Acrobot-v1", "--teacher", best, "--students", "8", "--steps", "3000",
                 "--no-target", "--out", str(run_dir), "--quiet"]) == 0
    run = json.loads((run_dir / "summary.json").read_text())
    assert list(run["students"]) == ["norm-8"]
    teacher = checkpoint.load(best)
    for path in (run["students"]["norm-8"]["checkpoint"], run["students"]["norm-8"]["last_checkpoint"]):
        student = checkpoint.load(path)
        for stat in ("mean", "var", "count"):
            assert np.array_equal(student.weights[f"layers.1.{stat}"], teacher.weights[f"layers.1.{stat}"])
