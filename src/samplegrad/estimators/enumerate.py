"""Exact expectation by enumerating a finite support: the ground truth of the tests.

``E_q[f(z)] = sum_z q(z) f(z)``, so the surrogate ``sum_z exp(log q(z)) f(z)`` has the exact
expectation as its value and the exact gradient ``sum_z q(z) (f(z) grad log q(z) + grad f(z))``.
``Independent`` products are enumerated as the Cartesian product of their elements' supports,
``K^n`` points for ``n`` elements of ``K`` values each, so the support must stay small.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from samplegrad._internal.families import base_distribution, log_prob
from samplegrad._internal.sampling import draw
from samplegrad.estimators.base import Cost, Estimator
from samplegrad.estimators.catalog import register


@register
class Enumerate(Estimator):
    """Exact expectation and gradient over a finite support (``num_samples`` is ignored).

    ``f`` is evaluated once on the whole support, a tensor of shape ``(N, *B, *E)``.

    Args:
        max_support_size: refuse supports with more than this many points, rather than run out
            of memory.
    """

    name = "enumerate"
    unbiased = True

    def __init__(self, max_support_size: int = 2**16) -> None:
        super().__init__()
        self.max_support_size = int(max_support_size)

    @classmethod
    def supports(cls, dist: Distribution) -> bool:
        return bool(base_distribution(dist).has_enumerate_support)

    def estimate(
        self, cost: Cost, dist: Distribution, num_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        support = self.support(dist)
        probabilities = log_prob(dist, support).exp()
        return (probabilities * cost(support)).sum(0)

    def support(self, dist: Distribution) -> Tensor:
        """Every point of the support, shape ``(N, *B, *E)``; for an empty batch, one point
        (a support that varies over the batch, a ``Binomial``'s, has no size without elements)."""
        base = base_distribution(dist)
        if dist.batch_shape.numel() == 0:
            point = draw(base, torch.Size((1,)), None, reparameterized=False)
            return point.reshape(1, *dist.batch_shape, *dist.event_shape)
        values = base.enumerate_support(expand=False)  # (K, 1, ..., 1, *base_event)
        num_values = values.shape[0]
        values = values.reshape(num_values, *base.event_shape)
        product_shape = dist.event_shape[: len(dist.event_shape) - len(base.event_shape)]
        num_elements = product_shape.numel()
        size = num_values**num_elements
        if size > self.max_support_size:
            raise ValueError(
                f"the support of {type(dist).__name__} has {num_values}^{num_elements} = {size} "
                f"points, more than max_support_size={self.max_support_size}; raise "
                "max_support_size, or use a sampling estimator such as 'score' with 'loo'"
            )
        grids = torch.meshgrid(
            *[torch.arange(num_values, device=values.device)] * num_elements, indexing="ij"
        )
        indices = torch.stack([g.reshape(-1) for g in grids], dim=-1)  # (size, num_elements)
        points = values[indices]  # (size, num_elements, *base_event)
        batch_ones = (1,) * len(dist.batch_shape)
        points = points.reshape(size, *batch_ones, *dist.event_shape)
        return points.expand(size, *dist.batch_shape, *dist.event_shape)
