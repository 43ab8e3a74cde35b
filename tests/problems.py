"""Exact gradients and variances (docs/design.md, "Exact targets"), batched over repeats.

Each problem holds ``R`` independent copies of its parameters, so one call to an estimator
with ``surrogate.sum().backward()`` yields ``R`` independent gradient estimates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Bernoulli, Independent, Normal


@dataclass
class GaussianQuadratic:
    """``E[(x - k)^2]``, ``x ~ N(mu, sigma^2)``, one sample; ``a = mu - k``.

    True gradients ``d/dmu = 2a``, ``d/dsigma = 2 sigma``; the single-sample variances are in
    docs/design.md, "Exact targets" (Mohamed et al. 2020, JMLR, Sec. 3).
    """

    mu: float = 1.5
    sigma: float = 0.8
    k: float = 0.5
    repeats: int = 200_000
    dtype: torch.dtype = torch.float64

    def __post_init__(self) -> None:
        self.loc = torch.full((self.repeats,), self.mu, dtype=self.dtype, requires_grad=True)
        self.scale = torch.full((self.repeats,), self.sigma, dtype=self.dtype, requires_grad=True)

    def dist(self) -> Normal:
        return Normal(self.loc, self.scale)

    def f(self, x: Tensor) -> Tensor:
        return (x - self.k) ** 2

    @property
    def a(self) -> float:
        return self.mu - self.k

    @property
    def exact_gradients(self) -> tuple[float, float]:
        return 2 * self.a, 2 * self.sigma

    def variances(self, estimator: str) -> tuple[float, float]:
        a, s = self.a, self.sigma
        return {
            "score": (a**4 / s**2 + 14 * a**2 + 15 * s**2, 2 * a**4 / s**2 + 60 * a**2 + 74 * s**2),
            "pathwise": (4 * s**2, 4 * a**2 + 8 * s**2),
        }[estimator]

    def gradients(self, surrogate: Tensor) -> tuple[Tensor, Tensor]:
        surrogate.sum().backward()
        return self.loc.grad, self.scale.grad


@dataclass
class BernoulliToy:
    """``E_{b ~ Bern(sigmoid(phi))}[(b - t)^2]``; exact gradient ``theta (1-theta) (1-2t)``."""

    phi: float = 0.0
    t: float = 0.499
    repeats: int = 200_000
    dtype: torch.dtype = torch.float64

    def __post_init__(self) -> None:
        self.logits = torch.full((self.repeats,), self.phi, dtype=self.dtype, requires_grad=True)

    def dist(self) -> Bernoulli:
        return Bernoulli(logits=self.logits)

    def f(self, b: Tensor) -> Tensor:
        return (b - self.t) ** 2

    @property
    def theta(self) -> float:
        return 1.0 / (1.0 + np.exp(-self.phi))

    @property
    def exact_gradient(self) -> float:
        return self.theta * (1 - self.theta) * (1 - 2 * self.t)

    def score_variance(self, num_samples: int = 1) -> float:
        """``E[(f(b) (b - theta))^2] - g^2`` over ``b``, divided by the number of samples."""
        theta, t = self.theta, self.t
        second_moment = (
            theta * ((1 - t) ** 2 * (1 - theta)) ** 2 + (1 - theta) * (t**2 * theta) ** 2
        )
        return (second_moment - self.exact_gradient**2) / num_samples

    def gradient(self, surrogate: Tensor) -> Tensor:
        surrogate.sum().backward()
        return self.logits.grad


def three_dimensional_bernoulli(repeats: int, dtype: torch.dtype = torch.float64):
    """docs/design.md's 3-D check: ``f(b) = sum((b - linspace(0.2, 0.9, 3))^2)``.

    ``theta = RandomState(0).rand(3)``; exact gradient w.r.t. the logits
    ``theta (1 - theta) (1 - 2 c)`` per dimension = ``[0.14857, -0.02037, -0.19155]``.
    Returns ``(logits leaf (R, 3), dist, f, exact)``.
    """
    theta = torch.tensor(np.random.RandomState(0).rand(3), dtype=dtype)
    centres = torch.linspace(0.2, 0.9, 3, dtype=dtype)
    logits = torch.logit(theta).expand(repeats, 3).clone().requires_grad_(True)
    dist = Independent(Bernoulli(logits=logits), 1)

    def f(b: Tensor) -> Tensor:
        return ((b - centres) ** 2).sum(-1)

    exact = theta * (1 - theta) * (1 - 2 * centres)
    return logits, dist, f, exact


class RecordingCost:
    """Wraps a cost ``f`` and records every batch of samples it is given and its costs."""

    def __init__(self, f) -> None:
        self.f = f
        self.inputs: list[Tensor] = []
        self.outputs: list[Tensor] = []

    def __call__(self, z: Tensor) -> Tensor:
        costs = self.f(z)
        self.inputs.append(z)
        self.outputs.append(costs)
        return costs
