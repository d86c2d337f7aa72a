"""A CartPole teacher made by hand, not trained: it plays 500 on every held-out episode."""

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
