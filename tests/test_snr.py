"""``samplegrad.lab.compare.snr``: the IWAE gradient SNR against K (Rainforth et al. 2018)."""

from __future__ import annotations

import math

import pytest
import torch

from samplegrad.lab.compare.runner import compare
from samplegrad.lab.compare.snr import (
    DECODER,
    ENCODER,
    GaussianModel,
    log_log_slope,
    signal_to_noise,
    snr_curves,
)

from stats import Z_MEAN, assert_mean_close

pytestmark = pytest.mark.usefixtures("one_thread")


def test_signal_to_noise_is_debiased():
    # 3 columns with means (0.3, 0.4, 0) and unit variances: |E g| / sqrt(tr Cov) = 0.5 / sqrt 3.
    generator = torch.Generator().manual_seed(0)
    gradients = torch.randn(200_000, 3, generator=generator, dtype=torch.float64)
    gradients += torch.tensor([0.3, 0.4, 0.0], dtype=torch.float64)
    assert signal_to_noise(gradients) == pytest.approx(0.5 / math.sqrt(3), rel=0.02)
    # Pure noise: the plain |mean| would give about sqrt(3 / R) / sqrt(3); debiased, about 0.
    assert signal_to_noise(gradients[:, 2:] - 0.0) < 0.01


def test_log_log_slope():
    assert log_log_slope([1, 4, 16], [2.0, 1.0, 0.5]) == pytest.approx(-0.5)


def test_the_papers_directions():
    model = GaussianModel()
    curves = snr_curves(
        lambda estimator, k: model.gradients(estimator, k, 1000, torch.Generator().manual_seed(k)),
        ["pathwise", "dreg"],
        [1, 64],
    )
    snr = {(curve.estimator, curve.group): curve.snr for curve in curves}
    assert snr["pathwise", ENCODER][1] < snr["pathwise", ENCODER][0] / 2  # falls with K
    assert snr["dreg", ENCODER][1] > snr["dreg", ENCODER][0]  # rises with K
    for estimator in ("pathwise", "dreg"):
        assert snr[estimator, DECODER][1] > 4 * snr[estimator, DECODER][0]  # ~ sqrt(64) = 8


def test_the_exact_gradient_is_the_pathwise_mean(generator):
    """Along the radial direction ``d / r`` (the only one where ``L_K`` departs from
    ``log p(x)``, module docstring of ``snr``) and along ``x - mu``, the mean of 2000 pathwise
    estimates is within ``Z_MEAN`` standard errors of the exact gradient, at K = 1 and 16."""
    model = GaussianModel()
    values = model.parameters()
    x, mu = values["x"], values["mu"]
    radial = values["A"] @ x + values["b"] - (x + mu) / 2
    directions = torch.stack([radial / radial.norm(), (x - mu) / (x - mu).norm()], 1)
    for k in (1, 16):
        exact = model.exact_gradients(k)
        estimates = model.gradients("pathwise", k, 2000, generator)
        for group in (ENCODER, DECODER):
            b = estimates[group][:, -20:]  # the encoder's b, or the decoder's mu
            assert_mean_close(b @ directions, exact[group][-20:] @ directions)


def test_slopes_on_the_closed_form_model():
    """The slope of log SNR against log K between K = 8 and 128, with the exact signal
    ``|G_K|`` (so the only noise is the measured variance's, standard error ``variance_se``):
    pathwise's encoder SNR falls like ``K^-1/2`` (Rainforth et al. 2018), DReG's rises, the
    decoder's rises like ``K^1/2``; the tolerance is ``Z_MEAN`` standard errors plus 0.1 for
    the approach to the asymptotic rate at these K (measured: -0.49, +0.40, +0.49 between 16
    and 256). The debiased SNR that compare reports gives the same slopes within its own,
    larger, errors."""
    ks, repeats = [8, 128], 300
    result = compare("iwae-gaussian", ["pathwise", "dreg"], ks, repeats, seed=0, timing_calls=1)
    rows = {(r["estimator"], r["parameter"], r["num_samples"]): r for r in result["rows"]}
    reported = {(c["estimator"], c["parameter"]): c["slope"] for c in result["snr_curves"]}
    span = math.log(ks[1] / ks[0])
    expected = {("pathwise", ENCODER): -0.5, ("pathwise", DECODER): 0.5, ("dreg", DECODER): 0.5}
    for estimator in ("pathwise", "dreg"):
        for group in (ENCODER, DECODER):
            low, high = (rows[estimator, group, k] for k in ks)
            slope = (
                math.log(high["exact_gradient"] / low["exact_gradient"]) / span
                - 0.5 * math.log(high["variance"] / low["variance"]) / span
            )
            se = math.hypot(*(r["variance_se"] / r["variance"] / 2 for r in (low, high))) / span
            if (estimator, group) in expected:
                assert abs(slope - expected[estimator, group]) < Z_MEAN * se + 0.1
            else:  # DReG's encoder
                assert slope > Z_MEAN * se
            noise = sum(1 / (math.sqrt(repeats) * r["snr"]) for r in (low, high)) / span
            assert abs(reported[estimator, group] - slope) < Z_MEAN * (se + noise)
