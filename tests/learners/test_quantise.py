"""int8 rounding of the exported students' inner layers: weights on the per-channel int8 grid, the
layer's outputs closer to float than rounding each weight to nearest, and both exporters keeping the
rounding as it is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from qdistill.learners import export as formats
from qdistill.learners import quantise
from qdistill.learners.networks import QNetwork


def _correlated_inputs(n: int, width: int, rank: int, seed: int) -> torch.Tensor:
    """ReLU features of a `rank`-dimensional state, as a hidden layer's are: they co-vary."""
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(n, rank, generator=g) @ torch.randn(rank, width, generator=g))


def test_rounded_weights_sit_on_the_int8_grid_of_the_float_weights():
    g = torch.Generator().manual_seed(1)
    weight = torch.randn(32, 64, generator=g)
    weight[5] = 0.0  # an all-zero row stays zero
    rounded = quantise.round_weight(weight, _correlated_inputs(2000, 64, 8, seed=2))
    step = quantise.scales(weight)
    steps = rounded.double() / step[:, None].double()
    np.testing.assert_allclose(steps, steps.round(), atol=1e-4)
    assert steps.abs().max() <= quantise.QMAX + 1e-4
    # each row's largest weight is kept, so a quantiser computing row max / 127 finds the same scales
    torch.testing.assert_close(quantise.scales(rounded), step, rtol=0, atol=0)
    assert torch.equal(rounded[5], torch.zeros(64))


def test_rounding_keeps_the_layer_outputs_closer_to_float_than_rounding_to_nearest():
    g = torch.Generator().manual_seed(3)
    weight = torch.randn(32, 64, generator=g)
    inputs = _correlated_inputs(4000, 64, 8, seed=4)
    step = quantise.scales(weight)[:, None]
    nearest = torch.round(weight / step) * step

    def output_error(w: torch.Tensor) -> float:
        return float(((inputs @ (w - weight).T) ** 2).mean())

    # measured 0.22-0.26 of round-to-nearest's squared error over seeds on such inputs
    assert output_error(quantise.round_weight(weight, inputs)) < 0.4 * output_error(nearest)


def test_both_exporters_keep_the_rounded_int8_weights(tmp_path: Path):
    torch.manual_seed(5)
    net = QNetwork("32x32", (6,), 3)
    calibration = np.random.default_rng(6).normal(size=(3000, 6)).astype(np.float32)
    expected = quantise.on_int8_grid(net, ["layers.3"], calibration).layers[3].weight.detach()
    step = quantise.scales(expected)
    ints = torch.round(expected.double() / step[:, None].double()).to(torch.int8)

    formats.write(net, tmp_path / "s.onnx", "onnx", int8=True, obs_shape=(6,), calibration=calibration)
    import onnx
    from onnx import numpy_helper

    stored = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(tmp_path / "s.onnx")).graph.initializer}
    # onnxruntime stores the weight transposed, [in, out], with one scale per output column
    np.testing.assert_array_equal(stored["layers.3.weight_Transposed_quantized"].T, ints.numpy())
    np.testing.assert_allclose(stored["layers.3.weight_Transposed_scale"], step.numpy(), rtol=1e-6)

    formats.write(net, tmp_path / "s.torchscript", "torchscript", int8=True, obs_shape=(6,), calibration=calibration)
    packed = dict(torch.jit.load(str(tmp_path / "s.torchscript")).named_modules())["layers.3._packed_params"]
    weight, _ = packed._weight_bias()
    assert torch.equal(weight.int_repr(), ints)
    np.testing.assert_allclose(weight.q_per_channel_scales().numpy(), step.numpy(), rtol=1e-6)


def test_without_calibration_states_each_weight_is_rounded_to_its_nearest_step(tmp_path: Path):
    torch.manual_seed(7)
    net = QNetwork("32x32", (6,), 3)
    weight = net.layers[3].weight.detach()
    step = quantise.scales(weight)
    nearest = torch.round(weight.double() / step[:, None].double()).to(torch.int8)
    formats.write(net, tmp_path / "s.torchscript", "torchscript", int8=True, obs_shape=(6,))
    packed = dict(torch.jit.load(str(tmp_path / "s.torchscript")).named_modules())["layers.3._packed_params"]
    assert torch.equal(packed._weight_bias()[0].int_repr(), nearest)
