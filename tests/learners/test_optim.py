"""The learners' Adam: torch's fused Adam's update bit for bit, its state dict both ways, its
refusals, and a start without torch._dynamo."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from qdistill.learners.optim import Adam


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))


def _pair(lr: float = 3e-3) -> tuple[torch.nn.Module, Adam, torch.nn.Module, torch.optim.Adam]:
    ours, theirs = _net(0), _net(0)
    return ours, Adam(ours.parameters(), lr=lr), theirs, torch.optim.Adam(theirs.parameters(), lr=lr, fused=True)


def _train(net: torch.nn.Module, opt, steps: int, *, seed: int = 1) -> None:
    data = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(32, 4, generator=data)
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        opt.step()


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def _same_state(got: dict, want: dict) -> bool:
    return got["param_groups"] == want["param_groups"] and got["state"].keys() == want["state"].keys() and all(
        list(s) == list(got["state"][i]) and all(torch.equal(v, got["state"][i][k]) for k, v in s.items())
        for i, s in want["state"].items())


def test_the_same_update_and_state_dict_as_torchs_fused_adam():
    ours, mine, theirs, torchs = _pair()
    assert _same_state(mine.state_dict(), torchs.state_dict())  # before a step: no state, the same group
    _train(ours, mine, 50)
    _train(theirs, torchs, 50)
    assert _same(ours, theirs)
    assert _same_state(mine.state_dict(), torchs.state_dict())
    assert float(mine.state_dict()["state"][0]["step"]) == 50.0
    assert all(p.grad is not None for p in ours.parameters())
    mine.zero_grad()
    assert all(p.grad is None for p in ours.parameters())


def test_either_loads_the_others_state_and_carries_on_alike():
    ours, mine, theirs, torchs = _pair(lr=1e-3)
    _train(ours, mine, 10)
    _train(theirs, torchs, 10)
    # torch's state into ours and ours into torch's, each given a copy (torch keeps the tensors it
    # is given), on copies of the networks; both carry on as the originals do
    for load_into_ours in (True, False):
        a, b = _net(5), _net(5)
        a.load_state_dict(ours.state_dict())
        b.load_state_dict(theirs.state_dict())
        mine_again = Adam(a.parameters(), lr=0.5)  # the saved lr replaces this, as in torch
        torchs_again = torch.optim.Adam(b.parameters(), lr=0.5, fused=True)
        mine_again.load_state_dict(copy.deepcopy(torchs.state_dict() if load_into_ours else mine.state_dict()))
        torchs_again.load_state_dict(copy.deepcopy(mine.state_dict() if load_into_ours else torchs.state_dict()))
        assert mine_again.lr == 1e-3
        _train(a, mine_again, 10, seed=2)
        _train(b, torchs_again, 10, seed=2)
        assert _same(a, b) and _same_state(mine_again.state_dict(), torchs_again.state_dict())


def test_a_parameter_without_a_gradient_is_left_as_torch_leaves_it():
    ours, theirs = _net(0), _net(0)
    mine, torchs = Adam(ours.parameters(), lr=1e-3), torch.optim.Adam(theirs.parameters(), lr=1e-3, fused=True)
    for net, opt in ((ours, mine), (theirs, torchs)):  # only the first layer learns, then all of it
        for _ in range(3):
            opt.zero_grad()
            net[0](torch.ones(8, 4)).sum().backward()
            opt.step()
        _train(net, opt, 2)
    assert _same(ours, theirs) and _same_state(mine.state_dict(), torchs.state_dict())
    steps = {i: float(s["step"]) for i, s in mine.state_dict()["state"].items()}
    assert steps == {0: 5.0, 1: 5.0, 2: 2.0, 3: 2.0}


def test_a_state_of_other_parameters_is_refused():
    net = _net(0)
    opt = Adam(net.parameters(), lr=1e-3)
    _train(net, opt, 1)
    other = torch.optim.Adam(torch.nn.Linear(4, 2).parameters(), lr=1e-3, fused=True)
    with pytest.raises(ValueError, match=r"holds 2 parameters in 1 group\(s\): expected one group of 4"):
        opt.load_state_dict(other.state_dict())
    swapped = opt.state_dict()
    swapped["state"] = {0: swapped["state"][2]}
    with pytest.raises(ValueError, match=r"state of parameter 0 has shape \(2, 16\): expected \(16, 4\)"):
        opt.load_state_dict(swapped)


def test_a_learner_starts_without_torch_dynamo():
    """torch.optim's first optimiser imports torch._dynamo (0.8 s here); this Adam does not."""
    code = ("import sys, torch; from qdistill.learners.optim import Adam\n"
            "net = torch.nn.Linear(4, 2); opt = Adam(net.parameters(), lr=1e-3)\n"
            "net(torch.ones(3, 4)).sum().backward(); torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)\n"
            "opt.step(); print('torch._dynamo' in sys.modules)")
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.strip() == "False"
