"""Unordered-set REINFORCE (Kool et al. 2020): unbiased on every discrete family against
enumeration, exact where the support has at most ``k`` points, its set probabilities against
sums over orderings, and stochastic beam search drawing sets with those probabilities."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import samplegrad as sg
from samplegrad.estimators._categories import categories
from samplegrad.estimators.unordered_set import gumbel_top_k, leave_out_ratios

from problems import DISCRETE_CASES, DiscreteCase
from stats import Z_MEAN, assert_mean_close

pytestmark = pytest.mark.usefixtures("one_thread")

REPEATS = 20_000


@pytest.mark.parametrize("case", DISCRETE_CASES, ids=lambda case: case.name)
@pytest.mark.parametrize("k", [2, 3])
def test_the_mean_gradient_is_exact(case: DiscreteCase, k: int) -> None:
    estimates = case.estimates(sg.UnorderedSet(), k, REPEATS, seed=7)
    exact = case.exact_gradient()
    standard_error = (estimates.var(0) / REPEATS).sqrt()
    assert (Z_MEAN * standard_error <= 0.25 * exact.abs().max()).all()
    assert_mean_close(estimates, exact)


@pytest.mark.parametrize(
    ("case", "k"),
    [
        (DiscreteCase("Bernoulli", "bernoulli", 2), 2),
        (DISCRETE_CASES[0], 3),
        (DISCRETE_CASES[0], 5),
        (DiscreteCase("Independent(Bernoulli, 2)", "bernoulli", 2, (2,)), 4),
    ],
    ids=["Bernoulli-k2", "Categorical(K=3)-k3", "Categorical(K=3)-k5", "Independent-k4"],
)
def test_a_support_of_at_most_k_points_is_summed_exactly(case: DiscreteCase, k: int) -> None:
    estimates = case.estimates(sg.UnorderedSet(), k, 20, seed=0)
    torch.testing.assert_close(estimates, case.exact_gradient().expand(20, -1))
    logits = case.logits(3)
    value = sg.UnorderedSet()(case.f, case.dist(logits), k)
    torch.testing.assert_close(value, sg.Enumerate()(case.f, case.dist(logits)))


def _ordered_probability(p: list[float], outside: float) -> float:
    """Drawing the points of probabilities ``p`` first, in any order, by summing over orderings."""
    total = 0.0
    for ordering in itertools.permutations(p):
        left, probability = sum(p) + outside, 1.0
        for q in ordering:
            probability, left = probability * q / left, left - q
        total += probability
    return total


def test_the_leave_out_ratios_are_those_of_sums_over_orderings() -> None:
    generator = torch.Generator().manual_seed(0)
    probs = torch.rand(8, generator=generator, dtype=torch.float64)
    probs = probs / probs.sum()
    chosen = probs[:4].tolist()
    outside = 1 - sum(chosen)
    first, second = leave_out_ratios(probs[:4].log(), whole_support=False)
    whole = _ordered_probability(chosen, outside)
    for s in range(4):
        without = [q for i, q in enumerate(chosen) if i != s]
        left_out = _ordered_probability(without, outside)
        assert first[s].exp().item() == pytest.approx(left_out / whole, rel=1e-12)
        for t in range(4):
            pair = [q for i, q in enumerate(chosen) if i not in (s, t)]
            expected = 1.0 if s == t else _ordered_probability(pair, outside) / left_out
            assert second[s, t].exp().item() == pytest.approx(expected, rel=1e-12)


def test_stochastic_beam_search_draws_sets_with_their_probabilities() -> None:
    """Two variables of three classes, ``k = 3`` of the 9 configurations: the frequency of each
    of the 84 sets in 40 000 draws within 4 standard errors of its probability."""
    case = DISCRETE_CASES[4]
    repeats = 40_000
    view = categories(case.dist(case.logits(repeats).detach()))
    points, size = gumbel_top_k(view, 3, torch.Generator().manual_seed(2))
    assert size == 3 and points.shape == (3, repeats, 2)
    codes = (points[..., 0] * 3 + points[..., 1]).sort(0).values  # (3, R)
    joint = case.dist(case.logits()).log_prob(
        torch.cartesian_prod(torch.arange(3), torch.arange(3))
    )
    q = joint.exp().tolist()
    counts = {}
    for column in codes.T.tolist():
        counts[tuple(column)] = counts.get(tuple(column), 0) + 1
    total = 0.0
    for subset in itertools.combinations(range(9), 3):
        chosen = [q[i] for i in subset]
        probability = _ordered_probability(chosen, 1 - sum(chosen))
        frequency = counts.get(subset, 0) / repeats
        assert abs(frequency - probability) <= 4 * math.sqrt(probability / repeats), subset
        total += probability
    assert total == pytest.approx(1.0)


def test_too_large_a_set_is_refused() -> None:
    case = DISCRETE_CASES[2]
    with pytest.raises(ValueError, match="num_samples must be <= 12 for estimator 'unordered-set'"):
        sg.UnorderedSet()(case.f, case.dist(case.logits()), 13)
