"""`qdistill shrink` end to end: five candidates distilled side by side from a steady CartPole
teacher, halved at 1/8, 1/4 and 1/2 of the budget down to one, which the final held-out
evaluation judges against the threshold, the largest candidate left acting (mixed behaviour); and a
search over two tasks."""

import json

import numpy as np
import pytest

from qdistill.cluster.cli import main
from qdistill.learners import checkpoint
from tests.support.teachers import untrained_teachers

pytestmark = pytest.mark.slow  # a whole run

CANDIDATES = ["4", "8", "16", "32", "64"]
STEPS = 72_000  # the last rung (at half) leaves the run seconds of evaluations after it, where the largest left acts


def test_shrink_halves_the_candidates_and_judges_the_last(ray_session, steady_teacher, tmp_path, capsys):
    out = tmp_path / "search"
    assert main(["shrink", "--env", "CartPole-v1", "--teacher", steady_teacher, "--candidates", ",".join(CANDIDATES),
                 "--keep", "0.9", "--steps", str(STEPS), "--no-target", "--behaviour", "mixed", "--out", str(out),
                 "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    search = summary["search"]
    assert (search["keep"], search["threshold_pct"]) == (0.9, 90.0)
    assert list(search["candidates"]) == CANDIDATES  # smallest first

    # three rungs: 5 -> 3 -> 2 -> 1, each after its share of the budget
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = [r for r in records if r.get("event") == "candidates_dropped"]
    assert [len(e["dropped"]) for e in events] == [2, 1, 1]
    assert [len(e["candidates"]) for e in events] == [3, 2, 1]
    assert all(e["env_steps"] >= share * STEPS for e, share in zip(events, (0.125, 0.25, 0.5)))
    (left,) = events[-1]["candidates"]
    assert [n for n, c in search["candidates"].items() if c["status"] == "final"] == [left]
    assert list(summary["students"]) == [left]
    # the largest candidate still in the search acts: "64" until the first rung, then the largest left
    acting, seen = CANDIDATES[-1], set()
    for record in records:
        if record.get("event") == "candidates_dropped":
            acting = record["candidates"][-1]
        elif "rollout/acting" in record:
            assert record["rollout/acting"] == acting
            seen.add(acting)
    assert left in seen
    for event in events:  # a dropped candidate trains and plays no more
        after = [r for r in records if r is not event and records.index(r) > records.index(event)]
        for name in event["dropped"]:
            row = search["candidates"][name]
            assert row["status"] == "dropped" and row["dropped_at_env_steps"] == event["env_steps"]
            assert not any(f"learner/distill_loss/{name}" in r or f"eval/return/{name}" in r for r in after)

    # the winner: the one left, if its whole interval of % of teacher clears 90%
    final = search["candidates"][left]
    assert final["pct_of_teacher"] == summary["students"][left]["pct_of_teacher"]
    assert final["pct_of_teacher_ci"] == summary["students"][left]["pct_of_teacher_ci"]
    assert search["winner"] == (left if final["pct_of_teacher_ci"][0] >= 90.0 else None)
    if search["winner"]:
        assert checkpoint.load(search["winner_checkpoint"]).net == left
    assert "## Size search" in (out / "report.md").read_text() and (out / "search.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "size search, keeping 90% of the teacher's return:" in printed
    assert ("smallest that keeps it" in printed)


def test_shrink_input_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "search"
    assert main(["shrink", "--env", "CartPole-v1", "--students", "8", "--out", str(out)]) == 2
    assert capsys.readouterr().err == \
        "qdistill: error: shrink distils candidates, not students: give them with --candidates A,B,…\n"
    assert main(["shrink", "--env", "CartPole-v1", "--candidates", "8", "--out", str(out)]) == 2
    assert capsys.readouterr().err == \
        "qdistill: error: a size search needs two candidates or more, not ['8']: give --candidates A,B,…\n"
    assert main(["shrink", "--env", "CartPole-v1", "--candidates", "8,16", "--keep", "2", "--out", str(out)]) == 2
    assert capsys.readouterr().err == ("qdistill: error: keep 2.0 is not valid: expected the share of the teacher's "
                                       "return the student must keep, a number in (0, 1.5] (e.g. 0.95)\n")
    assert not out.exists()


def test_a_multi_task_search_ranks_by_every_task_and_keeps_one(ray_session, tmp_path, capsys):
    """Three multi-task candidates over CartPole and Acrobot: halved 3 -> 2 -> 1; each row holds
    its figures per task, and the winner must clear the threshold on every task."""
    tasks = {"CartPole-v1": ((4,), 2), "Acrobot-v1": ((6,), 3)}
    (tmp_path / "teachers").mkdir()
    teachers = untrained_teachers(tmp_path / "teachers", tasks, seed=1)
    out = tmp_path / "search"
    args = ["shrink", "--candidates", "4x4,8x8,16x16", "--keep", "0.9", "--steps", "6000", "--no-target", "--eval-ci", "200",
            "--out", str(out), "--quiet"]
    for env, path in teachers.items():
        args += ["--env", env, "--teacher", f"{env}={path}"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    search = summary["search"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = [r for r in records if r.get("event") == "candidates_dropped"]
    assert [len(e["dropped"]) for e in events] == [1, 1, 0] and [len(e["candidates"]) for e in events] == [2, 1, 1]
    (left,) = events[-1]["candidates"]
    assert list(summary["students"]) == [left] and list(search["candidates"]) == ["4x4", "8x8", "16x16"]
    for name, row in search["candidates"].items():
        assert list(row["per_task"]) == list(tasks)
        pcts = [row["per_task"][env]["pct_of_teacher"] for env in tasks]
        assert row["geomean_pct_of_teacher"] == pytest.approx(float(np.sqrt(pcts[0] * pcts[1])))
        assert row["status"] == ("final" if name == left else "dropped")
    row = search["candidates"][left]
    for env in tasks:  # the final figures are the run's own per-task ones
        assert row["per_task"][env]["pct_of_teacher_ci"] == summary["per_task"][env]["students"][left]["pct_of_teacher_ci"]
    clears = min(row["per_task"][env]["pct_of_teacher_ci"][0] for env in tasks) >= 90.0
    assert search["winner"] == (left if clears else None)
    assert "## Size search" in (out / "report.md").read_text() and (out / "search.png").stat().st_size > 0
    assert "keeping 90% of every task's teacher's return:" in capsys.readouterr().out
