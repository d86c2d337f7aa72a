"""The learners' optimiser: Adam on torch's fused kernel, without torch.optim around it."""

from __future__ import annotations

from collections.abc import Iterable

import torch

# torch.optim.Adam's parameter group, fused, as its state_dict gives it (with lr, betas, eps and params)
_GROUP = {"weight_decay": 0, "amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
          "differentiable": False, "fused": True, "decoupled_weight_decay": False}


class Adam:
    """`torch.optim.Adam(params, lr=lr, fused=True)`: the same update, bit for bit, and the same
    state dict (either loads the other's); a step is the two calls torch's own makes, the step
    counts' increment and the fused kernel.

    torch.optim's bookkeeping around them (hooks, profiler records, grouping the tensors on every
    call) is a fixed cost per step, large beside a small network's: on one thread here a 16x16
    student's distillation step took 449 µs with torch's optimiser and 332 µs with this one, a
    256x256 DQN step 1,377 and 1,218 µs (`benchmarks/learner_step.py --compare optimizer`). And
    building torch's first optimiser imports torch._dynamo, about 0.8 s at every learner's start.

    As torch's: a parameter's state is made at its first gradient, and a step leaves parameters
    without a gradient as they are."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params: list[torch.nn.Parameter] = list(params)
        if not self.params:
            raise ValueError("Adam got no parameters to optimise")
        self.lr, self.betas, self.eps = lr, betas, eps
        self.state: dict[int, dict[str, torch.Tensor]] = {}  # by parameter index: step, exp_avg, exp_avg_sq
        self._lists: dict[tuple[int, ...], list[tuple[list[int], list[list[torch.Tensor]]]]] = {}

    def zero_grad(self) -> None:
        """Gradients dropped (torch's `zero_grad(set_to_none=True)`)."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        live = tuple(i for i, p in enumerate(self.params) if p.grad is not None)
        if not live:
            return
        for indices, (params, exp_avgs, exp_avg_sqs, steps) in self._groups(live):
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(params, [self.params[i].grad for i in indices], exp_avgs, exp_avg_sqs, [], steps,
                               amsgrad=False, lr=self.lr, beta1=self.betas[0], beta2=self.betas[1], weight_decay=0.0,
                               eps=self.eps, maximize=False)

    def _groups(self, live: tuple[int, ...]) -> list[tuple[list[int], list[list[torch.Tensor]]]]:
        """The parameters with a gradient, by device and dtype (one fused call each), with their
        state, made where it is not there yet; kept for the next step with the same parameters."""
        if live not in self._lists:
            groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
            for i in live:
                p = self.params[i]
                if i not in self.state:
                    self.state[i] = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                                     "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                     "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
                groups.setdefault((p.device, p.dtype), []).append(i)
            self._lists[live] = [(idx, [[self.params[i] for i in idx], [self.state[i]["exp_avg"] for i in idx],
                                        [self.state[i]["exp_avg_sq"] for i in idx], [self.state[i]["step"] for i in idx]])
                                 for idx in groups.values()]
        return self._lists[live]

    def state_dict(self) -> dict[str, object]:
        """torch.optim.Adam's state dict: state by parameter index, and its one parameter group."""
        return {"state": {i: dict(s) for i, s in sorted(self.state.items())},
                "param_groups": [{"lr": self.lr, "betas": self.betas, "eps": self.eps, **_GROUP,
                                  "params": list(range(len(self.params)))}]}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """A state dict of this optimiser's or torch.optim.Adam's, over the same parameters: its
        moments, step counts and hyperparameters (as torch's, the saved ones replace these)."""
        groups, saved = state["param_groups"], state["state"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            raise ValueError(f"the optimiser state holds {sum(len(g['params']) for g in groups)} parameters in "
                             f"{len(groups)} group(s): expected one group of {len(self.params)}")
        if groups[0].get("amsgrad") or groups[0].get("maximize") or groups[0].get("weight_decay"):
            raise ValueError("the optimiser state is of Adam with amsgrad, maximize or weight decay: expected plain Adam")
        index = {saved_id: i for i, saved_id in enumerate(groups[0]["params"])}
        loaded: dict[int, dict[str, torch.Tensor]] = {}
        for saved_id, s in saved.items():
            p = self.params[index[saved_id]]
            if tuple(s["exp_avg"].shape) != tuple(p.shape):
                raise ValueError(f"the optimiser state of parameter {index[saved_id]} has shape "
                                 f"{tuple(s['exp_avg'].shape)}: expected {tuple(p.shape)}")
            loaded[index[saved_id]] = {
                "step": torch.as_tensor(s["step"], dtype=torch.float32).to(p.device).clone(),
                "exp_avg": s["exp_avg"].to(device=p.device, dtype=p.dtype).clone(),
                "exp_avg_sq": s["exp_avg_sq"].to(device=p.device, dtype=p.dtype).clone()}
        self.lr, self.betas, self.eps = groups[0]["lr"], tuple(groups[0]["betas"]), groups[0]["eps"]
        self.state, self._lists = loaded, {}
