"""Score function with every baseline, against closed forms and enumeration."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Categorical, Independent, Normal

import samplegrad as sg

from problems import (
    BernoulliToy,
    GaussianQuadratic,
    RecordingCost,
    three_dimensional_bernoulli,
)
from stats import assert_mean_close, assert_variance_close

pytestmark = pytest.mark.usefixtures("one_thread")


def test_gaussian_quadratic_mean_and_variance(generator):
    problem = GaussianQuadratic(repeats=400_000)
    grad_mu, grad_sigma = problem.gradients(
        sg.expectation(problem.f, problem.dist(), sg.ScoreFunction(), generator=generator)
    )
    var_mu, var_sigma = problem.variances("score")
    exact_mu, exact_sigma = problem.exact_gradients
    assert_mean_close(grad_mu, exact_mu, var_mu)
    assert_mean_close(grad_sigma, exact_sigma, var_sigma)
    assert_variance_close(grad_mu, var_mu)
    assert_variance_close(grad_sigma, var_sigma, max_relative_tolerance=0.15)


def test_bernoulli_toy_variance_matches_design_value(generator):
    problem = BernoulliToy()
    assert problem.score_variance() == pytest.approx(1.5625e-2, rel=1e-4)
    grad = problem.gradient(sg.expectation(problem.f, problem.dist(), "score", generator=generator))
    assert_mean_close(grad, problem.exact_gradient, problem.score_variance())
    assert_variance_close(grad, problem.score_variance(), max_relative_tolerance=0.02)


def test_leave_one_out_two_samples_variance(generator):
    """With two samples at ``theta = 1/2`` the estimator is ``d/2`` or 0 with probability 1/2
    each, ``d = f(1) - f(0) = 0.002``: variance ``d^2/8 - (d/4)^2 = d^2/16 = 2.5e-7``.

    In general it equals ``d n1 (S - n1) / (S (S - 1))`` for ``n1`` ones among ``S`` samples.
    """
    problem = BernoulliToy()
    grad = problem.gradient(
        sg.expectation(problem.f, problem.dist(), sg.ScoreFunction("loo"), 2, generator)
    )
    assert_mean_close(grad, problem.exact_gradient, 2.5e-7)
    assert_variance_close(grad, 2.5e-7, max_relative_tolerance=0.02)
    difference = problem.f(torch.tensor(1.0)) - problem.f(torch.tensor(0.0))
    allowed = torch.tensor([0.0, float(difference) / 2], dtype=grad.dtype)
    assert torch.isclose(grad[:, None], allowed).any(1).all()


def learned_constant_baseline():
    """A learned baseline: a constant parameter, returned by a no-argument callable."""
    value = nn.Parameter(torch.tensor(1.0, dtype=torch.float64))
    return lambda: value


@pytest.mark.parametrize(
    "make_baseline",
    [lambda: None, lambda: "loo", lambda: sg.MovingAverage(0.5), learned_constant_baseline],
    ids=["none", "loo", "moving-average", "learned"],
)
def test_three_dimensional_bernoulli(make_baseline, generator):
    logits, dist, f, exact = three_dimensional_bernoulli(repeats=100_000)
    assert torch.allclose(exact.float(), torch.tensor([0.14857, -0.02037, -0.19155]), atol=1e-5)
    estimator = sg.ScoreFunction(make_baseline())
    sg.expectation(f, dist, estimator, 4, generator)  # a first step: the moving average moves
    sg.expectation(f, dist, estimator, 4, generator).sum().backward()
    assert_mean_close(logits.grad, exact)


def test_leave_one_out_general_num_samples_variance(generator):
    """Exact variance of ``d n1 (S - n1) / (S (S - 1))`` with ``n1 ~ Binomial(S, theta)``."""
    problem = BernoulliToy(phi=0.7, t=0.2, repeats=200_000)
    num_samples = 5
    grad = problem.gradient(
        sg.expectation(problem.f, problem.dist(), sg.ScoreFunction("loo"), num_samples, generator)
    )
    variance = leave_one_out_variance(problem, num_samples)
    assert_mean_close(grad, problem.exact_gradient, variance)
    assert_variance_close(grad, variance)


def test_moving_average_is_unbiased_and_tracks_the_cost(generator):
    problem = GaussianQuadratic(repeats=200_000)
    estimator = sg.ScoreFunction(sg.MovingAverage(decay=0.5))
    first = sg.expectation(problem.f, problem.dist(), estimator, generator=generator)
    # After one step the bias-corrected average is exactly that step's mean cost.
    assert estimator.baseline.average.item() / (1 - 0.5) == pytest.approx(
        first.mean().item(), rel=1e-6
    )
    grad_mu, grad_sigma = problem.gradients(
        sg.expectation(problem.f, problem.dist(), estimator, generator=generator)
    )
    assert_mean_close(grad_mu, problem.exact_gradients[0])
    assert_mean_close(grad_sigma, problem.exact_gradients[1])
    # With a constant baseline b and c = a^2 + s^2 - b, the single-sample variance of d/dmu is
    # c^2/s^2 + 4c + 8a^2 + 10s^2 (expand (c + 2as e + s^2 (e^2 - 1)) e / s in e ~ N(0, 1));
    # b = 0 gives the table's a^4/s^2 + 14a^2 + 15s^2. Here b is the first step's mean cost.
    a, s = problem.a, problem.sigma
    c = a**2 + s**2 - first.mean().item()
    assert_variance_close(grad_mu, c**2 / s**2 + 4 * c + 8 * a**2 + 10 * s**2)


def test_moving_average_uses_only_past_steps():
    """``b_t`` is the bias-corrected average of the mean costs of steps ``< t`` (0 at t = 0):
    with decay 0.5 and step means 2, 4, 8 the baselines are 0, 2, (0.25*2 + 0.5*4)/0.75."""
    baseline = sg.MovingAverage(decay=0.5)
    used = [baseline(torch.full((3, 2), mean)).item() for mean in (2.0, 4.0, 8.0)]
    assert used == pytest.approx([0.0, 2.0, (0.25 * 2 + 0.5 * 4) / 0.75])
    assert baseline.steps.item() == 3


def test_learned_baseline_is_unbiased_and_trained_by_the_surrogate(generator):
    problem = GaussianQuadratic(repeats=200_000)
    constant = nn.Parameter(torch.tensor(0.25, dtype=torch.float64))
    estimator = sg.ScoreFunction(baseline=lambda: constant)
    cost = RecordingCost(problem.f)
    surrogate = sg.expectation(cost, problem.dist(), estimator, 3, generator)
    # The value is still the sample mean of f: the training term is zero-valued.
    assert torch.allclose(surrogate, cost.outputs[0].mean(0))
    grad_mu, _ = problem.gradients(surrogate)
    assert_mean_close(grad_mu, problem.exact_gradients[0])
    # d/db sum_r mean_s (f - b)^2 = -2 sum_r mean_s (f - b).
    expected = -2 * (cost.outputs[0].detach() - constant.detach()).mean(0).sum()
    assert constant.grad.item() == pytest.approx(expected.item(), rel=1e-9)


def test_learned_module_baseline_registers_its_parameters():
    class Constant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.value = nn.Parameter(torch.zeros(()))

        def forward(self):
            return self.value

    estimator = sg.ScoreFunction(baseline=Constant())
    assert [name for name, _ in estimator.named_parameters()] == ["baseline.function.value"]


def test_categorical_against_enumeration(generator):
    """Score function on a batch of Categoricals, against the exact (enumerated) gradient."""
    repeats = 100_000
    base_logits = torch.tensor([0.3, -1.0, 0.8, 0.0], dtype=torch.float64)
    values = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)

    def f(k):
        return values[k] ** 2

    exact_logits = base_logits.clone().requires_grad_(True)
    sg.expectation(f, Categorical(logits=exact_logits), "enumerate").backward()
    logits = base_logits.expand(repeats, 4).clone().requires_grad_(True)
    sg.expectation(
        f, Categorical(logits=logits), sg.ScoreFunction("loo"), 3, generator
    ).sum().backward()
    assert_mean_close(logits.grad, exact_logits.grad)


def test_score_at_logits_exactly_zero_is_b_minus_one_half():
    """At ``logits = 0`` the score is ``b - 1/2`` exactly (a JAX library gets this point wrong)."""
    for dtype in (torch.float32, torch.float64):
        logits = torch.zeros(1000, dtype=dtype, requires_grad=True)
        cost = RecordingCost(torch.ones_like)
        surrogate = sg.expectation(
            cost, Bernoulli(logits=logits), "score", generator=torch.Generator().manual_seed(1)
        )
        surrogate.sum().backward()
        assert torch.equal(logits.grad, cost.inputs[0][0] - 0.5)


@pytest.mark.parametrize("logit", [30.0, -30.0])
def test_score_at_saturated_logits_float32(logit, generator):
    """At ``|logits| = 30`` in float32 the exact gradient is ``~1e-13``: the estimate is finite
    and no larger than that scale (theta(1 - theta) f <= 9.4e-14 * 1)."""
    logits = torch.full((10_000,), logit, requires_grad=True)
    problem = BernoulliToy(phi=logit)
    surrogate = sg.expectation(
        problem.f, Bernoulli(logits=logits), sg.ScoreFunction("loo"), 2, generator
    )
    surrogate.sum().backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.abs().max() <= 1e-12
    assert abs(problem.exact_gradient) < 1e-12


def test_value_is_sample_mean_of_f_for_every_baseline(generator):
    dist = Independent(Normal(torch.zeros(2, 3), torch.ones(2, 3)), 1)
    for baseline in (None, "loo", sg.MovingAverage(0.9), lambda: torch.zeros(2)):
        cost = RecordingCost(lambda z: z.pow(2).sum(-1))
        surrogate = sg.expectation(cost, dist, sg.ScoreFunction(baseline), 4, generator)
        assert surrogate.shape == (2,)
        assert torch.equal(surrogate.detach(), cost.outputs[0].mean(0))


def test_gradient_reaches_parameters_inside_f(generator):
    """``f``'s own parameters get the pathwise part: ``d/dw E[(z - w)^2] = 2(w - mu)``."""
    weight = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    dist = Bernoulli(probs=torch.full((50_000,), 0.3, dtype=torch.float64))
    sg.expectation(lambda b: (b - weight) ** 2, dist, "score", 2, generator).mean().backward()
    # Per element the estimate averages 2 samples of 2(w - b): variance 4 * 0.21 / 2.
    assert_mean_close(weight.grad[None], 2 * (0.4 - 0.3), 4 * 0.21 / 2 / 50_000)


def leave_one_out_variance(problem: BernoulliToy, num_samples: int) -> float:
    """Exact variance of ``d n1 (S - n1) / (S (S - 1))``, ``n1 ~ Binomial(S, theta)``; its mean
    is the exact gradient, since ``E[n1 (S - n1)] = S (S - 1) theta (1 - theta)``."""
    d = (1 - problem.t) ** 2 - problem.t**2
    n1 = torch.arange(num_samples + 1, dtype=torch.float64)
    pmf = torch.distributions.Binomial(num_samples, torch.tensor(problem.theta)).log_prob(n1).exp()
    values = d * n1 * (num_samples - n1) / (num_samples * (num_samples - 1))
    assert (pmf * values).sum().item() == pytest.approx(problem.exact_gradient, rel=1e-12)
    return (pmf * values**2).sum().item() - problem.exact_gradient**2


@pytest.mark.parametrize("phi", [0.0, -1.0, 2.0])
def test_leave_one_out_never_loses_to_reinforce_with_the_same_evaluations(phi, generator):
    """Exact variances for 2 to 8 samples on the toy (t = 0.499), then measured at 4."""
    problem = BernoulliToy(phi=phi, repeats=200_000)
    for num_samples in range(2, 9):
        assert leave_one_out_variance(problem, num_samples) <= problem.score_variance(num_samples)
    gradients = {}
    for baseline in (None, "loo"):
        problem.logits.grad = None
        gradients[baseline] = problem.gradient(
            sg.expectation(problem.f, problem.dist(), sg.ScoreFunction(baseline), 4, generator)
        ).clone()
    assert_variance_close(gradients["loo"], leave_one_out_variance(problem, 4))
    assert gradients["loo"].var() < gradients[None].var()
