"""Antithetic estimators for Bernoulli variables: ARM and DisARM.

Both draw pairs of Bernoulli vectors from one uniform ``u ~ U(0, 1)^D``: with
``theta = sigmoid(phi)`` for the logits ``phi``,

    b = 1[u < theta]            b~ = 1[1 - u < theta]

(in logit form ``b = 1[logit(u) < phi]``, ``b~ = 1[-logit(u) < phi]``). Each of ``b`` and ``b~``
is exactly ``Bernoulli(theta)``; they are negatively correlated, so their difference cancels
most of ``f``'s scale. ``f`` is evaluated at both, and ``num_samples`` counts these evaluations.

**ARM** (Augment-REINFORCE-Merge; Yin & Zhou 2019, ICLR, Theorem 1). Writing the expectation
over the augmenting uniform and merging the REINFORCE estimates of ``u`` and ``1 - u``::

    d/dphi_d E[f(b)] = E_u[ (f(b~) - f(b)) (u_d - 1/2) ]

For one variable at ``theta <= 1/2`` this is ``d |u - 1/2|`` where ``|u - 1/2| > 1/2 - theta``
and 0 elsewhere, ``d = f(1) - f(0)``: the mean is ``d theta (1 - theta)``.

**DisARM** (Dong, Mnih & Tucker 2020, NeurIPS, eq. 5). Integrating ``u`` out of ARM given the
pair ``(b, b~)`` (Rao-Blackwellization) leaves, per dimension,

    g_d = 1/2 (f(b) - f(b~)) (-1)^{b~_d} 1[b_d != b~_d] sigmoid(|phi_d|)

and ``(-1)^{b~_d} 1[b_d != b~_d] = b_d - b~_d`` for binary values. Its variance is never larger
than ARM's; for one variable at ``theta = 1/2`` the pair always differs and the estimate is the
constant ``d / 4``, the exact gradient.

The surrogate over the ``K = num_samples / 2`` pairs, with ``g`` the average of the pair
estimates, is::

    L = mean over all 2K points of f  +  sum_d stop_gradient(g_d) (phi_d - stop_gradient(phi_d))

Its value is the mean cost, its gradient w.r.t. the logits is ``g`` and w.r.t. parameters inside
``f`` the pathwise part ``mean_s grad f(z_s)``. Logits derived from ``probs`` receive the
gradient through ``Bernoulli.logits``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Distribution

from samplegrad._internal.families import base_distribution
from samplegrad._internal.sampling import open_uniform
from samplegrad._internal.shapes import sum_after
from samplegrad.estimators.base import Cost, Estimator
from samplegrad.estimators.catalog import register


class Antithetic(Estimator):
    """Pairs of antithetic Bernoulli samples; subclasses weight each pair's cost difference.

    ``num_samples`` counts evaluations of ``f``: it must be even, ``num_samples / 2`` pairs.
    ``f`` is called once, on the ``K`` samples ``b`` followed by their ``K`` partners ``b~``.
    """

    unbiased = True
    min_num_samples = 2
    even_num_samples = True

    @classmethod
    def supports(cls, dist: Distribution) -> bool:
        return isinstance(base_distribution(dist), Bernoulli)

    def estimate(
        self, cost: Cost, dist: Distribution, num_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        logits = base_distribution(dist).logits
        pairs = num_samples // 2
        # u is float32 or wider (open_uniform), so b and the weights are computed in it.
        u = open_uniform(torch.Size((pairs, *logits.shape)), logits, generator)
        noise = torch.logit(u)
        phi = logits.detach()
        b, b_anti = (noise < phi).to(u.dtype), (-noise < phi).to(u.dtype)
        costs = cost(torch.cat([b, b_anti]).to(logits.dtype))
        difference = (costs[:pairs] - costs[pairs:]).detach()  # f(b) - f(b~), shape (K, *B)
        difference = difference.reshape(*difference.shape, *(1,) * len(dist.event_shape))
        gradient = (0.5 * difference * self.weight(u, b, b_anti, phi)).mean(0).to(logits.dtype)
        attached = sum_after(gradient * (logits - phi), len(dist.batch_shape))
        return costs.mean(0) + attached

    def weight(self, u: Tensor, b: Tensor, b_anti: Tensor, phi: Tensor) -> Tensor:
        """The factor ``w_d`` in the pair estimate ``g_d = 1/2 (f(b) - f(b~)) w_d``."""
        raise NotImplementedError


@register
class ARM(Antithetic):
    """Augment-REINFORCE-Merge (Yin & Zhou 2019): ``g_d = 1/2 (f(b) - f(b~)) (1 - 2 u_d)``."""

    name = "arm"

    def weight(self, u: Tensor, b: Tensor, b_anti: Tensor, phi: Tensor) -> Tensor:
        return 1 - 2 * u


@register
class DisARM(Antithetic):
    """DisARM (Dong, Mnih & Tucker 2020): ARM with ``u`` integrated out given the pair,
    ``g_d = 1/2 (f(b) - f(b~)) (b_d - b~_d) sigmoid(|phi_d|)``."""

    name = "disarm"

    def weight(self, u: Tensor, b: Tensor, b_anti: Tensor, phi: Tensor) -> Tensor:
        return (b - b_anti) * torch.sigmoid(phi.abs())
