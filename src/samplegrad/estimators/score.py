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

from samplegrad._sampling import draw
from samplegrad.estimators.base import Cost, Estimator, register, zero_with_gradient_of
from samplegrad.estimators.baselines import Baseline, as_baseline, check_baseline_samples


@register
class ScoreFunction(Estimator):
    """REINFORCE with an optional baseline; handles any distribution with ``log_prob``.

    Args:
        baseline: ``None``; ``"loo"`` (leave-one-out over the samples, needs
            ``num_samples >= 2``); ``sg.MovingAverage(decay)``; or a callable / ``nn.Module``
            taking no arguments and returning baseline values broadcastable to the batch shape,
            trained by the same surrogate to minimise the squared error ``(f - b)^2``.
    """

    name = "score"

    def __init__(self, baseline: str | Baseline | object | None = None) -> None:
        super().__init__()
        self.baseline = as_baseline(baseline)

    @classmethod
    def supports(cls, dist: Distribution) -> bool:
        return True

    def estimate(
        self, cost: Cost, dist: Distribution, num_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        baseline_module = self.baseline
        check_baseline_samples(baseline_module, num_samples)
        z = draw(dist, torch.Size((num_samples,)), generator, reparameterized=False)
        costs = cost(z)
        score = zero_with_gradient_of(dist.log_prob(z))
        if baseline_module is None:
            return (costs + costs.detach() * score).mean(0)
        baseline = baseline_module(costs)
        signal = costs.detach() - baseline.detach()
        surrogate = (costs + signal * score).mean(0)
        if baseline.requires_grad:
            squared_error = ((costs.detach() - baseline) ** 2).mean(0)
            surrogate = surrogate + (squared_error - squared_error.detach())
        return surrogate
