"""The figures of a ``samplegrad compare`` result, drawn from synthetic results."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from samplegrad.lab.plots.compare import (
    plot_result,
    plot_snr,
    plot_variance_sweep,
    plot_variance_vs_samples,
    plot_work_normalized_variance,
)

REPEATS = 10_000


def _pathwise_variance(k: float, mu: float = 1.0, sigma: float = 1.0) -> float:
    """Variance of ``-k sin(k x)``, ``x ~ N(mu, sigma^2)``: the pathwise estimate for mu."""
    mean = math.sin(k * mu) * math.exp(-(k**2) * sigma**2 / 2)
    square = (1 - math.cos(2 * k * mu) * math.exp(-2 * k**2 * sigma**2)) / 2
    return k**2 * (square - mean**2)


def _exact(estimator: str, k: float) -> float | None:
    """A made-up exact per-sample variance: known for some estimators, zero for one."""
    if estimator == "pathwise":
        return _pathwise_variance(k)
    if estimator == "score":
        return 1.0 + 0.5 * k**2
    if estimator == "enumerate":
        return 0.0
    return None  # "relax": unknown


def _row(
    estimator: str, parameter: str, k: float, samples: int, rng: np.random.Generator
) -> dict[str, Any]:
    exact = _exact(estimator, k)
    exact_k = None if exact is None else exact / samples
    truth = 0.1 * len(estimator) / samples if exact is None else exact_k
    variance = 0.0 if truth == 0 else truth * (1 + 0.02 * rng.standard_normal())
    variance_se = variance * math.sqrt(2 / REPEATS)
    mean = -math.sin(k) * math.exp(-(k**2) / 2)
    microseconds = 40.0 + 10 * len(estimator)
    return {
        "estimator": estimator,
        "parameter": parameter,
        "size": 1,
        "k": k,
        "num_samples": samples,
        "gradient_mean": mean,
        "gradient_se": math.sqrt(variance / REPEATS),
        "exact_gradient": None if estimator == "relax" else mean,
        "bias": None if estimator == "relax" else 0.0,
        "bias_se": math.sqrt(variance / REPEATS),
        "variance": variance,
        "variance_se": variance_se,
        "exact_variance": exact_k,
        "snr": None if variance == 0 else abs(mean) / math.sqrt(variance),
        "us_per_estimate": microseconds,
        "work_normalized_variance": variance * microseconds,
    }


def synthetic_result(
    swept: bool = True,
    num_samples: tuple[int, ...] = (1, 2, 4, 8),
    estimators: tuple[str, ...] = ("pathwise", "score", "relax", "enumerate"),
    parameters: tuple[str, ...] = ("mu",),
) -> dict[str, Any]:
    """A result in the schema of ``samplegrad compare``: a sweep over ``k`` (or ``k = -3``
    fixed), zero variances (``enumerate``) and unknown exact values (``relax``)."""
    rng = np.random.default_rng(0)
    values = list(np.linspace(-3.0, 3.0, 13)) if swept else [-3.0]
    rows = []
    for estimator in estimators:
        for parameter in parameters:
            for k in values:
                for samples in num_samples:
                    row = _row(estimator, parameter, float(k), samples, rng)
                    if not swept:
                        del row["k"]
                    rows.append(row)
    result: dict[str, Any] = {
        "problem": "gaussian-cos",
        "formula": "f(x) = cos(k x), x ~ N(mu, sigma^2)",
        "parameters": {"mu": 1.0, "sigma": 1.0, "k": -3.0},
        "sweep": {"name": "k", "values": [float(v) for v in values]} if swept else None,
        "num_samples": list(num_samples),
        "repeats": REPEATS,
        "seed": 0,
        "torch": "2.13.0+cpu",
        "rows": rows,
    }
    if swept:
        grid = np.linspace(-3.0, 3.0, 121)
        result["exact_curves"] = [
            {
                "estimator": estimator,
                "parameter": parameter,
                "num_samples": samples,
                "x": [float(x) for x in grid],
                "variance": [
                    None if (v := _exact(estimator, float(x))) is None else v / samples
                    for x in grid
                ],
            }
            for estimator in estimators
            for parameter in parameters
            for samples in num_samples
        ]
    return result


def _assert_png(path: Path) -> None:
    """``path`` decodes as a PNG of a real figure, at most 1400 pixels wide."""
    assert path.is_file()
    assert path.stat().st_size > 10_000
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        width, height = image.size
    assert 300 < width <= 1400
    assert height > 200


def test_plot_result_swept_writes_every_figure(tmp_path: Path) -> None:
    result = synthetic_result(parameters=("mu", "encoder.mean.weight"))
    paths = plot_result(result, tmp_path / "plots")
    names = [path.name for path in paths]
    assert names == [
        "variance_vs_k.png",
        "variance_vs_samples.png",
        "snr.png",
        "work_normalized_variance.png",
    ]
    for path in paths:
        _assert_png(path)


def test_plot_result_single_k_without_sweep(tmp_path: Path) -> None:
    result = synthetic_result(swept=False, num_samples=(2,))
    paths = plot_result(result, tmp_path)
    assert [path.name for path in paths] == ["snr.png", "work_normalized_variance.png"]
    for path in paths:
        _assert_png(path)


def test_plot_result_without_sweep_several_k(tmp_path: Path) -> None:
    paths = plot_result(synthetic_result(swept=False), tmp_path)
    names = [path.name for path in paths]
    assert names == ["variance_vs_samples.png", "snr.png", "work_normalized_variance.png"]


def test_a_sweep_of_one_value_gets_no_sweep_plot(tmp_path: Path) -> None:
    result = synthetic_result(swept=False, num_samples=(1, 2))
    result["sweep"] = {"name": "k", "values": [-3.0]}
    for row in result["rows"]:
        row["k"] = -3.0
    names = [path.name for path in plot_result(result, tmp_path)]
    assert "variance_vs_k.png" not in names
    assert "variance_vs_samples.png" in names


def test_selection_arguments(tmp_path: Path) -> None:
    result = synthetic_result()
    _assert_png(plot_variance_sweep(result, tmp_path / "sweep_k8.png", num_samples=8))
    _assert_png(plot_variance_vs_samples(result, tmp_path / "k_at_0.png", sweep_value=0.0))
    _assert_png(plot_snr(result, tmp_path / "snr.png", num_samples=4, sweep_value=1.5))
    work = plot_work_normalized_variance(result, tmp_path / "w.png", 2, sweep_value=-1.0)
    _assert_png(work)


def test_zero_variance_everywhere_and_only_unknown_exact_values(tmp_path: Path) -> None:
    """Panels with nothing positive to put on a log axis (only zero variances, infinite SNRs)
    or no exact values at all still draw, without warnings."""
    for estimator in ("relax", "enumerate"):
        result = synthetic_result(num_samples=(1, 2), estimators=(estimator,))
        _assert_png(plot_variance_sweep(result, tmp_path / "sweep.png"))
        _assert_png(plot_variance_vs_samples(result, tmp_path / "samples.png"))
    _assert_png(plot_snr(result, tmp_path / "snr.png"))
    _assert_png(plot_work_normalized_variance(result, tmp_path / "work.png"))


def test_unusual_names_and_many_parameters(tmp_path: Path) -> None:
    """Estimators without a fixed colour, four panels (two rows), a sweep named ``phi[0]``."""
    result = synthetic_result(
        num_samples=(1,),
        estimators=("pathwise", "my-estimator", "other"),
        parameters=("a", "b", "c", "encoder.mean.weight"),
    )
    result["sweep"]["name"] = "phi[0]"
    for row in result["rows"]:
        row["phi[0]"] = row.pop("k")
    paths = plot_result(result, tmp_path)
    assert [path.name for path in paths] == [
        "variance_vs_phi_0_.png",
        "snr.png",
        "work_normalized_variance.png",
    ]
    for path in paths:
        _assert_png(path)


@pytest.mark.parametrize(
    "plot",
    [plot_variance_sweep, plot_snr, plot_work_normalized_variance],
)
def test_missing_num_samples_raises(plot: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no rows with num_samples=16.*measured K: 1, 2, 4, 8"):
        plot(synthetic_result(), tmp_path / "x.png", num_samples=16)
    assert not (tmp_path / "x.png").exists()


def test_missing_sweep_value_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no rows with k=0.1 .*swept values: -3, -2.5"):
        plot_variance_vs_samples(synthetic_result(), tmp_path / "x.png", sweep_value=0.1)
    with pytest.raises(ValueError, match="no sweep"):
        plot_snr(synthetic_result(swept=False), tmp_path / "x.png", sweep_value=0.0)


def test_sweep_plot_needs_a_sweep(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has no sweep to plot"):
        plot_variance_sweep(synthetic_result(swept=False), tmp_path / "x.png")


def test_empty_result_raises(tmp_path: Path) -> None:
    result = synthetic_result(swept=False)
    result["rows"] = []
    with pytest.raises(ValueError, match="has no rows"):
        plot_result(result, tmp_path)
