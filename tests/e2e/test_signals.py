"""SIGTERM and SIGINT (also with SIGINT inherited as ignored) stop a run as Ctrl-C does, at five
moments: Ray starting, teacher training, distillation, the final evaluation, writing the report.
Each ends with exit 0, complete checkpoints, state and summary, and `--resume` carries on from them:
each moment's command is the resume of the one before. Every kind of signal stops a teacher run
while Ray starts and a distillation while it learns; the later moments are stopped by a
scheduler's SIGTERM alone (the kinds differ in how the handler comes to be installed, which the
first moments check; what a stop does from then on is the same).

How long each stop takes is measured by benchmarks/stop_latency.py (a figure, not an assertion)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.support.stopping import Cli, final_evaluation, learning, newer, ray_starting

pytestmark = pytest.mark.slow  # real runs in processes of their own, each with its own Ray runtime

KINDS = [("SIGTERM", "default"), ("SIGINT", "default"), ("SIGINT", "ignored")]
BUDGET = ["--steps", "100000000", "--no-target", "--quiet", "--actors", "1"]


def _stopped(cli: Cli, signal: str) -> None:
    ended = cli.finish()
    assert ended.returncode == 0, ended.stderr[-4000:]
    assert "Traceback" not in ended.stderr and "SIGTERM received" not in ended.stderr, ended.stderr[-4000:]
    again = "Ctrl-C" if signal == "SIGINT" else signal
    assert f"stopping ({signal}): writing final checkpoints ({again} again to stop waiting)" in ended.stderr
    assert ended.leftovers == []


def _state(out: Path) -> dict:
    return torch.load(out / "checkpoints" / "state.pt", weights_only=True)["state"]


@pytest.mark.parametrize("signal,sigint", KINDS, ids=[f"{s}-{d}" for s, d in KINDS])
def test_a_teacher_run_stops_while_ray_starts_and_while_it_trains(signal, sigint, tmp_path):
    out = tmp_path / "teacher"
    cli = Cli(["train-teacher", "--env", "CartPole-v1", *BUDGET, "--out", str(out)], sigint=sigint)
    cli.wait_for(lambda: ray_starting(cli.proc.pid))
    cli.signal(signal)
    _stopped(cli, signal)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["stop_reason"], summary["learner_steps"]) == ("stopped", 0)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["state.pt", "teacher-best.pt", "teacher-last.pt"]
    if signal != "SIGTERM":
        return  # the later moment: once, with SIGTERM (module docstring)

    cli = Cli(["train-teacher", "--resume", str(out), "--quiet"], sigint=sigint)
    cli.wait_for(lambda: learning(out))
    cli.signal(signal)
    _stopped(cli, signal)
    summary = json.loads((out / "summary.json").read_text())
    state = _state(out)
    assert summary["stop_reason"] == "stopped" and summary["learner_steps"] > 0
    assert (state["env_steps"], state["learner"]["steps"]) == (summary["env_steps"], summary["learner_steps"])


@pytest.mark.parametrize("signal,sigint", KINDS, ids=[f"{s}-{d}" for s, d in KINDS])
def test_a_distillation_stops_while_it_learns_evaluates_and_reports(signal, sigint, steady_teacher, tmp_path):
    out = tmp_path / "run"
    cli = Cli(["run", "--env", "CartPole-v1", "--teacher", steady_teacher, *BUDGET, "--out", str(out)], sigint=sigint)
    cli.wait_for(lambda: learning(out))
    cli.signal(signal)
    _stopped(cli, signal)
    first = json.loads((out / "summary.json").read_text())
    assert first["stop_reason"] == "stopped" and first["learner_steps"] > 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "state.pt", "student-16x16-best.pt", "student-16x16-last.pt", "teacher.pt"]
    assert _state(out)["env_steps"] == first["env_steps"]
    if signal != "SIGTERM":
        return  # the later moments: once, with SIGTERM (module docstring)

    # resumed with a budget it soon spends: stopped while its final evaluation runs …
    cli = Cli(["run", "--resume", str(out), "--steps", str(first["env_steps"] + 2000), "--quiet"], sigint=sigint)
    cli.wait_for(lambda: final_evaluation(out, cli.started))
    cli.signal(signal)
    _stopped(cli, signal)
    second = json.loads((out / "summary.json").read_text())
    assert newer(out / "summary.json", cli.signalled_wall) and second["stop_reason"] == "steps"
    assert second["env_steps"] >= first["env_steps"] + 2000 and second["learner_steps"] > first["learner_steps"]

    # … and while it writes its report (the summary is there, the report not yet)
    cli = Cli(["run", "--resume", str(out), "--steps", str(second["env_steps"] + 2000), "--quiet"], sigint=sigint)
    cli.wait_for(lambda: newer(out / "summary.json", cli.started))
    cli.signal(signal)
    _stopped(cli, signal)
    third = json.loads((out / "summary.json").read_text())
    assert third["stop_reason"] == "steps" and third["env_steps"] >= second["env_steps"] + 2000
    assert newer(out / "report.md", cli.signalled_wall) and "stopped by steps" in (out / "report.md").read_text()
