"""``samplegrad.diagnostics``: the statistics recover known variances and biases.

Tolerances follow ``tests/stats.py``: a mean within 4 of its standard errors, a variance within
5 of its own standard errors (``GradientStats.variance_se``), and each tolerance required to be
a small fraction of the target so that a wrong value cannot pass as noise.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Independent, Normal

import samplegrad as sg
from samplegrad.diagnostics import (
    GradientStats,
    format_table,
    gradient_stats,
    measure,
    measure_batched,
    seconds_per_call,
)
from samplegrad.lab.compare.runner import BernoulliToy, GaussianQuadratic

from stats import Z_MEAN, Z_VARIANCE

pytestmark = pytest.mark.usefixtures("one_thread")


def assert_matches(
    stats: GradientStats,
    variance: float,
    gradient: float | None = None,
    max_relative_tolerance: float = 0.15,
) -> None:
    """The measured variance within 5 of its standard errors of ``variance`` (and that
    tolerance below ``max_relative_tolerance`` of it), the bias within 4 standard errors."""
    assert Z_VARIANCE * stats.variance_se <= max_relative_tolerance * variance, "too few repeats"
    assert abs(stats.variance - variance) <= Z_VARIANCE * stats.variance_se
    if gradient is not None:
        assert abs(stats.bias) <= Z_MEAN * math.sqrt(variance / stats.repeats)


@pytest.mark.parametrize("estimator", ["pathwise", "score", "score-loo"])
def test_batched_recovers_the_quadratic_closed_forms(estimator: str) -> None:
    """docs/design.md, "Exact targets": x ~ N(mu, sigma^2), f = (x - k)^2, K = 2 samples."""
    problem = GaussianQuadratic(mu=1.5, sigma=0.8, k=0.5)
    generator = torch.Generator().manual_seed(0)
    stats = measure_batched(
        lambda leaves: sg.expectation(
            problem.cost,
            Normal(leaves["mu"], leaves["sigma"]),
            sg.ScoreFunction(baseline="loo") if estimator == "score-loo" else estimator,
            num_samples=2,
            generator=generator,
        ),
        {"mu": 1.5, "sigma": 0.8},
        repeats=200_000,
        exact=problem.exact_gradient(),
    )
    exact = problem.exact_variance(estimator, 2)
    for name in ("mu", "sigma"):
        assert_matches(stats[name], exact[name], problem.exact_gradient()[name])
        assert stats[name].snr == pytest.approx(
            abs(stats[name].gradient_mean) / math.sqrt(stats[name].variance)
        )


@pytest.mark.parametrize(
    ("estimator", "variance"),
    [("score", 1.5625e-2 / 2), ("score-loo", 2.5e-7), ("arm", 8.3333e-8)],
)
def test_batched_recovers_the_bernoulli_table(estimator: str, variance: float) -> None:
    """docs/design.md's Bernoulli toy at phi = 0, t = 0.499, K = 2: REINFORCE's one-sample 1.5625e-2
    halves. (With K = 1 its estimate takes two values with probability 1/2 each, where the
    sample variance's error is second order and the usual standard error is not valid.)"""
    toy = BernoulliToy(phi=0.0, t=0.499)
    generator = torch.Generator().manual_seed(1)
    chosen = sg.ScoreFunction(baseline="loo") if estimator == "score-loo" else estimator
    stats = measure_batched(
        lambda leaves: sg.expectation(
            toy.cost, Bernoulli(logits=leaves["phi"]), chosen, 2, generator
        ),
        {"phi": 0.0},
        repeats=200_000,
        exact=toy.exact_gradient(),
    )["phi"]
    assert toy.exact_variance(estimator, 2)["phi"] == pytest.approx(variance, rel=1e-4)
    assert_matches(stats, variance, 0.0005)


def test_a_biased_estimator_shows_its_bias() -> None:
    """Straight-through's mean is 2 (theta - t) theta (1 - theta), not theta (1 - theta)(1 - 2t):
    at phi = 1, t = 0.3 the difference is many standard errors, so the check can fail."""
    toy = BernoulliToy(phi=1.0, t=0.3)
    theta = toy.theta
    generator = torch.Generator().manual_seed(2)
    stats = measure_batched(
        lambda leaves: sg.expectation(
            toy.cost, Bernoulli(logits=leaves["phi"]), "straight-through", 1, generator
        ),
        {"phi": 1.0},
        repeats=100_000,
        exact=toy.exact_gradient(),
    )["phi"]
    expected_bias = 2 * (theta - 0.3) * theta * (1 - theta) - toy.exact_gradient()["phi"]
    assert abs(stats.bias - expected_bias) <= Z_MEAN * stats.gradient_se
    assert abs(stats.bias) > 20 * stats.gradient_se


def test_measure_loops_over_groups_of_tensors() -> None:
    """Pathwise gradient of E sum_d (x_d - c_d)^2 with respect to a (3,) location and a (3,)
    scale, one group for both: trace of the covariance = sum of the per-coordinate variances
    4 s^2 / K + (4 a^2 + 8 s^2) / K (docs/design.md, "Exact targets")."""
    loc = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    scale = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64)
    generator = torch.Generator().manual_seed(3)
    K = 4

    def estimate() -> Tensor:
        dist = Independent(Normal(loc, scale), 1)
        cost = lambda x: (x - target).pow(2).sum(-1)  # noqa: E731
        return sg.expectation(cost, dist, "pathwise", K, generator)

    a2, s2 = (loc - target).detach() ** 2, scale.detach() ** 2
    exact_gradient = torch.cat([2 * (loc - target).detach(), 2 * scale.detach()])
    stats = measure(
        estimate,
        {"normal": [loc, scale], "loc": loc},
        repeats=6000,
        exact={"normal": exact_gradient},
    )
    both, loc_only = stats["normal"], stats["loc"]
    assert (both.size, loc_only.size, both.repeats) == (6, 3, 6000)
    assert_matches(both, ((4 * s2 + 4 * a2 + 8 * s2) / K).sum().item())
    assert_matches(loc_only, (4 * s2 / K).sum().item())
    assert both.bias <= 4 * both.gradient_se  # a norm, so positive
    assert loc_only.bias is None and loc_only.exact_gradient is None
    assert both.seconds is not None and both.seconds > 0
    assert both.work_normalized_variance == pytest.approx(both.variance * both.seconds)
    assert loc.grad is None and scale.grad is None  # diagnostics only observe


def test_measure_takes_a_module() -> None:
    model = nn.Linear(2, 1)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(4))
    generator = torch.Generator().manual_seed(5)

    def estimate() -> Tensor:
        noise = torch.randn(5, 1, generator=generator)
        return (model(x) + noise).pow(2).mean()

    stats = measure(estimate, model, repeats=10)
    assert list(stats) == ["weight", "bias"]
    assert stats["weight"].size == 2 and stats["bias"].size == 1


def test_zero_variance_and_the_row() -> None:
    stats = gradient_stats("phi", torch.full((10,), 0.5), exact=0.5, seconds=2e-6)
    assert stats.variance == 0 and stats.snr == math.inf and stats.bias == 0
    row = stats.as_row()
    assert row["snr"] is None  # JSON has no infinity
    assert row["us_per_estimate"] == pytest.approx(2.0)
    assert row["work_normalized_variance"] == 0
    assert math.isnan(gradient_stats("z", torch.zeros(3)).snr)


def test_variance_standard_error_of_a_scalar_is_the_exact_formula() -> None:
    values = torch.randn(1000, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    stats = gradient_stats("x", values)
    R, s2 = 1000, values.var().item()
    m4 = (values - values.mean()).pow(4).mean().item()
    assert stats.variance_se == pytest.approx(math.sqrt((m4 - s2**2 * (R - 3) / (R - 1)) / R))


def test_bad_input_names_the_problem() -> None:
    with pytest.raises(ValueError, match="repeats >= 2"):
        gradient_stats("x", torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"exact gradient of 'x' has 2 values, the estimates 3"):
        gradient_stats("x", torch.zeros(4, 3), exact=[1.0, 2.0])
    with pytest.raises(ValueError, match="repeats must be an int >= 2"):
        measure(lambda: torch.zeros(()), nn.Linear(1, 1), repeats=1)
    with pytest.raises(ValueError, match="do not require grad"):
        measure(lambda: torch.zeros(()), {"g": torch.zeros(2)}, repeats=2)
    with pytest.raises(TypeError, match=r"nn\.Module or a mapping"):
        measure(lambda: torch.zeros(()), [torch.zeros(2)], repeats=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"shape \(5,\), one estimate per repeat"):
        measure_batched(lambda leaves: leaves["a"].sum(), {"a": 1.0}, repeats=5)
    with pytest.raises(ValueError, match="does not depend on parameter 'b'"):
        measure_batched(lambda leaves: leaves["a"] * 2, {"a": 1.0, "b": 2.0}, repeats=5)


def test_table_and_timer() -> None:
    stats = gradient_stats("mu", torch.tensor([1.0, 2.0, 3.0]), exact=2.0, seconds=1e-5)
    table = format_table([stats], label="pathwise/")
    header, row = table.splitlines()
    assert header.split()[:3] == ["group", "size", "mean"]
    assert row.split()[:3] == ["pathwise/mu", "1", "2"]
    calls = []
    seconds = seconds_per_call(lambda: calls.append(1), calls=3, blocks=2, warmup_blocks=1)
    assert len(calls) == 9 and seconds >= 0
