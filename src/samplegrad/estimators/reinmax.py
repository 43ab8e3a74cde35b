"""ReinMax (Liu, Zhu, Gao, Dai, Chen & Gao 2023, "Bridging discrete and backpropagation:
straight-through and beyond", NeurIPS): straight-through's second-order successor.

For a categorical variable with class probabilities ``pi = softmax(theta)`` and a one-hot sample
``D``, the gradient of ``E[f(D)]`` is ``sum_i f(I_i) d pi_i / d theta``. Writing
``f(I_i) - E[f]`` as an integral of ``grad f`` between one-hot points, straight-through
(Bengio et al. 2013) approximates that integral by Euler's method, ``grad f`` at one end
(first order); ReinMax uses Heun's method, the average of both ends (second order, exact when
``f`` is quadratic in ``D``), at the same cost: one evaluation of ``f`` and of ``grad f`` at the
sample. With ``g = grad_D f(D)``, ``pi_0 = pi``, ``pi_1 = (softmax(theta / tau) + D) / 2`` and
``J(p) = diag(p) - p p^T`` (the Jacobian of ``softmax`` where its value is ``p``), the
estimate is::

    grad_theta = 2 J(pi_1) g - J(pi_0) g / 2

At ``tau = 1``, ``pi_1 = (pi + D) / 2`` is the midpoint of Heun's step and the estimate's
expectation is exact for ``f`` quadratic in ``D``; ``tau > 1`` smooths ``pi_1`` towards the
uniform distribution. The paper takes ``tau >= 1`` (a smaller one would sharpen ``pi_1`` past
the midpoint), and this estimator refuses smaller ones. The formula equals that of the paper's
reference implementation (the ``reinmax`` package, ``ReinMax_Auto.backward``) for a fixed
sample, which ``tests/test_reinmax.py`` checks.

**As a stand-in sample.** ``f`` is evaluated at ``z = D + 2 (s_1 - stop(s_1)) - (pi -
stop(pi)) / 2`` with ``s_1 = softmax(theta - stop(theta) + stop(log pi_1))``: its value is ``D``
exactly and its Jacobian with respect to ``theta`` is ``2 J(pi_1) - J(pi_0) / 2``, so autograd
yields the formula above for parameters upstream and ``grad f`` at ``D`` for parameters inside
``f``. A Bernoulli is the two-class case (``f`` gets the class-1 component, the usual 0/1
value); a ``Categorical`` gets one-hot vectors, as the relaxations give it. Biased unless ``f``
is (at most) quadratic in ``D``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution
from torch.nn import functional as F

from samplegrad.estimators._categories import categories
from samplegrad.estimators.base import Cost, DiscreteChoiceEstimator
from samplegrad.estimators.catalog import register


def reinmax_stand_in(log_probs: Tensor, one_hot: Tensor, temperature: float) -> Tensor:
    """``one_hot`` (``(N, ..., K)``, the sample) with ReinMax's Jacobian with respect to the
    class log-probabilities ``log_probs`` (``(..., K)``); see the module docstring."""
    fixed = log_probs.detach()
    pi_1 = 0.5 * (torch.softmax(fixed / temperature, -1) + one_hot)
    second = torch.softmax(log_probs - fixed + pi_1.log(), -1)  # value pi_1, Jacobian J(pi_1)
    first = log_probs.exp()  # value pi, Jacobian J(pi)
    return one_hot + 2.0 * (second - second.detach()) - 0.5 * (first - first.detach())


@register
class ReinMax(DiscreteChoiceEstimator):
    """ReinMax (Liu et al. 2023): second-order straight-through, biased; Bernoulli, Categorical,
    OneHotCategorical (and ``Independent`` of them). One evaluation of ``f`` per sample.

    Args:
        temperature: ``tau >= 1`` in ``pi_1 = (softmax(theta / tau) + D) / 2``; the paper's
            default is 1.
    """

    name = "reinmax"
    unbiased = False

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if not (
            isinstance(temperature, int | float)
            and not isinstance(temperature, bool)
            and 1.0 <= temperature < math.inf
        ):
            raise ValueError(
                f"temperature must be a finite number >= 1 for ReinMax, got {temperature!r}; "
                "below 1 the estimate loses its second-order accuracy (Liu et al. 2023): use "
                "1.0, or sg.GumbelSoftmax for a low-temperature relaxation"
            )
        self.temperature = float(temperature)

    def estimate(
        self, cost: Cost, dist: Distribution, num_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        view = categories(dist)
        indices = view.sample_indices(num_samples, generator)
        one_hot = F.one_hot(indices, view.num_classes).to(view.log_probs.dtype)
        soft = reinmax_stand_in(view.log_probs, one_hot, self.temperature)
        return cost(view.stand_in(soft)).mean(0)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature:g}"
