"""IndeCateR (De Smet et al. 2023): unbiased on every discrete family against enumeration,
exact for a single variable, and ``1 + D (K - 1)`` distinct evaluations of ``f`` per sample."""

from __future__ import annotations

import pytest
import torch

import samplegrad as sg

from problems import DISCRETE_CASES, DiscreteCase, RecordingCost
from stats import Z_MEAN, assert_mean_close

pytestmark = pytest.mark.usefixtures("one_thread")

REPEATS = 20_000


@pytest.mark.parametrize("case", DISCRETE_CASES, ids=lambda case: case.name)
def test_the_mean_gradient_is_exact(case: DiscreteCase) -> None:
    estimates = case.estimates(sg.IndeCateR(), 2, REPEATS, seed=11)
    exact = case.exact_gradient()
    standard_error = (estimates.var(0) / REPEATS).sqrt()
    assert (Z_MEAN * standard_error <= 0.25 * exact.abs().max()).all()
    assert_mean_close(estimates, exact)


@pytest.mark.parametrize("case", [DISCRETE_CASES[1], DiscreteCase("Bernoulli", "bernoulli", 2)])
def test_one_variable_is_summed_exactly(case: DiscreteCase) -> None:
    estimates = case.estimates(sg.IndeCateR(), 1, 50, seed=0)
    torch.testing.assert_close(estimates, case.exact_gradient().expand(50, -1))


def test_f_is_called_once_on_the_samples_then_each_variable_changed() -> None:
    """``D = 2`` variables of ``K = 3`` classes, ``S = 3``: ``3 (1 + 2 * 2) = 15`` points, the
    samples first; among the ``D K = 6`` points of each sample's sums, ``D`` are the sample."""
    case = DISCRETE_CASES[4]
    recorded = RecordingCost(case.f)
    logits = case.logits(1)
    sg.IndeCateR()(recorded, case.dist(logits), 3, torch.Generator().manual_seed(0))
    (points,) = recorded.inputs
    assert points.shape == (15, 1, 2)
    samples, changed = points[:3], points[3:].reshape(2, 2, 3, 1, 2)  # (d, shift, s, B, D)
    for d in range(2):
        kept = changed[d][..., 1 - d] == samples[..., 1 - d]
        assert kept.all()
        classes = torch.cat([samples[..., d].unsqueeze(0), changed[d][..., d]])
        assert (classes.sort(0).values == torch.arange(3).reshape(3, 1, 1)).all()
