"""Sticking the landing (``"stl"``): the ELBO's gradient without the score of ``q``.

Conjugate model: ``p(z) = N(0, 1)``, ``p(x | z) = N(x; a z, 1)``, so the posterior is
``N(a x / (1 + a^2), 1 / (1 + a^2))`` and the negative ELBO's cost is
``f(z) = log q(z) - log p(x, z)``. At ``q = p(z | x)``, ``f = -log p(x)`` for every ``z``: STL's
estimate is exactly zero, while the pathwise one keeps the score term (Roeder et al. 2017).
"""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Independent, LowRankMultivariateNormal, Normal

import samplegrad as sg

from stats import assert_mean_close

pytestmark = pytest.mark.usefixtures("one_thread")

A, X = 1.2, 1.0
POSTERIOR_MEAN, POSTERIOR_STD = A * X / (1 + A**2), (1 / (1 + A**2)) ** 0.5


def negative_elbo_gradients(estimator: str, mean: float, std: float, generator) -> torch.Tensor:
    repeats = 20_000
    loc = torch.full((repeats,), mean, dtype=torch.float64, requires_grad=True)
    scale = torch.full((repeats,), std, dtype=torch.float64, requires_grad=True)
    q = Normal(loc, scale)

    def cost(z: torch.Tensor) -> torch.Tensor:
        log_joint = Normal(0.0, 1.0).log_prob(z) + Normal(A * z, 1.0).log_prob(torch.tensor(X))
        return q.log_prob(z) - log_joint

    sg.expectation(cost, q, estimator, 2, generator).sum().backward()
    return torch.stack([loc.grad, scale.grad], 1)


def test_stl_has_zero_variance_at_the_posterior(generator):
    stl = negative_elbo_gradients("stl", POSTERIOR_MEAN, POSTERIOR_STD, generator)
    pathwise = negative_elbo_gradients("pathwise", POSTERIOR_MEAN, POSTERIOR_STD, generator)
    assert stl.abs().max() < 1e-12
    assert pathwise.var(0).min() > 1e-2


def test_stl_and_pathwise_agree_away_from_the_posterior(generator):
    stl = negative_elbo_gradients("stl", 0.2, 0.9, generator)
    pathwise = negative_elbo_gradients("pathwise", 0.2, 0.9, generator)
    exact = pathwise.mean(0)
    assert_mean_close(stl, exact, variance=stl.var(0) + pathwise.var(0))
    assert (stl.var(0) < pathwise.var(0)).all()  # closer to the posterior than to the prior


def test_any_reparameterizable_family():
    loc = torch.zeros(4, 3, requires_grad=True)
    families = [
        Independent(Normal(loc, 1.0), 1),
        LowRankMultivariateNormal(loc, torch.ones(4, 3, 1), torch.ones(4, 3)),
    ]
    for q in families:
        surrogate = sg.expectation(lambda z, q=q: q.log_prob(z) + z.pow(2).sum(-1), q, "stl", 3)
        assert surrogate.shape == (4,)
        surrogate.sum().backward()
        assert loc.grad.isfinite().all()
        loc.grad = None
