"""Calibration of a classifier's predictive probabilities: ECE, reliability bins, entropy.

A classifier is calibrated when, among the examples it predicts with confidence ``c`` (its
largest class probability), a fraction ``c`` is right. The **expected calibration error**
(Naeini et al. 2015; Guo et al. 2017, "On calibration of modern neural networks") bins the
examples by confidence into ``M`` equal-width bins of ``[0, 1]`` (15 here, as in Guo et al.)
and averages the gap between accuracy and mean confidence, weighted by the bins' sizes:

    ECE = sum_m (|B_m| / N) |acc(B_m) - conf(B_m)|.

A confidence of exactly ``k / M`` falls in the bin above it (the last bin is closed).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "ECE_BINS",
    "Reliability",
    "expected_calibration_error",
    "predictive_entropy",
    "reliability",
]

ECE_BINS = 15


class Reliability(NamedTuple):
    """Per confidence bin: the bins' edges ``(M + 1,)``, and per bin ``(M,)`` the number of
    examples, their accuracy and mean confidence (0 in empty bins)."""

    edges: Tensor
    counts: Tensor
    accuracy: Tensor
    confidence: Tensor

    def ece(self) -> float:
        """The expected calibration error of these bins."""
        gap = (self.accuracy - self.confidence).abs()
        return float((self.counts * gap).sum() / self.counts.sum())


def reliability(probs: Tensor, labels: Tensor, bins: int = ECE_BINS) -> Reliability:
    """The reliability bins of predictive probabilities ``probs`` ``(N, C)`` and integer
    ``labels`` ``(N,)``, with ``bins`` equal-width confidence bins."""
    if probs.dim() != 2 or labels.shape != probs.shape[:1]:
        raise ValueError(
            f"probs must be (N, classes) and labels (N,), got {tuple(probs.shape)} and "
            f"{tuple(labels.shape)}"
        )
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be an int >= 1, got {bins!r}")
    probs = probs.detach().double().cpu()
    confidence, predicted = probs.max(dim=-1)
    correct = (predicted == labels.cpu()).double()
    index = (confidence * bins).long().clamp(max=bins - 1)
    counts = torch.bincount(index, minlength=bins).double()
    sums = torch.zeros(bins, dtype=torch.float64)
    safe = counts.clamp(min=1)
    return Reliability(
        torch.linspace(0.0, 1.0, bins + 1, dtype=torch.float64),
        counts,
        sums.index_add(0, index, correct) / safe,
        sums.index_add(0, index, confidence) / safe,
    )


def expected_calibration_error(probs: Tensor, labels: Tensor, bins: int = ECE_BINS) -> float:
    """The ECE of ``probs`` ``(N, C)`` against ``labels`` ``(N,)`` (module docstring)."""
    return reliability(probs, labels, bins).ece()


def predictive_entropy(probs: Tensor) -> Tensor:
    """``H[p] = -sum_c p_c log p_c`` per row of ``probs`` ``(N, C)``, in nats (0 log 0 = 0)."""
    return -torch.special.xlogy(probs, probs).sum(-1)
