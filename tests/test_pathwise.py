"""Pathwise against closed forms (docs/design.md, "Exact targets") and implicit reparam."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Gamma, Independent, Normal

import samplegrad as sg

from problems import GaussianQuadratic
from stats import assert_mean_close, assert_variance_close

pytestmark = pytest.mark.usefixtures("one_thread")


def test_gaussian_quadratic_mean_and_variance(generator):
    problem = GaussianQuadratic()
    grad_mu, grad_sigma = problem.gradients(
        sg.expectation(problem.f, problem.dist(), sg.Pathwise(), generator=generator)
    )
    var_mu, var_sigma = problem.variances("pathwise")
    exact_mu, exact_sigma = problem.exact_gradients
    assert_mean_close(grad_mu, exact_mu, var_mu)
    assert_mean_close(grad_sigma, exact_sigma, var_sigma)
    assert_variance_close(grad_mu, var_mu)
    assert_variance_close(grad_sigma, var_sigma)


def test_variance_falls_as_one_over_num_samples(generator):
    problem = GaussianQuadratic(repeats=100_000)
    grad_mu, _ = problem.gradients(
        sg.expectation(problem.f, problem.dist(), "pathwise", num_samples=4, generator=generator)
    )
    assert_variance_close(grad_mu, problem.variances("pathwise")[0] / 4)


def test_independent_normal_with_batch_shape(generator):
    """``E[sum_d (z_d - k_d)^2] = sum_d (mu_d - k_d)^2 + sigma_d^2``.

    Gradients ``2(mu - k)`` and ``2 sigma``.
    """
    loc = torch.tensor([[0.5, -1.0, 2.0]] * 4, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor([[1.0, 0.5, 2.0]] * 4, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0.0, 1.0, -1.0], dtype=torch.float64)
    dist = Independent(Normal(loc, scale), 1)
    surrogate = sg.expectation(
        lambda z: ((z - target) ** 2).sum(-1), dist, "pathwise", 50_000, generator
    )
    assert surrogate.shape == (4,)
    surrogate.sum().backward()
    # Per dimension the 50 000-sample average has variance (4 sigma^2) / 50 000.
    standard_error = (4 * scale.detach() ** 2 / 50_000).sqrt()
    assert ((loc.grad - 2 * (loc.detach() - target)).abs() <= 4 * standard_error).all()


def test_implicit_reparameterization_gamma(generator):
    """``E[z] = alpha / beta`` for Gamma: ``d/dalpha = 1/beta``, ``d/dbeta = -alpha/beta^2``."""
    repeats = 100_000
    alpha = torch.full((repeats,), 2.5, dtype=torch.float64, requires_grad=True)
    beta = torch.full((repeats,), 1.5, dtype=torch.float64, requires_grad=True)
    surrogate = sg.expectation(lambda z: z, Gamma(alpha, beta), "pathwise", generator=generator)
    surrogate.sum().backward()
    assert_mean_close(alpha.grad, 1 / 1.5)
    assert_mean_close(beta.grad, -2.5 / 1.5**2)


@pytest.mark.parametrize("num_samples", [1, 3])
def test_gradcheck_with_fixed_generator(num_samples):
    """With the generator reset each call the surrogate is a smooth function of mu, sigma."""

    def surrogate(loc, scale):
        generator = torch.Generator().manual_seed(0)
        return sg.expectation(
            lambda z: torch.sin(z) * z, Normal(loc, scale), "pathwise", num_samples, generator
        )

    loc = torch.tensor([0.3, -0.2], dtype=torch.float64, requires_grad=True)
    scale = torch.tensor([0.7, 1.1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(surrogate, (loc, scale))
