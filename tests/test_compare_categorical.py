"""``samplegrad compare`` on discrete choices: the ``categorical-2x3`` problem, the newer
estimators on ``bernoulli-3d``, and the enumeration behind their exact values
(:mod:`samplegrad.lab.compare.exact_categorical`), checked against independent computations:
``sg.Enumerate`` and autograd for the gradient, :mod:`~samplegrad.lab.compare.exact_bernoulli`
for the two-class case, the exact gradient for the unbiased estimators' exact means.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import samplegrad as sg
from samplegrad.lab.compare import exact_bernoulli, exact_categorical
from samplegrad.lab.compare import problems as compare_problems
from samplegrad.lab.compare.runner import Bernoulli3D, CategoricalProduct, compare

from stats import Z_MEAN, Z_VARIANCE

BIASED = ("straight-through", "reinmax", "gumbel", "gumbel-rao")


@pytest.fixture(autouse=True)
def _short_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compare_problems, "TIMING_CALLS", 2)
    monkeypatch.setattr(compare_problems, "TIMING_BLOCKS", 1)


def test_the_categorical_problem_has_the_gradient_of_enumeration() -> None:
    problem = CategoricalProduct()
    leaves = problem.leaves(1)
    value = sg.Enumerate()(problem.cost, problem.distribution(leaves))
    gradients = torch.autograd.grad(value.sum(), list(leaves.values()))
    exact = problem.exact_gradient()
    for (name, _), gradient in zip(leaves.items(), gradients, strict=True):
        assert exact[name] == pytest.approx(gradient.item(), abs=1e-14), name


def test_the_categorical_problem_measures_every_estimator_against_its_exact_values() -> None:
    """Every default estimator on ``categorical-2x3`` with 100 000 repeats: each unbiased
    estimator's mean within 4 standard errors of the exact gradient, each measured variance
    within 5 of its standard errors of the exact one, the biased estimators' bias over 8
    standard errors somewhere (ReinMax's on the variable its cost is cubic in), and the
    evaluations of ``f`` per estimate: ``K (1 + D (K_classes - 1)) = 10`` for IndeCateR."""
    problem = CategoricalProduct()
    result = compare(problem, repeats=100_000, seed=0)
    rows = result["rows"]
    assert {"indecater", "categorical-disarm", "unordered-set", "reinmax", "gumbel-rao"} <= {
        row["estimator"] for row in rows
    }
    checked = set()
    for row in rows:
        label = f"{row['estimator']} {row['parameter']}"
        if sg.estimators.catalog.CATALOG[row["estimator"]].unbiased:
            assert abs(row["bias"]) <= Z_MEAN * row["gradient_se"] + 1e-12, label
        if row["exact_variance"] not in (None, 0.0):
            checked.add(row["estimator"])
            assert abs(row["variance"] - row["exact_variance"]) <= Z_VARIANCE * row["variance_se"]
    assert checked == {
        "score",
        "score-loo",
        "indecater",
        "categorical-disarm",
        "straight-through",
        "reinmax",
        "unordered-set",
    }
    for name in BIASED:
        assert max(abs(r["bias"]) / r["gradient_se"] for r in rows if r["estimator"] == name) > 8
    evaluations = {row["estimator"]: row["evaluations"] for row in rows}
    assert evaluations["indecater"] == 10 and evaluations["enumerate"] == 9
    assert evaluations["score-loo"] == evaluations["categorical-disarm"] == 2


def test_reinmax_has_its_exact_mean_and_is_exact_for_costs_quadratic_in_each_variable() -> None:
    problem = CategoricalProduct()
    result = compare(problem, ["reinmax"], repeats=100_000, seed=1)
    mean = exact_categorical.exact_mean(
        problem._cost_numpy, problem.theta, "reinmax", problem._one_hot_gradient
    ).reshape(-1)
    for row, expected in zip(result["rows"], mean, strict=True):
        assert abs(row["gradient_mean"] - expected) <= Z_MEAN * row["gradient_se"]
    bias = mean - np.array(list(problem.exact_gradient().values()))
    assert np.abs(bias[:3]).max() < 1e-15 < 0.01 < np.abs(bias[3:]).max()  # x_1: quadratic


def test_bernoulli_3d_measures_the_newer_estimators_against_their_exact_variances() -> None:
    """IndeCateR is exact here (the cost is a sum over the variables); ReinMax is unbiased (the
    cost is quadratic: its exact mean is the gradient); Gumbel-Rao is biased like
    straight-through Gumbel-softmax."""
    problem = Bernoulli3D()
    theta = np.stack([np.zeros(3), problem.logits], -1)
    reinmax_mean = exact_categorical.exact_mean(
        problem._cost_numpy, theta, "reinmax", problem._one_hot_gradient
    )
    np.testing.assert_allclose(reinmax_mean[:, 1], list(problem.exact_gradient().values()))
    names = ["indecater", "unordered-set", "reinmax", "gumbel-rao"]
    result = compare(problem, names, 2, repeats=100_000, seed=1)
    for row in result["rows"]:
        label = f"{row['estimator']} {row['parameter']}"
        if row["estimator"] == "indecater":
            assert row["exact_variance"] < 1e-30 and row["variance"] < 1e-28, label
            continue
        if row["estimator"] == "gumbel-rao":
            assert row["exact_variance"] is None
            continue
        assert abs(row["bias"]) <= Z_MEAN * row["gradient_se"], label
        assert abs(row["variance"] - row["exact_variance"]) <= Z_VARIANCE * row["variance_se"]
    gumbel_rao = [r for r in result["rows"] if r["estimator"] == "gumbel-rao"]
    assert max(abs(r["bias"]) / r["gradient_se"] for r in gumbel_rao) > 8


@pytest.mark.parametrize("estimator", ["score", "score-loo", "straight-through"])
def test_a_bernoulli_is_the_two_class_case(estimator: str) -> None:
    """The class-1 component of the two-class enumeration is the Bernoulli logit's."""
    problem = Bernoulli3D()
    theta = np.stack([np.zeros(3), problem.logits], -1)
    two_class = exact_categorical.exact_variance(
        problem._cost_numpy, theta, estimator, 3, problem._one_hot_gradient
    )
    binary = exact_bernoulli.exact_variance(
        problem._cost_numpy,
        problem.logits,
        estimator,
        3,
        gradient=lambda b: 2 * (b - problem.targets),
    )
    np.testing.assert_allclose(two_class[:, 1], binary, rtol=1e-12)
    gradient = exact_categorical.exact_gradient(problem._cost_numpy, theta)
    np.testing.assert_allclose(gradient[:, 1], list(problem.exact_gradient().values()))


def test_the_unbiased_exact_means_are_the_gradient() -> None:
    """The enumerations of categorical DisARM's pairs and of the unordered sets (with the
    set probabilities summed over orderings) average to the exact gradient; the pair law has
    the marginals ``pi`` and no mass on equal classes but the most probable one."""
    problem = CategoricalProduct()
    gradient = exact_categorical.exact_gradient(problem._cost_numpy, problem.theta)
    mean, _ = exact_categorical.disarm_pair_moments(problem._cost_numpy, problem.theta)
    np.testing.assert_allclose(mean, gradient, atol=1e-15)
    for k in (2, 3, 9, 12):
        mean, variance = exact_categorical.unordered_set_moments(
            problem._cost_numpy, problem.theta, k
        )
        np.testing.assert_allclose(mean, gradient, atol=1e-15)
        assert (variance < 1e-28).all() == (k >= 9)  # the whole support: exact
    pi = np.exp(problem.theta) / np.exp(problem.theta).sum(-1, keepdims=True)
    for row in pi:
        law = exact_categorical.coupled_pair_law(row)
        np.testing.assert_allclose(law.sum(0), row, atol=1e-15)
        np.testing.assert_allclose(law.sum(1), row, atol=1e-15)
        diagonal = np.diag(law)
        assert (diagonal[np.arange(3) != row.argmax()] == 0).all()
        assert (law + np.eye(3) > 0).all()  # every pair of distinct classes can occur
