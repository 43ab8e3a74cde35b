"""``iwae_bound`` with the pathwise and VIMCO estimators, against quadrature and enumeration."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import Tensor
from torch.distributions import Bernoulli, Independent, Normal

import samplegrad as sg
from samplegrad._internal.sampling import draw
from samplegrad.estimators.base import zero_with_gradient_of
from samplegrad.estimators.vimco import leave_one_out_bounds

from problems import RecordingCost
from stats import assert_mean_close

# --------------------------------------------------------------------------- Gaussian model
# p(z) = N(0, 1), p(x | z) = N(x; a z, 1) with x = 1, proposal q = N(mu, sigma^2); the log-weight
# log p(x, z) - log q(z) closes over q. Every parameter is repeated R times (one gradient
# estimate per repeat) and the exact gradient comes from Gauss-Hermite quadrature.

GAUSS_PARAMETERS = {"mu": 0.2, "sigma": 0.9, "a": 1.2}
X = 1.0


def gaussian_log_weight(z: Tensor, mu: Tensor, sigma: Tensor, a: Tensor) -> Tensor:
    log_joint = Normal(0.0, 1.0).log_prob(z) + Normal(a * z, 1.0).log_prob(torch.tensor(X))
    return log_joint - Normal(mu, sigma).log_prob(z)


def gaussian_bound_by_quadrature(num_nodes: int) -> tuple[float, list[float]]:
    """``L_2 = E[log((w(z_1) + w(z_2)) / 2)]`` and its gradient w.r.t. ``(mu, sigma, a)``.

    With Gauss-Hermite nodes ``t_i`` and weights ``h_i`` (for ``exp(-t^2)``),
    ``z_i = mu + sqrt(2) sigma t_i`` and ``E[g(z_1, z_2)] ~ sum_ij h_i h_j / pi g(z_i, z_j)``.
    The nodes depend on ``mu`` and ``sigma``, so autograd through the sum differentiates the
    bound itself (the integrand is smooth: ``log w`` is quadratic in ``z``). 80 and 160 nodes
    agree to 1e-9.
    """
    nodes, weights = np.polynomial.hermite.hermgauss(num_nodes)
    t = torch.tensor(nodes, dtype=torch.float64)
    h = torch.tensor(weights, dtype=torch.float64) / math.sqrt(math.pi)
    parameters = [
        torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in GAUSS_PARAMETERS.values()
    ]
    mu, sigma, a = parameters
    log_w = gaussian_log_weight(mu + math.sqrt(2) * sigma * t, mu, sigma, a)
    pairs = torch.logaddexp(log_w[:, None], log_w[None, :]) - math.log(2)
    bound = (h[:, None] * h[None, :] * pairs).sum()
    bound.backward()
    return bound.item(), [p.grad.item() for p in parameters]


# --------------------------------------------------------------------------- discrete model
# q = Independent(Bernoulli(logits)) over D = 3 bits, an unnormalized log joint
# log p(x, z) = u.z + v z_0 z_2 + c with a learnable u, and K = 3 samples: the bound
# E_{z_1..z_3 ~ q}[log mean_k w_k] is a sum over (2^3)^3 = 512 joint configurations.

LOGITS = torch.tensor([0.4, -0.8, 1.1], dtype=torch.float64)
U = torch.tensor([0.5, -1.0, 1.5], dtype=torch.float64)
V, C, K = 0.8, -6.0, 3


def log_joint(z: Tensor, u: Tensor) -> Tensor:
    return (z * u).sum(-1) + V * z[..., 0] * z[..., 2] + C


def exact_discrete_bound() -> tuple[Tensor, Tensor, Tensor]:
    """The bound and its gradients w.r.t. the logits and ``u``, by enumeration and autograd:
    ``L_K = sum_{z_1..z_K} prod_k q(z_k) logmeanexp_k l(z_k)``, ``l = log p(x, z) - log q(z)``.
    """
    logits = LOGITS.clone().requires_grad_(True)
    u = U.clone().requires_grad_(True)
    q = Independent(Bernoulli(logits=logits), 1)
    support = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)), dtype=torch.float64)
    log_q = q.log_prob(support)
    log_w = log_joint(support, u) - log_q
    joint = torch.tensor(list(itertools.product(range(len(support)), repeat=K)))  # (512, K)
    bound = (log_q[joint].sum(1).exp() * (log_w[joint].logsumexp(1) - math.log(K))).sum()
    bound.backward()
    return bound.detach(), logits.grad, u.grad


def discrete_problem(repeats: int) -> tuple[Tensor, Tensor, Independent, object]:
    """``(logits, u, q, log_weight)`` with ``repeats`` copies of each parameter."""
    logits = LOGITS.expand(repeats, 3).clone().requires_grad_(True)
    u = U.expand(repeats, 3).clone().requires_grad_(True)
    q = Independent(Bernoulli(logits=logits), 1)

    def log_weight(z: Tensor) -> Tensor:
        return log_joint(z, u) - q.log_prob(z)

    return logits, u, q, log_weight


def plain_score_bound(log_weight, q, num_samples: int, generator) -> Tensor:
    """The IWAE bound's score-function surrogate without a baseline: signal ``L_hat`` for
    every sample, ``grad = sum_k L_hat grad log q(z_k) + sum_k w~_k grad l_k``."""
    z = draw(q, torch.Size((num_samples,)), generator, reparameterized=False)
    value = log_weight(z).logsumexp(0) - math.log(num_samples)
    return value + (value.detach() * zero_with_gradient_of(q.log_prob(z))).sum(0)


# --------------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("estimator", "num_samples"), [("pathwise", 1), ("pathwise", 5), ("vimco", 5)]
)
def test_value_is_logmeanexp_of_the_log_weights(estimator, num_samples, generator):
    q = Independent(Normal(torch.zeros(2, 3), torch.ones(2, 3)), 1)
    log_weight = RecordingCost(lambda z: -0.5 * (z - 1).pow(2).sum(-1) - q.log_prob(z))
    bound = sg.iwae_bound(log_weight, q, num_samples, estimator, generator)
    assert bound.shape == (2,)
    assert log_weight.inputs[0].shape == (num_samples, 2, 3)
    expected = log_weight.outputs[0].logsumexp(0) - math.log(num_samples)
    assert torch.allclose(bound.detach(), expected.detach())


@pytest.mark.parametrize("estimator", ["pathwise", "vimco"])
def test_same_generator_state_gives_the_same_surrogate(estimator):
    q = Normal(torch.zeros(4), torch.ones(4))
    bounds = [
        sg.iwae_bound(lambda z: -z.pow(2), q, 3, estimator, torch.Generator().manual_seed(7))
        for _ in range(2)
    ]
    assert torch.equal(bounds[0], bounds[1])


def test_instances_are_accepted_like_names(generator):
    q = Normal(torch.zeros(3), torch.ones(3))
    for estimator in (sg.Pathwise(), sg.VIMCO()):
        assert sg.iwae_bound(lambda z: -z.pow(2), q, 2, estimator, generator).shape == (3,)


# ------------------------------------------------------------------------------ pathwise


@pytest.mark.parametrize("estimator", ["pathwise", "dreg"])
def test_reparameterized_gradients_are_unbiased_on_a_gaussian_model(estimator, generator):
    value, exact = gaussian_bound_by_quadrature(80)
    value_fine, exact_fine = gaussian_bound_by_quadrature(160)
    assert value == pytest.approx(value_fine, abs=1e-9)
    assert exact == pytest.approx(exact_fine, abs=1e-9)

    repeats = 100_000
    parameters = [
        torch.full((repeats,), v, dtype=torch.float64, requires_grad=True)
        for v in GAUSS_PARAMETERS.values()
    ]
    mu, sigma, a = parameters
    q = Normal(mu, sigma)
    bound = sg.iwae_bound(
        lambda z: gaussian_log_weight(z, mu, sigma, a), q, 2, estimator, generator
    )
    assert_mean_close(bound.detach(), value)
    bound.sum().backward()
    assert_mean_close(torch.stack([p.grad for p in parameters], 1), torch.tensor(exact))


# ---------------------------------------------------------------------------------- DReG


def posterior_problem(repeats: int, scale_offset: float = 0.0):
    """The Gaussian model above with ``q`` the exact posterior ``N(a x / (1 + a^2),
    1 / (1 + a^2))`` (its standard deviation shifted by ``scale_offset``), ``repeats`` copies."""
    a = GAUSS_PARAMETERS["a"]
    mean = a * X / (1 + a**2)
    std = (1 / (1 + a**2)) ** 0.5 + scale_offset
    mu = torch.full((repeats,), mean, dtype=torch.float64, requires_grad=True)
    sigma = torch.full((repeats,), std, dtype=torch.float64, requires_grad=True)
    a_tensor = torch.full((repeats,), a, dtype=torch.float64)
    q = Normal(mu, sigma)
    return (mu, sigma), q, lambda z: gaussian_log_weight(z, mu, sigma, a_tensor)


def encoder_gradients(estimator: str, num_samples: int, generator, scale_offset=0.0) -> Tensor:
    (mu, sigma), q, log_weight = posterior_problem(20_000, scale_offset)
    sg.iwae_bound(log_weight, q, num_samples, estimator, generator).sum().backward()
    return torch.stack([mu.grad, sigma.grad], 1)


def test_dreg_has_zero_variance_at_the_posterior(generator):
    # q = p(z | x) makes every log-weight log p(x): DReG's encoder gradient is exactly 0,
    # while the pathwise one keeps the score term -sum_k w~_k d/dphi log q.
    assert encoder_gradients("dreg", 8, generator).abs().max() < 1e-12
    assert encoder_gradients("pathwise", 8, generator).var(0).min() > 1e-3


@pytest.mark.parametrize("num_samples", [4, 64])
def test_dreg_cuts_the_encoder_variance(num_samples, generator):
    # Near (not at) the posterior, with many samples: the regime of Rainforth et al. (2018)
    # where the pathwise encoder gradient's signal-to-noise ratio collapses.
    dreg = encoder_gradients("dreg", num_samples, generator, scale_offset=0.1)
    pathwise = encoder_gradients("pathwise", num_samples, generator, scale_offset=0.1)
    assert_mean_close(dreg - pathwise, torch.zeros(2))  # same expectation, paired draws
    assert (dreg.var(0) < pathwise.var(0) / 4).all()


@pytest.mark.parametrize(
    "make_q",
    [
        lambda loc, scale: Independent(Normal(loc, scale), 1),
        lambda loc, scale: torch.distributions.LowRankMultivariateNormal(
            loc, torch.stack([scale, -scale], -1) / 2, scale
        ),
        lambda loc, scale: Independent(torch.distributions.Gamma(loc.exp(), scale), 1),
    ],
    ids=["normal", "low-rank-mvn", "gamma"],
)
def test_dreg_is_unbiased_for_any_reparameterizable_family(make_q, generator):
    # The same bound's gradient two ways on the same draws: pathwise (unbiased, the IWAE
    # paper's) and DReG; the paired differences must have mean zero.
    repeats, dims = 20_000, 2
    loc = torch.full((repeats, dims), 0.3, dtype=torch.float64, requires_grad=True)
    scale = torch.full((repeats, dims), 0.8, dtype=torch.float64, requires_grad=True)
    gradients = {}
    for estimator in ("pathwise", "dreg"):
        loc.grad = scale.grad = None
        q = make_q(loc, scale)

        def log_weight(z: Tensor, q=q) -> Tensor:
            return Normal(0.5, 1.0).log_prob(z).sum(-1) - q.log_prob(z)

        seeded = torch.Generator().manual_seed(7)
        sg.iwae_bound(log_weight, q, 4, estimator, seeded).sum().backward()
        gradients[estimator] = torch.cat([loc.grad, scale.grad], 1)
    assert gradients["dreg"].isfinite().all()
    assert_mean_close(gradients["dreg"] - gradients["pathwise"], torch.zeros(2 * dims))


def test_stl_bound_with_one_sample_is_the_stl_elbo():
    (mu, sigma), q, log_weight = posterior_problem(8, scale_offset=0.2)
    bound = sg.iwae_bound(log_weight, q, 1, "stl", torch.Generator().manual_seed(3))
    bound_gradients = torch.autograd.grad(bound.sum(), (mu, sigma))
    elbo = -sg.expectation(lambda z: -log_weight(z), q, "stl", 1, torch.Generator().manual_seed(3))
    elbo_gradients = torch.autograd.grad(elbo.sum(), (mu, sigma))
    assert torch.equal(bound.detach(), elbo.detach())
    for from_bound, from_elbo in zip(bound_gradients, elbo_gradients, strict=True):
        assert torch.allclose(from_bound, from_elbo, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------- VIMCO


def test_vimco_gradient_is_unbiased_by_enumeration(generator):
    value, exact_logits, exact_u = exact_discrete_bound()
    logits, u, q, log_weight = discrete_problem(repeats=100_000)
    bound = sg.iwae_bound(log_weight, q, K, "vimco", generator)
    assert_mean_close(bound.detach(), value)
    bound.sum().backward()
    assert_mean_close(logits.grad, exact_logits)
    assert_mean_close(u.grad, exact_u)


def test_vimco_has_lower_variance_than_the_plain_score_function(generator):
    """Measured per-logit variances: VIMCO about 0.06-0.08, the plain score function 5-6 (its
    signal ``L_hat``, near the bound -2.6, multiplies every score). Both are unbiased."""
    _, exact_logits, _ = exact_discrete_bound()
    gradients = {}
    for name in ("vimco", "plain"):
        logits, _, q, log_weight = discrete_problem(repeats=100_000)
        if name == "vimco":
            bound = sg.iwae_bound(log_weight, q, K, "vimco", generator)
        else:
            bound = plain_score_bound(log_weight, q, K, generator)
        bound.sum().backward()
        assert_mean_close(logits.grad, exact_logits)
        gradients[name] = logits.grad
    assert (gradients["vimco"].var(0) < gradients["plain"].var(0) / 10).all()


def test_vimco_gradient_matches_the_paper_formula(generator):
    """For Bernoulli logits ``grad log q(z) = z - sigmoid(logits)`` and the log-weight's own
    ``-log q`` term gives ``-w~_k`` times it, so the logits' gradient is
    ``sum_k (L_hat - L_hat_{-k} - w~_k) (z_k - sigmoid(logits))`` and u's is
    ``sum_k w~_k z_k``, with ``L_hat_{-k}`` written out as in Mnih & Rezende (2016), eq. 9.
    """
    num_samples = 4
    logits, u, q, log_weight = discrete_problem(repeats=5)
    recorded = RecordingCost(log_weight)
    sg.iwae_bound(recorded, q, num_samples, "vimco", generator).sum().backward()
    z, log_w = recorded.inputs[0], recorded.outputs[0].detach()
    w = log_w.exp()
    bound = (w.mean(0)).log()
    leave_one_out = torch.stack(
        [
            (
                (w.sum(0) - w[k] + log_w[torch.arange(num_samples) != k].mean(0).exp())
                / num_samples
            ).log()
            for k in range(num_samples)
        ]
    )
    normalized = w / w.sum(0)
    score = z - torch.sigmoid(logits.detach())
    expected_logits = ((bound - leave_one_out - normalized)[..., None] * score).sum(0)
    assert torch.allclose(logits.grad, expected_logits)
    assert torch.allclose(u.grad, (normalized[..., None] * z).sum(0))


def test_vimco_ignores_a_constant_shift_of_the_log_weights(generator):
    """Adding ``c`` to every log-weight adds ``c`` to the value and leaves the gradient alone
    (every signal ``L_hat - L_hat_{-k}`` is a difference of bounds); ``c = -1e4`` would
    underflow ``exp`` in a naive implementation."""
    results = []
    for shift in (0.0, -1e4):
        logits, _, q, log_weight = discrete_problem(repeats=50)
        seed = torch.Generator().manual_seed(3)
        bound = sg.iwae_bound(lambda z: log_weight(z) + shift, q, K, "vimco", seed)  # noqa: B023
        bound.sum().backward()
        results.append((bound.detach(), logits.grad))
    (value, grad), (shifted_value, shifted_grad) = results
    assert torch.allclose(shifted_value - value, torch.tensor(-1e4, dtype=torch.float64))
    assert torch.allclose(shifted_grad, grad, atol=1e-9)


def test_leave_one_out_bounds_with_a_zero_or_dominant_weight():
    """``log (1/K) (sum_{j != k} w_j + geometric mean of the others)``, for K = 3."""
    third = math.log(1 / 3)
    zero = leave_one_out_bounds(torch.tensor([-math.inf, 0.0, 0.0], dtype=torch.float64))
    # k = 0: (1 + 1 + 1)/3; k = 1 or 2: (0 + 1 + exp(-inf))/3.
    assert torch.allclose(zero, torch.tensor([0.0, third, third], dtype=torch.float64))
    dominant = leave_one_out_bounds(torch.tensor([1000.0, -1000.0, 0.0], dtype=torch.float64))
    # k = 0: (e^-1000 + 1 + e^-500)/3; k = 1: (e^1000 + 1 + e^500)/3, k = 2 alike.
    expected = torch.tensor([third, 1000 + third, 1000 + third], dtype=torch.float64)
    assert torch.allclose(dominant, expected)


def test_vimco_is_not_an_estimator_of_an_expectation():
    q = Bernoulli(logits=torch.zeros(2))
    with pytest.raises(TypeError, match=r"sg\.iwae_bound\(log_weight, dist, num_samples"):
        sg.expectation(lambda b: b, q, sg.VIMCO(), num_samples=4)
    assert sg.VIMCO.supports(q) and sg.VIMCO.supports(Normal(0.0, 1.0))


# --------------------------------------------------------------------------------- errors


def test_vimco_needs_two_samples():
    q = Bernoulli(logits=torch.zeros(2))
    with pytest.raises(ValueError, match=r"num_samples must be >= 2 for iwae_bound with 'vimco'"):
        sg.iwae_bound(lambda b: b, q, 1, "vimco")
    with pytest.raises(ValueError, match="num_samples must be an int"):
        sg.iwae_bound(lambda b: b, q, 2.0, "vimco")


@pytest.mark.parametrize("estimator", ["pathwise", "vimco"])
def test_wrong_log_weight_shape_names_the_expected_shape(estimator):
    q = Independent(Normal(torch.zeros(2, 3), torch.ones(2, 3)), 1)
    with pytest.raises(ValueError, match=r"log_weight must return values of shape .*\(4, 2\)"):
        sg.iwae_bound(lambda z: z, q, 4, estimator)


@pytest.mark.parametrize("estimator", ["score", "enumerate", sg.ScoreFunction(), 3])
def test_unknown_estimator_lists_the_names(estimator):
    with pytest.raises(ValueError, match="'pathwise', 'dreg', 'stl' or 'vimco'"):
        sg.iwae_bound(lambda z: -z, Normal(torch.zeros(2), 1.0), 2, estimator)


def test_pathwise_without_rsample_points_to_vimco():
    q = Independent(Bernoulli(logits=torch.zeros(2, 3)), 1)
    with pytest.raises(TypeError, match=r"Independent of Bernoulli has none; use .*'vimco'"):
        sg.iwae_bound(lambda z: z.sum(-1), q, 2)


def test_distribution_generator_and_parameters_are_checked():
    with pytest.raises(TypeError, match=r"torch\.distributions\.Distribution"):
        sg.iwae_bound(lambda z: z, torch.zeros(2), 2, "vimco")
    q = Normal(torch.zeros(2), torch.ones(2))
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator"):
        sg.iwae_bound(lambda z: z, q, 2, "vimco", generator=0)
    loc = torch.tensor([0.0, math.inf])
    with pytest.raises(ValueError, match="contains NaN or inf"):
        sg.iwae_bound(lambda z: z, Normal(loc, torch.ones(2)), 2, "pathwise")


def test_expectation_with_the_name_vimco_points_to_iwae_bound():
    with pytest.raises(ValueError, match=r"use sg\.iwae_bound"):
        sg.expectation(lambda z: z, Normal(torch.zeros(1), 1.0), "vimco", 2)
