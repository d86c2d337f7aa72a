"""Run directories written before the checkpoint names were made one scheme keep working: their
teacher_best.pt and teacher_last.pt are read (and, resumed, written) where the new names are missing."""

from __future__ import annotations

import json

import pytest

from qdistill.cluster.cli import main
from qdistill.cluster.rundir import RunPaths


def test_the_old_teacher_names_are_read_where_the_new_ones_are_missing(tmp_path):
    paths = RunPaths(tmp_path)
    paths.checkpoints.mkdir()
    assert paths.teacher_checkpoint("best") == tmp_path / "checkpoints" / "teacher-best.pt"
    (paths.checkpoints / "teacher_best.pt").write_bytes(b"")
    assert paths.teacher_checkpoint("best") == tmp_path / "checkpoints" / "teacher_best.pt"
    assert paths.teacher_checkpoint("last") == tmp_path / "checkpoints" / "teacher-last.pt"
    (paths.checkpoints / "teacher-best.pt").write_bytes(b"")  # both there: the new name wins
    assert paths.teacher_checkpoint("best") == tmp_path / "checkpoints" / "teacher-best.pt"


@pytest.mark.slow
def test_an_old_teacher_run_directory_evaluates_and_resumes(ray_session, tmp_path, capsys):
    out = tmp_path / "teacher"
    assert main(["train-teacher", "--env", "CartPole-v1", "--steps", "3000", "--no-target", "--out", str(out),
                 "--quiet", "--seed", "0"]) == 0
    ckpts = out / "checkpoints"
    for which in ("best", "last"):  # as a run directory of before looks
        (ckpts / f"teacher-{which}.pt").rename(ckpts / f"teacher_{which}.pt")
    capsys.readouterr()
    assert main(["eval", str(ckpts / "teacher_best.pt"), "--episodes", "2"]) == 0
    assert capsys.readouterr().out.startswith("CartPole-v1  256x256  greedy return ")
    assert main(["train-teacher", "--resume", str(out), "--steps", "6000", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] >= 6000
    assert summary["teacher"]["checkpoint"] == str(ckpts / "teacher_best.pt")
    assert summary["teacher"]["last_checkpoint"] == str(ckpts / "teacher_last.pt")
    assert sorted(p.name for p in ckpts.iterdir()) == ["state.pt", "teacher_best.pt", "teacher_last.pt"]
