"""The problems of Mohamed et al. (2020), the 3-D Bernoulli and the VAE encoder in ``compare``:
sweeps, exact columns against closed forms, the JSON/CSV/PNG files, the command line.

Closed forms used here (x ~ N(mu, sigma^2)):

- ``E cos(k x) = cos(k mu) exp(-k^2 sigma^2 / 2)``; the pathwise estimate of ``d/dmu`` is
  ``-k sin(k x)``, with ``E sin^2(k x) = (1 - cos(2 k mu) exp(-2 k^2 sigma^2)) / 2``, so its
  one-sample variance is
  ``k^2 (1 - cos(2 k mu) e^{-2 k^2 s^2}) / 2 - k^2 sin^2(k mu) e^{-k^2 s^2}``.
- ``E exp(-k x^2) = exp(-k mu^2 / (1 + 2 k sigma^2)) / sqrt(1 + 2 k sigma^2)``; its gradients
  are taken here by autograd through that formula.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import matplotlib.image
import pytest
import torch

from samplegrad.cli import main
from samplegrad.estimators import catalog
from samplegrad.lab.compare import problems as compare_problems
from samplegrad.lab.compare.runner import (
    Bernoulli3D,
    CompareError,
    GaussianCos,
    GaussianExp,
    VAEEncoder,
    compare,
    write_csv,
    write_json,
)
from samplegrad.lab.models import BernoulliVAE, GaussianVAE
from samplegrad.lab.training.vae import TrainConfig, fit

from fake_mnist import write_fake_mnist
from stats import Z_MEAN, Z_VARIANCE


@pytest.fixture(autouse=True)
def _short_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Time 2 calls instead of hundreds: these tests check numbers and files, not speed."""
    monkeypatch.setattr(compare_problems, "TIMING_CALLS", 2)
    monkeypatch.setattr(compare_problems, "TIMING_BLOCKS", 1)


@pytest.mark.parametrize("name", list(compare_problems.PROBLEMS))
def test_default_estimators_are_the_classes_and_the_variants_with_an_exact_variance(
    name: str,
) -> None:
    """Every estimator class that handles the problem, and each variant whose rows have an
    exact variance to check against, in catalog order: a new estimator joins by registering."""
    problem = compare_problems.PROBLEMS[name]
    dist = problem.example_distribution()
    defaults = problem.default_estimators
    assert list(defaults) == [name for name in catalog.CATALOG if name in defaults]
    for estimator, entry in catalog.CATALOG.items():
        if not entry.supports(dist):
            assert estimator not in defaults, estimator
        elif entry.is_variant:
            known = problem.exact_variance(estimator, compare_problems.DEFAULT_NUM_SAMPLES)
            assert (estimator in defaults) == (known is not None), estimator
        else:
            assert estimator in defaults, estimator
    assert "score-loo" in defaults and "score-ma" not in defaults  # a moving average: no
    # exact variance (its baseline is itself random)


def _exp_mean(mu: torch.Tensor, sigma: torch.Tensor, k: float) -> torch.Tensor:
    scale = 1 + 2 * k * sigma**2
    return torch.exp(-k * mu**2 / scale) / scale.sqrt()


@pytest.mark.parametrize("k", [-0.1, 0.5, 2.0])
def test_exp_exact_gradient_is_the_closed_form(k: float) -> None:
    mu = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    sigma = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    d_mu, d_sigma = torch.autograd.grad(_exp_mean(mu, sigma, k), [mu, sigma])
    exact = GaussianExp(mu=0.7, sigma=1.3, k=k).exact_gradient()
    assert exact["mu"] == pytest.approx(d_mu.item(), rel=1e-7)
    assert exact["sigma"] == pytest.approx(d_sigma.item(), rel=1e-7)


def test_cos_sweep_rows_and_curves_match_the_closed_forms(tmp_path: Path) -> None:
    """Every row's exact gradient and pathwise variance against the closed forms, the
    measured values against those within their standard errors, and the files."""
    ks = [-2.0, 0.5, 1.5]
    problem = GaussianCos(mu=1.0, sigma=0.8)
    result = compare(
        problem, ["pathwise", "score"], [1, 3], repeats=50_000, seed=0, sweep=("k", ks)
    )
    assert result["sweep"] == {"name": "k", "values": ks}
    assert len(result["rows"]) == len(ks) * 2 * 2 * 2  # k x K x estimator x parameter
    s2 = 0.64
    for row in result["rows"]:
        k, K = row["k"], row["num_samples"]
        if row["parameter"] == "mu":
            exact = -k * math.sin(k) * math.exp(-(k**2) * s2 / 2)
        else:
            exact = -(k**2) * 0.8 * math.cos(k) * math.exp(-(k**2) * s2 / 2)
        assert row["exact_gradient"] == pytest.approx(exact, rel=1e-7, abs=1e-12)
        assert abs(row["bias"]) <= Z_MEAN * row["gradient_se"]
        assert abs(row["variance"] - row["exact_variance"]) <= Z_VARIANCE * row["variance_se"]
        if row["estimator"] == "pathwise" and row["parameter"] == "mu":
            second = k**2 * (1 - math.cos(2 * k) * math.exp(-2 * k**2 * s2)) / 2
            variance = second - (k * math.sin(k)) ** 2 * math.exp(-(k**2) * s2)
            assert row["exact_variance"] == pytest.approx(variance / K, rel=1e-7)
    curves = result["exact_curves"]
    assert {(c["estimator"], c["parameter"], c["num_samples"]) for c in curves} == {
        (e, p, K) for e in ("pathwise", "score") for p in ("mu", "sigma") for K in (1, 3)
    }
    curve = next(c for c in curves if c["estimator"] == "pathwise" and c["parameter"] == "mu")
    assert curve["x"][0] == -2.0 and curve["x"][-1] == 1.5
    for k, variance in zip(curve["x"][::30], curve["variance"][::30], strict=True):
        second = k**2 * (1 - math.cos(2 * k) * math.exp(-2 * k**2 * s2)) / 2
        exact = second - (k * math.sin(k)) ** 2 * math.exp(-(k**2) * s2)
        assert variance == pytest.approx(exact, rel=1e-6, abs=1e-12)

    json_path, csv_path = write_json(result, tmp_path), write_csv(result, tmp_path)
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(result))
    with open(csv_path, newline="") as file:
        table = list(csv.DictReader(file))
    assert len(table) == len(result["rows"])
    assert list(table[0])[:6] == ["problem", "mu", "sigma", "estimator", "parameter", "size"]
    assert list(table[0])[6:8] == ["k", "num_samples"]
    for line, row in zip(table, result["rows"], strict=True):
        assert float(line["exact_variance"]) == pytest.approx(row["exact_variance"])
        assert line["problem"] == "gaussian-cos" and float(line["sigma"]) == 0.8


def test_bernoulli_3d_matches_design_and_shows_the_relaxations_bias() -> None:
    result = compare(Bernoulli3D(), ["disarm", "score-loo", "gumbel"], 4, repeats=100_000, seed=0)
    rows = {(r["estimator"], r["parameter"]): r for r in result["rows"]}
    exact = [0.14857, -0.02037, -0.19155]
    for i, value in enumerate(exact):
        for estimator in ("disarm", "score-loo"):
            row = rows[(estimator, f"phi[{i}]")]
            assert row["exact_gradient"] == pytest.approx(value, abs=5e-6)
            assert abs(row["bias"]) <= Z_MEAN * row["gradient_se"]
            assert abs(row["variance"] - row["exact_variance"]) <= Z_VARIANCE * row["variance_se"]
    gumbel = [rows[("gumbel", f"phi[{i}]")] for i in range(3)]
    assert max(abs(r["bias"]) / r["gradient_se"] for r in gumbel) > 10
    assert all(r["exact_variance"] is None for r in gumbel)


def test_constants_and_sweeps_are_checked() -> None:
    with pytest.raises(CompareError, match=r"k > -1/\(4 sigma\^2\) = -0\.25"):
        GaussianExp(k=-0.3)
    with pytest.raises(CompareError, match="has no constant 'phi'; its constants: mu, sigma, k"):
        compare("gaussian-cos", sweep=("phi", [0.0, 1.0]))
    with pytest.raises(CompareError, match="needs a trained model"):
        compare("vae-encoder")
    with pytest.raises(CompareError, match="num_samples must be ints >= 1"):
        compare("gaussian-cos", num_samples=[1, 0])


def _tiny_vae_problem(model: torch.nn.Module, data_dim: int) -> VAEEncoder:
    images = torch.bernoulli(
        torch.full((6, data_dim), 0.3), generator=torch.Generator().manual_seed(0)
    )
    return VAEEncoder(model, images, "a tiny model")


def test_vae_encoder_rows_per_layer() -> None:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = GaussianVAE(latent_dim=3, hidden=8, data_dim=16)
    problem = _tiny_vae_problem(model, 16)
    result = compare(problem, repeats=60, seed=0)
    assert result["problem"] == "vae-encoder"
    groups = {"encoder.hidden": 16 * 8 + 8, "encoder.mean": 8 * 3 + 3, "encoder.log_var": 27}
    estimators = ["pathwise", "score", "score-loo", "measure-valued"]
    assert [(r["estimator"], r["parameter"], r["size"]) for r in result["rows"]] == [
        (e, g, size) for e in estimators for g, size in groups.items()
    ]
    variance = {(r["estimator"], r["parameter"]): r["variance"] for r in result["rows"]}
    # REINFORCE without a baseline is far noisier than the reparameterization gradient.
    assert variance[("score", "encoder.mean")] > 10 * variance[("pathwise", "encoder.mean")]
    assert all(r["exact_gradient"] is None and r["us_per_estimate"] > 0 for r in result["rows"])

    discrete = _tiny_vae_problem(BernoulliVAE("linear", latent_dim=4, data_dim=16), 16)
    rows = compare(discrete, ["disarm", "gumbel"], 2, repeats=5)["rows"]
    assert {r["parameter"] for r in rows} == {"encoder"}  # a single linear layer


def test_cli_sweeps_with_a_negative_start_and_writes_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    status = main(
        [
            "compare",
            "--problem",
            "gaussian-exp",
            "--k",
            "-0.2:1:3",
            "--estimators",
            "pathwise,score-loo",
            "--num-samples",
            "2,4",
            "--repeats",
            "2000",
            "--out",
            str(out),
        ]
    )
    assert status == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "k swept over 3 values" in header and "K=2,4" in header
    written = sorted(p.name for p in out.iterdir())
    assert written == [
        "compare.csv",
        "compare.json",
        "snr.png",
        "variance_vs_k.png",
        "variance_vs_samples.png",
        "work_normalized_variance.png",
    ]
    for png in out.glob("*.png"):
        assert matplotlib.image.imread(png).shape[0] > 100
    data = json.loads((out / "compare.json").read_text())
    assert data["sweep"]["values"] == pytest.approx([-0.2, 0.4, 1.0])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--problem", "gaussian-cos", "--k", "0:1:3", "--mu", "0:1:2"], "one constant at a"),
        (["--problem", "gaussian-cos", "--phi", "1"], "has no constant 'phi'"),
        (["--problem", "gaussian-cos", "--k", "0:1:1.5"], "integer COUNT >= 2"),
        (["--problem", "vae-encoder"], "needs --checkpoint PATH"),
        (["--problem", "vae-encoder", "--checkpoint", "missing.pt"], "no checkpoint at"),
    ],
)
def test_cli_usage_errors(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", *arguments])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_vae_encoder_from_a_training_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_fake_mnist(tmp_path, n_train=32, n_test=8)
    monkeypatch.delenv("SAMPLEGRAD_DATA", raising=False)
    run = tmp_path / "run"
    fit(
        TrainConfig(
            latent="gaussian",
            steps=2,
            batch_size=16,
            iwae_k=2,
            validation_size=0,
            eval_batch_size=8,
            data_dir=str(data),
            out=str(run),
            progress=False,
        )
    )
    out = tmp_path / "compare"
    status = main(
        [
            "compare",
            "--problem",
            "vae-encoder",
            "--checkpoint",
            str(run / "checkpoint.pt"),
            "--images",
            "4",
            "--estimators",
            "pathwise,score",
            "--repeats",
            "3",
            "--out",
            str(out),
            "--no-plots",
        ]
    )
    assert status == 0
    assert "encoder.hidden" in capsys.readouterr().out
    rows = json.loads((out / "compare.json").read_text())["rows"]
    assert [r["parameter"] for r in rows[:3]] == [
        "encoder.hidden",
        "encoder.mean",
        "encoder.log_var",
    ]
    assert sorted(p.name for p in out.iterdir()) == ["compare.csv", "compare.json"]


@pytest.mark.parametrize(
    "problem",
    [
        "gaussian-quadratic",
        "gaussian-exp",
        "gaussian-cos",
        "bernoulli-toy",
        "bernoulli-3d",
        "categorical-2x3",
    ],
)
def test_every_problem_writes_json_csv_and_plots(problem: str, tmp_path: Path) -> None:
    """Each problem with its default estimators and two K: well-formed files whose exact
    columns are the problem's own exact values, and plots that decode."""
    out = tmp_path / problem
    assert main(["compare", "--problem", problem, "--num-samples", "2,4", "--repeats", "200",
                 "--out", str(out)]) == 0  # fmt: skip
    data = json.loads((out / "compare.json").read_text())
    with open(out / "compare.csv", newline="") as file:
        table = list(csv.DictReader(file))
    assert len(table) == len(data["rows"]) > 0
    instance = compare_problems.PROBLEMS[problem]
    gradient = instance.exact_gradient()
    for row, line in zip(data["rows"], table, strict=True):
        exact = instance.exact_variance(row["estimator"], row["num_samples"])
        expected = None if exact is None else exact[row["parameter"]]
        assert row["exact_variance"] == expected
        assert line["exact_variance"] == ("" if expected is None else str(expected))
        assert row["exact_gradient"] == gradient[row["parameter"]]
        assert line["estimator"] == row["estimator"] and line["parameter"] == row["parameter"]
    for name in ("variance_vs_samples.png", "snr.png", "work_normalized_variance.png"):
        assert matplotlib.image.imread(out / name).shape[1] >= 300
