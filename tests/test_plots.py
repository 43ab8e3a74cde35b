"""Plots that read well: zero variances at float rounding, labels inside the figure, ELBO curves
against steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from samplegrad.lab.plots.compare import plot_result, rounding_zeros
from samplegrad.lab.plots.vae import plot_elbo_curves
from test_compare_plots import synthetic_result


@pytest.fixture
def saved_figures(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """Every figure saved during the test, drawn as it was saved."""
    figures: list[Figure] = []
    savefig = Figure.savefig

    def record(self: Figure, *args: Any, **kwargs: Any) -> None:
        savefig(self, *args, **kwargs)
        figures.append(self)

    monkeypatch.setattr(Figure, "savefig", record)
    return figures


def with_rounding_noise(result: dict[str, Any], estimator: str) -> dict[str, Any]:
    """``result`` with ``estimator``'s zero variances replaced by float64 roundoff, as the
    delta method measures on a quadratic cost (about 1e-31)."""
    for row in result["rows"]:
        if row["estimator"] == estimator:
            row.update(variance=2e-31, variance_se=1e-32, snr=4e15)
            row["work_normalized_variance"] = 2e-31 * row["us_per_estimate"]
    return result


def test_a_variance_at_float_rounding_counts_as_zero() -> None:
    result = with_rounding_noise(synthetic_result(num_samples=(1, 2)), "enumerate")
    plotted = rounding_zeros(result)
    for before, after in zip(result["rows"], plotted["rows"], strict=True):
        if before["estimator"] == "enumerate":
            assert after["variance"] == after["variance_se"] == 0
            assert after["work_normalized_variance"] == 0
            assert after["snr"] is None  # infinite
        else:
            assert after == before
    assert result["rows"][-1]["variance"] == 2e-31  # the result itself is left alone


def test_a_small_real_variance_stays() -> None:
    result = synthetic_result(num_samples=(1,), estimators=("pathwise",))
    result["rows"][0].update(variance=1e-9, gradient_mean=1e-3)  # std 3e-5 of the mean
    assert rounding_zeros(result)["rows"][0]["variance"] == 1e-9


def test_rounding_zeros_do_not_stretch_the_variance_axis(
    tmp_path: Path, saved_figures: list[Figure]
) -> None:
    result = with_rounding_noise(synthetic_result(num_samples=(1, 2)), "enumerate")
    plot_result(result, tmp_path)
    sweep = saved_figures[0]
    bottom, top = sweep.axes[0].get_ylim()
    assert top / bottom < 1e12  # the other estimators' decades, not 30 more of roundoff
    snr = saved_figures[2]
    assert snr.axes[0].get_xlim()[1] < 1e3  # no bar at SNR 4e15


def test_no_label_runs_off_a_compare_figure(tmp_path: Path, saved_figures: list[Figure]) -> None:
    estimators = ("pathwise", "score", "measure-valued-uncoupled")  # a long name on the y axis
    plot_result(synthetic_result(estimators=estimators, parameters=("mu", "sigma")), tmp_path)
    for figure in saved_figures:
        canvas = FigureCanvasAgg(figure)  # lays the figure out as savefig did, at 100 dpi
        canvas.draw()
        renderer, width = canvas.get_renderer(), canvas.get_width_height()[0]
        labels = [*figure.texts, *(t for legend in figure.legends for t in legend.get_texts())]
        for axes in figure.axes:
            if axes.get_visible():
                labels += [axes.xaxis.label, axes.yaxis.label, axes.title, *axes.texts]
        for text in filter(lambda text: text.get_text(), labels):
            box = text.get_window_extent(renderer)
            assert box.x0 >= -1 and box.x1 <= width + 1, f"clipped: {text.get_text()!r}"


def test_elbo_curves_are_drawn_against_steps(tmp_path: Path, saved_figures: list[Figure]) -> None:
    history = [
        {"epoch": 1, "step": 391, "train_elbo": [-160.0, -161.0], "valid_elbo": [-150.0, -152.0]},
        {"epoch": 2, "step": 782, "train_elbo": [-130.0, -131.0], "valid_elbo": None},
    ]
    plot_elbo_curves(history, tmp_path / "elbo.png")
    axes = saved_figures[-1].axes[0]
    assert axes.get_xlabel() == "optimiser step"
    assert {t.get_text() for t in axes.texts} == {"epoch 1", "epoch 2"}


def test_a_run_inside_its_first_epoch_says_why_it_is_one_point(
    tmp_path: Path, saved_figures: list[Figure]
) -> None:
    history = [{"epoch": 1, "step": 200, "train_elbo": -180.0, "valid_elbo": None}]
    plot_elbo_curves(history, tmp_path / "elbo.png")
    axes = saved_figures[-1].axes[0]
    assert axes.get_xlabel() == "optimiser step"
    assert "one row so far (step 200)" in axes.get_title()


def test_rows_without_steps_are_drawn_against_epochs(
    tmp_path: Path, saved_figures: list[Figure]
) -> None:
    history = [{"epoch": e / 10, "train_elbo": -200.0 + e, "valid_elbo": None} for e in range(10)]
    plot_elbo_curves(history, tmp_path / "elbo.png")
    assert saved_figures[-1].axes[0].get_xlabel() == "epoch"
