"""ARM and DisARM against exact gradients (enumeration, closed forms) and exact variances."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Independent, Normal

import samplegrad as sg
from samplegrad.estimators.antithetic import ARM, DisARM

from problems import BernoulliToy, RecordingCost, three_dimensional_bernoulli
from stats import assert_mean_close, assert_variance_close

pytestmark = pytest.mark.usefixtures("one_thread")

ESTIMATORS = {"arm": ARM, "disarm": DisARM}


def toy_variance(name: str, phi: float, t: float) -> float:
    """Exact variance of one pair's estimate on the Bernoulli toy ``E[(b - t)^2]``.

    With ``d = f(1) - f(0) = 1 - 2t`` and ``m = min(theta, 1 - theta)``, the pair differs
    exactly where ``|u - 1/2| > 1/2 - m`` (probability ``2m``):

    - ARM is ``d |u - 1/2|`` there and 0 elsewhere; ``|u - 1/2|`` has density 2 on
      ``(0, 1/2)``, so ``E g^2 = d^2 (2/3) (1/8 - (1/2 - m)^3)`` and ``E g = d m (1 - m)``.
    - DisARM is the constant ``d (1 - m) / 2`` there (``sigmoid(|phi|) = 1 - m``) and 0
      elsewhere: variance ``(d (1 - m) / 2)^2 2m (1 - 2m)``, which is 0 at ``theta = 1/2``.
    """
    theta = 1 / (1 + math.exp(-phi))
    m, d = min(theta, 1 - theta), 1 - 2 * t
    if name == "arm":
        return d**2 * (2 / 3 * (1 / 8 - (0.5 - m) ** 3) - (m * (1 - m)) ** 2)
    return (d * (1 - m) / 2) ** 2 * 2 * m * (1 - 2 * m)


def toy_quadrature(name: str, phi: float, t: float, points: int = 1_000_000) -> tuple[float, float]:
    """Mean and variance of the papers' formulas on a midpoint grid over ``u`` (a check of
    :func:`toy_variance` independent of the library): ARM ``(f(b~) - f(b)) (u - 1/2)``
    (Yin & Zhou 2019), DisARM ``1/2 (f(b) - f(b~)) (-1)^{b~} 1[b != b~] sigmoid(|phi|)``
    (Dong et al. 2020), with ``b = 1[u < theta]``, ``b~ = 1[1 - u < theta]``."""
    u = (torch.arange(points, dtype=torch.float64) + 0.5) / points
    theta, magnitude = torch.sigmoid(torch.tensor([phi, abs(phi)], dtype=torch.float64))
    b, b_anti = (u < theta).double(), (1 - u < theta).double()
    f_b, f_anti = (b - t) ** 2, (b_anti - t) ** 2
    if name == "arm":
        g = (f_anti - f_b) * (u - 0.5)
    else:
        g = 0.5 * (f_b - f_anti) * (-1) ** b_anti * (b != b_anti) * magnitude
    return g.mean().item(), g.var().item()


@pytest.mark.parametrize(
    ("phi", "arm", "disarm"), [(0.0, 8.33e-8, 0.0), (-1.0, 1.458e-7, 1.328e-7)]
)
def test_exact_toy_variances(phi, arm, disarm):
    problem = BernoulliToy(phi=phi, repeats=1)
    exact = {name: toy_variance(name, phi, problem.t) for name in ESTIMATORS}
    assert exact["arm"] == pytest.approx(arm, rel=1e-3)
    assert exact["disarm"] == pytest.approx(disarm, rel=1e-3, abs=1e-20)
    for name in ESTIMATORS:
        mean, variance = toy_quadrature(name, phi, problem.t)
        assert mean == pytest.approx(problem.exact_gradient, rel=1e-5)
        assert variance == pytest.approx(exact[name], rel=1e-4, abs=1e-15)
    # DisARM is ARM Rao-Blackwellized; one ARM pair (2 evaluations) beats REINFORCE with 2.
    assert exact["disarm"] <= exact["arm"] <= problem.score_variance(num_samples=2)
    if phi == 0.0:
        assert problem.score_variance(num_samples=2) == pytest.approx(1.5625e-2 / 2, rel=1e-4)


@pytest.mark.parametrize("num_samples", [2, 6])
@pytest.mark.parametrize("phi", [0.0, -1.0])
@pytest.mark.parametrize("name", ESTIMATORS)
def test_toy_unbiased_with_exact_variance(name, phi, num_samples, generator):
    problem = BernoulliToy(phi=phi)
    grad = problem.gradient(ESTIMATORS[name]()(problem.f, problem.dist(), num_samples, generator))
    variance = toy_variance(name, phi, problem.t) / (num_samples // 2)
    assert_mean_close(grad, problem.exact_gradient, variance)
    if variance == 0.0:
        # DisARM at theta = 1/2: every pair differs and the estimate is exactly d / 4.
        assert torch.allclose(grad, torch.full_like(grad, problem.exact_gradient), rtol=1e-12)
    else:
        assert_variance_close(grad, variance)


@pytest.mark.parametrize("num_samples", [2, 6])
@pytest.mark.parametrize("name", ESTIMATORS)
def test_three_dimensional_bernoulli(name, num_samples, generator):
    logits, dist, f, exact = three_dimensional_bernoulli(repeats=100_000)
    assert torch.allclose(exact.float(), torch.tensor([0.14857, -0.02037, -0.19155]), atol=1e-5)
    sg.expectation(f, dist, ESTIMATORS[name](), num_samples, generator).sum().backward()
    assert_mean_close(logits.grad, exact)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_batch_and_event_shapes_against_enumeration(name, generator):
    """Batch ``(2,)``, two reinterpreted dimensions ``(2, 2)``, a cost coupling the elements;
    ``R`` repeats stacked in front of the batch."""
    repeats = 50_000
    base = torch.tensor(
        [[[0.3, -1.2], [2.0, 0.0]], [[-0.5, 0.7], [1.1, -2.0]]], dtype=torch.float64
    )

    def f(z):
        return (z.sum((-2, -1)) - 1.5) ** 2 + z[..., 0, 0] * z[..., 1, 1]

    exact_logits = base.clone().requires_grad_(True)
    sg.expectation(f, Independent(Bernoulli(logits=exact_logits), 2), "enumerate").sum().backward()
    logits = base.expand(repeats, 2, 2, 2).clone().requires_grad_(True)
    surrogate = ESTIMATORS[name]()(f, Independent(Bernoulli(logits=logits), 2), 4, generator)
    assert surrogate.shape == (repeats, 2)
    surrogate.sum().backward()
    assert_mean_close(logits.grad, exact_logits.grad)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_value_is_mean_of_f_over_the_antithetic_pairs(name, generator):
    """``f`` sees all ``num_samples`` points at once: pairs ``b``, ``b~`` on the leading dimension,
    ``b~`` being ``b`` for ``1 - u``; with ``theta <= 1/2`` the two are never both 1."""
    dist = Independent(Bernoulli(logits=torch.full((3, 5), -0.4)), 1)
    cost = RecordingCost(lambda z: z.sum(-1))
    surrogate = ESTIMATORS[name]()(cost, dist, 6, generator)
    (z,) = cost.inputs
    assert z.shape == (6, 3, 5)
    assert torch.equal(surrogate.detach(), cost.outputs[0].mean(0))
    assert not (z[:3] * z[3:]).any()


@pytest.mark.parametrize("name", ESTIMATORS)
def test_odd_or_too_few_samples_raise(name):
    dist = Bernoulli(logits=torch.zeros(3))
    with pytest.raises(ValueError, match=rf"num_samples must be even for estimator '{name}'"):
        ESTIMATORS[name]()(lambda z: z, dist, 3)
    with pytest.raises(ValueError, match="num_samples must be >= 2"):
        ESTIMATORS[name]()(lambda z: z, dist, 1)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_only_bernoulli_is_supported(name):
    estimator = ESTIMATORS[name]
    assert estimator.supports(Bernoulli(probs=torch.full((2,), 0.3)))
    assert estimator.supports(Independent(Independent(Bernoulli(logits=torch.zeros(2, 3)), 1), 1))
    assert not estimator.supports(Categorical(logits=torch.zeros(3)))
    assert name in sg.estimators_supporting(Bernoulli(logits=torch.zeros(2)))
    with pytest.raises(TypeError, match=r"cannot handle Normal; estimators that can: .*'score'"):
        estimator()(lambda z: z, Normal(torch.zeros(2), torch.ones(2)), 2)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_same_generator_state_same_surrogate_and_gradient(name):
    results = []
    state = torch.get_rng_state()
    for _ in range(2):
        logits = torch.linspace(-2, 2, 7, requires_grad=True)
        surrogate = ESTIMATORS[name]()(
            lambda z: (z - 0.3) ** 2, Bernoulli(logits=logits), 4, torch.Generator().manual_seed(5)
        )
        surrogate.sum().backward()
        results.append((surrogate.detach(), logits.grad))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])
    assert torch.equal(torch.get_rng_state(), state)  # the global random state is untouched


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ESTIMATORS)
def test_dtype_follows_the_logits(name, dtype, generator):
    logits = torch.zeros(4, dtype=dtype, requires_grad=True)
    cost = RecordingCost(lambda z: z * 2.0)
    surrogate = ESTIMATORS[name]()(cost, Bernoulli(logits=logits), 2, generator)
    surrogate.sum().backward()
    assert cost.inputs[0].dtype == surrogate.dtype == logits.grad.dtype == dtype


def test_gradient_reaches_parameters_inside_f(generator):
    """``f``'s own parameters get the pathwise part: ``d/dw E[(b - w)^2] = 2 (w - theta)``.

    One pair at ``theta = 0.3 < 1/2`` is never ``(1, 1)``, so ``Cov(b, b~) = -theta^2`` and the
    pair's estimate ``2 (w - (b + b~) / 2)`` has variance ``2 theta (1 - 2 theta) = 0.24``.
    """
    weight = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    repeats = 50_000
    dist = Bernoulli(probs=torch.full((repeats,), 0.3, dtype=torch.float64))
    ARM()(lambda b: (b - weight) ** 2, dist, 2, generator).mean().backward()
    assert_mean_close(weight.grad[None], 2 * (0.4 - 0.3), 0.24 / repeats)


def test_gradient_reaches_probabilities_through_the_logits(generator):
    """With ``probs`` as the leaf, DisARM at ``theta = 1/2`` is exactly ``d/4`` per logit, times
    ``dphi/dtheta = 4``: the exact gradient ``d/dtheta E[(b - t)^2] = 1 - 2t``."""
    probs = torch.full((100,), 0.5, dtype=torch.float64, requires_grad=True)
    DisARM()(lambda b: (b - 0.499) ** 2, Bernoulli(probs=probs), 2, generator).sum().backward()
    assert torch.allclose(probs.grad, torch.full_like(probs, 1 - 2 * 0.499), rtol=1e-9)
