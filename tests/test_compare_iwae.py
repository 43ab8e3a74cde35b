"""``samplegrad compare --problem iwae-gaussian``: sg.iwae_bound's gradients on Rainforth et
al.'s Gaussian model, end to end with a tiny budget, and the errors for what does not apply."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import pytest

from samplegrad.cli import main
from samplegrad.lab.compare import problems as compare_problems
from test_cli import usage_error

pytestmark = pytest.mark.usefixtures("one_thread")

COMMAND = ["compare", "--problem", "iwae-gaussian", "--repeats", "40"]


@pytest.fixture(autouse=True)
def _short_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compare_problems, "TIMING_CALLS", 1)
    monkeypatch.setattr(compare_problems, "TIMING_BLOCKS", 1)


def test_the_command_writes_rows_slopes_and_the_snr_plot(tmp_path: Path, capsys) -> None:
    """The default estimators at two K: a row per estimator, group and K with the exact
    gradient and its bias, an SNR curve with slopes per estimator and group, the plot."""
    out = tmp_path / "out"
    assert main([*COMMAND, "--num-samples", "1,4", "--out", str(out)]) == 0
    assert "slope K>=16" in capsys.readouterr().out
    data = json.loads((out / "compare.json").read_text())
    problem = compare_problems.IWAEGaussian()
    pairs = [(e, g) for e in ("pathwise", "dreg", "stl") for g in ("encoder", "decoder")]
    assert sorted((r["estimator"], r["parameter"]) for r in data["rows"]) == sorted(pairs * 2)
    for row in data["rows"]:
        exact = problem.model.exact_gradients(row["num_samples"])[row["parameter"]]
        assert row["exact_gradient"] == pytest.approx(float(exact.norm()))
        assert row["bias"] is not None and row["evaluations"] == row["num_samples"]
    curves = data["snr_curves"]
    assert [(c["estimator"], c["parameter"]) for c in curves] == pairs
    assert all(c["num_samples"] == [1, 4] and len(c["snr"]) == 2 for c in curves)
    assert all(c["slope"] is None or isinstance(c["slope"], float) for c in curves)
    assert matplotlib.image.imread(out / "snr_vs_samples.png").shape[1] >= 300


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--estimators", "pathwise,score"], "'score' is not one of them: name some of "
         "pathwise, dreg, stl, vimco (e.g. --estimators pathwise,dreg,stl)"),
        (["--estimators", "vimco", "--num-samples", "1"],
         "num_samples must be >= 2 for iwae_bound with 'vimco'"),
        (["--checkpoint", "model.pt"], "--checkpoint applies to --problem vae-encoder only"),
        (["--k", "2"], "problem 'iwae-gaussian' has no constant 'k'"),
    ],
)  # fmt: skip
def test_options_that_do_not_apply_name_the_fix(extra, message, tmp_path, capsys) -> None:
    error = usage_error([*COMMAND, *extra, "--out", str(tmp_path / "out")], capsys)
    assert message in error


def test_a_bound_gradient_on_an_expectation_problem_points_to_iwae_gaussian(tmp_path, capsys):
    args = ["compare", "--problem", "gaussian-quadratic", "--estimators", "dreg"]
    error = usage_error([*args, "--out", str(tmp_path / "out")], capsys)
    assert "'dreg' is a gradient of sg.iwae_bound: measure it with --problem iwae-gaussian" in error
