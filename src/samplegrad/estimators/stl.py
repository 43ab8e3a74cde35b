"""Sticking the landing: the pathwise estimator without the score of ``q``'s parameters.

The pathwise gradient of a variational cost that contains ``log q_phi(z)`` (the negative ELBO,
``f(z) = log q_phi(z) - log p(x, z)``) differentiates ``log q`` twice: through the sample
``z = g_phi(eps)`` (the *path*) and through ``phi`` directly, with ``z`` held fixed (the
*score*, ``d/dphi log q_phi(z)``). The score term has expectation zero, ``E_q[grad log q] = 0``,
but not zero variance. Roeder, Wu & Duvenaud (2017, "Sticking the landing: simple, lower-variance
gradient estimators for variational inference", NeurIPS) drop it::

    g = mean_s [ grad_phi f(z_s) - d/dphi log q_phi(z)|_{z = z_s} ],

unbiased for any ``f`` (the removed term has mean zero), and of zero variance when ``q`` is the
exact posterior: then ``log q(z) - log p(x, z) = -log p(x)`` for every ``z``, so the path term
vanishes too. The score term is removed through ``log q(z) - log q_{stop(phi)}(z)`` (value 0),
with ``q``'s parameters detached generically for any family with ``rsample``
(:mod:`samplegrad._internal.detach`). Use it where ``f`` holds ``dist.log_prob(z)``, the ELBO;
for a cost without ``log q`` it only adds variance. The multi-sample bound's counterpart is
DReG: ``sg.iwae_bound(..., estimator="dreg")``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from samplegrad._internal.detach import detached
from samplegrad._internal.families import log_prob
from samplegrad._internal.sampling import draw
from samplegrad.estimators.base import Cost, Estimator
from samplegrad.estimators.catalog import register


@register
class StickingTheLanding(Estimator):
    """``mean_s f(rsample_s)`` without the score of ``dist``'s parameters; any
    ``dist.has_rsample`` (module docstring)."""

    name = "stl"
    unbiased = True

    @classmethod
    def supports(cls, dist: Distribution) -> bool:
        return bool(dist.has_rsample)

    def estimate(
        self, cost: Cost, dist: Distribution, num_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        z = draw(dist, torch.Size((num_samples,)), generator, reparameterized=True)
        score_term = log_prob(dist, z) - log_prob(detached(dist), z)  # value 0
        return (cost(z) - score_term).mean(0)
