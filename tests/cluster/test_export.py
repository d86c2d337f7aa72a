"""`qdistill export`: each format round trips, the agreement gate refuses and writes nothing, bad
input is refused. The MLP students are made by hand, so what the exported file must do is known;
the conv student (MinAtar Breakout, uint8 frames) is its initial network, checked against itself."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch

from qdistill.cluster import export as ex
from qdistill.learners import checkpoint
from qdistill.learners import export as formats
from qdistill.learners.networks import QNetwork, to_numpy
from qdistill.learners.policy import GreedyPolicy
from tests.support.cli import in_process

slow = pytest.mark.slow  # the cases that run `qdistill export` whole: states labelled, episodes played, files verified

W = torch.tensor([0.1, 0.5, 1.0, 1.0])  # CartPole: push right when w.x > 0 (plays 500)


def _student(crushed: bool) -> QNetwork:
    """16x16: layer 1 gives relu(w.x) and relu(-w.x); the inner layer passes them on; Q(right) and
    Q(left) are those. `crushed`: layer 1 also outputs a constant 1000, so the inner layer's int8
    input scale (one per tensor, ~1000 / 255) rounds both to 0 and the int8 student always picks 0."""
    net = QNetwork("16x16", (4,), 2)
    first, inner, head = [m for m in net.layers if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for layer in (first, inner, head):
            layer.weight.zero_()
            layer.bias.zero_()
        first.weight[0], first.weight[1] = W, -W
        if crushed:
            first.bias[2] = 1000.0
        inner.weight[0, 0] = inner.weight[1, 1] = 1.0
        head.weight[1, 0] = head.weight[0, 1] = 1.0  # Q(left) = relu(-w.x), Q(right) = relu(w.x)
    return net


def _run_dir(path, students: dict[str, QNetwork], env_id: str = "CartPole-v1", teacher: str = "2"):
    (path / "checkpoints").mkdir(parents=True)
    obs_shape, n_actions = next(iter(students.values())).obs_shape, next(iter(students.values())).n_actions
    teacher_net = QNetwork(teacher, obs_shape, n_actions)
    checkpoint.save(path / "checkpoints" / "teacher.pt", checkpoint.Checkpoint(
        teacher, obs_shape, n_actions, env_id, 3, to_numpy(teacher_net.state_dict())))
    for name, net in students.items():
        checkpoint.save(path / "checkpoints" / f"student-{name}-best.pt", checkpoint.Checkpoint(
            net.spec, net.obs_shape, net.n_actions, env_id, 7, to_numpy(net.state_dict())))
    (path / "summary.json").write_text(json.dumps({"students": {n: {"eval_return_mean": 500.0} for n in students}}))
    return path


def _cli(*args: str) -> subprocess.CompletedProcess:
    return in_process("export", *args)


@slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("int8", [False, True], ids=["float", "int8"])
def test_export_round_trips_and_verifies(tmp_path, fmt, int8):
    run = _run_dir(tmp_path / "run", {"16x16": _student(crushed=False)})
    result = _cli(str(run), "--format", fmt, *(["--int8"] if int8 else []), "--states", "2000", "--episodes", "5")
    assert result.returncode == 0, result.stderr
    name = f"student-16x16{'-int8' if int8 else ''}{formats.SUFFIX[fmt]}"
    assert sorted(p.name for p in (run / "export").iterdir()) == [name, f"{name}.json"]
    sidecar = json.loads((run / "export" / f"{name}.json").read_text())
    assert (sidecar["format"], sidecar["int8"], sidecar["env_id"], sidecar["obs_shape"], sidecar["n_actions"]) == \
        (fmt, int8, "CartPole-v1", [4], 2)
    assert sidecar.get("onnx_opset") == (formats.ONNX_OPSET if fmt == "onnx" else None)
    assert sidecar["obs_dtype"] == "float32" and sidecar["obs_normalisation"] is None
    assert sidecar["input"] == {"name": "obs", "shape": ["batch", 4], "dtype": "float32", "scaling": "none"}
    assert sidecar["student"] == {"net": "16x16", "version": 7} and sidecar["teacher"] == {"net": "2", "version": 3}
    assert sidecar["evaluation"] == {"eval_return_mean": 500.0}
    check = sidecar["verification"]
    assert (check["held_out_states"], check["agreement"], check["episodes"]) == (2000, 1.0, 5)
    assert check["return_exported"] == check["return_float"] == {"mean": 500.0, "std": 0.0}
    assert [r["policy"] for r in sidecar["size_and_latency"]] == ["teacher", "student 16x16", "student 16x16 int8"]
    assert [r["params"] for r in sidecar["size_and_latency"]] == [16, 386, 386]
    assert "agreement with the float student: 100.00% of 2,000 held-out states" in result.stdout
    how = "int8, rounded on 2,000 calibration states, two tries" if int8 else "float"
    assert result.stderr.splitlines() == [
        f"qdistill export: writing student 16x16 as {fmt} ({how})",
        "qdistill export: verifying on 2,000 held-out states",
        "qdistill export: playing 5 greedy episodes with the exported and the float student",
        f"qdistill export: measuring size and latency: teacher, float student, int8 student ({fmt})"]
    # the written file, loaded on its own, gives the float student's Q-values (int8: its actions)
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    q = formats.runner(run / "export" / name, fmt)(obs)
    policy = GreedyPolicy("16x16", (4,), 2)
    policy.load(7, to_numpy(_student(crushed=False).state_dict()))
    if int8:
        np.testing.assert_array_equal(q.argmax(axis=1), policy.act(obs))
        # the rounding export chose, and how many of the float student's actions it kept on the
        # calibration states, are the written file's
        chosen = sidecar["int8_calibration"]
        assert (chosen["states"], chosen["seed"], type(chosen["inputs_equalised"])) == (2000, ex.CALIBRATION_SEED, bool)
        calibration = ex.held_out_states("CartPole-v1", policy.act, 2000, ex.CALIBRATION_SEED)
        kept = np.mean(formats.one_at_a_time(formats.runner(run / "export" / name, fmt))(calibration)
                       == policy.act(calibration))
        assert chosen["calibration_agreement"] == round(float(kept), 6)
    else:
        assert "int8_calibration" not in sidecar
        np.testing.assert_allclose(q, policy.q_values(obs), rtol=1e-5, atol=1e-6)


@slow
def test_an_export_below_the_agreement_threshold_is_refused_and_nothing_is_written(tmp_path):
    run = _run_dir(tmp_path / "run", {"16x16": _student(crushed=True)})
    float_export = _cli(str(run), "--format", "torchscript", "--states", "2000", "--episodes", "5")
    assert float_export.returncode == 0, float_export.stderr  # in float nothing is crushed
    out = tmp_path / "out"
    result = _cli(str(run), "--format", "torchscript", "--int8", "--states", "2000", "--episodes", "5",
                  "--out", str(out))
    assert result.returncode == 2 and result.stdout == ""
    *phases, error = result.stderr.splitlines()
    assert phases == ["qdistill export: writing student 16x16 as torchscript (int8, rounded on 2,000 calibration "
                      "states, two tries)", "qdistill export: verifying on 2,000 held-out states"]
    prefix = "qdistill: error: the exported student 16x16 (torchscript, int8) picks the float student's action on "
    assert error.startswith(prefix)
    assert error.endswith(" of 2,000 held-out states: below --min-agreement 99.00%; nothing written")
    agreement = float(error[len(prefix):].split("%")[0])
    assert 20.0 < agreement < 80.0  # int8 always picks action 0; the float student picks 1 about half the time
    assert not out.exists()


@slow
def test_bad_export_input_is_refused(tmp_path):
    run = _run_dir(tmp_path / "run", {"16x16": _student(crushed=False), "8x8": QNetwork("8x8", (4,), 2)})
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ([str(run), "--student", "16x16", "--format", "tflite"],
         "format 'tflite' is not known: expected one of onnx, torchscript"),
        ([str(empty), "--format", "onnx"],
         f"run directory '{empty}' has no students: expected the directory of a `qdistill run` "
         "(checkpoints/student-NAME-best.pt)"),
        ([str(run), "--student", "32x32", "--format", "onnx"],
         f"student '32x32' is not in run directory '{run}': it holds 16x16, 8x8"),
        ([str(run), "--format", "onnx"], f"run directory '{run}' holds students 16x16, 8x8: choose one with --student"),
        ([str(run), "--student", "16x16", "--format", "onnx", "--min-agreement", "1.5"],
         "min agreement 1.5 is not valid: expected a fraction in (0, 1], e.g. 0.99"),
        ([str(run), "--student", "16x16", "--format", "onnx", "--states", "0"],
         "states 0 is not valid: expected an integer >= 1"),
    ]
    for args, message in cases:
        result = _cli(*args)
        assert (result.returncode, result.stdout, result.stderr) == (2, "", f"qdistill: error: {message}\n"), args
    assert not (run / "export").exists() and list(empty.iterdir()) == []


BREAKOUT, FRAME = "MinAtar/Breakout-v1", (4, 10, 10)


def _conv_student() -> QNetwork:
    torch.manual_seed(0)
    return QNetwork("c8k3s1-16", FRAME, 3).eval()


def _frames(n: int) -> np.ndarray:
    """uint8 frames as MinAtar stores them (0 or 255), and some of every value 0..255."""
    rng = np.random.default_rng(0)
    frames = (rng.random((n, *FRAME)) < 0.2).astype(np.uint8) * 255
    frames[: n // 2] = rng.integers(0, 256, (n // 2, *FRAME), dtype=np.uint8)
    return frames


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_conv_file_takes_uint8_frames_and_scales_them_inside(tmp_path, fmt):
    net = _conv_student()
    path = tmp_path / f"student{formats.SUFFIX[fmt]}"
    assert formats.write(net, path, fmt, int8=False, obs_shape=FRAME) is None
    if fmt == "onnx":
        import onnxruntime as ort

        (given,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()
        assert (given.name, given.type, given.shape) == ("obs", "tensor(uint8)", ["batch", *FRAME])
    frames = _frames(64)
    with torch.no_grad():
        expected = net(torch.as_tensor(frames)).numpy()  # QNetwork on uint8: its Pixels op scales
    run = formats.runner(path, fmt)
    np.testing.assert_allclose(run(frames), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run(frames[:1]), expected[:1], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"^network c8k3s1-16 is convolutional: --int8 is for MLP students"):
        formats.write(net, tmp_path / f"int8{formats.SUFFIX[fmt]}", fmt, int8=True, obs_shape=FRAME)
    assert not (tmp_path / f"int8{formats.SUFFIX[fmt]}").exists()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_conv_student_exports_through_the_gate(tmp_path, fmt):
    net = _conv_student()
    run = _run_dir(tmp_path / "run", {"cnn": net}, env_id=BREAKOUT, teacher="c4k3s1-8")
    said = []
    sidecar = ex.export(ex.Request(run, None, fmt, False, None, 0.99, 300, 2), say=said.append)
    name = f"student-cnn{formats.SUFFIX[fmt]}"
    assert sorted(p.name for p in (run / "export").iterdir()) == [name, f"{name}.json"]
    assert json.loads((run / "export" / f"{name}.json").read_text()) == sidecar
    assert sidecar["input"] == {"name": "obs", "shape": ["batch", 4, 10, 10], "dtype": "uint8",
                                "channel_order": "channels_first", "scaling": "x / 255 inside the model"}
    assert (sidecar["env_id"], sidecar["obs_shape"], sidecar["obs_dtype"], sidecar["n_actions"]) == \
        (BREAKOUT, [4, 10, 10], "uint8", 3)
    assert sidecar["student"] == {"net": "c8k3s1-16", "version": 7} and "int8_calibration" not in sidecar
    check = sidecar["verification"]
    assert check["held_out_states"] == 300 and check["agreement"] == 1.0
    assert check["return_exported"] == check["return_float"]
    # no int8 row: int8 refuses conv students
    assert [r["policy"] for r in sidecar["size_and_latency"]] == ["teacher", "student cnn"]
    assert said[-1] == f"measuring size and latency: teacher, float student ({fmt})"
    # the file, on held-out frames as stored (uint8), gives the float QNetwork's Q-values
    policy = GreedyPolicy("c8k3s1-16", FRAME, 3)
    policy.load(7, to_numpy(net.state_dict()))
    states = ex.held_out_states(BREAKOUT, policy.act, 200, ex.EXPORT_SEED)
    assert states.dtype == np.uint8 and states.shape == (200, *FRAME)
    with torch.no_grad():
        expected = net(torch.as_tensor(states)).numpy()
    np.testing.assert_allclose(formats.runner(run / "export" / name, fmt)(states), expected, rtol=1e-5, atol=1e-6)


def test_int8_is_refused_for_a_conv_student_and_nothing_is_written(tmp_path):
    run = _run_dir(tmp_path / "run", {"cnn": _conv_student()}, env_id=BREAKOUT, teacher="c4k3s1-8")
    with pytest.raises(ex.ExportError) as refused:
        ex.export(ex.Request(run, None, "onnx", True, None, 0.99, 300, 2))
    assert str(refused.value) == ("student cnn (c8k3s1-16) is convolutional: --int8 is for MLP students (it "
                                  "quantises their inner dense layers); export it without --int8")
    assert not (run / "export").exists()
