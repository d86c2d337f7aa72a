"""The learners' Adam: torch's fused Adam's update bit for bit, its state dict, and its fallbacks."""

from __future__ import annotations

import copy

import torch

from qdistill.learners.optim import Adam


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))


def _train(net: torch.nn.Module, opt, steps: int, *, seed: int = 1) -> None:
    data = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(32, 4, generator=data)
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        opt.step()


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_the_same_update_and_state_as_torchs_fused_adam():
    ours, theirs = _net(0), _net(0)
    mine, torchs = Adam(ours.parameters(), lr=3e-3), torch.optim.Adam(theirs.parameters(), lr=3e-3, fused=True)
    _train(ours, mine, 50)
    _train(theirs, torchs, 50)
    assert mine._state is not None  # steps 2-50 took the short path
    assert _same(ours, theirs)
    got, want = mine.state_dict(), torchs.state_dict()
    assert got["param_groups"] == want["param_groups"]
    assert got["state"].keys() == want["state"].keys()
    for i, s in want["state"].items():
        assert s.keys() == got["state"][i].keys() and all(torch.equal(v, got["state"][i][k]) for k, v in s.items())
    assert float(got["state"][0]["step"]) == 50.0
    assert all(p.grad is not None for p in ours.parameters())
    mine.zero_grad()
    assert all(p.grad is None for p in ours.parameters())


def test_a_loaded_state_carries_on_as_torchs_would():
    ours, theirs = _net(0), _net(0)
    mine, torchs = Adam(ours.parameters(), lr=1e-3), torch.optim.Adam(theirs.parameters(), lr=1e-3, fused=True)
    _train(ours, mine, 10)
    _train(theirs, torchs, 10)
    # as a run state holds them (torch's load_state_dict keeps the tensors it is given: each load gets a copy)
    saved, saved_torchs = copy.deepcopy(mine.state_dict()), copy.deepcopy(torchs.state_dict())
    resumed_net, again = _net(5), _net(5)
    resumed_net.load_state_dict(ours.state_dict())
    again.load_state_dict(theirs.state_dict())
    resumed = Adam(resumed_net.parameters(), lr=1e-3)
    torchs_again = torch.optim.Adam(again.parameters(), lr=1e-3, fused=True)
    resumed.load_state_dict(copy.deepcopy(saved))
    torchs_again.load_state_dict(copy.deepcopy(saved_torchs))
    _train(resumed_net, resumed, 10, seed=2)
    _train(again, torchs_again, 10, seed=2)
    assert _same(resumed_net, again)
    # an optimiser given a state with new tensors looks its moments up again
    moments = mine._state
    mine.load_state_dict(copy.deepcopy(saved))
    _train(ours, mine, 5, seed=3)
    _train(theirs, torchs, 5, seed=3)
    assert _same(ours, theirs)
    assert mine._state is not moments and mine._state[0][0] is mine.torch.state[mine.params[0]]["exp_avg"]


def test_a_parameter_without_a_gradient_is_left_as_torch_leaves_it():
    ours, theirs = _net(0), _net(0)
    mine, torchs = Adam(ours.parameters(), lr=1e-3), torch.optim.Adam(theirs.parameters(), lr=1e-3, fused=True)
    _train(ours, mine, 3)
    _train(theirs, torchs, 3)
    for net, opt in ((ours, mine), (theirs, torchs)):  # only the first layer learns this step
        opt.zero_grad()
        net[0](torch.ones(8, 4)).sum().backward()
        opt.step()
    assert ours[2].weight.grad is None and _same(ours, theirs)
    assert float(mine.state_dict()["state"][0]["step"]) == 4.0 and float(mine.state_dict()["state"][2]["step"]) == 3.0
