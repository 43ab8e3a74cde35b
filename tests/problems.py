"""Exact gradients and variances (docs/design.md, "Exact targets"), batched over repeats.

Each problem holds ``R`` independent copies of its parameters, so one call to an estimator
with ``surrogate.sum().backward()`` yields ``R`` independent gradient estimates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.distributions import (
    Bernoulli,
    Categorical,
    Distribution,
    Independent,
    Normal,
    OneHotCategorical,
)


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


# ------------------------------------------------- discrete families, exact by enumeration


@dataclass(frozen=True)
class DiscreteCase:
    """A discrete-choice family with fixed logits and a non-polynomial cost, for checking an
    estimator's mean gradient against the exact one (by ``sg.Enumerate``) with ``R`` repeats in
    one batched call (the logits' first dimension).

    ``family`` is ``"categorical"``, ``"one-hot"`` or ``"bernoulli"``; ``variables`` the shape
    of an ``Independent`` product (``()`` for none). Class ``k`` of ``K`` stands for the value
    ``v_k = linspace(-1, 1, K)[k]`` (a Bernoulli's 0/1 is its value), and the cost is
    ``sum_d sin(2 x_d + d / 2) + x_0^3 (+ x_0 x_1)`` over the variables' values ``x``.
    """

    name: str
    family: str
    num_classes: int
    variables: tuple[int, ...] = ()

    @property
    def logit_shape(self) -> tuple[int, ...]:
        classes = () if self.family == "bernoulli" else (self.num_classes,)
        return (*self.variables, *classes)

    def logits(self, repeats: int | None = None) -> Tensor:
        """Fixed logits, as a leaf of shape ``(repeats, *logit_shape)`` (no ``repeats``
        dimension without)."""
        values = torch.linspace(-1.2, 0.9, math.prod(self.logit_shape), dtype=torch.float64)
        values = values[torch.randperm(len(values), generator=torch.Generator().manual_seed(3))]
        values = values.reshape(self.logit_shape)
        if repeats is not None:
            values = values.expand(repeats, *self.logit_shape)
        return values.clone().requires_grad_(True)

    def dist(self, logits: Tensor) -> Distribution:
        family = {"categorical": Categorical, "one-hot": OneHotCategorical}.get(self.family)
        base = Bernoulli(logits=logits) if family is None else family(logits=logits)
        return Independent(base, len(self.variables)) if self.variables else base

    def values(self, z: Tensor) -> Tensor:
        """Each variable's value: ``(N, *B, *variables)``."""
        if self.family == "bernoulli":
            return z
        classes = torch.linspace(-1, 1, self.num_classes, dtype=torch.float64)
        if z.is_floating_point():  # one-hot vectors (also a relaxation's, for a Categorical)
            return z @ classes.to(z.dtype)
        return classes[z]

    def f(self, z: Tensor) -> Tensor:
        x = self.values(z)
        x = x.reshape(*x.shape[: x.dim() - len(self.variables)], -1)
        offsets = torch.arange(x.shape[-1], dtype=x.dtype) / 2
        cost = torch.sin(2 * x + offsets).sum(-1) + x[..., 0] ** 3
        return cost + x[..., 0] * x[..., 1] if x.shape[-1] > 1 else cost

    def exact_gradient(self) -> Tensor:
        """``d/dlogits E[f]`` by enumeration, flattened."""
        from samplegrad import Enumerate

        logits = self.logits()
        (gradient,) = torch.autograd.grad(Enumerate()(self.f, self.dist(logits)), logits)
        return gradient.reshape(-1)

    def estimates(
        self, estimator: torch.nn.Module, num_samples: int, repeats: int, seed: int
    ) -> Tensor:
        """``repeats`` gradient estimates ``(R, P)`` from one batched call."""
        logits = self.logits(repeats)
        generator = torch.Generator().manual_seed(seed)
        surrogate = estimator(self.f, self.dist(logits), num_samples, generator)
        (gradient,) = torch.autograd.grad(surrogate.sum(), logits)
        return gradient.reshape(repeats, -1)


DISCRETE_CASES = [
    *(DiscreteCase(f"Categorical(K={k})", "categorical", k) for k in (3, 5, 7)),
    DiscreteCase("OneHotCategorical(K=4)", "one-hot", 4),
    DiscreteCase("Independent(Categorical(K=3), 2)", "categorical", 3, (2,)),
    DiscreteCase("Independent(OneHotCategorical(K=3), 2x2)", "one-hot", 3, (2, 2)),
    DiscreteCase("Independent(Bernoulli, 3)", "bernoulli", 2, (3,)),
]
"""Categorical with K = 3, 5, 7, OneHotCategorical and ``Independent`` products."""
