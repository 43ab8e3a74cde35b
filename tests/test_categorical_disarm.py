"""Categorical DisARM (Dong, Mnih & Tucker 2021): unbiased on every discrete family against
enumeration, binary DisARM for two classes, and a lower variance than the score function with
a leave-one-out baseline at the same number of evaluations of ``f``."""

from __future__ import annotations

import pytest
import torch

import samplegrad as sg
from samplegrad.estimators.categorical_disarm import (
    importance_weight,
    stick_breaking_probabilities,
)
from samplegrad.lab.compare.runner import Bernoulli3D, CategoricalProduct, compare

from problems import DISCRETE_CASES, DiscreteCase
from stats import Z_MEAN, Z_VARIANCE, assert_mean_close

pytestmark = pytest.mark.usefixtures("one_thread")

REPEATS = 20_000


@pytest.mark.parametrize("case", DISCRETE_CASES, ids=lambda case: case.name)
@pytest.mark.parametrize("num_samples", [2, 4])
def test_the_mean_gradient_is_exact(case: DiscreteCase, num_samples: int) -> None:
    estimates = case.estimates(sg.CategoricalDisARM(), num_samples, REPEATS, seed=5)
    exact = case.exact_gradient()
    standard_error = (estimates.var(0) / REPEATS).sqrt()
    assert (Z_MEAN * standard_error <= 0.25 * exact.abs().max()).all()
    assert_mean_close(estimates, exact)


def test_two_classes_have_binary_disarms_weight() -> None:
    """For ``K = 2`` the pair differs only at the first stick, ``w = 1 - sigma_1 =
    sigmoid(|logit|)``: binary DisARM's factor."""
    logits = torch.tensor([-2.0, -0.3, 0.0, 0.7, 3.0], dtype=torch.float64)
    log_probs = torch.stack([torch.zeros_like(logits), logits], -1).log_softmax(-1)
    sigma = stick_breaking_probabilities(log_probs.sort(-1).values)
    weight = importance_weight(sigma, torch.zeros(5, dtype=torch.long))
    torch.testing.assert_close(weight, torch.sigmoid(logits.abs()))
    assert (sigma <= 0.5).all()


def test_one_pair_has_a_lower_variance_than_leave_one_out_at_two_evaluations() -> None:
    """On ``categorical-2x3`` (two variables of three classes, a cubic cost) at 2 evaluations
    of ``f``: the exact variances (traces over the six logits, 0.538 against 0.723), and the
    measured ones, 100 000 estimates each, whose ratio must be below 1 by more than 5 standard
    errors. (With more evaluations the pairs only average, while the leave-one-out baseline
    improves: at 4, leave-one-out's exact trace is the lower one here, 0.206 against 0.269.)"""
    problem = CategoricalProduct()
    disarm = sum(problem.exact_variance("categorical-disarm", 2).values())
    loo = sum(problem.exact_variance("score-loo", 2).values())
    assert disarm < 0.8 * loo, (disarm, loo)
    result = compare(problem, ["categorical-disarm", "score-loo"], 2, repeats=100_000, seed=3)
    totals = {"categorical-disarm": [0.0, 0.0], "score-loo": [0.0, 0.0]}
    for row in result["rows"]:
        totals[row["estimator"]][0] += row["variance"]
        totals[row["estimator"]][1] += row["variance_se"]  # a bound on the trace's s.e.
    (disarm, disarm_se), (loo, loo_se) = totals["categorical-disarm"], totals["score-loo"]
    ratio = disarm / loo
    ratio_se = ratio * (disarm_se / disarm + loo_se / loo)
    assert ratio + 5 * ratio_se < 1, (ratio, ratio_se)


def test_a_bernoulli_gets_binary_disarms_variance() -> None:
    """The two-class case has binary DisARM's pair law and weight: on ``bernoulli-3d`` the
    measured variances of both within 5 standard errors of DisARM's exact ones."""
    result = compare(Bernoulli3D(), ["categorical-disarm", "disarm"], 4, repeats=100_000, seed=2)
    rows = {(row["estimator"], row["parameter"]): row for row in result["rows"]}
    for (estimator, parameter), row in rows.items():
        assert row["exact_variance"] == rows[("disarm", parameter)]["exact_variance"]
        assert abs(row["variance"] - row["exact_variance"]) <= Z_VARIANCE * row["variance_se"]
        assert abs(row["bias"]) <= Z_MEAN * row["gradient_se"], (estimator, parameter)


def test_an_odd_number_of_evaluations_is_refused() -> None:
    case = DISCRETE_CASES[0]
    with pytest.raises(ValueError, match=r"num_samples must be even .* \(antithetic pairs"):
        sg.CategoricalDisARM()(case.f, case.dist(case.logits()), 3)
