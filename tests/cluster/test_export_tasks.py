"""`qdistill export` of a multi-task student: the whole network as one file (an input and an output
per task, every task verified through it) or one task's part alone (its trunk and head). The run
directory is made by hand, laid out as a multi-task run leaves it (cluster/rundir/multitask.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from qdistill.cluster import export as ex
from qdistill.learners import checkpoint
from qdistill.learners import export as formats
from qdistill.learners.multitask import MultiTaskQNetwork
from qdistill.learners.networks import QNetwork, to_numpy

TASKS = [("CartPole-v1", (4,), 2), ("Acrobot-v1", (6,), 3)]
NAME = "16x16"


def _multitask_run(path, inputs: str = "per-task"):
    """A run directory holding student 16x16 over CartPole and Acrobot: its whole network, each
    task's part and teacher, and a summary with each task's evaluation."""
    torch.manual_seed(0)
    net = MultiTaskQNetwork(NAME, [s for _, s, _ in TASKS], [a for _, _, a in TASKS], inputs=inputs)
    whole = checkpoint.MultiTaskCheckpoint(NAME, tuple(e for e, _, _ in TASKS), tuple(s for _, s, _ in TASKS),
                                           tuple(a for _, _, a in TASKS), inputs, 9, to_numpy(net.state_dict()))
    (path / "checkpoints").mkdir(parents=True)
    checkpoint.save_multitask(path / "checkpoints" / f"student-{NAME}-best.pt", whole)
    per_task = {}
    for env, shape, n in TASKS:
        folder = path / "checkpoints" / "tasks" / env
        folder.mkdir(parents=True)
        checkpoint.save(folder / f"student-{NAME}-best.pt", whole.task(env))
        teacher = QNetwork("8", shape, n)
        checkpoint.save(folder / "teacher.pt", checkpoint.Checkpoint("8", shape, n, env, 3,
                                                                     to_numpy(teacher.state_dict())))
        per_task[env] = {"students": {NAME: {"eval_return_mean": float(len(env))}}}
    (path / "summary.json").write_text(json.dumps({"students": {NAME: {}}, "per_task": per_task}))
    return path, net.eval()


def _request(run, fmt: str = "onnx", task: str | None = None, int8: bool = False, out=None) -> ex.Request:
    return ex.Request(run, None, fmt, int8, out, 0.99, 500, 2, task)


def _obs(shape: tuple[int, ...], n: int = 64) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, *shape)).astype(np.float32)


@pytest.mark.parametrize("inputs", ["per-task", "pad"])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_the_whole_network_is_one_file_verified_on_every_task(tmp_path, fmt, inputs):
    run, net = _multitask_run(tmp_path / "run", inputs)
    sidecar = ex.export(_request(run, fmt))
    name = f"student-{NAME}{formats.SUFFIX[fmt]}"
    assert sorted(p.name for p in (run / "export").iterdir()) == [name, f"{name}.json"]
    assert json.loads((run / "export" / f"{name}.json").read_text()) == sidecar
    assert (sidecar["file"], sidecar["int8"], sidecar["student"]) == \
        (name, False, {"net": NAME, "version": 9, "inputs": inputs, "params": sum(p.numel() for p in net.parameters())})
    assert [(t["env_id"], t["input"]["name"], t["output"]["name"], t["obs_shape"], t["n_actions"], t["evaluation"])
            for t in sidecar["tasks"]] == [("CartPole-v1", "obs_0", "q_0", [4], 2, {"eval_return_mean": 11.0}),
                                           ("Acrobot-v1", "obs_1", "q_1", [6], 3, {"eval_return_mean": 10.0})]
    assert [(env, v["agreement"], v["held_out_states"], v["episodes"]) for env, v in ex.verifications(sidecar)] == \
        [("CartPole-v1", 1.0, 500, 2), ("Acrobot-v1", 1.0, 500, 2)]
    assert [r["policy"] for r in sidecar["size_and_latency"]] == [
        "teacher (CartPole-v1)", f"student {NAME}, whole (CartPole-v1)",
        "teacher (Acrobot-v1)", f"student {NAME}, whole (Acrobot-v1)"]
    for t, (_, shape, _) in enumerate(TASKS):
        run_task = formats.task_runner(run / "export" / name, fmt, t, [s for _, s, _ in TASKS], np.float32)
        with torch.no_grad():
            np.testing.assert_allclose(run_task(_obs(shape)), net(torch.as_tensor(_obs(shape)), t).numpy(),
                                       rtol=1e-5, atol=1e-6)


def test_the_whole_onnx_file_holds_the_shared_trunk_once(tmp_path):
    import onnx

    run, net = _multitask_run(tmp_path / "run")
    ex.export(_request(run))
    graph = onnx.load(str(run / "export" / f"student-{NAME}.onnx")).graph
    assert sum(int(np.prod(i.dims)) for i in graph.initializer) == sum(p.numel() for p in net.parameters())


def test_one_task_exports_alone_as_an_ordinary_network(tmp_path):
    run, net = _multitask_run(tmp_path / "run")
    sidecar = ex.export(_request(run, "onnx", task="Acrobot-v1"))
    name = f"student-{NAME}-Acrobot-v1.onnx"
    assert sorted(p.name for p in (run / "export").iterdir()) == [name, f"{name}.json"]
    assert (sidecar["task"], sidecar["env_id"], sidecar["input"]["name"], sidecar["n_actions"]) == \
        ("Acrobot-v1", "Acrobot-v1", "obs", 3)
    assert sidecar["evaluation"] == {"eval_return_mean": 10.0} and sidecar["verification"]["agreement"] == 1.0
    assert [r["policy"] for r in sidecar["size_and_latency"]] == [
        "teacher (Acrobot-v1)", f"student {NAME} (Acrobot-v1)", f"student {NAME} int8 (Acrobot-v1)"]
    part = net.task_network(1)
    assert sidecar["size_and_latency"][1]["params"] == sum(p.numel() for p in part.parameters())
    with torch.no_grad():
        np.testing.assert_allclose(formats.runner(run / "export" / name, "onnx")(_obs((6,))),
                                   part(torch.as_tensor(_obs((6,)))).numpy(), rtol=1e-5, atol=1e-6)


def test_bad_task_exports_are_refused_and_nothing_is_written(tmp_path):
    run, _ = _multitask_run(tmp_path / "run")
    one_task = tmp_path / "single"
    (one_task / "checkpoints").mkdir(parents=True)
    checkpoint.save(one_task / "checkpoints" / f"student-{NAME}-best.pt",
                    checkpoint.load(run / "checkpoints" / "tasks" / "CartPole-v1" / f"student-{NAME}-best.pt"))
    cases = [
        (_request(run, task="LunarLander-v3"),
         f"--task 'LunarLander-v3' is not a task of run directory '{run}': expected one of CartPole-v1, Acrobot-v1"),
        (_request(run, int8=True), f"student {NAME} is a multi-task network: --int8 writes one task's part; add --task "
                                   "(one of CartPole-v1, Acrobot-v1), or export it whole without --int8"),
        (_request(one_task, task="CartPole-v1"), f"--task 'CartPole-v1': run directory '{one_task}' is a one-task run; "
                                                 "--task chooses a multi-task run's task: drop it"),
    ]
    for req, message in cases:
        with pytest.raises(ex.ExportError) as err:
            ex.export(req)
        assert str(err.value) == message
    assert not (run / "export").exists() and not (one_task / "export").exists()


@pytest.mark.slow
def test_the_cli_prints_each_tasks_verification(tmp_path):
    run, _ = _multitask_run(tmp_path / "run")
    result = subprocess.run([sys.executable, "-m", "qdistill.cluster.cli", "export", str(run), "--format", "onnx",
                             "--states", "500", "--episodes", "2"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"wrote {run / 'export' / f'student-{NAME}.onnx'} and student-{NAME}.onnx.json"
    assert [line.split(":")[0] for line in lines[1:3]] == ["CartPole-v1", "Acrobot-v1"]
    assert all("agreement with the float student: 100.00% of 500 held-out states" in line for line in lines[1:3])
    assert "qdistill export: writing student 16x16 (all 2 tasks in one file) as onnx (float)" in result.stderr
    assert "qdistill export: verifying on Acrobot-v1 on 500 held-out states" in result.stderr
