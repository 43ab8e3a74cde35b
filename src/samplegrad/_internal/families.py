"""Which distribution family a ``torch.distributions`` object belongs to.

Estimators for discrete variables act on the *base* distribution of an ``Independent``
wrapper: ``Independent(Bernoulli(logits), 1)`` draws the same numbers as ``Bernoulli(logits)``
and only sums the log-probabilities over the reinterpreted dimensions.
"""

from __future__ import annotations

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
