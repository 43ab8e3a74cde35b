"""Exact gradients and variances (:mod:`samplegrad.lab.compare.exact_gaussian`,
:mod:`samplegrad.lab.compare.exact_bernoulli`) against closed forms, independent quadrature and the
library's estimators.

Three independent checks: closed forms (``compare.GaussianQuadratic`` and
``compare.BernoulliToy``, derived by hand); ``scipy.integrate.quad``/``dblquad`` applied to
each estimator's definition (the route of the reference notebook of Mohamed et al. 2020) and a
midpoint grid over ARM's uniforms; and Monte Carlo, ``R`` estimates of the real estimators in
one batched call, with tolerances from ``R`` (:mod:`stats`).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy import integrate
from torch import Tensor
from torch.distributions import Normal

import samplegrad as sg
from samplegrad.estimators import catalog
from samplegrad.lab.compare import exact_bernoulli as exact_bernoulli
from samplegrad.lab.compare import exact_gaussian as exact_gaussian
from samplegrad.lab.compare.exact_gaussian import Cost1D, cosine, exponential, quadratic
from samplegrad.lab.compare.runner import BernoulliToy, GaussianQuadratic

from problems import three_dimensional_bernoulli
from stats import assert_mean_close, assert_variance_close

pytestmark = pytest.mark.usefixtures("one_thread")


def test_exact_variance_tables_name_catalog_estimators():
    """Every name with an exact Gaussian variance is a catalog name for a Normal."""
    normal = Normal(0.0, 1.0)
    for name in exact_gaussian.ESTIMATORS:
        assert catalog.entry(name).supports(normal), name


def close(value: float, exact: float, rel: float, scale: float) -> bool:
    """``value`` within ``rel`` of ``exact``, or of ``scale`` where ``exact`` is (nearly) 0."""
    return abs(value - exact) <= rel * max(abs(exact), scale)


# ------------------------------------------------------------------- Gaussian: closed forms


@pytest.mark.parametrize(
    ("mu", "sigma", "k"), [(2.0, 1.0, 0.0), (1.5, 0.8, 0.5), (-1.0, 2.0, 3.0), (0.3, 0.5, 0.3)]
)
def test_quadratic_matches_closed_forms(mu, sigma, k):
    """Every variance of ``(x - k)^2`` equals GaussianQuadratic's closed form to 1e-7
    (zero variances to 1e-10 of ``(a^2 + sigma^2)^2``)."""
    problem, cost = GaussianQuadratic(mu, sigma, k), quadratic(k)
    scale = (mu - k) ** 2 + sigma**2
    gradient, exact_gradient = (
        exact_gaussian.exact_gradient(cost, mu, sigma),
        problem.exact_gradient(),
    )
    for parameter in ("mu", "sigma"):
        assert close(gradient[parameter], exact_gradient[parameter], 1e-10, scale)
    for K in (1, 2, 5):
        for name in exact_gaussian.ESTIMATORS:
            variance = exact_gaussian.exact_variance(cost, mu, sigma, name, K)
            expected = problem.exact_variance(name, K)
            if expected is None:
                assert variance is None, (name, K)
                continue
            for parameter, value in expected.items():
                assert close(variance[parameter], value, 1e-7, 1e-3 * scale**2), (name, K)


def closed_form_expectation(name: str, k: float, mu: Tensor, sigma: Tensor) -> Tensor:
    """``E f`` in closed form (module docstring of :mod:`samplegrad.lab.compare.exact_gaussian`)."""
    if name == "cos":
        return torch.cos(k * mu) * torch.exp(-(k**2) * sigma**2 / 2)
    spread = 1 + 2 * k * sigma**2
    return torch.exp(-k * mu**2 / spread) / spread.sqrt()


@pytest.mark.parametrize(
    ("name", "k", "mu", "sigma"),
    [
        ("cos", 0.5, 1.0, 1.0),
        ("cos", 3.0, -0.7, 0.6),
        ("cos", 10.0, 1.0, 0.3),
        ("exp", 1.0, 1.0, 1.0),
        ("exp", 10.0, 0.2, 1.5),
        ("exp", -0.2, 1.0, 1.0),
        ("exp", -0.4, 0.5, 1.0),  # the gradient exists up to k > -1/(2 sigma^2)
    ],
)
def test_gradient_matches_derivative_of_closed_form(name, k, mu, sigma):
    """``exact_gradient`` equals the autograd derivative of the closed-form ``E f``."""
    cost = cosine(k) if name == "cos" else exponential(k)
    mu_t, sigma_t = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (mu, sigma))
    expected = torch.autograd.grad(closed_form_expectation(name, k, mu_t, sigma_t), (mu_t, sigma_t))
    gradient = exact_gaussian.exact_gradient(cost, mu, sigma)
    scale = max(1.0, abs(k))  # f' is of order k: the absolute floor for vanishing gradients
    for parameter, value in zip(("mu", "sigma"), expected, strict=True):
        assert close(gradient[parameter], value.item(), 1e-10, 1e-4 * scale), parameter


# ------------------------------------------------------- Gaussian: independent quadrature


def scipy_reference(cost: Cost1D, mu: float, s: float, limit: float) -> dict[str, tuple]:
    """Each estimator's single-sample variance (``score-loo``: ``K = 2``) straight from its
    definition, by adaptive quadrature over ``y in [-limit, limit]``, ``x = mu + s y``; the
    coupled Maxwell term as the double integral over ``(M, U)`` the notebook of Mohamed et al.
    (2020) uses."""

    def scalar(g: Callable[[np.ndarray], np.ndarray]) -> Callable[[float], float]:
        return lambda x: float(g(np.array([x]))[0])

    f, f1, f2 = scalar(cost.value), scalar(cost.first), scalar(cost.second)

    def phi(y: float) -> float:
        return math.exp(-y * y / 2) / math.sqrt(2 * math.pi)

    def quad(g, lower, upper):
        return integrate.quad(g, lower, upper, limit=500, epsabs=0, epsrel=1e-11)[0]

    def normal(g):
        return quad(lambda y: phi(y) * g(y), -limit, limit)

    def weibull(g):
        return quad(lambda w: w * math.exp(-w * w / 2) * g(w), 0, limit)

    def maxwell(g):
        return quad(lambda m: m * m * phi(m) * g(m), -limit, limit)

    def F(y):
        return f(mu + s * y)

    def F1(y):
        return f1(mu + s * y)

    g_mu, g_sigma = normal(F1), normal(lambda y: y * F1(y))

    def s_mu(y):
        return y / s

    def s_sigma(y):
        return (y * y - 1) / s

    scores = ((s_mu, g_mu, 1 / s**2), (s_sigma, g_sigma, 2 / s**2))
    m = normal(F)
    v = normal(lambda y: (F(y) - m) ** 2)
    loo = []
    for S, G, s2 in scores:  # GaussianQuadratic's formula, K = 2
        var_h = (
            normal(lambda y, S=S: F(y) ** 2 * S(y) ** 2)
            - 2 * m * normal(lambda y, S=S: F(y) * S(y) ** 2)
            + (m * m + v) * s2
            - G * G
        )
        loo.append(var_h / 2 + G * G / 2)
    f0, d1, d2 = f(mu), f1(mu), f2(mu)

    def residual(y):
        return F(y) - f0 - d1 * s * y - d2 * s * s * y * y / 2

    corrections = (g_mu - d1, g_sigma - s * d2)

    def weibull_variance(g):
        mean = weibull(g)
        return weibull(lambda w: (g(w) - mean) ** 2)

    maxwell_mean = maxwell(F)
    sqrt_2pi = math.sqrt(2 * math.pi)
    coupled_scale = integrate.dblquad(
        lambda u, m: m * m * phi(m) * ((F(m) - F(m * u)) / s - g_sigma) ** 2,
        -limit,
        limit,
        0,
        1,
        epsabs=0,
        epsrel=1e-10,
    )[0]
    return {
        "gradient": (g_mu, g_sigma),
        "pathwise": (
            normal(lambda y: (F1(y) - g_mu) ** 2),
            normal(lambda y: (y * F1(y) - g_sigma) ** 2),
        ),
        "pathwise-delta": (
            normal(lambda y: (F1(y) - d2 * s * y - g_mu) ** 2),
            normal(lambda y: ((F1(y) - d1 - d2 * s * y) * y + d2 * s - g_sigma) ** 2),
        ),
        "score": tuple(normal(lambda y, S=S, G=G: (F(y) * S(y) - G) ** 2) for S, G, _ in scores),
        "score-loo": tuple(loo),
        "score-delta": tuple(
            normal(lambda y, S=S, c=c: (residual(y) * S(y) - c) ** 2)
            for (S, _, _), c in zip(scores, corrections, strict=True)
        ),
        "measure-valued": (
            weibull(lambda w: ((F(w) - F(-w)) / (s * sqrt_2pi) - g_mu) ** 2),
            coupled_scale,
        ),
        "measure-valued-uncoupled": (
            (weibull_variance(F) + weibull_variance(lambda w: F(-w))) / (2 * math.pi * s * s),
            (maxwell(lambda y: (F(y) - maxwell_mean) ** 2) + v) / s**2,
        ),
    }


@pytest.mark.parametrize(
    ("cost", "mu", "sigma", "limit"),
    [
        (cosine(3.0), 1.0, 1.0, 12.0),
        (exponential(4.0), 0.5, 1.5, 12.0),
        (exponential(-0.2), 1.0, 1.0, 40.0),  # f^2 phi decays like exp(-0.1 y^2): wide range
    ],
    ids=["cos-3", "exp-4", "exp-minus-0.2"],
)
def test_variances_match_scipy_quadrature(cost, mu, sigma, limit):
    """Gauss-Legendre panels and the integration matrix agree with adaptive quadrature of
    the estimators' definitions to 1e-8 (scipy's own accuracy is about 1e-10)."""
    with warnings.catch_warnings():  # scipy's round-off warnings at epsrel 1e-11 are benign
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        reference = scipy_reference(cost, mu, sigma, limit)
    gradient = exact_gaussian.exact_gradient(cost, mu, sigma)
    scale = max(map(abs, reference["gradient"]))
    for parameter, value in zip(("mu", "sigma"), reference["gradient"], strict=True):
        assert close(gradient[parameter], value, 1e-8, scale)
    for name in exact_gaussian.ESTIMATORS:
        K = 2 if name == "score-loo" else 1
        variance = exact_gaussian.exact_variance(cost, mu, sigma, name, K)
        for parameter, value in zip(("mu", "sigma"), reference[name], strict=True):
            assert variance[parameter] == pytest.approx(value, rel=1e-8), (name, parameter)


# -------------------------------------------------------------- Gaussian: batches and speed


def test_a_batch_of_costs_matches_one_cost_at_a_time():
    ks = np.array([0.1, 1.0, 3.0, 10.0])
    batched = exact_gaussian.exact_variance(cosine(ks), 1.0, 1.0, "measure-valued", 3)
    gradients = exact_gaussian.exact_gradient(cosine(ks), 1.0, 1.0)
    for i, k in enumerate(ks):
        single = exact_gaussian.exact_variance(cosine(k), 1.0, 1.0, "measure-valued", 3)
        gradient = exact_gaussian.exact_gradient(cosine(k), 1.0, 1.0)
        for parameter in ("mu", "sigma"):
            assert batched[parameter][i] == pytest.approx(single[parameter], rel=1e-9)
            assert close(gradients[parameter][i], gradient[parameter], 1e-9, 1e-6)
    assert isinstance(single["mu"], float)
    assert batched["mu"].shape == ks.shape


def test_a_sweep_of_200_costs_takes_well_under_three_seconds():
    """The curves of Mohamed et al. (2020, Figs. 2-3): 6 estimators, 2 parameters, 200 k."""
    start = time.perf_counter()
    for make, ks in [
        (quadratic, np.linspace(-3, 3, 200)),
        (exponential, np.geomspace(0.1, 10, 200)),
        (cosine, np.geomspace(0.1, 10, 200)),
    ]:
        for name in exact_gaussian.ESTIMATORS:
            variance = exact_gaussian.exact_variance(make(ks), 1.0, 1.0, name, 2)
            assert np.isfinite(variance["mu"]).all() and np.isfinite(variance["sigma"]).all()
    assert time.perf_counter() - start < 3.0


# ---------------------------------------------------------------- Gaussian: domain errors


def test_infinite_variances_raise_naming_k():
    """``exp(-k x^2)``: variances need ``k > -1/(4 sigma^2)``, the gradient ``k > -1/(2
    sigma^2)``."""
    with pytest.raises(ValueError, match=r"k = -0\.3.*variance is infinite"):
        exact_gaussian.exact_variance(exponential(-0.3), 1.0, 1.0, "pathwise", 1)
    with pytest.raises(ValueError, match=r"k = -0\.3, -1\b"):
        exact_gaussian.exact_variance(
            exponential(np.array([0.5, -0.3, -1.0])), 0.0, 1.0, "score", 1
        )
    with pytest.raises(ValueError, match=r"k = -0\.25.*variance is infinite"):
        exact_gaussian.exact_variance(exponential(-0.25), 1.0, 1.0, "score", 1)
    exact_gaussian.exact_variance(exponential(-0.3), 1.0, 0.8, "score", 1)  # bound: -0.39
    with pytest.raises(ValueError, match=r"k = -0\.6.*gradient is infinite"):
        exact_gaussian.exact_gradient(exponential(-0.6), 1.0, 1.0)


def test_costs_that_overflow_or_grow_undeclared_raise():
    with pytest.raises(ValueError, match="would overflow float64"):
        exact_gaussian.exact_variance(exponential(-0.245), 1.0, 1.0, "score", 1)

    def value(x):
        return np.exp(0.1 * x**2)

    undeclared = Cost1D(value, lambda x: 0.2 * x * value(x), lambda x: value(x), name="exp(x^2/10)")
    with pytest.raises(ValueError, match=r"have not decayed.*Cost1D\.growth"):
        exact_gaussian.exact_variance(undeclared, 1.0, 1.0, "score", 1)


def test_unknown_estimators_and_invalid_arguments():
    assert exact_gaussian.exact_variance(quadratic(0.0), 1.0, 1.0, "gumbel", 2) is None
    assert exact_gaussian.exact_variance(quadratic(0.0), 1.0, 1.0, "score-loo", 1) is None
    with pytest.raises(ValueError, match="num_samples"):
        exact_gaussian.exact_variance(quadratic(0.0), 1.0, 1.0, "score", 0)
    with pytest.raises(ValueError, match="sigma > 0"):
        exact_gaussian.exact_gradient(quadratic(0.0), 1.0, 0.0)


# ---------------------------------------------------------------- Gaussian: Monte Carlo

REPEATS = 50_000
HEAVY_TAILED = {"score-loo": (100_000, 0.1), "score-delta": (100_000, 0.35)}
"""``(R, largest relative tolerance)`` for estimators whose estimates have a large kurtosis,
so that five standard errors of the sample variance exceed 10% of it at ``R = 50000``. The
worst is the delta method: its residual ``f - h`` for a non-quadratic cost grows like ``y^3``
or faster, times a score of order ``y^2`` (worst for ``cos(x)``, nearly quadratic near ``mu``,
whose variance is small and made by rare large ``y``). The check keeps its
five-standard-error tolerance; it only resolves less."""


def torch_cost(name: str, k: float) -> Callable[[Tensor], Tensor]:
    if name == "cos":
        return lambda x: torch.cos(k * x)
    return lambda x: torch.exp(-k * x**2)


@pytest.mark.parametrize("estimator", exact_gaussian.ESTIMATORS)
@pytest.mark.parametrize(("name", "k"), [("cos", 1.0), ("cos", 3.0), ("exp", 0.5), ("exp", 2.0)])
def test_monte_carlo_agrees_with_exact_values(name, k, estimator, generator):
    """``R`` estimates (``mu = sigma = 1``, ``K = 2``) in one batched call: their mean is the
    exact gradient and their variance the exact variance, within the errors ``R`` allows."""
    K = 2
    repeats, largest_tolerance = HEAVY_TAILED.get(estimator, (REPEATS, 0.1))
    mu = torch.full((repeats,), 1.0, dtype=torch.float64, requires_grad=True)
    sigma = torch.full((repeats,), 1.0, dtype=torch.float64, requires_grad=True)
    surrogate = sg.expectation(
        torch_cost(name, k), Normal(mu, sigma), catalog.entry(estimator).build(), K, generator
    )
    surrogate.sum().backward()
    cost = cosine(k) if name == "cos" else exponential(k)
    gradient = exact_gaussian.exact_gradient(cost, 1.0, 1.0)
    variance = exact_gaussian.exact_variance(cost, 1.0, 1.0, estimator, K)
    for parameter, leaf in (("mu", mu), ("sigma", sigma)):
        assert_mean_close(leaf.grad, gradient[parameter], variance[parameter])
        assert_variance_close(leaf.grad, variance[parameter], largest_tolerance)


# ------------------------------------------------------------------------------ Bernoulli


def toy_cost(t: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda b: (b[:, 0] - t) ** 2


@pytest.mark.parametrize("phi", [0.0, -1.0, 2.0])
@pytest.mark.parametrize("t", [0.499, 0.3])
def test_bernoulli_toy_matches_closed_forms(phi, t):
    """D = 1: BernoulliToy's closed forms, for every estimator both know."""
    toy, f = BernoulliToy(phi=phi, t=t), toy_cost(t)
    logits = np.array([phi])
    gradient = exact_bernoulli.exact_gradient(f, logits)
    assert gradient[0] == pytest.approx(toy.exact_gradient()["phi"], rel=1e-12)
    cases = [
        ("score", 1),
        ("score", 3),
        ("score-loo", 2),
        ("score-loo", 4),
        ("arm", 2),
        ("arm", 4),
        ("disarm", 2),
        ("disarm", 6),
        ("straight-through", 1),
        ("straight-through", 2),
        ("enumerate", 2),
    ]
    for estimator, K in cases:
        variance = exact_bernoulli.exact_variance(
            f, logits, estimator, K, gradient=lambda b: 2 * (b - t)
        )
        expected = toy.exact_variance(estimator, K)["phi"]
        assert close(variance[0], expected, 1e-9, 1e-12), (estimator, K)


def test_design_three_dimensional_gradient():
    """docs/design.md, "Exact targets"."""
    centres = np.linspace(0.2, 0.9, 3)
    theta = np.random.RandomState(0).rand(3)
    gradient = exact_bernoulli.exact_gradient(
        lambda b: ((b - centres) ** 2).sum(-1), np.log(theta / (1 - theta))
    )
    np.testing.assert_allclose(gradient, [0.14857, -0.02037, -0.19155], atol=5e-6)


@pytest.mark.parametrize("estimator", ["arm", "disarm"])
def test_antithetic_moments_match_a_grid_over_the_uniforms(estimator):
    """D = 2, a cost that couples the coordinates: the mean and variance of one pair over a
    1000 x 1000 midpoint grid of ``u``, with the papers' formulas (Yin & Zhou 2019: ARM
    ``(f(b~) - f(b)) (u - 1/2)``; Dong et al. 2020: DisARM ``1/2 (f(b) - f(b~)) (-1)^{b~}
    1[b != b~] sigmoid(|phi|)``). ``theta = (0.25, 0.6)`` puts every cut on a cell edge, so
    the grid is exact up to the midpoint rule's ``h^2`` error on each cell's quadratic."""
    theta = np.array([0.25, 0.6])
    phi = np.log(theta / (1 - theta))

    def f(b):
        return 3.0 * b[..., 0] * b[..., 1] + (b[..., 0] - 0.3) ** 2 - b[..., 1]

    points = 1000
    grid = (np.arange(points) + 0.5) / points
    u = np.stack(np.meshgrid(grid, grid, indexing="ij"), axis=-1).reshape(-1, 2)
    b, b_anti = (u < theta).astype(float), (1 - u < theta).astype(float)
    if estimator == "arm":
        g = (f(b_anti) - f(b))[:, None] * (u - 0.5)
    else:
        sign = (-1.0) ** b_anti * (b != b_anti)
        g = 0.5 * (f(b) - f(b_anti))[:, None] * sign * (1 / (1 + np.exp(-np.abs(phi))))
    variance = exact_bernoulli.exact_variance(f, phi, estimator, 2)
    np.testing.assert_allclose(variance, g.var(0), rtol=1e-5)
    np.testing.assert_allclose(g.mean(0), exact_bernoulli.exact_gradient(f, phi), rtol=1e-5)


@pytest.mark.parametrize(
    ("estimator", "K"),
    [("score", 2), ("score-loo", 4), ("arm", 2), ("disarm", 2)],
)
def test_bernoulli_monte_carlo_agrees_with_exact_values(estimator, K, generator):
    """docs/design.md's 3-D check, ``R`` estimates in one batched call."""
    logits, dist, f, _ = three_dimensional_bernoulli(100_000)
    sg.expectation(f, dist, estimator, K, generator).sum().backward()
    centres = np.linspace(0.2, 0.9, 3)
    f_numpy = lambda b: ((b - centres) ** 2).sum(-1)  # noqa: E731
    phi = logits[0].detach().numpy()
    gradient = exact_bernoulli.exact_gradient(f_numpy, phi)
    variance = exact_bernoulli.exact_variance(f_numpy, phi, estimator, K)
    assert_mean_close(logits.grad, torch.from_numpy(gradient), torch.from_numpy(variance))
    assert_variance_close(logits.grad, torch.from_numpy(variance))


def test_bernoulli_cases_without_a_variance():
    f, phi = toy_cost(0.3), np.array([0.5])
    assert exact_bernoulli.exact_variance(f, phi, "arm", 3) is None
    assert exact_bernoulli.exact_variance(f, phi, "score-loo", 1) is None
    assert exact_bernoulli.exact_variance(f, phi, "straight-through", 2) is None
    assert exact_bernoulli.exact_variance(f, phi, "rebar", 2) is None
    np.testing.assert_array_equal(exact_bernoulli.exact_variance(f, phi, "enumerate", 1), [0.0])
    with pytest.raises(ValueError, match="1-D array"):
        exact_bernoulli.exact_gradient(f, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="N costs"):
        exact_bernoulli.exact_gradient(lambda b: b, phi)
