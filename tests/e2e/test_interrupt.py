"""Ctrl-C on `qdistill run`: the run stops cleanly, with final checkpoints and no traceback."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow  # Ctrl-C on a real run in a process of its own


def test_ctrl_c_stops_the_run_with_final_checkpoints(small_teacher, tmp_path):
    out = tmp_path / "run"
    teacher = small_teacher[1]["teacher"]["checkpoint"]
    # a session of its own, so the SIGINT goes to its whole process group, as a terminal's Ctrl-C does
    proc = subprocess.Popen([sys.executable, "-m", "qdistill.cluster.cli", "run", "--env", "CartPole-v1",
                             "--teacher", teacher, "--steps", "100000000", "--no-target", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            # Ctrl-C as a terminal has it, even when this test runs as a background job
                            # (whose shell starts it with SIGINT ignored, which a child inherits)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        metrics = out / "metrics.jsonl"
        while not (metrics.exists() and any(json.loads(line).get("learner/steps", 0) > 0
                                            for line in metrics.read_text().splitlines())):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "slow"
            time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "stopping (SIGINT): writing final checkpoints (Ctrl-C again to stop waiting)" in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == "stopped" and summary["env_steps"] < 100_000_000
    assert "stopped        stopped after " in stdout
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "state.pt", "student-16x16-best.pt", "student-16x16-last.pt", "teacher.pt"]
