"""Gumbel-Rao Monte Carlo (Paulus et al. 2021): the mean gradient of straight-through
Gumbel-softmax at the same temperature, and a variance below it that falls with
``num_draws``; the conditional Gumbels have the argmax they are conditioned on."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import samplegrad as sg
from samplegrad.estimators.gumbel_rao import conditional_perturbations

from problems import DISCRETE_CASES, DiscreteCase
from stats import Z_MEAN, variance_standard_error

pytestmark = pytest.mark.usefixtures("one_thread")

REPEATS = 40_000
CASES = [DISCRETE_CASES[3], DISCRETE_CASES[6]]  # OneHotCategorical(K=4), Independent(Bernoulli)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
@pytest.mark.parametrize("temperature", [0.5, 1.0])
def test_the_mean_is_straight_through_gumbel_softmaxs(case: DiscreteCase, temperature: float):
    """Independent draws of both: the means within 4 standard errors of their difference; and
    both biased (more than 8 standard errors from the exact gradient somewhere)."""
    rao = case.estimates(sg.GumbelRao(temperature, num_draws=10), 1, REPEATS, seed=1)
    straight = case.estimates(sg.GumbelSoftmax(temperature, hard=True), 1, REPEATS, seed=2)
    standard_error = ((rao.var(0) + straight.var(0)) / REPEATS).sqrt()
    assert ((rao.mean(0) - straight.mean(0)).abs() <= Z_MEAN * standard_error).all()
    bias = (rao.mean(0) - case.exact_gradient()).abs() / (rao.var(0) / REPEATS).sqrt()
    assert bias.max() > 8


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_the_variance_is_lower_and_falls_with_the_draws(case: DiscreteCase) -> None:
    """Traces of the covariance: ``M = 1`` is straight-through Gumbel-softmax in distribution
    (within 5 standard errors), and ``M = 10, 100`` each lower than the last by more than 5."""
    traces = {}
    for name, estimator in [
        ("straight", sg.GumbelSoftmax(hard=True)),
        *((draws, sg.GumbelRao(num_draws=draws)) for draws in (1, 10, 100)),
    ]:
        estimates = case.estimates(estimator, 1, REPEATS, seed=3)
        traces[name] = (estimates.var(0).sum(), variance_standard_error(estimates).sum())
    (straight, straight_se), (one, one_se) = traces["straight"], traces[1]
    assert abs(straight - one) <= 5 * (straight_se + one_se)
    for fewer, more in ((1, 10), (10, 100)):
        (high, high_se), (low, low_se) = traces[fewer], traces[more]
        assert low + 5 * (low_se + high_se) < high, (fewer, more, traces)


def test_the_conditional_gumbels_keep_the_argmax_and_the_maximums_law() -> None:
    """Given ``D``, ``argmax(theta + G) = D``, and the maximum is a standard Gumbel (mean
    ``0.5772``) whatever ``D`` is."""
    log_probs = torch.tensor([0.2, -1.0, 0.5, 0.0], dtype=torch.float64).log_softmax(-1)
    indices = torch.arange(4).repeat(5000)
    one_hot = F.one_hot(indices, 4).double()
    perturbed = conditional_perturbations(log_probs, one_hot, 3, torch.Generator().manual_seed(0))
    assert (perturbed.argmax(-1) == indices).all()
    maximum = perturbed.max(-1).values.reshape(3, 5000, 4)
    euler_gamma = 0.5772156649
    standard_error = (torch.pi**2 / 6 / 15000) ** 0.5
    assert ((maximum.mean((0, 1)) - euler_gamma).abs() <= Z_MEAN * standard_error).all()


def test_num_draws_must_be_a_positive_int() -> None:
    for draws in (0, 2.5, True):
        with pytest.raises(ValueError, match="num_draws must be an int >= 1"):
            sg.GumbelRao(num_draws=draws)
