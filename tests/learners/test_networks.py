import numpy as np
import pytest
import torch

from qdistill.learners.networks import GreedyPolicy, QNetwork, count_params, parse_spec


@pytest.mark.parametrize("spec, widths", [("256x256", (256, 256)), ("64", (64,)), ("32x16x8", (32, 16, 8))])
def test_parse_spec(spec, widths):
    assert parse_spec(spec) == widths


@pytest.mark.parametrize("spec", ["", "x", "256x", "x256", "256*256", "abc", "0x4", "-4", "256X256", "2.5x4"])
def test_garbled_spec_is_refused(spec):
    with pytest.raises(ValueError) as err:
        parse_spec(spec)
    assert str(err.value) == (
        f"network spec {spec!r} is not valid: expected hidden layer widths joined by 'x', "
        "each a positive integer, e.g. '256x256' or '64'"
    )


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
    assert widths == [*parse_spec(spec), n_actions]


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
