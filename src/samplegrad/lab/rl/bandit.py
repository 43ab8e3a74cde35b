"""The MNIST contextual bandit: see an image, guess its digit, get reward 1 if right, else 0.

Unlike classification, the learner never sees the label: only the reward of the one guess it
made (here ``S`` guesses per image, for the leave-one-out baseline). It needs no package beyond
samplegrad's own: the images come from :func:`samplegrad.lab.data.load_mnist` as grey levels in
``[0, 1]`` (``binarize="none"``), flattened to 784 features.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from samplegrad.lab.data import MNIST, load_mnist

NUM_ACTIONS = 10
OBSERVATION_SIZE = 28 * 28


def load_bandit(
    data_dir: str | None, split: str, validation_size: int, device: torch.device | str
) -> MNIST:
    """One split of MNIST as the bandit's contexts (grey levels, no binarization)."""
    return load_mnist(
        data_dir, split=split, validation_size=validation_size, binarize="none", device=device
    )


def contexts(data: MNIST, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``batch_size`` images drawn uniformly with replacement, and their labels (hidden from
    the learner; the reward is computed from them)."""
    index = torch.randint(len(data), (batch_size,), generator=generator, device=data.images.device)
    return data.images[index], data.labels[index]


@dataclasses.dataclass
class BanditEvaluation:
    """A policy's guesses on held-out images.

    Attributes:
        greedy_reward: mean reward of the greedy guess ``argmax pi(. | x)``: the accuracy.
        expected_reward: mean of ``pi(label | x)``, the exact expected reward of a sampled
            guess (no sampling noise).
        confusion: ``(10, 10)`` counts of (true digit, greedy guess).
        images: how many images were evaluated.
    """

    greedy_reward: float
    expected_reward: float
    confusion: Tensor
    images: int


@torch.no_grad()
def evaluate_bandit(
    policy: nn.Module, data: MNIST, limit: int | None = None, batch_size: int = 2000
) -> BanditEvaluation:
    """:class:`BanditEvaluation` of ``policy`` on the first ``limit`` images of ``data``
    (``None``: all)."""
    confusion = torch.zeros(NUM_ACTIONS, NUM_ACTIONS, dtype=torch.int64)
    expected = 0.0
    n = len(data) if limit is None else min(limit, len(data))
    for start in range(0, n, batch_size):
        x = data.images[start : min(start + batch_size, n)]
        y = data.labels[start : min(start + batch_size, n)]
        probabilities = policy(x).softmax(-1)
        expected += probabilities.gather(-1, y[:, None]).sum().item()
        guess = probabilities.argmax(-1)
        confusion += torch.bincount(
            (y * NUM_ACTIONS + guess).cpu(), minlength=NUM_ACTIONS * NUM_ACTIONS
        ).reshape(NUM_ACTIONS, NUM_ACTIONS)
    return BanditEvaluation(confusion.diag().sum().item() / n, expected / n, confusion, n)
