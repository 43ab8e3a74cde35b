"""Gumbel-Softmax and straight-through: their mean gradients equal the exact values *of the
relaxation* (quadrature) or of the straight-through rule (closed form), which differ from the
true gradient. The bias is documented by these tests, not by prose."""

from __future__ import annotations

import functools

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Independent, OneHotCategorical
from torch.nn import functional as F

import samplegrad as sg

from problems import BernoulliToy, RecordingCost
from stats import assert_mean_close

pytestmark = pytest.mark.usefixtures("one_thread")

TEMPERATURE = 0.5


def binary_concrete_quadrature(phi: float, t: float, hard: bool, points: int = 1_000_000):
    """Mean and variance of the binary-Concrete gradient estimate of ``E[(y - t)^2]``.

    Midpoint rule over the uniform ``u`` behind the logistic noise ``log u - log(1 - u)``: each
    grid point's gradient is computed by autograd from the textbook formula
    ``y = sigmoid((phi + L) / tau)`` (``hard``: ``1[phi + L > 0]`` with ``y``'s gradient).
    Changing ``points`` from 1e6 to 4e6 moves the mean by < 3e-6, well below the tolerances.
    """
    u = (torch.arange(points, dtype=torch.float64) + 0.5) / points
    phis = torch.full((points,), phi, dtype=torch.float64, requires_grad=True)
    perturbed = phis + torch.log(u) - torch.log1p(-u)
    y = torch.sigmoid(perturbed / TEMPERATURE)
    if hard:
        y = (perturbed > 0).double() + y - y.detach()
    ((y - t) ** 2).sum().backward()
    return phis.grad.mean().item(), phis.grad.var().item()


CATEGORICAL_LOGITS = (0.3, -0.5, 0.1)
CENTRES = (0.1, 0.5, 0.9)


@functools.cache
def concrete_quadrature(hard: bool, points: int = 128):
    """Mean and per-logit variance of the Concrete gradient of ``E[sum_k (y_k - c_k)^2]``, K = 3,
    at the logits ``CATEGORICAL_LOGITS`` and centres ``c = CENTRES``.

    Tensor-product midpoint rule over the three Gumbel quantiles ``-log(-log u_k)``. Going from
    128 to 192 points per axis moves the means by < 1e-4 (soft) and < 6e-4 (hard, whose
    integrand jumps where the argmax changes), below a tenth of the tolerances used here.
    """
    logits = torch.tensor(CATEGORICAL_LOGITS, dtype=torch.float64)
    centres = torch.tensor(CENTRES, dtype=torch.float64)
    u = (torch.arange(points, dtype=torch.float64) + 0.5) / points
    gumbel = -torch.log(-torch.log(u))
    noise = torch.stack(torch.meshgrid(gumbel, gumbel, gumbel, indexing="ij"), -1).reshape(-1, 3)
    grid_logits = logits.expand(noise.shape[0], 3).clone().requires_grad_(True)
    perturbed = grid_logits + noise
    y = torch.softmax(perturbed / TEMPERATURE, -1)
    if hard:
        y = F.one_hot(perturbed.argmax(-1), 3).double() + y - y.detach()
    ((y - centres) ** 2).sum().backward()
    return grid_logits.grad.mean(0), grid_logits.grad.var(0)


@pytest.mark.parametrize("hard", [False, True])
def test_binary_concrete_matches_quadrature_and_is_biased(hard, generator):
    problem = BernoulliToy(phi=1.0, t=0.1, repeats=200_000)
    mean, variance = binary_concrete_quadrature(problem.phi, problem.t, hard)
    grad = problem.gradient(
        sg.expectation(
            problem.f, problem.dist(), sg.GumbelSoftmax(TEMPERATURE, hard=hard), generator=generator
        )
    )
    assert_mean_close(grad, mean, variance)
    # The relaxation's gradient is not the true one: here over 40 standard errors away.
    assert abs(mean - problem.exact_gradient) > 20 * (variance / problem.repeats) ** 0.5


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("family", ["categorical", "one-hot"])
def test_concrete_matches_quadrature(hard, family, generator):
    repeats = 200_000
    base_logits = torch.tensor(CATEGORICAL_LOGITS, dtype=torch.float64)
    centres = torch.tensor(CENTRES, dtype=torch.float64)
    mean, variance = concrete_quadrature(hard)
    logits = base_logits.expand(repeats, 3).clone().requires_grad_(True)
    dist = (Categorical if family == "categorical" else OneHotCategorical)(logits=logits)
    cost = RecordingCost(lambda y: ((y - centres) ** 2).sum(-1))
    surrogate = sg.expectation(cost, dist, sg.GumbelSoftmax(TEMPERATURE, hard), generator=generator)
    surrogate.sum().backward()
    assert cost.inputs[0].shape == (1, repeats, 3)  # Categorical is relaxed as one-hot vectors
    assert_mean_close(logits.grad, mean, variance)


def test_straight_through_bernoulli_closed_form(generator):
    """Gradient ``2(b - t) theta(1 - theta)``: mean ``2 theta(1-theta)(theta - t)``, variance
    ``4 theta^3 (1-theta)^3`` (a two-point law ``2 theta(1-theta)`` apart), vs the true
    ``theta(1-theta)(1 - 2t)``."""
    problem = BernoulliToy(phi=1.0, t=0.1, repeats=200_000)
    theta = problem.theta
    mean = 2 * theta * (1 - theta) * (theta - problem.t)
    variance = 4 * theta**3 * (1 - theta) ** 3
    grad = problem.gradient(
        sg.expectation(problem.f, problem.dist(), "straight-through", generator=generator)
    )
    assert_mean_close(grad, mean, variance)
    assert abs(mean - problem.exact_gradient) > 20 * (variance / problem.repeats) ** 0.5


def test_straight_through_categorical_closed_form(generator):
    """Mean ``sum_k p_k J^T grad f(e_k)``, ``J = diag(p) - p p^T``, ``grad f(e_k) = 2(e_k - c)``."""
    repeats = 200_000
    base_logits = torch.tensor(CATEGORICAL_LOGITS, dtype=torch.float64)
    centres = torch.tensor(CENTRES, dtype=torch.float64)
    p = base_logits.softmax(-1)
    jacobian = torch.diag(p) - torch.outer(p, p)
    per_category = 2 * (torch.eye(3, dtype=torch.float64) - centres) @ jacobian  # rows: k
    mean = (p[:, None] * per_category).sum(0)
    variance = (p[:, None] * (per_category - mean) ** 2).sum(0)
    logits = base_logits.expand(repeats, 3).clone().requires_grad_(True)
    sg.expectation(
        lambda y: ((y - centres) ** 2).sum(-1),
        Categorical(logits=logits),
        "straight-through",
        generator=generator,
    ).sum().backward()
    assert_mean_close(logits.grad, mean, variance)


def test_independent_bernoulli_shapes_and_values(generator):
    logits = torch.randn(4, 5, generator=generator, requires_grad=True)
    dist = Independent(Bernoulli(logits=logits), 1)
    for estimator in (sg.GumbelSoftmax(0.3), sg.GumbelSoftmax(hard=True), sg.StraightThrough()):
        cost = RecordingCost(lambda z: z.sum(-1))
        surrogate = sg.expectation(cost, dist, estimator, 3, generator)
        assert cost.inputs[0].shape == (3, 4, 5)
        assert surrogate.shape == (4,)
        assert torch.equal(surrogate.detach(), cost.outputs[0].mean(0))
    hard = cost.inputs[0].detach()
    assert torch.equal(hard, hard.round())  # straight-through evaluates f at exact samples


def test_gradcheck_relaxed_with_fixed_generator():
    def surrogate(logits):
        generator = torch.Generator().manual_seed(3)
        return sg.expectation(
            lambda y: (y * torch.arange(3.0, dtype=y.dtype)).sum(-1) ** 2,
            OneHotCategorical(logits=logits),
            sg.GumbelSoftmax(0.7),
            2,
            generator,
        )

    logits = torch.tensor([[0.1, 0.2, -0.3]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(surrogate, (logits,))


def test_temperature_is_an_annealable_buffer():
    estimator = sg.GumbelSoftmax(1.0)
    assert "temperature" in dict(estimator.named_buffers())
    estimator.temperature.fill_(0.05)
    logits = torch.tensor([2.0, -1.0])
    cost = RecordingCost(lambda y: y.sum(-1))
    sg.expectation(
        cost, Categorical(logits=logits), estimator, generator=torch.Generator().manual_seed(0)
    )
    assert cost.inputs[0].max() > 0.99  # at tau = 0.05 the relaxed sample is nearly one-hot
