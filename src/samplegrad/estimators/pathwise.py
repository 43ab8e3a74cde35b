"""The pathwise (reparameterization) gradient estimator.

Write the sample as a differentiable function of parameter-free noise, ``z = g_phi(eps)`` with
``eps ~ p(eps)``; then ``grad_phi E_q[f(z)] = E_p[grad_z f(g_phi(eps)) grad_phi g_phi(eps)]``.
For a Gaussian, ``z = mu + sigma * eps`` with ``eps ~ N(0, 1)``: the VAE "sampling layer"
(Kingma & Welling 2014; Rezende et al. 2014). Families without an explicit ``g`` (Gamma, Beta,
Dirichlet) use implicit reparameterization, ``grad_phi z = -grad_phi F(z) / q(z)`` for the CDF
``F`` (Figurnov et al. 2018), which ``torch.distributions`` implements in ``rsample``.

Unbiased; its variance is governed by the smoothness of ``f`` (Mohamed et al. 2020, Sec. 5).
For ``f(x) = (x - k)^2``, ``x ~ N(mu, sigma^2)``, one sample and ``a = mu - k``:
``Var d/dmu = 4 sigma^2`` and ``Var d/dsigma = 4 a^2 + 8 sigma^2``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from samplegrad._internal.sampling import draw
from samplegrad.estimators.base import Cost, Estimator
from samplegrad.estimators.catalog import register


@register
class Pathwise(Estimator):
    """``mean_s f(rsample_s)``: the reparameterization trick, for any ``dist.has_rsample``."""

    name = "pathwise"
    unbiased = True

    @classmethod
    def supports(cls, dist: Distribution) -> bool:
        return bool(dist.has_rsample)

    def estimate(
        self, cost: Cost, dist: Distribution, num_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        z = draw(dist, torch.Size((num_samples,)), generator, reparameterized=True)
        return cost(z).mean(0)
