"""Teachers made, not trained: a CartPole teacher by hand that plays 500 on every held-out episode,
and untrained checkpoints for tests of plumbing, not of scores."""

from __future__ import annotations

from pathlib import Path


def steady_teacher(path: Path) -> str:
    """It pushes right when 0.1 x + 0.5 x' + theta + theta' > 0 (hidden units relu(+-w.x), one per
    action). Students of it reach 500 too, so runs compared within 5% are compared without the
    noise of a half-trained teacher's students. Written to `path`; returns it."""
    import torch

    from qdistill.learners import checkpoint
    from qdistill.learners.networks import QNetwork, to_numpy

    w = torch.tensor([0.1, 0.5, 1.0, 1.0])
    net = QNetwork("2", (4,), 2)
    hidden, head = [m for m in net.layers if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        hidden.weight.copy_(torch.stack([w, -w]))
        hidden.bias.zero_()
        head.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))  # Q(left) = relu(-w.x), Q(right) = relu(w.x)
        head.bias.zero_()
    checkpoint.save(path, checkpoint.Checkpoint("2", (4,), 2, "CartPole-v1", 1, to_numpy(net.state_dict())))
    return str(path)


def untrained_teachers(folder: Path, tasks: dict[str, tuple[tuple[int, ...], int]], *, net: str = "32",
                       seed: int = 0) -> dict[str, str]:
    """A checkpoint of a freshly initialised `net` per env (env → (observation shape, actions)): env → path."""
    import torch

    from qdistill.learners import checkpoint
    from qdistill.learners.networks import QNetwork, to_numpy

    paths = {}
    for env, (shape, actions) in tasks.items():
        torch.manual_seed(seed)
        q = QNetwork(net, shape, actions)
        paths[env] = str(checkpoint.save(folder / f"{env.replace('/', '-')}.pt", checkpoint.Checkpoint(
            net, shape, actions, env, 0, to_numpy(q.state_dict()))))
    return paths
