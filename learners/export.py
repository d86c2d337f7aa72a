"""Students as files for small devices: ONNX (pinned opset) or TorchScript, float or int8, and a
runner for each that maps observations to Q-values.

int8 is dynamic quantisation of the inner layers: their weights as int8 per output channel, their
inputs quantised on the fly; on calibration states, each layer's input units may first be rescaled
so that one int8 step per call suits them all, and its weights are rounded to keep the greedy
action's margin close (quantise.py). The first layer (raw observations) and the output layer stay
float. int8 is for MLP students only (`int8_refusal`).

A file takes observations as the run stored them: float32 vectors for an MLP, uint8 frames
[N, C, H, W] (0..255, channels first) for a conv net, whose first ops (Cast, then / 255) are in the
file, as in the network.

A multi-task network (learners/multitask.py) is written whole, float, as one graph with one input
and one output per task (`write_all`: obs_0 → q_0, obs_1 → q_1, …; the trunk is stored once), or
task by task as ordinary networks (the run's checkpoints/tasks/ENV/)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from . import quantise
from .multitask import MultiTaskQNetwork
from .networks import Pixels, input_dtype

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript"}
ONNX_OPSET = 17
INPUT, OUTPUT = "obs", "q"

Runner = Callable[[np.ndarray], np.ndarray]


def int8_refusal(net: nn.Module, name: str | None = None) -> str | None:
    """Why `net` (student `name`) cannot be written as int8, in one line; None when it can.

    Conv students are refused, and go float. int8 as it stands quantises the Linear layers but the
    first and the last, which for a conv net with one hidden dense layer (both presets) is none
    (TorchScript would be float, while onnxruntime's quantiser would turn the convolutions into
    ConvInteger). Quantising the dense layers behind the convolutions instead is not sound as
    quantise.py does it: its input equalising scales the layer before per input unit, and a
    convolution can scale its output per channel only, not per (channel, row, column)."""
    if input_dtype(net) != np.uint8:
        return None
    spec = getattr(net, "spec", None)
    who = f"network {spec}" if name is None else f"student {name}" + (f" ({spec})" if spec and spec != name else "")
    return f"{who} is convolutional: --int8 is for MLP students (it quantises their inner dense layers); " \
        "export it without --int8"


def inner_linears(net: nn.Module) -> list[str]:
    """Names of the linear layers but the first and the last: int8 quantises those. The first sees
    raw observations, whose features differ in scale by orders of magnitude (one int8 scale for a
    whole observation crushes the small ones); the ranking of actions rests on the last."""
    return [name for name, m in net.named_modules() if isinstance(m, nn.Linear)][1:-1]


def _quantised(net: nn.Module) -> nn.Module:
    """torch's dynamic int8 modules for the inner layers, holding `net`'s weights (on their int8
    grid) with quantise's scales: torch's own observer would pick row max / 127.5 and round again."""
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig

    inner = inner_linears(net)
    with warnings.catch_warnings():  # torch.ao's deprecation notice: the eager API still works
        warnings.simplefilter("ignore")
        quantised = torch.ao.quantization.quantize_dynamic(
            net, {name: per_channel_dynamic_qconfig for name in inner}, dtype=torch.qint8)
    floats, modules = dict(net.named_modules()), dict(quantised.named_modules())
    for name in inner:
        weight = floats[name].weight.detach()
        step = quantise.scales(weight).double()
        modules[name].set_weight_bias(
            torch.quantize_per_channel(weight, step, torch.zeros(len(step), dtype=torch.int64), 0, torch.qint8),
            floats[name].bias.detach())
    return quantised


def write(net: nn.Module, path: Path, fmt: str, *, int8: bool, obs_shape: tuple[int, ...],
          calibration: np.ndarray | None = None) -> dict[str, object] | None:
    """Write `net` (a QNetwork, left unchanged) to `path` in `fmt`; int8 if asked.

    Without `calibration` observations [N, *obs_shape], int8 rounds each inner weight to its nearest
    step, as the quantisers do. With them, the inner layers are rounded on those states, their inputs
    equalised first or not (quantise.py), whichever file picks `net`'s action on more of them (the
    equalising usually helps, not always: benchmarks/int8_rounding.py). Returns that choice:
    {"inputs_equalised": bool, "calibration_agreement": fraction}."""
    net = net.eval()
    if int8 and (refusal := int8_refusal(net)):
        raise ValueError(refusal)
    if not (int8 and calibration is not None):
        _write(net, path, fmt, int8=int8, obs_shape=obs_shape)
        return None
    inner = inner_linears(net)
    with torch.no_grad():
        wanted = net(torch.as_tensor(np.asarray(calibration, dtype=input_dtype(net)))).argmax(dim=1).numpy()
    chosen: dict[str, object] = {}
    for equalise in (False, True):
        prepared = (quantise.for_int8 if equalise else quantise.on_int8_grid)(net, inner, calibration)
        candidate = path.with_name(f"{path.stem}.candidate{path.suffix}")
        _write(prepared, candidate, fmt, int8=True, obs_shape=obs_shape)
        kept = float(np.mean(one_at_a_time(runner(candidate, fmt))(calibration) == wanted))
        if not chosen or kept > chosen["calibration_agreement"]:
            candidate.replace(path)
            chosen = {"inputs_equalised": equalise, "calibration_agreement": round(kept, 6)}
        else:
            candidate.unlink()
    return chosen


def _write(net: nn.Module, path: Path, fmt: str, *, int8: bool, obs_shape: tuple[int, ...]) -> None:
    """The file itself; int8 weights already on their grid are kept as they are. ONNX is traced on a
    zero observation of the dtype `net` takes, so a conv net's file takes uint8 and casts inside."""
    if fmt == "torchscript":
        torch.jit.script(_quantised(net) if int8 else net).save(str(path))
        return
    float_path = path.with_name(path.stem + ".float.tmp") if int8 else path
    example = torch.zeros((1, *obs_shape), dtype=torch.uint8 if input_dtype(net) == np.uint8 else torch.float32)
    torch.onnx.export(net, (example,), str(float_path), dynamo=False, opset_version=ONNX_OPSET,
                      input_names=[INPUT], output_names=[OUTPUT],
                      dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})
    if int8:
        import logging

        from onnxruntime.quantization import QuantType, quantize_dynamic

        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its advice to pre-process is for convolutional image models
        try:
            import onnx

            graph = onnx.load(str(float_path)).graph
            linear = [node.name for node in graph.node if node.op_type in ("Gemm", "MatMul")]
            # the quantiser turns each Gemm into a MatMul named after it before it quantises
            keep_float = [name + suffix for name in (linear[0], linear[-1]) for suffix in ("", "_MatMul")]
            quantize_dynamic(str(float_path), str(path), weight_type=QuantType.QInt8, per_channel=True,
                             nodes_to_exclude=keep_float)
        finally:
            root.setLevel(level)
            float_path.unlink(missing_ok=True)


class AllTasks(nn.Module):
    """A multi-task network as one graph: input t holds task t's observations, output t is their
    Q-values."""

    def __init__(self, net: MultiTaskQNetwork) -> None:
        super().__init__()
        self.net = net

    def forward(self, *obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.net(o, t) for t, o in enumerate(obs))


def task_io(task: int) -> tuple[str, str]:
    """Task `task`'s input and output names in a whole multi-task file."""
    return f"{INPUT}_{task}", f"{OUTPUT}_{task}"


def write_all(net: MultiTaskQNetwork, path: Path, fmt: str) -> None:
    """The whole multi-task network `net` to `path` in `fmt`, float; traced on one zero observation
    per task, every batch dimension free."""
    whole = AllTasks(net.eval())
    dtype = torch.uint8 if input_dtype(net) == np.uint8 else torch.float32
    examples = tuple(torch.zeros((1, *shape), dtype=dtype) for shape in net.obs_shapes)
    if fmt == "torchscript":
        with torch.no_grad():
            torch.jit.trace(whole, examples).save(str(path))
        return
    names = [task_io(t) for t in range(net.n_tasks)]
    axes = {name: {0: f"batch_{t}"} for t, pair in enumerate(names) for name in pair}  # each task's batch its own
    torch.onnx.export(whole, examples, str(path), dynamo=False, opset_version=ONNX_OPSET,
                      input_names=[i for i, _ in names], output_names=[o for _, o in names], dynamic_axes=axes)


def task_runner(path: Path, fmt: str, task: int, obs_shapes: list[tuple[int, ...]], dtype: np.dtype) -> Runner:
    """Task `task`'s observations → its Q-values, through a whole multi-task file; every other task's
    input gets one zero observation (the graph computes every head, as on a device)."""
    others = [np.zeros((1, *shape), dtype=dtype) for shape in obs_shapes]
    if fmt == "torchscript":
        module = torch.jit.load(str(path))

        def run(obs: np.ndarray) -> np.ndarray:
            feeds = [torch.as_tensor(np.asarray(obs, dtype=dtype) if t == task else z) for t, z in enumerate(others)]
            with torch.inference_mode():
                return module(*feeds)[task].numpy()
        return run
    session = _onnx_session(path)
    inputs = {task_io(t)[0]: z for t, z in enumerate(others)}
    out = task_io(task)[1]
    return lambda obs: session.run([out], {**inputs, task_io(task)[0]: np.asarray(obs, dtype=dtype)})[0]


def one_at_a_time(run: Runner) -> Callable[[np.ndarray], np.ndarray]:
    """Greedy actions, one state per call, as on a device: int8's activation scale is set per call,
    so a batch would let one state's scale depend on the others."""
    return lambda obs: np.array([run(o[None]).argmax() for o in obs], dtype=np.int64)


def runner(path: Path, fmt: str, dtype: np.dtype | None = None) -> Runner:
    """Observations [B, ...] → Q-values [B, A], from the written file, on one CPU thread. The
    observations are fed as `dtype`, by default what the file takes: the ONNX model's input type;
    for TorchScript uint8 when the module's first op scales pixels (a conv net), float32 otherwise."""
    if fmt == "torchscript":
        module = torch.jit.load(str(path))
        if dtype is None:
            pixels = any(getattr(m, "original_name", "") == Pixels.__name__ for m in module.modules())
            dtype = np.uint8 if pixels else np.float32
        feed = torch.uint8 if np.dtype(dtype) == np.uint8 else torch.float32

        def run(obs: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return module(torch.as_tensor(np.asarray(obs), dtype=feed)).numpy()
        return run
    session = _onnx_session(path)
    if dtype is None:
        dtype = _ONNX_TYPES[session.get_inputs()[0].type]
    dtype = np.dtype(dtype)
    return lambda obs: session.run(None, {INPUT: np.asarray(obs, dtype=dtype)})[0]


def _onnx_session(path: Path):
    """An onnxruntime session on one CPU thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


_ONNX_TYPES = {"tensor(uint8)": np.uint8, "tensor(float)": np.float32}
