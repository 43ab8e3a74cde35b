"""The score-function estimator (REINFORCE, likelihood ratio), with baselines.

``grad_phi E_q[f(z)] = E_q[f(z) grad_phi log q_phi(z)]`` because
``grad q = q grad log q`` (Glynn 1990; Williams 1992). It needs only ``log_prob``, so it
handles any distribution, discrete or continuous; its variance grows with the scale of ``f``,
which a baseline ``b`` removes: ``E_q[(f(z) - b) grad log q(z)]`` is the same expectation for
any ``b`` independent of ``z`` (see :mod:`samplegrad.estimators.baselines`).

The surrogate over samples ``z_s`` (drawn without gradient) is::

    L = mean_s [ f(z_s) + stop_gradient(f(z_s) - b_s) * (log q(z_s) - stop_gradient(log q(z_s))) ]

Its value is the sample mean of ``f``; its gradient is ``mean_s grad f(z_s)`` for parameters
inside ``f`` plus the score term for ``phi``. For ``f(x) = (x - k)^2``, ``x ~ N(mu, sigma^2)``,
one sample, ``a = mu - k`` (Mohamed et al. 2020, Sec. 4):
``Var d/dmu = a^4/s^2 + 14 a^2 + 15 s^2`` and ``Var d/dsigma = 2a^4/s^2 + 60 a^2 + 74 s^2``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from samplegrad._internal.families import log_prob
from samplegrad._internal.sampling import draw
from samplegrad._internal.validation import check_num_samples
from samplegrad.estimators.base import Cost, Estimator, zero_with_gradient_of
from samplegrad.estimators.baselines import (
    Baseline,
    LeaveOneOut,
    MovingAverage,
    as_baseline,
    check_baseline_samples,
)
from samplegrad.estimators.catalog import register, register_variant
from samplegrad.estimators.delta import (
    Coefficient,
    delta_control_variate,
    has_independent_numeric_coordinates,
    optimal_coefficient,
)

CONTROL_VARIATES = ("delta",)


@register
class ScoreFunction(Estimator):
    """REINFORCE with an optional baseline and control variate; any distribution.

    Args:
        baseline: ``None``; ``"loo"`` (leave-one-out over the samples, needs
            ``num_samples >= 2``: "buy 4 samples, get a baseline for free", Kool et al. 2019);
            ``sg.MovingAverage(decay)``; or a callable / ``nn.Module`` taking no arguments and
            returning baseline values broadcastable to the batch shape, trained by the same
            surrogate to minimise the squared error ``(f - b)^2``.
        control_variate: ``None`` or ``"delta"``, the second-order Taylor expansion of ``f``
            around the mean (:mod:`samplegrad.estimators.delta`); the baseline then applies to
            the residual ``f - beta h``.
        coefficient: ``beta`` for the control variate: a number (default 1) or ``"optimal"``,
            estimated per sample from the other samples (needs ``num_samples >= 3``; not with
            the ``"loo"`` baseline, whose values would then depend on the sample itself).
    """

    name = "score"
    unbiased = True

    def __init__(
        self,
        baseline: str | Baseline | object | None = None,
        control_variate: str | None = None,
        coefficient: Coefficient = 1.0,
    ) -> None:
        super().__init__()
        self.baseline = as_baseline(baseline)
        if control_variate not in (None, *CONTROL_VARIATES):
            raise ValueError(
                f"control_variate must be None or one of {', '.join(map(repr, CONTROL_VARIATES))}"
                f", got {control_variate!r}"
            )
        if coefficient != "optimal" and not isinstance(coefficient, int | float):
            raise ValueError(f"coefficient must be a number or 'optimal', got {coefficient!r}")
        if coefficient == "optimal" and isinstance(self.baseline, LeaveOneOut):
            raise ValueError(
                "coefficient='optimal' cannot be combined with baseline='loo': the leave-one-out "
                "baseline of the residuals would depend on each sample through the others' "
                "coefficients; use a fixed coefficient or another baseline"
            )
        self.control_variate = control_variate
        self.coefficient = coefficient

    @classmethod
    def supports(cls, dist: Distribution) -> bool:
        return True

    def handles(self, dist: Distribution) -> bool:
        """Any distribution; with the delta control variate, independent numeric coordinates."""
        return super().handles(dist) and (
            self.control_variate is None or has_independent_numeric_coordinates(dist)
        )

    @property
    def pools_across_batch(self) -> bool:
        """With ``coefficient="optimal"``: ``beta`` is estimated from every batch element."""
        return self.control_variate is not None and self.coefficient == "optimal"

    def check_num_samples(self, num_samples: object) -> int:
        num_samples = super().check_num_samples(num_samples)
        check_baseline_samples(self.baseline, num_samples)
        if self.control_variate is not None and self.coefficient == "optimal":
            check_num_samples(
                num_samples, minimum=3, why="for coefficient='optimal' (leave-one-out estimate)"
            )
        return num_samples

    def estimate(
        self, cost: Cost, dist: Distribution, num_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        baseline_module = self.baseline
        z = draw(dist, torch.Size((num_samples,)), generator, reparameterized=False)
        costs = cost(z)
        score = zero_with_gradient_of(log_prob(dist, z))
        if self.control_variate is None and baseline_module is None:
            return (costs + costs.detach() * score).mean(0)
        surrogate = costs.mean(0)
        residuals = costs.detach()
        if self.control_variate is not None:
            residuals, expectation_term = self._subtract_control_variate(cost, dist, z, residuals)
            surrogate = surrogate + expectation_term
        if baseline_module is None:
            return surrogate + (residuals * score).mean(0)
        baseline = baseline_module(residuals)
        surrogate = surrogate + ((residuals - baseline.detach()) * score).mean(0)
        if baseline.requires_grad:
            squared_error = ((residuals - baseline) ** 2).mean(0)
            surrogate = surrogate + (squared_error - squared_error.detach())
        return surrogate

    def _subtract_control_variate(
        self, cost: Cost, dist: Distribution, z: Tensor, costs: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``f - beta h`` per sample, and the zero-valued term with gradient ``beta grad E[h]``."""
        controls, _, expectation_term = delta_control_variate(cost, dist, z)
        if self.coefficient == "optimal":
            beta = optimal_coefficient(costs, controls, z, expectation_term, dist)
            return costs - beta * controls, beta.mean(0) * expectation_term
        return costs - self.coefficient * controls, self.coefficient * expectation_term


register_variant(
    "score-loo",
    ScoreFunction,
    "leave-one-out baseline, needs num_samples >= 2",
    lambda: {"baseline": "loo"},
)
register_variant(
    "score-ma",
    ScoreFunction,
    "moving-average baseline, decay 0.9",
    lambda decay=0.9: {"baseline": MovingAverage(decay)},
)
register_variant(
    "score-delta",
    ScoreFunction,
    "delta-method control variate (second-order Taylor around the mean)",
    lambda: {"control_variate": "delta"},
)
