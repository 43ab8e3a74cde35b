"""Which distribution family a ``torch.distributions`` object belongs to.

Estimators for discrete variables act on the *base* distribution of an ``Independent``
wrapper: ``Independent(Bernoulli(logits), 1)`` draws the same numbers as ``Bernoulli(logits)``
and only sums the log-probabilities over the reinterpreted dimensions. Masked categorical
classes (``-inf`` logits) get a finite stand-in where estimators take differences of logits
(:func:`finite_masked_logits`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import (
    Bernoulli,
    Categorical,
    Distribution,
    Independent,
    OneHotCategorical,
)

from samplegrad._internal.shapes import sum_rightmost

DISCRETE_CHOICE = (Bernoulli, Categorical, OneHotCategorical)
"""The families the relaxation and straight-through estimators understand."""


def base_distribution(dist: Distribution) -> Distribution:
    """The innermost distribution under any number of ``Independent`` wrappers."""
    while isinstance(dist, Independent):
        dist = dist.base_dist
    return dist


def is_discrete_choice(dist: Distribution) -> bool:
    """Bernoulli, Categorical or OneHotCategorical, possibly wrapped in ``Independent``."""
    return isinstance(base_distribution(dist), DISCRETE_CHOICE)


def log_prob(dist: Distribution, value: Tensor) -> Tensor:
    """``dist.log_prob(value)``, also for an empty batch: torch's ``Independent.log_prob``
    reshapes its sum to ``(..., -1)``, which is ambiguous for zero elements, so the reinterpreted
    dimensions are summed here (and the result stays attached to the parameters)."""
    if isinstance(dist, Independent):
        return sum_rightmost(log_prob(dist.base_dist, value), dist.reinterpreted_batch_ndims)
    return dist.log_prob(value)


def finite_masked_logits(logits: Tensor) -> Tensor:
    """Categorical ``logits`` (last dimension) with each ``-inf``, a masked class, replaced by
    a finite stand-in that behaves the same: its probability is 0 in the dtype, no Gumbel
    perturbation lifts it to the argmax, and it carries no gradient. The relaxations and their
    derivatives (``z / temperature``, ``d/d temperature``) then stay finite where ``-inf``
    would give ``-inf * 0 = NaN``. The stand-in lies ``gap`` below the row's smallest finite
    logit, with ``exp(-gap)`` below the dtype's smallest normal number squared and ``gap``
    above the 21 that separates the largest from the smallest float32 Gumbel noise."""
    masked = logits == -math.inf
    finfo = torch.finfo(logits.dtype)
    gap = max(-2.0 * math.log(finfo.tiny), 64.0)
    lowest = logits.detach().masked_fill(masked, finfo.max).amin(-1, keepdim=True)
    return torch.where(masked, lowest - gap, logits)
