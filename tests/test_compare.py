"""``samplegrad.lab.compare.runner`` and the ``samplegrad compare`` command.

Statistical checks use a fixed seed, so they are deterministic; their tolerances are chosen so
that a correct implementation passes for (nearly) every seed, not tuned to this one:

- a gradient mean is within 4 standard errors of its expectation;
- a variance is within 5 of its own standard errors of the exact variance. For ``R`` iid
  estimates with variance ``sigma^2`` and kurtosis ``kappa``, the sample variance has
  ``Var s^2 = sigma^4 (2 / (R - 1) + (kappa - 3) / R)``: the ``5 sqrt(2 / (R - 1))`` relative
  tolerance of a Gaussian, widened by the estimator's own (heavy) tails. ``compare`` reports
  the plug-in estimate of that standard error as ``variance_se``.

The closed-form variances themselves are checked without sampling, against Gauss-Hermite
quadrature (Gaussian problem) and enumeration of all sample vectors (Bernoulli problem).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from torch.distributions import Normal

from samplegrad.cli import main
from samplegrad.estimators import catalog
from samplegrad.lab.compare import problems as compare_problems
from samplegrad.lab.compare.runner import (
    BernoulliToy,
    CompareError,
    GaussianQuadratic,
    Problem,
    compare,
    estimator_specs,
)

NORMAL_CAPABLE = sorted(n for n, e in catalog.CATALOG.items() if e.supports(Normal(0.0, 1.0)))
"""The names compare's errors list for a Gaussian problem, sorted."""


@pytest.fixture(autouse=True)
def _short_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Time 2 calls instead of hundreds: these tests check numbers, not speed."""
    monkeypatch.setattr(compare_problems, "TIMING_CALLS", 2)
    monkeypatch.setattr(compare_problems, "TIMING_BLOCKS", 1)


# ------------------------------------------------------------------ measured vs exact


def _fitting(problem: Problem, num_samples: int) -> list[str]:
    """Every name that can run on ``problem`` with ``num_samples``."""
    dist = problem.example_distribution()
    return [
        name
        for name, spec in estimator_specs().items()
        if spec.entry.supports(dist) and spec.entry.accepts(num_samples) is None
    ]


@pytest.mark.parametrize(
    ("problem", "num_samples"),
    [
        (GaussianQuadratic(), 2),
        (GaussianQuadratic(mu=0.5, sigma=2.0, k=1.0), 5),
        (BernoulliToy(), 2),
        (BernoulliToy(phi=1.0, t=0.3), 6),
    ],
    ids=["gaussian-default-K2", "gaussian-other-K5", "bernoulli-default-K2", "bernoulli-other-K6"],
)
def test_measured_statistics_match_exact_targets(problem: Problem, num_samples: int) -> None:
    fitting = _fitting(problem, num_samples)
    result = compare(problem, fitting, num_samples=num_samples, repeats=20_000, seed=0)
    assert {row["estimator"] for row in result["rows"]} == set(fitting)
    checked_variances = 0
    for row in result["rows"]:
        label = f"{row['estimator']} d/d{row['parameter']}"
        exact_variance = row["exact_variance"]
        if exact_variance == 0.0:  # enumeration: exact up to rounding
            assert row["variance"] < 1e-24, label
            assert row["gradient_mean"] == pytest.approx(row["exact_gradient"], rel=1e-12)
            continue
        if exact_variance is not None:
            checked_variances += 1
            assert row["variance_se"] > 0, label
            assert abs(row["variance"] - exact_variance) < 5 * row["variance_se"], label
        expected = _expected_mean(problem, row["estimator"], row["exact_gradient"])
        if expected is not None:
            assert abs(row["gradient_mean"] - expected) < 4 * row["gradient_se"], label
        assert row["us_per_estimate"] > 0, label
    assert checked_variances >= 3


def _expected_mean(problem: Problem, estimator: str, exact_gradient: float) -> float | None:
    """The estimator's expectation where known: the gradient if unbiased, else its bias."""
    if catalog.CATALOG[estimator].unbiased:
        return exact_gradient
    if estimator == "straight-through" and isinstance(problem, BernoulliToy):
        theta = problem.theta
        return 2 * (theta - problem.t) * theta * (1 - theta)
    return None


def test_variance_standard_error_of_a_gaussian_estimator() -> None:
    """Pathwise d/dmu is Gaussian (kurtosis 3): ``se(s^2) = sigma^2 sqrt(2 / (R - 1))``."""
    repeats = 20_000
    result = compare("gaussian-quadratic", ["pathwise"], num_samples=1, repeats=repeats)
    row = next(r for r in result["rows"] if r["parameter"] == "mu")
    assert row["exact_variance"] == 4.0
    assert row["variance_se"] == pytest.approx(4.0 * math.sqrt(2 / (repeats - 1)), rel=0.1)


def test_seed_makes_results_reproducible() -> None:
    def numbers(seed: int) -> list[float]:
        result = compare("bernoulli-toy", ["score", "gumbel"], repeats=1000, seed=seed)
        return [row["gradient_mean"] for row in result["rows"]]

    assert numbers(3) == numbers(3)
    assert numbers(3) != numbers(4)


# ------------------------------------------------------------- closed forms, no sampling


def _gaussian_estimators(
    problem: GaussianQuadratic,
) -> dict[str, Callable[[np.ndarray], dict[str, np.ndarray]]]:
    """Each estimator's gradient as a function of the noise ``eps`` of shape ``(K, N)``."""
    s = problem.sigma

    def costs_and_scores(eps: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        x = problem.mu + s * eps
        return (x - problem.k) ** 2, {"mu": eps / s, "sigma": (eps**2 - 1) / s}

    def pathwise(eps: np.ndarray) -> dict[str, np.ndarray]:
        slope = 2 * (problem.mu + s * eps - problem.k)
        return {"mu": slope.mean(0), "sigma": (slope * eps).mean(0)}

    def score(eps: np.ndarray) -> dict[str, np.ndarray]:
        costs, scores = costs_and_scores(eps)
        return {p: (costs * score).mean(0) for p, score in scores.items()}

    def score_loo(eps: np.ndarray) -> dict[str, np.ndarray]:
        costs, scores = costs_and_scores(eps)
        centred = costs - costs.mean(0)
        return {p: (centred * score).sum(0) / (len(eps) - 1) for p, score in scores.items()}

    return {"pathwise": pathwise, "score": score, "score-loo": score_loo}


@pytest.mark.parametrize(
    "problem",
    [
        GaussianQuadratic(),
        GaussianQuadratic(mu=0.5, sigma=2.0, k=1.0),
        GaussianQuadratic(mu=-1.0, sigma=0.5, k=0.3),
    ],
)
@pytest.mark.parametrize("num_samples", [1, 2, 3])
def test_gaussian_variances_by_quadrature(problem: GaussianQuadratic, num_samples: int) -> None:
    """The estimators are polynomials of degree <= 3 in each ``eps_s``, their squares of degree
    <= 6: a 6-node Gauss-Hermite rule per sample (exact to degree 11) gives exact moments."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(6)
    weights = weights / weights.sum()
    grid = np.array(list(itertools.product(nodes, repeat=num_samples))).T  # (K, N)
    grid_weights = np.prod(list(itertools.product(weights, repeat=num_samples)), axis=1)
    for name, estimator in _gaussian_estimators(problem).items():
        exact = problem.exact_variance(name, num_samples)
        if name == "score-loo" and num_samples < 2:
            assert exact is None
            continue
        assert exact is not None
        for parameter, values in estimator(grid).items():
            mean = grid_weights @ values
            assert mean == pytest.approx(problem.exact_gradient()[parameter], rel=1e-10)
            variance = grid_weights @ (values - mean) ** 2
            assert exact[parameter] == pytest.approx(variance, rel=1e-10), (name, parameter)


@pytest.mark.parametrize(
    "problem", [BernoulliToy(), BernoulliToy(phi=1.0, t=0.3), BernoulliToy(phi=-2.0, t=0.9)]
)
@pytest.mark.parametrize("num_samples", [1, 2, 3, 6])
def test_bernoulli_variances_by_enumeration(problem: BernoulliToy, num_samples: int) -> None:
    """Sum over all ``2^K`` sample vectors of each estimator's definition; this also checks the
    leave-one-out identity ``g = d n1 (K - n1) / (K (K - 1))`` the closed form relies on."""
    theta, t = problem.theta, problem.t
    samples = np.array(list(itertools.product([0.0, 1.0], repeat=num_samples))).T  # (K, 2^K)
    probabilities = np.prod(np.where(samples == 1, theta, 1 - theta), axis=0)
    costs, scores = (samples - t) ** 2, samples - theta
    estimators = {
        "score": (costs * scores).mean(0),
        "straight-through": (2 * (samples - t) * theta * (1 - theta)).mean(0),
    }
    if num_samples >= 2:
        estimators["score-loo"] = ((costs - costs.mean(0)) * scores).sum(0) / (num_samples - 1)
    for name, values in estimators.items():
        mean = probabilities @ values
        variance = probabilities @ (values - mean) ** 2
        assert problem.exact_variance(name, num_samples) == {
            "phi": pytest.approx(variance, rel=1e-10, abs=1e-300)
        }, name
    assert probabilities @ estimators["score"] == pytest.approx(problem.exact_gradient()["phi"])


def test_bernoulli_targets_from_the_design_notes() -> None:
    """docs/design.md's Bernoulli toy: REINFORCE 1.5625e-2 (1 sample), leave-one-out 2.5e-7 (2)."""
    problem = BernoulliToy()
    assert problem.exact_gradient()["phi"] == pytest.approx(5e-4, rel=1e-12)
    assert problem.exact_variance("score", 1)["phi"] == pytest.approx(1.5625e-2, rel=1e-4)
    assert problem.exact_variance("score-loo", 2)["phi"] == pytest.approx(2.5e-7, rel=1e-9)
    assert problem.exact_variance("gumbel", 2) is None


# ---------------------------------------------------------------------- estimator names


def test_estimator_names_come_from_the_registry() -> None:
    specs = estimator_specs()
    assert set(catalog.CATALOG) == set(specs)
    assert {"score-loo", "score-ma", "gumbel-hard"} <= set(specs)
    assert all(specs[name].cls is entry.cls for name, entry in catalog.CATALOG.items())
    assert specs["score-loo"].cls is catalog.CATALOG["score"].cls
    assert specs["gumbel-hard"].build(BernoulliToy()).hard
    first, second = (specs["score-ma"].build(BernoulliToy()) for _ in range(2))
    assert first.baseline is not second.baseline  # no state shared between measurements


@pytest.mark.parametrize(
    ("problem", "estimators", "num_samples", "message"),
    [
        ("nope", None, 2, "unknown problem 'nope'; choose one of gaussian-quadratic"),
        ("gaussian-quadratic", ["pathwise", "nope"], 2, "valid names: "),
        (
            "gaussian-quadratic",
            ["gumbel"],
            2,
            re.escape(f"estimators that can: {', '.join(NORMAL_CAPABLE)}"),
        ),
        ("bernoulli-toy", ["score-loo"], 1, "num_samples must be >= 2"),
        ("bernoulli-toy", [], 2, "no estimators given"),
    ],
)
def test_compare_rejects_bad_requests(
    problem: str, estimators: list[str] | None, num_samples: int, message: str
) -> None:
    with pytest.raises(CompareError, match=message):
        compare(problem, estimators, num_samples=num_samples, repeats=10)


# ------------------------------------------------------------------------------------ CLI


def test_cli_prints_table_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "new" / "dir"
    status = main(
        [
            "compare",
            "--problem",
            "bernoulli-toy",
            "--repeats",
            "2000",
            "--seed",
            "1",
            "--out",
            str(out),
        ]
    )
    assert status == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("bernoulli-toy: ")
    assert "phi=0, t=0.499" in lines[0] and "K=2" in lines[0] and "R=2000" in lines[0]
    assert lines[1].split()[:2] == ["estimator", "parameter"]
    defaults = list(BernoulliToy().default_estimators)
    assert {"score", "score-loo", "arm", "gumbel", "enumerate"} <= set(defaults)
    rows = lines[2 : 2 + len(defaults)]
    assert [line.split()[0] for line in rows] == defaults
    assert rows[defaults.index("gumbel")].split()[8] == "-"  # gumbel: no exact variance
    assert len({len(line) for line in [lines[1], *rows]}) == 1  # aligned columns

    written = sorted(p.name for p in out.iterdir())  # and no temp file left behind
    assert written == ["compare.csv", "compare.json", "snr.png", "work_normalized_variance.png"]
    data = json.loads((out / "compare.json").read_text())
    assert data["problem"] == "bernoulli-toy"
    assert data["parameters"] == {"phi": 0.0, "t": 0.499}
    assert (data["num_samples"], data["repeats"], data["seed"]) == ([2], 2000, 1)
    assert [row["estimator"] for row in data["rows"]] == defaults
    assert data["rows"][defaults.index("gumbel")]["exact_variance"] is None
    expected = compare("bernoulli-toy", repeats=2000, seed=1)
    timed = {"us_per_estimate", "work_normalized_variance"}
    for row, same in zip(data["rows"], expected["rows"], strict=True):
        assert {k: v for k, v in row.items() if k not in timed} == {
            k: v for k, v in same.items() if k not in timed
        }


def test_python_m_samplegrad_runs_compare(tmp_path: Path) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "samplegrad",
            "compare",
            "--problem",
            "gaussian-quadratic",
            "--estimators",
            "pathwise",
            "--num-samples",
            "1",
            "--repeats",
            "500",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "mu=2, sigma=1, k=0" in completed.stdout
    rows = json.loads((tmp_path / "compare.json").read_text())["rows"]
    assert [(r["parameter"], r["exact_gradient"], r["exact_variance"]) for r in rows] == [
        ("mu", 4.0, 4.0),
        ("sigma", 2.0, 24.0),
    ]


@pytest.mark.parametrize(
    ("arguments", "messages"),
    [
        (
            ["--problem", "gaussian-quadratic", "--estimators", "pathwise,nope"],
            ["unknown estimator 'nope'; valid names: ", "pathwise", "score-loo", "gumbel-hard"],
        ),
        (
            ["--problem", "gaussian-quadratic", "--estimators", "score,gumbel"],
            [
                "'gumbel' cannot handle the Normal",
                f"estimators that can: {', '.join(NORMAL_CAPABLE)}",
            ],
        ),
        (
            ["--problem", "bernoulli-toy", "--estimators", "score-loo", "--num-samples", "1"],
            [
                "'score-loo' cannot run on problem 'bernoulli-toy' with num_samples=1",
                "must be >= 2",
            ],
        ),
        (
            ["--problem", "bernoulli-toy", "--estimators", "score,,gumbel"],
            ["--estimators", "comma-separated"],
        ),
        (["--problem", "bernoulli-toy", "--repeats", "1"], ["--repeats", "must be >= 2"]),
        (
            ["--problem", "bernoulli-toy", "--num-samples", "two"],
            ["--num-samples", "expected an integer"],
        ),
        (["--problem", "poisson"], ["--problem", "invalid choice: 'poisson'"]),
        ([], ["required: --problem"]),
    ],
)
def test_cli_errors_exit_2_with_a_message(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    messages: list[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", *arguments, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("usage: samplegrad compare")
    assert "Traceback" not in error
    for message in messages:
        assert message in error
    assert not (tmp_path / "out").exists()


def test_cli_reports_an_unwritable_output_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "compare",
                "--problem",
                "bernoulli-toy",
                "--estimators",
                "enumerate",
                "--repeats",
                "10",
                "--out",
                str(blocker),
            ]
        )
    assert exit_info.value.code == 2
    assert f"'{blocker}' is a file, not a folder" in capsys.readouterr().err


def test_cli_needs_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "{compare,demo,train}" in capsys.readouterr().err


def test_help_explains_every_option(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # no line wrapping inside hyphenated names
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for fragment in [
        "--problem",
        "--estimators",
        "score-loo: leave-one-out baseline",
        "--num-samples K[,K...]",
        "samples per gradient estimate; several (1,2,4,8) plot the variance against K (default: 2)",
        "--k X|START:STOP:COUNT",
        "--checkpoint PATH",
        "--repeats R",
        "--seed S",
        "--out DIR",
        "compare.json, compare.csv and the plots",
        "bernoulli-toy: f(b) = (b - t)^2",
        "gaussian-cos: f(x) = cos(k x)",
    ]:
        assert fragment in text
