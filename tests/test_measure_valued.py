"""Measure-valued (weak-derivative) estimator against closed forms, coupled and uncoupled.

Notation for the variance derivations: ``f(x) = (x - k)^2``, ``x ~ N(mu, s^2)``, one sample,
``a = mu - k``, so ``f(mu + s y) = a^2 + 2 a s y + s^2 y^2``. Moments used:
``W ~ Rayleigh``: ``E W = sqrt(pi/2)``, ``E W^2 = 2``, ``Var W = 2 - pi/2``, ``Var W^2 = 4``
(``W^2 ~ Exp`` with mean 2); double-sided Maxwell ``M``: odd moments 0, ``E M^2 = 3``,
``E M^4 = 15``; ``eps ~ N(0, 1)``: ``E eps^2 = 1``, ``E eps^4 = 3``; ``U ~ U(0, 1)``:
``E (1 - U)^2 = 1/3``, ``E (1 - U^2)^2 = 8/15``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Gamma, Independent, LogNormal, Normal

import samplegrad as sg
from samplegrad.estimators.measure_valued import MeasureValued

from problems import GaussianQuadratic, RecordingCost
from stats import assert_mean_close, assert_variance_close

pytestmark = pytest.mark.usefixtures("one_thread")

PROBLEMS = {
    "near": dict(mu=1.5, sigma=0.8, k=0.5),  # a^2 = 1 < 2 s^2 / (4 - pi) = 1.49
    "far": dict(mu=2.0, sigma=0.5, k=0.0),  # a^2 = 4 > 2 s^2 / (4 - pi) = 0.58
}


def quadratic_variances(a: float, s: float, coupling: bool) -> tuple[float, float]:
    """Single-sample ``(Var d/dmu, Var d/dsigma)`` for ``f(x) = (x - k)^2``.

    Mean, ``g = (f(mu + s W+) - f(mu - s W-)) / (s sqrt(2 pi))
    = (2 a s (W+ + W-) + s^2 (W+^2 - W-^2)) / (s sqrt(2 pi))``:

    - coupled, ``W+ = W- = W``: ``g = 4 a W / sqrt(2 pi)``,
      ``Var = 16 a^2 (2 - pi/2) / (2 pi) = (16/pi - 4) a^2`` (docs/design.md, "Exact targets");
    - uncoupled, independent: the two terms are uncorrelated (``Cov(W+ + W-, W+^2 - W-^2) = 0``),
      ``Var = (8 a^2 s^2 (2 - pi/2) + 2 s^4 Var W^2) / (2 pi s^2) = (8/pi - 2) a^2 + (4/pi) s^2``.

    Scale, ``g = (f(mu + s M) - f(mu + s eps)) / s = 2 a (M - eps) + s (M^2 - eps^2)``:

    - coupled, ``eps = M U``: ``g = 2 a M (1 - U) + s M^2 (1 - U^2)``, ``E g = 3 (2/3) s = 2 s``,
      ``E g^2 = 4 a^2 (3)(1/3) + s^2 (15)(8/15) = 4 a^2 + 8 s^2`` (the cross term is odd in
      ``M``), ``Var = 4 a^2 + 4 s^2`` (docs/design.md, "Exact targets");
    - uncoupled, independent: ``Var = 4 a^2 (E M^2 + 1) + s^2 (Var M^2 + Var eps^2)
      = 16 a^2 + s^2 (6 + 2) = 16 a^2 + 8 s^2``.

    So coupling always lowers the scale's variance and lowers the mean's only while
    ``(16/pi - 4) a^2 <= (8/pi - 2) a^2 + (4/pi) s^2``, i.e. ``a^2 <= 2 s^2 / (4 - pi)``.
    """
    if coupling:
        return (16 / math.pi - 4) * a**2, 4 * a**2 + 4 * s**2
    return (8 / math.pi - 2) * a**2 + 4 / math.pi * s**2, 16 * a**2 + 8 * s**2


def quadratic_gradients(problem: GaussianQuadratic, coupling: bool, generator, num_samples=1):
    surrogate = sg.expectation(
        problem.f, problem.dist(), MeasureValued(coupling), num_samples, generator
    )
    return problem.gradients(surrogate)


@pytest.mark.parametrize("coupling", [True, False], ids=["coupled", "uncoupled"])
@pytest.mark.parametrize("name", list(PROBLEMS))
def test_gaussian_quadratic_mean_and_variance(name, coupling, generator):
    """Unbiased, with the single-sample variances of :func:`quadratic_variances`."""
    problem = GaussianQuadratic(repeats=50_000, **PROBLEMS[name])
    grad_mu, grad_sigma = quadratic_gradients(problem, coupling, generator)
    var_mu, var_sigma = quadratic_variances(problem.a, problem.sigma, coupling)
    exact_mu, exact_sigma = problem.exact_gradients
    assert_mean_close(grad_mu, exact_mu, var_mu)
    assert_mean_close(grad_sigma, exact_sigma, var_sigma)
    assert_variance_close(grad_mu, var_mu)
    assert_variance_close(grad_sigma, var_sigma)


def test_design_targets_for_the_coupled_estimator():
    """The coupled closed forms are docs/design.md's: ``(16/pi - 4) a^2`` and ``4 a^2 + 4 s^2``."""
    a, s = 1.0, 0.8
    assert quadratic_variances(a, s, True) == pytest.approx(
        ((16 / math.pi - 4) * a**2, 4 * a**2 + 4 * s**2)
    )


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_coupling_lowers_variance_where_the_closed_forms_say(name, generator):
    """Sample variances are ordered as the closed forms: coupled < uncoupled for the scale
    always, and for the mean only near ``k`` (``a^2 <= 2 s^2 / (4 - pi)``; "near" but not
    "far")."""
    problem_kwargs = PROBLEMS[name]
    coupled = quadratic_gradients(
        GaussianQuadratic(repeats=50_000, **problem_kwargs), True, generator
    )
    uncoupled = quadratic_gradients(
        GaussianQuadratic(repeats=50_000, **problem_kwargs), False, generator
    )
    problem = GaussianQuadratic(repeats=1, **problem_kwargs)
    exact_coupled = quadratic_variances(problem.a, problem.sigma, True)
    exact_uncoupled = quadratic_variances(problem.a, problem.sigma, False)
    mean_is_lower = exact_coupled[0] < exact_uncoupled[0]
    assert mean_is_lower == (name == "near")
    assert exact_coupled[1] < exact_uncoupled[1]
    assert bool(coupled[0].var() < uncoupled[0].var()) == mean_is_lower
    assert coupled[1].var() < uncoupled[1].var()


def test_variance_falls_as_one_over_num_samples(generator):
    problem = GaussianQuadratic(repeats=50_000)
    _, grad_sigma = quadratic_gradients(problem, True, generator, num_samples=4)
    assert_variance_close(grad_sigma, quadratic_variances(problem.a, problem.sigma, True)[1] / 4)


@pytest.mark.parametrize("coupling", [True, False], ids=["coupled", "uncoupled"])
def test_cosine_value_and_gradients(coupling, generator):
    """``E cos(x) = cos(mu) exp(-s^2/2)`` (the Gaussian characteristic function), so
    ``d/dmu = -sin(mu) exp(-s^2/2)`` and ``d/dsigma = -s cos(mu) exp(-s^2/2)``. The value is
    checked too: with coupling the Gaussian points are ``mu + s M U``, exact in distribution."""
    repeats, mu, s = 50_000, 0.7, 1.3
    loc = torch.full((repeats,), mu, dtype=torch.float64, requires_grad=True)
    scale = torch.full((repeats,), s, dtype=torch.float64, requires_grad=True)
    surrogate = sg.expectation(torch.cos, Normal(loc, scale), MeasureValued(coupling), 1, generator)
    surrogate.sum().backward()
    damping = math.exp(-(s**2) / 2)
    assert_mean_close(surrogate.detach(), math.cos(mu) * damping)
    assert_mean_close(loc.grad, -math.sin(mu) * damping)
    assert_mean_close(scale.grad, -s * math.cos(mu) * damping)


@pytest.mark.parametrize("event_dims", [1, 2])
@pytest.mark.parametrize("coupling", [True, False], ids=["coupled", "uncoupled"])
def test_three_dimensional_independent_normal(coupling, event_dims, generator):
    """``f(z) = sum_d (z_d - k_d)^3 + w z_0 z_1 z_2`` with per-repeat ``k`` and ``w``.

    With ``E (x - k)^3 = b^3 + 3 b s^2`` for ``b = mu - k`` and independent coordinates,
    ``E f = sum_d (b_d^3 + 3 b_d s_d^2) + w mu_0 mu_1 mu_2``, so
    ``d/dmu_d = 3 (b_d^2 + s_d^2) + w prod_{j != d} mu_j``, ``d/ds_d = 6 b_d s_d``,
    ``d/dk_d = -3 (b_d^2 + s_d^2)`` and ``d/dw = mu_0 mu_1 mu_2``: the product term checks that
    the coordinates not being perturbed keep a Gaussian sample, and ``k``, ``w`` that the cost's
    own parameters get the mean of ``grad f`` over the Gaussian points. ``event_dims=2`` lays
    the three coordinates out as an event of shape ``(1, 3)``.
    """
    repeats = 20_000
    mu = torch.tensor([0.5, -1.0, 1.5], dtype=torch.float64)
    s = torch.tensor([1.0, 0.5, 0.8], dtype=torch.float64)
    k0 = torch.tensor([0.0, 1.0, -0.5], dtype=torch.float64)
    event_shape = (3,) if event_dims == 1 else (1, 3)
    loc = mu.reshape(event_shape).expand(repeats, *event_shape).clone().requires_grad_(True)
    scale = s.reshape(event_shape).expand(repeats, *event_shape).clone().requires_grad_(True)
    k = k0.expand(repeats, 3).clone().requires_grad_(True)
    w = torch.full((repeats,), 0.7, dtype=torch.float64, requires_grad=True)

    def f(z):
        z = z.reshape(*z.shape[:-event_dims], 3)
        return ((z - k) ** 3).sum(-1) + w * z.prod(-1)

    dist = Independent(Normal(loc, scale), event_dims)
    sg.expectation(f, dist, MeasureValued(coupling), 1, generator).sum().backward()
    b = mu - k0
    products = torch.stack([mu[1] * mu[2], mu[0] * mu[2], mu[0] * mu[1]])
    assert_mean_close(loc.grad.reshape(repeats, 3), 3 * (b**2 + s**2) + 0.7 * products)
    assert_mean_close(scale.grad.reshape(repeats, 3), 6 * b * s)
    assert_mean_close(k.grad, -3 * (b**2 + s**2))
    assert_mean_close(w.grad, mu.prod())


def test_one_call_and_value_is_the_mean_over_the_gaussian_points(generator):
    """``f`` is called once on ``(1 + 3 D) * S`` points: ``S`` Gaussian base points, then
    ``D * S`` points each for ``mu + s W``, ``mu - s W`` and ``mu + s M``, each differing from
    its base point in one coordinate only. The value is the mean of ``f`` over the base points.
    """
    num_samples, dim = 5, 3
    loc = torch.tensor([[0.5, -1.0, 2.0], [0.0, 1.0, -2.0]], requires_grad=True)
    scale = torch.tensor([[1.0, 0.5, 2.0], [0.3, 0.2, 0.1]], requires_grad=True)
    recorder = RecordingCost(lambda z: (z**2).sum(-1))
    surrogate = MeasureValued()(
        recorder, Independent(Normal(loc, scale), 1), num_samples, generator
    )
    assert surrogate.shape == (2,)
    assert len(recorder.inputs) == 1
    points = recorder.inputs[0].reshape(1 + 3 * dim, num_samples, 2, dim)
    costs = recorder.outputs[0].reshape(1 + 3 * dim, num_samples, 2)
    assert torch.allclose(surrogate.detach(), costs[0].mean(0))
    changed = (points[1:] != points[0]).reshape(3, dim, num_samples, 2, dim)
    assert torch.equal(changed, torch.eye(dim, dtype=torch.bool)[:, None, None].expand_as(changed))
    mu, s = loc.detach(), scale.detach()
    plus, minus, maxwell = (
        torch.diagonal(points[1:].reshape(3, dim, num_samples, 2, dim), dim1=1, dim2=-1)
        .sub(mu)
        .div(s)
        .unbind(0)
    )
    assert (plus > 0).all() and (minus < 0).all()
    assert torch.allclose(plus, -minus)  # coupled: the same Weibull sample
    # The base point's coordinate is M U with the same M as the Maxwell point: |eps| < |M|.
    eps = (points[0] - mu) / s
    assert (eps.abs() < maxwell.abs()).all() and (eps * maxwell > 0).all()


def test_gradients_flow_to_what_produced_the_parameters():
    """The gradient is attached to ``loc`` and ``scale`` themselves, so the chain rule reaches
    their producers: with ``scale = exp(log_scale)``, ``d/dlog_scale = scale * d/dscale``."""
    loc = torch.tensor([0.3, -0.4], dtype=torch.float64, requires_grad=True)
    scale = torch.tensor([0.5, 2.0], dtype=torch.float64, requires_grad=True)
    log_scale = scale.detach().log().requires_grad_(True)
    f = torch.sin
    estimator = MeasureValued()
    estimator(f, Normal(loc, scale), 3, torch.Generator().manual_seed(1)).sum().backward()
    estimator(f, Normal(loc, log_scale.exp()), 3, torch.Generator().manual_seed(1)).sum().backward()
    assert torch.allclose(log_scale.grad, scale.grad * scale.detach())


@pytest.mark.parametrize("coupling", [True, False], ids=["coupled", "uncoupled"])
def test_same_generator_state_gives_the_same_surrogate_and_gradient(coupling):
    def run(seed):
        loc = torch.tensor([0.2, 1.0, -0.3], requires_grad=True)
        dist = Independent(Normal(loc, torch.tensor([1.0, 0.4, 2.0])), 1)
        surrogate = sg.expectation(
            lambda z: torch.tanh(z).sum(-1),
            dist,
            MeasureValued(coupling),
            4,
            torch.Generator().manual_seed(seed),
        )
        surrogate.backward()
        return surrogate.detach(), loc.grad

    first, again, other = run(3), run(3), run(4)
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    assert not torch.equal(first[1], other[1])


def test_supports_only_diagonal_gaussians():
    loc = torch.zeros(2, 3)
    assert MeasureValued.supports(Normal(loc, 1.0))
    assert MeasureValued.supports(Independent(Normal(loc, 1.0), 1))
    assert MeasureValued.supports(Independent(Independent(Normal(loc, 1.0), 1), 1))
    assert not MeasureValued.supports(Bernoulli(logits=loc))
    assert not MeasureValued.supports(Independent(Bernoulli(logits=loc), 1))
    assert not MeasureValued.supports(LogNormal(loc, 1.0))
    assert not MeasureValued.supports(Gamma(loc + 1, 1.0))


def test_type_error_for_bernoulli():
    with pytest.raises(TypeError, match=r"'measure-valued' cannot handle Bernoulli.*'score'"):
        sg.expectation(lambda b: b, Bernoulli(logits=torch.zeros(3)), MeasureValued())


def test_coupling_must_be_a_bool():
    with pytest.raises(TypeError, match="coupling must be True or False"):
        MeasureValued(coupling="no")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtype_follows_loc(dtype, generator):
    loc = torch.zeros(4, 2, dtype=dtype, requires_grad=True)
    scale = torch.ones(4, 2, dtype=dtype, requires_grad=True)
    recorder = RecordingCost(lambda z: (z**2).sum(-1))
    surrogate = sg.expectation(
        recorder, Independent(Normal(loc, scale), 1), MeasureValued(), 2, generator
    )
    surrogate.sum().backward()
    assert recorder.inputs[0].dtype == dtype
    assert surrogate.dtype == dtype
    assert loc.grad.dtype == dtype and scale.grad.dtype == dtype
    assert torch.isfinite(loc.grad).all() and torch.isfinite(scale.grad).all()
