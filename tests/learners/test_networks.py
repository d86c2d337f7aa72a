import numpy as np
import pytest
import torch

from qdistill.learners.networks import QNetwork, as_input, count_params
from qdistill.learners.policy import BACKENDS, GreedyPolicy
from qdistill.learners.specs import SPEC_HELP, Architecture, check_fits, initial_weights, parse_spec


@pytest.mark.parametrize("spec, convs, widths", [
    ("256x256", (), (256, 256)), ("64", (), (64,)), ("32x16x8", (), (32, 16, 8)),
    ("c16k3s1-128", ((16, 3, 1),), (128,)), ("c8k3s1", ((8, 3, 1),), ()),
    ("c32k8s4-c64k4s2-c64k3s1-512", ((32, 8, 4), (64, 4, 2), (64, 3, 1)), (512,)),
    ("c4k2s2-c4k2s1-32x16", ((4, 2, 2), (4, 2, 1)), (32, 16)),
    ("nature", ((32, 8, 4), (64, 4, 2), (64, 3, 1)), (512,)), ("minatar", ((16, 3, 1),), (128,)),
])
def test_parse_spec(spec, convs, widths):
    assert parse_spec(spec) == Architecture(convs, widths)
    assert parse_spec(spec).is_conv == bool(convs)


@pytest.mark.parametrize("spec", ["", "x", "256x", "x256", "256*256", "abc", "0x4", "-4", "256X256", "2.5x4",
                                  "c16k3s1-", "-c16k3s1", "128-c16k3s1", "c16k3-128", "c0k3s1", "c16k3s1-128-64",
                                  "64-128", "c16k3s0", "C16k3s1", "c16 k3s1", "natures", "c16k3s1--128"])
def test_garbled_spec_is_refused(spec):
    with pytest.raises(ValueError) as err:
        parse_spec(spec)
    assert str(err.value) == f"network spec {spec!r} is not valid: {SPEC_HELP}"


def test_spec_and_env_must_fit():
    check_fits("minatar", (4, 10, 10), pixels=True)
    check_fits("64x64", (4,), pixels=False)
    with pytest.raises(ValueError) as err:
        check_fits("64x64", (4, 10, 10), pixels=True)
    assert str(err.value) == ("network spec '64x64' is an MLP, but the env's observations are images of shape "
                              "(4, 10, 10): give a conv spec such as 'minatar', 'nature' or 'c16k3s1-128'")
    with pytest.raises(ValueError) as err:
        check_fits("c16k3s1-128", (4,), pixels=False)
    assert str(err.value) == ("network spec 'c16k3s1-128' is convolutional, but the env's observations are vectors "
                              "of shape (4,): give an MLP spec such as '256x256'")
    with pytest.raises(ValueError) as err:  # 10 → 4 → 1: no room for a 3x3 kernel
        check_fits("c8k3s2-c8k3s2-c8k3s1-16", (4, 10, 10), pixels=True)
    assert str(err.value) == ("network spec 'c8k3s2-c8k3s2-c8k3s1-16': convolution 3 has a 3x3 kernel but its input "
                              "is 1x1: use smaller kernels or strides for (4, 10, 10) frames")


@pytest.mark.parametrize("spec, obs_shape, n_actions, params", [
    # MinAtar's DQN: conv 4→16 3x3 (592), 16·8·8 → 128 (131,200), 128 → 3 (387)
    ("minatar", (4, 10, 10), 3, 4 * 16 * 9 + 16 + 16 * 8 * 8 * 128 + 128 + 128 * 3 + 3),  # 132,179
    # the Nature DQN on Pong: 1,687,206 (Rusu et al. 2016 quote 1.69M)
    ("nature", (4, 84, 84), 6, 4 * 32 * 64 + 32 + 32 * 64 * 16 + 64 + 64 * 64 * 9 + 64 + 64 * 7 * 7 * 512 + 512
     + 512 * 6 + 6),
    ("c8k3s1", (6, 10, 10), 4, 6 * 8 * 9 + 8 + 8 * 8 * 8 * 4 + 4),
])
def test_conv_network_shapes_and_parameter_counts(spec, obs_shape, n_actions, params):
    net = QNetwork(spec, obs_shape, n_actions)
    assert count_params(net) == params
    frames = torch.full((5, *obs_shape), 255, dtype=torch.uint8)
    assert net(frames).shape == (5, n_actions)
    assert torch.equal(net.layers[0](frames), torch.ones(5, *obs_shape))  # the first op: uint8 0..255 → [0, 1]


@pytest.mark.parametrize("spec, obs_shape", [("minatar", (4, 10, 10)), ("c4k2s2-c4k2s1-32x16", (2, 9, 7)),
                                             ("c8k8s4-32", (4, 84, 84)), ("16x8", (3,))])
@pytest.mark.parametrize("batch", [1, 8, 40])
def test_both_inference_backends_match_the_network(spec, obs_shape, batch):
    net = QNetwork(spec, obs_shape, 4)
    weights = {k: v.numpy() for k, v in net.state_dict().items()}
    rng = np.random.default_rng(batch)
    obs = (rng.integers(0, 256, (batch, *obs_shape)).astype(np.uint8) if len(obs_shape) == 3
           else rng.normal(size=(batch, *obs_shape)).astype(np.float32))
    with torch.no_grad():
        expected = net(as_input(obs)).numpy()
    for backend in (*BACKENDS, None):
        policy = GreedyPolicy(spec, obs_shape, 4, backend=backend)
        policy.load(3, weights)
        np.testing.assert_allclose(policy.q_values(obs), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "spec, obs_shape, n_actions, params",
    [
        ("256x256", (4,), 2, 4 * 256 + 256 + 256 * 256 + 256 + 256 * 2 + 2),  # 67,586
        ("64x64", (8,), 4, 8 * 64 + 64 + 64 * 64 + 64 + 64 * 4 + 4),  # 4,996
        ("16", (6,), 3, 6 * 16 + 16 + 16 * 3 + 3),  # 163
    ],
)
def test_network_shapes_and_parameter_counts(spec, obs_shape, n_actions, params):
    net = QNetwork(spec, obs_shape, n_actions)
    assert count_params(net) == params
    assert net(torch.zeros(5, *obs_shape)).shape == (5, n_actions)
    widths = [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [*parse_spec(spec).widths, n_actions]


def test_greedy_policy_acts_argmax_of_loaded_weights():
    net = QNetwork("4", (2,), 3)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.layers[-1].bias.copy_(torch.tensor([0.0, 2.0, 1.0]))
    policy = GreedyPolicy("4", (2,), 3)
    policy.load(7, {k: v.numpy() for k, v in net.state_dict().items()})
    assert policy.version == 7
    np.testing.assert_array_equal(policy.act(np.zeros((3, 2), np.float32)), [1, 1, 1])


def test_greedy_policy_refuses_weights_of_another_network_and_keeps_its_own():
    policy = GreedyPolicy("4", (2,), 3)
    before = policy.q_values(np.ones((1, 2), np.float32))
    other = {k: v.numpy() for k, v in QNetwork("5", (2,), 3).state_dict().items()}
    with pytest.raises(ValueError) as refused:
        policy.load(3, other)
    assert str(refused.value) == (
        "weights of shapes {'layers.1.weight': (5, 2), 'layers.1.bias': (5,), 'layers.3.weight': (3, 5), "
        "'layers.3.bias': (3,)} do not fit network '4': expected {'layers.1.weight': (4, 2), 'layers.1.bias': (4,), "
        "'layers.3.weight': (3, 4), 'layers.3.bias': (3,)}")
    assert policy.version == -1
    np.testing.assert_array_equal(policy.q_values(np.ones((1, 2), np.float32)), before)


def test_greedy_policy_computes_the_networks_q_values():
    torch.manual_seed(0)
    net = QNetwork("16x8", (3,), 4)
    policy = GreedyPolicy("16x8", (3,), 4)
    weights = {k: v.numpy() for k, v in net.state_dict().items()}
    policy.load(1, weights)
    obs = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.as_tensor(obs)).numpy()
    np.testing.assert_allclose(policy.q_values(obs), expected, rtol=1e-5, atol=1e-7)
    weights["layers.1.weight"][:] = 0.0  # the policy acts with its own copy of what it was given
    np.testing.assert_allclose(policy.q_values(obs), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("spec, obs_shape", [("256x256", (4,)), ("norm-32x16", (6,)), ("minatar", (4, 10, 10)),
                                             ("c4k2s2-c4k2s1-32x16", (2, 9, 7))])
def test_initial_weights_are_the_networks_names_shapes_and_torchs_ranges(spec, obs_shape):
    net = QNetwork(spec, obs_shape, 3)
    expected = {k: (tuple(v.shape), v.numpy().dtype) for k, v in net.state_dict().items()}
    weights = initial_weights(spec, obs_shape, 3, np.random.default_rng(0))
    assert {k: (v.shape, v.dtype) for k, v in weights.items()} == expected
    for module, i in [(m, int(k.split(".")[1])) for k in weights if k.endswith(".weight")
                      for m in [net.layers[int(k.split(".")[1])]]]:
        bound = 1 / np.sqrt(module.weight[0].numel())  # torch's default: uniform in ±1/√(fan in)
        for part in ("weight", "bias"):
            drawn = weights[f"layers.{i}.{part}"]
            assert np.abs(drawn).max() <= bound
            assert drawn.size < 64 or np.abs(drawn).max() > 0.9 * bound  # they fill the range
    if spec.startswith("norm-"):
        assert (weights["layers.1.mean"] == 0).all() and (weights["layers.1.var"] == 1).all() \
            and weights["layers.1.count"] == 0


def test_a_greedy_policy_acts_from_its_initial_weights_until_loaded():
    policy = GreedyPolicy("16x16", (4,), 3)
    q = policy.q_values(np.random.default_rng(1).normal(size=(64, 4)).astype(np.float32))
    assert q.shape == (64, 3) and np.isfinite(q).all() and (q.std(axis=0) > 0).all()  # Q-values of the state
    assert policy.version == -1
