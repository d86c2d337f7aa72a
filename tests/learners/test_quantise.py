"""int8 preparation of the exported students' inner layers: inputs equalised without changing the
float function, weights on the per-channel int8 grid, the layer's outputs closer to float than
rounding each weight to nearest, and both exporters keeping the rounding as it is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
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


def test_rounding_weighted_by_sensitivity_keeps_what_each_output_moves_closer():
    g = torch.Generator().manual_seed(12)
    latent = torch.randn(4000, 8, generator=g)
    inputs = torch.relu(latent @ torch.randn(8, 64, generator=g))
    weight = torch.randn(32, 64, generator=g)
    region = latent[:, :4].argmax(dim=1)  # four kinds of state
    sensitivity = (region[:, None] == torch.arange(32)[None, :] % 4).double()  # row r matters in region r % 4 only

    def weighted_error(w: torch.Tensor) -> float:
        return float((((inputs @ (w - weight).T) * sensitivity) ** 2).mean())

    # measured 0.74-0.90 of plain GPTQ's weighted error over seeds
    assert weighted_error(quantise.round_weight(weight, inputs, sensitivity)) < 0.95 * weighted_error(
        quantise.round_weight(weight, inputs))
    # the same sensitivity everywhere is plain GPTQ
    assert torch.equal(quantise.round_weight(weight, inputs, torch.ones(4000, 32)), quantise.round_weight(weight, inputs))


def test_wide_layers_round_in_chunks_of_rows_and_on_evenly_thinned_states(monkeypatch):
    g = torch.Generator().manual_seed(15)
    inputs = torch.relu(torch.randn(600, 8, generator=g) @ torch.randn(8, 24, generator=g))
    weight = torch.randn(10, 24, generator=g)
    sensitivity = torch.rand(600, 10, generator=g)
    whole = quantise.round_weight(weight, inputs, sensitivity)
    monkeypatch.setattr(quantise, "ROW_MOMENTS_BYTES", 3 * 8 * 24 ** 2)  # three rows' matrices at a time
    assert torch.equal(quantise.round_weight(weight, inputs, sensitivity), whole)
    monkeypatch.setattr(quantise, "ROW_MOMENTS_FLOPS", 10 * 100 * 24 ** 2)  # room for 100 of the 600 states
    thinned = torch.linspace(0, 599, 100).round().long()
    monkeypatch.setattr(quantise, "ROW_MOMENTS_BYTES", 256 * 2**20)
    assert torch.equal(quantise.round_weight(weight, inputs, sensitivity),
                       quantise.round_weight(weight, inputs[thinned], sensitivity[thinned]))
    monkeypatch.setattr(quantise, "ROW_MOMENTS_FLOPS", 1.0)  # never fewer states than twice the inputs
    kept = torch.linspace(0, 599, 48).round().long()
    assert torch.equal(quantise.round_weight(weight, inputs, sensitivity),
                       quantise.round_weight(weight, inputs[kept], sensitivity[kept]))


def test_the_sensitivity_is_how_much_each_output_moves_the_greedy_actions_margin():
    torch.manual_seed(13)
    net = QNetwork("16x12", (5,), 4)
    obs = torch.as_tensor(np.random.default_rng(14).normal(size=(300, 5)).astype(np.float32))
    with torch.no_grad():
        pre = net.layers[3](torch.relu(net.layers[1](obs)))  # layers.3's outputs
        q = net(obs)
    best, second = q.topk(2, dim=1).indices.T
    head = net.layers[5].weight.detach()
    expected = (head[best] - head[second]) * (pre > 0)  # through the ReLU, into the output layer
    sensitivity = quantise._margin_sensitivity(net, net.layers[3], obs)
    torch.testing.assert_close(sensitivity, expected)
    one_action = QNetwork("16x12", (5,), 1)
    assert quantise._margin_sensitivity(one_action, one_action.layers[3], obs) is None  # one action: no margin
    rounded = quantise.on_int8_grid(one_action, ["layers.3"], obs.numpy()).layers[3].weight.detach()
    steps = rounded.double() / quantise.scales(rounded)[:, None].double()
    np.testing.assert_allclose(steps, steps.round(), atol=1e-4)


def _input_stats(net: QNetwork, layer: int, obs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(RMS of each input unit on `obs`, norm of each weight column) of `net.layers[layer]`."""
    with torch.no_grad():
        inputs = net.layers[:layer](torch.as_tensor(obs))
    weight = net.layers[layer].weight.detach()
    return inputs.double().pow(2).mean(dim=0).sqrt(), weight.double().norm(dim=0)


def test_equalising_keeps_the_function_and_leaves_each_unit_the_same_column_norm_to_rms_ratio():
    torch.manual_seed(8)
    net = QNetwork("24x16x12", (5,), 4)
    with torch.no_grad():
        net.layers[1].weight[3] *= 40.0  # one wide-range unit in front of layers.3
        net.layers[1].bias[3] = 5.0
        net.layers[3].weight[:, 7] *= 0.01  # and one with little influence
        net.layers[1].bias[9] = -1e3  # a unit that never fires
    rng = np.random.default_rng(9)
    calibration = rng.normal(size=(4000, 5)).astype(np.float32)
    states = torch.as_tensor(rng.normal(size=(500, 5)).astype(np.float32))
    layers = ["layers.3", "layers.5"]
    equal = quantise.equalised(net, layers, calibration)
    with torch.no_grad():
        torch.testing.assert_close(equal(states), net(states), rtol=1e-5, atol=1e-5)
    assert torch.equal(equal.layers[7].weight, net.layers[7].weight)  # the output layer's weights stay
    for index in (3, 5):
        rms_before, norm_before = _input_stats(net, index, calibration)
        rms, norm = _input_stats(equal, index, calibration)
        live = (rms_before > 0) & (norm_before > 0)
        ratio = norm[live] / rms[live]
        torch.testing.assert_close(ratio, torch.full_like(ratio, float(ratio[0])), rtol=1e-4, atol=0)
        scale = rms[live] / rms_before[live]  # s_i, normalised to a geometric mean of 1
        assert abs(float(scale.log().mean())) < 1e-4
    # the unit that never fires keeps s = 1: its row of the first layer is as it was
    assert float(_input_stats(net, 3, calibration)[0][9]) == 0.0
    assert torch.equal(equal.layers[1].weight[9], net.layers[1].weight[9])
    assert float(equal.layers[1].bias[9]) == float(net.layers[1].bias[9])
    # equalising again changes nothing: every unit already has the same ratio
    again = quantise.equalised(equal, layers, calibration)
    for (name, a), b in zip(again.state_dict().items(), equal.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.slow
def test_both_exporters_keep_the_rounded_int8_weights(tmp_path: Path):
    torch.manual_seed(5)
    net = QNetwork("32x32", (6,), 3)
    calibration = np.random.default_rng(6).normal(size=(3000, 6)).astype(np.float32)

    def expected(choice: dict[str, object]) -> tuple[torch.Tensor, torch.Tensor]:
        """(int8 weights, scales) of layers.3 as the preparation `write` chose rounds them."""
        prepare = quantise.for_int8 if choice["inputs_equalised"] else quantise.on_int8_grid
        weight = prepare(net, ["layers.3"], calibration).layers[3].weight.detach()
        step = quantise.scales(weight)
        return torch.round(weight.double() / step[:, None].double()).to(torch.int8), step

    choice = formats.write(net, tmp_path / "s.onnx", "onnx", int8=True, obs_shape=(6,), calibration=calibration)
    ints, step = expected(choice)
    import onnx
    from onnx import numpy_helper

    stored = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(tmp_path / "s.onnx")).graph.initializer}
    # onnxruntime stores the weight transposed, [in, out], with one scale per output column
    np.testing.assert_array_equal(stored["layers.3.weight_Transposed_quantized"].T, ints.numpy())
    np.testing.assert_allclose(stored["layers.3.weight_Transposed_scale"], step.numpy(), rtol=1e-6)

    choice = formats.write(net, tmp_path / "s.torchscript", "torchscript", int8=True, obs_shape=(6,),
                           calibration=calibration)
    ints, step = expected(choice)
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


def _stored_int8(path: Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer
            if "quantized" in i.name or i.name.endswith("_scale")}


def test_int8_export_keeps_the_preparation_that_picks_more_of_the_float_actions_on_calibration_states(tmp_path: Path):
    torch.manual_seed(10)
    net = QNetwork("32x32", (6,), 3)
    with torch.no_grad():  # a wide-range unit with little influence coarsens every other unit's int8 step
        net.layers[1].weight[4] *= 100.0
        net.layers[3].weight[:, 4] *= 0.01
    calibration = np.random.default_rng(11).normal(size=(2000, 6)).astype(np.float32)
    with torch.no_grad():
        wanted = net(torch.as_tensor(calibration)).argmax(dim=1).numpy()
    inner = formats.inner_linears(net)
    kept = {}
    for equalise, prepared in ((False, quantise.on_int8_grid(net, inner, calibration)),
                               (True, quantise.for_int8(net, inner, calibration))):
        formats.write(prepared, tmp_path / f"{equalise}.onnx", "onnx", int8=True, obs_shape=(6,))  # as it is
        act = formats.one_at_a_time(formats.runner(tmp_path / f"{equalise}.onnx", "onnx"))
        kept[equalise] = float(np.mean(act(calibration) == wanted))
    assert kept[True] > kept[False]
    choice = formats.write(net, tmp_path / "s.onnx", "onnx", int8=True, obs_shape=(6,), calibration=calibration)
    assert choice == {"inputs_equalised": True, "calibration_agreement": round(kept[True], 6)}
    stored, expected = _stored_int8(tmp_path / "s.onnx"), _stored_int8(tmp_path / "True.onnx")
    assert stored.keys() == expected.keys() and stored
    for name in stored:
        np.testing.assert_array_equal(stored[name], expected[name])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["False.onnx", "True.onnx", "s.onnx"]  # no candidates left

    # inputs already equalised: both preparations are the same file, and a tie keeps the plain rounding
    equal = quantise.equalised(net, inner, calibration)
    choice = formats.write(equal, tmp_path / "e.onnx", "onnx", int8=True, obs_shape=(6,), calibration=calibration)
    assert choice["inputs_equalised"] is False
