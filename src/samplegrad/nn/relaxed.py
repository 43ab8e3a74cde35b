"""Discrete sampling layers with surrogate gradients: Gumbel-Softmax and straight-through.

The math and references are in :mod:`samplegrad.estimators.relaxed`; these modules apply it to
logits in a network's forward pass, so a discrete latent can sit between two layers.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from samplegrad.estimators.relaxed import (
    Tempered,
    sample_gumbel_softmax,
    sample_straight_through,
)
from samplegrad.nn.sampling import check_layer_num_samples, sample_shape_of

Kind = Literal["categorical", "bernoulli"]
_KINDS = ("categorical", "bernoulli")


def _check_kind(kind: str) -> bool:
    """``kind`` as the ``binary`` flag of the sampling functions."""
    if kind not in _KINDS:
        raise ValueError(
            f"kind must be 'categorical' (the last dimension holds one variable's logits) or "
            f"'bernoulli' (each logit is its own binary variable), got {kind!r}"
        )
    return kind == "bernoulli"


class GumbelSoftmax(nn.Module, Tempered):
    """Concrete / Gumbel-Softmax sample from logits (biased, low variance).

    Args:
        temperature: ``tau > 0``, kept as a buffer so a schedule can anneal it in place
            (``layer.temperature.fill_(tau)``) and it follows ``.to(device)``.
        hard: return exact one-hot (or 0/1) samples with the relaxed samples' gradient.
        kind: ``"categorical"`` (softmax over the last dimension) or ``"bernoulli"``
            (an independent binary Concrete variable per logit).
        num_samples: ``None`` for one sample of the logits' shape; ``S`` for ``S`` samples in
            a new leading dimension, ``(S, *logits.shape)``.
    """

    def __init__(
        self,
        temperature: float = 1.0,
        hard: bool = False,
        kind: Kind = "categorical",
        num_samples: int | None = None,
    ) -> None:
        super().__init__()
        self._init_temperature(temperature)
        self.binary = _check_kind(kind)
        self.kind = kind
        self.hard = bool(hard)
        self.num_samples = check_layer_num_samples(num_samples)

    def forward(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return sample_gumbel_softmax(
            logits,
            self.checked_temperature(),
            hard=self.hard,
            binary=self.binary,
            sample_shape=sample_shape_of(self.num_samples),
            generator=generator,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature.item():g}, hard={self.hard}, kind={self.kind!r}, "
            f"num_samples={self.num_samples}"
        )


class StraightThrough(nn.Module):
    """Exact sample from logits, with the gradient of the probabilities (Bengio et al. 2013).

    Args:
        kind: ``"categorical"`` (one-hot samples over the last dimension) or ``"bernoulli"``.
        num_samples: ``None`` for one sample of the logits' shape; ``S`` for ``(S, *shape)``.
    """

    def __init__(self, kind: Kind = "categorical", num_samples: int | None = None) -> None:
        super().__init__()
        self.binary = _check_kind(kind)
        self.kind = kind
        self.num_samples = check_layer_num_samples(num_samples)

    def forward(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        probs = torch.sigmoid(logits) if self.binary else torch.softmax(logits, dim=-1)
        return sample_straight_through(
            probs,
            binary=self.binary,
            sample_shape=sample_shape_of(self.num_samples),
            generator=generator,
        )

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, num_samples={self.num_samples}"
