"""The small networks of the policy-gradient tasks: policies (logits) and value baselines."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from torch import Tensor, nn


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """A multilayer perceptron ``sizes[0] -> ... -> sizes[-1]`` with tanh between layers and a
    linear output (logits for a policy, a value for a baseline)."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        if i:
            layers.append(nn.Tanh())
        layers.append(nn.Linear(fan_in, fan_out))
    return nn.Sequential(*layers)


class ValueBaseline(nn.Module):
    """A learned baseline ``b(x) = scale * net(x)``, predicting the cost still to come.

    ``scale`` is the order of magnitude of the costs (1 for the bandit's ``-1``/``0``, 100 for
    CartPole's returns of up to 500), so the network's outputs stay of order one and Adam's
    steps, of the order of the learning rate in parameter space, move the baseline at the pace
    of the costs. Trained by the REINFORCE surrogate itself to minimise ``(cost - b)^2`` (see
    ``sg.ScoreFunction``'s callable baseline).
    """

    def __init__(self, in_features: int, hidden: int, scale: float) -> None:
        super().__init__()
        self.net = mlp([in_features, hidden, 1])
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        """Baselines of shape ``x.shape[:-1]``."""
        return self.scale * self.net(x).squeeze(-1)
