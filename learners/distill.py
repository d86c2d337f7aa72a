"""DistillLearner: trains several students at once on the same batch of teacher labels."""

from __future__ import annotations


import numpy as np
import torch

from .batch import TransitionBatch, Update
from .configs import DistillConfig
from .losses import agreement, distill_loss
from .multitask import build, forward, task_network, task_of
from .networks import QNetwork, as_input, count_params, obs_norm, to_numpy
from .optim import Adam


# The students' loss and agreement are measured on one step in this many: the driver reads them
# about once a second, and measuring every step cost 6-12% of a 16x16 student's step (the argmaxes
# and the copies out of torch)
METRICS_EVERY = 16


class DistillLearner:
    """One network and one Adam per student; `step` is one gradient step for each.

    `tasks`: (observation shape, action count) of each task; with two or more, every student is
    one MultiTaskQNetwork (a shared trunk, a head per task; `inputs` as there) and a step may take
    rows of several tasks, one batch per task."""

    def __init__(self, config: DistillConfig, tasks: list[tuple[tuple[int, ...], int]], *, seed: int = 0,
                 device: str = "cpu", inputs: str = "per-task") -> None:
        torch.manual_seed(seed)
        self.config = config
        self.device = torch.device(device)
        self.n_tasks = len(tasks)
        self.students = {spec: build(spec, tasks, inputs=inputs).to(self.device) for spec in config.students}
        self.optimizers = {
            name: Adam(net.parameters(), lr=config.lr) for name, net in self.students.items()
        }
        self.steps = 0

    def params(self) -> dict[str, int]:
        return {name: count_params(net) for name, net in self.students.items()}

    def drop(self, name: str) -> None:
        """Student `name` trains no more (a size search's dropped candidate): network and optimiser go."""
        del self.students[name], self.optimizers[name]

    def take_statistics(self, teacher_weights: dict[str, np.ndarray]) -> None:
        """Each `norm-` student's observation statistics set to its teacher's (from the teacher's
        weights), to keep: nothing here updates them. A `norm-` student of a teacher without them
        is refused."""
        stats = {k.rsplit(".", 1)[1]: v for k, v in teacher_weights.items() if k.endswith((".mean", ".var", ".count"))}
        for name, net in self.students.items():
            if (norm := obs_norm(net)) is None:
                continue
            if set(stats) != {"mean", "var", "count"} or np.shape(stats["mean"]) != tuple(norm.mean.shape):
                raise ValueError(f"student {name!r} normalises its observations with its teacher's statistics, but the "
                                 "teacher has none: train the teacher with --normalize-obs, or drop 'norm-'")
            norm.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in stats.items()})

    def step(self, batch: TransitionBatch | list[TransitionBatch]) -> Update:
        """One gradient step of every student towards the teacher_q labels of `batch`: one task's
        rows, or a list of batches of one task each whose losses are averaged over all their rows.
        Its metrics (each student's loss and agreement) come on the first step and one in
        METRICS_EVERY after; the other steps give none."""
        parts = [self._inputs(b) for b in (batch if isinstance(batch, list) else [batch])]
        rows = sum(len(obs) for _, obs, _ in parts)
        measure = self.steps % METRICS_EVERY == 0
        metrics: dict[str, float] = {}
        for name, net in self.students.items():
            loss = torch.zeros((), device=self.device)
            agree = 0.0
            for task, obs, target in parts:
                q = forward(net, obs, task)
                loss = loss + distill_loss(self.config.loss, q, target, tau=self.config.tau) * (len(obs) / rows)
                if measure:
                    agree += agreement(q.detach(), target) * len(obs) / rows
            opt = self.optimizers[name]
            opt.zero_grad()
            loss.backward()
            opt.step()
            if measure:
                metrics[f"learner/distill_loss/{name}"] = float(loss.detach())
                metrics[f"learner/agreement/{name}"] = agree
        self.steps += 1
        return Update(metrics)

    def _inputs(self, batch: TransitionBatch) -> tuple[int, torch.Tensor, torch.Tensor]:
        """(task, observations, teacher Q-values) of one task's rows, on the learner's device."""
        return (task_of(batch.task, self.n_tasks), as_input(batch.observations, self.device),
                torch.as_tensor(batch.teacher_q, dtype=torch.float32, device=self.device))

    def task_network(self, name: str, task: int = 0) -> QNetwork:
        """Student `name` on one task, as a plain QNetwork."""
        return task_network(self.students[name], task)

    def weights(self, task: int = 0) -> dict[str, dict[str, np.ndarray]]:
        """Every student's weights for one task (a plain QNetwork's)."""
        return {name: to_numpy(self.task_network(name, task).state_dict()) for name in self.students}

    def state_dict(self) -> dict[str, object]:
        """Everything a resumed run needs to carry on: students, optimiser states, step count."""
        return {"steps": self.steps,
                "students": {n: net.state_dict() for n, net in self.students.items()},
                "optimizers": {n: opt.state_dict() for n, opt in self.optimizers.items()}}

    def load_state_dict(self, state: dict[str, object]) -> None:
        for name in set(self.students) - set(state["students"]):  # dropped before the state was saved
            self.drop(name)
        for name, net in self.students.items():
            net.load_state_dict(state["students"][name])
            self.optimizers[name].load_state_dict(state["optimizers"][name])
        self.steps = int(state["steps"])
