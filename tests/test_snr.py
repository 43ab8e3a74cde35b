"""``samplegrad.lab.compare.snr``: the IWAE gradient SNR against K (Rainforth et al. 2018)."""

from __future__ import annotations

import math

import pytest
import torch

from samplegrad.lab.compare.snr import (
    DECODER,
    ENCODER,
    GaussianModel,
    log_log_slope,
    signal_to_noise,
    snr_curves,
)

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
