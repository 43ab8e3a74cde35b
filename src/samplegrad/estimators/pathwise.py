"""The pathwise (reparameterization) gradient estimator, with the delta control variate.

Write the sample as a differentiable function of parameter-free noise, ``z = g_phi(eps)`` with
``eps ~ p(eps)``; then ``grad_phi E_q[f(z)] = E_p[grad_z f(g_phi(eps)) grad_phi g_phi(eps)]``.
For a Gaussian, ``z = mu + sigma * eps`` with ``eps ~ N(0, 1)``: the VAE "sampling layer"
(Kingma & Welling 2014; Rezende et al. 2014). Families without an explicit ``g`` (Gamma, Beta,
Dirichlet) use implicit reparameterization, ``grad_phi z = -grad_phi F(z) / q(z)`` for the CDF
``F`` (Figurnov et al. 2018), which ``torch.distributions`` implements in ``rsample``.

Unbiased; its variance is governed by the smoothness of ``f`` (Mohamed et al. 2020, Sec. 5).
For ``f(x) = (x - k)^2``, ``x ~ N(mu, sigma^2)``, one sample and ``a = mu - k``:
``Var d/dmu = 4 sigma^2`` and ``Var d/dsigma = 4 a^2 + 8 sigma^2``.

``control_variate="delta"`` subtracts the pathwise gradient of ``f``'s second-order Taylor
expansion ``h`` around the mean and adds back ``grad E_q[h]`` exactly
(:mod:`samplegrad.estimators.delta`): still unbiased, and the variance left is that of
``f - beta h``, zero for a quadratic ``f`` with ``beta = 1``. The surrogate over ``z_s``::

    L = mean_s [ f(z_s) - beta slope_s . (z_s - stop_gradient(z_s)) ] + beta (E_q[h] - stop).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from samplegrad._internal.sampling import draw
from samplegrad._internal.shapes import sum_rightmost
from samplegrad.estimators.base import Cost, Estimator
from samplegrad.estimators.catalog import register, register_variant
from samplegrad.estimators.delta import delta_control_variate, has_independent_numeric_coordinates

CONTROL_VARIATES = ("delta",)


@register
class Pathwise(Estimator):
    """``mean_s f(rsample_s)``: the reparameterization trick, for any ``dist.has_rsample``.

    Args:
        control_variate: ``None`` or ``"delta"`` (module docstring; needs independent numeric
            coordinates, e.g. ``Normal`` or ``Independent(Normal)``, and a twice
            differentiable ``f``).
        coefficient: ``beta``, the weight of the control variate (default 1).
    """

    name = "pathwise"
    unbiased = True

    def __init__(self, control_variate: str | None = None, coefficient: float = 1.0) -> None:
        super().__init__()
        if control_variate not in (None, *CONTROL_VARIATES):
            raise ValueError(
                f"control_variate must be None or one of {', '.join(map(repr, CONTROL_VARIATES))}"
                f", got {control_variate!r}"
            )
        if isinstance(coefficient, bool) or not isinstance(coefficient, int | float):
            raise ValueError(f"coefficient must be a number, got {coefficient!r}")
        self.control_variate = control_variate
        self.coefficient = float(coefficient)

    @classmethod
    def supports(cls, dist: Distribution) -> bool:
        return bool(dist.has_rsample)

    def handles(self, dist: Distribution) -> bool:
        """With the delta control variate, independent numeric coordinates too."""
        return super().handles(dist) and (
            self.control_variate is None or has_independent_numeric_coordinates(dist)
        )

    def estimate(
        self, cost: Cost, dist: Distribution, num_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        z = draw(dist, torch.Size((num_samples,)), generator, reparameterized=True)
        surrogate = cost(z).mean(0)
        if self.control_variate is None:
            return surrogate
        _, slopes, expectation_term = delta_control_variate(cost, dist, z)
        path = sum_rightmost(slopes * (z - z.detach()), len(dist.event_shape)).mean(0)
        return surrogate + self.coefficient * (expectation_term - path)


register_variant(
    "pathwise-delta",
    Pathwise,
    "delta-method control variate (second-order Taylor around the mean)",
    lambda: {"control_variate": "delta"},
)
