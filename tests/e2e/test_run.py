"""`qdistill run` end to end on a real local Ray runtime, with a small budget."""

import json

import pytest

from qdistill.actors.wire import Schema
from qdistill.cluster.cli import main
from qdistill.learners import checkpoint
from tests.support.records import evaluated_agreements, read_records

pytestmark = pytest.mark.slow  # end-to-end runs on a real Ray runtime


def _within_the_rate_limit(out) -> int:
    """Every logged buffer count keeps the replay ratio within the rate limiter's tolerance (one
    shard); returns how many records were checked."""
    from qdistill.cluster.config import DistillRunConfig, config_from_dict

    limit = config_from_dict(DistillRunConfig, json.loads((out / "config.json").read_text()), source="").rate_limit
    checked = 0
    for r in read_records(out):
        if r.get("buffer/inserted", 0) >= limit.min_size_to_sample:
            diff = r["buffer/inserted"] * limit.samples_per_insert - r["buffer/sampled"]
            assert limit.offset - limit.tolerance <= diff <= limit.offset + limit.tolerance, (r, limit)
            checked += 1
    return checked


def test_online_run_distills_students(small_teacher, tmp_path, capsys):
    teacher_dir, teacher_summary = small_teacher
    out = tmp_path / "run"
    code = main(["run", "--env", "CartPole-v1", "--teacher", teacher_summary["teacher"]["checkpoint"],
                 "--students", "16x16,8", "--steps", "15000", "--no-target", "--out", str(out), "--quiet",
                 "--buffer-bytes", "512K"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    # the buffer kept as many transitions as 512 KiB hold (61 bytes each: a fixed teacher's rows carry no next
    # observation), no more
    assert Schema((4,), 2, next_obs=False).record_size == summary["buffer"]["bytes_per_row"] == 61
    sizes = [(r["buffer/size"], r["buffer/capacity"]) for r in read_records(out) if "buffer/size" in r]
    assert {c for _, c in sizes} == {512 * 1024 // 61} and max(n for n, _ in sizes) == 512 * 1024 // 61
    assert summary["dropped_nonfinite"] == 0
    assert _within_the_rate_limit(out) >= 1
    assert summary["mode"] == "online" and summary["stop_reason"] == "steps" and summary["env_steps"] >= 15_000
    assert summary["loss"] == "kl" and summary["behaviour"] == "teacher" and summary["refresh"] == "periodic"
    assert summary["distill_wall_s"] > 0 and summary["learner_steps"] > 500
    assert set(summary["students"]) == {"16x16", "8"}
    assert summary["students"]["16x16"]["params"] == 4 * 16 + 16 + 16 * 16 + 16 + 16 * 2 + 2
    for name, s in summary["students"].items():
        assert set(s) >= {"params", "eval_return_mean", "eval_return_std", "agreement", "checkpoint"}
        assert checkpoint.load(s["checkpoint"], env_id="CartPole-v1", net=name).version >= 1
        assert checkpoint.load(s["last_checkpoint"]).version >= 1
    assert summary["teacher"]["eval_return_mean"] > 0
    for name in ("report.md", "return.png", "config.json", "checkpoints/teacher.pt"):
        assert (out / name).is_file(), name
    assert (out / "return.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the students improved: the first evaluation saw a barely trained student, the last the last weights, on
    # the same episodes. (The summary reports each student's best evaluated version: with a teacher this weak
    # that may be the first evaluation's, so the summary's agreement is not compared.)
    agreements = evaluated_agreements(out, "16x16")
    assert len(agreements) >= 2 and agreements[-1] > max(0.7, agreements[0])
    assert 0 < summary["students"]["16x16"]["agreement"] <= 1
    staleness = [r["buffer/label_staleness"] for r in read_records(out) if "buffer/label_staleness" in r]
    assert staleness and max(staleness) == 0.0  # a fixed teacher: labels are always current
    assert "| student 16x16 " in (out / "report.md").read_text()

    # qdistill eval re-evaluates the run directory's checkpoints
    capsys.readouterr()
    assert main(["eval", str(out), "--episodes", "3"]) == 0
    table = capsys.readouterr().out
    assert "| teacher 256x256 " in table and "| student 16x16 " in table and "| student 8 " in table


def test_offline_baseline(small_teacher, tmp_path):
    _, teacher_summary = small_teacher
    out = tmp_path / "offline"
    code = main(["run", "--env", "CartPole-v1", "--teacher", teacher_summary["teacher"]["checkpoint"],
                 "--mode", "offline", "--samples", "4000", "--epochs", "3", "--out", str(out), "--quiet"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "offline" and summary["env_steps"] == 4_000
    assert summary["learner_steps"] == 3 * (4_000 // 256)
    assert summary["labels"] == {"labelled": 4_000}
    assert (out / "report.md").is_file() and (out / "checkpoints" / "student-16x16-best.pt").is_file()


def test_online_run_with_the_redis_buffer(small_teacher, redis_server, redis_prefix, tmp_path):
    _, teacher_summary = small_teacher
    out = tmp_path / "redis-run"
    code = main(["run", "--env", "CartPole-v1", "--teacher", teacher_summary["teacher"]["checkpoint"],
                 "--buffer", redis_server.url, "--buffer-prefix", redis_prefix, "--steps", "12000", "--no-target",
                 "--out", str(out), "--quiet"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] >= 12_000 and summary["learner_steps"] > 500
    assert evaluated_agreements(out, "16x16")[-1] > 0.7
    assert json.loads((out / "config.json").read_text())["buffer"] == redis_server.url
    # the transitions live in Redis under the run's prefix, and outlive the run
    from qdistill.actors.redis_buffer import RedisBuffer, RedisSpec
    from qdistill.actors.wire import Schema

    buffer = RedisBuffer(RedisSpec(redis_server.url, redis_prefix, 100_000, 256, Schema((4,), 2, next_obs=False)))
    stats = buffer.stats()
    assert stats["buffer/inserted"] == summary["env_steps"]  # the actors flushed their last rows
    assert stats["buffer/sampled"] >= summary["learner_steps"] * 256


def test_the_rate_limiter_holds_fast_actors_to_a_slow_learner(small_teacher, tmp_path):
    """Four actors of 32 envs against a learner training a 256x256x256 student at replay ratio 0.25:
    unheld, the actors would run far ahead; the buffer holds their inserts to the ratio."""
    _, teacher_summary = small_teacher
    out = tmp_path / "run"
    assert main(["run", "--env", "CartPole-v1", "--teacher", teacher_summary["teacher"]["checkpoint"],
                 "--students", "256x256x256", "--replay-ratio", "0.25", "--actors", "4", "--actor-cpus", "0.5",
                 "--envs-per-actor", "32", "--steps", "20000", "--no-target", "--out", str(out), "--quiet"]) == 0
    assert _within_the_rate_limit(out) >= 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] >= 20_000 and summary["stop_reason"] == "steps"
