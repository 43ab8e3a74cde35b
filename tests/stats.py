"""Statistical assertions with tolerances derived from the number of repeats.

Every check draws ``R`` independent gradient estimates in one batched call (``R`` copies of a
parameter), so a tolerance of ``z`` standard errors has a false-alarm probability below
``2 * Phi(-z)`` (about 6e-5 for ``z = 4``) under the null hypothesis, and with a fixed seed the
outcome is the same on every run.
"""

from __future__ import annotations

import torch
from torch import Tensor

Z_MEAN = 4.0
"""Means must lie within this many standard errors of the exact value."""

Z_VARIANCE = 5.0
"""Sample variances must lie within this many (estimated) standard errors of the exact value."""


def assert_mean_close(
    samples: Tensor, exact: float | Tensor, variance: float | None = None
) -> None:
    """Mean of ``samples`` (first dimension = repeats) within ``Z_MEAN`` standard errors.

    ``variance`` is the estimator's exact variance when known; otherwise the sample variance
    is used (a consistent estimate; ``R`` is large in every test).
    """
    samples = samples.double()
    repeats = samples.shape[0]
    var = samples.var(0) if variance is None else torch.as_tensor(variance, dtype=torch.float64)
    standard_error = (var / repeats).sqrt()
    exact = torch.as_tensor(exact, dtype=torch.float64)
    deviation = (samples.mean(0) - exact).abs()
    assert bool((deviation <= Z_MEAN * standard_error + 1e-12).all()), (
        f"mean {samples.mean(0).tolist()} vs exact {exact.tolist()}: deviation "
        f"{deviation.tolist()} exceeds {Z_MEAN} standard errors {standard_error.tolist()}"
    )


def variance_standard_error(samples: Tensor) -> Tensor:
    """Standard error of the sample variance, ``sqrt((m4 - s^4) / R)`` (per column).

    The asymptotic variance of the sample variance is ``(mu_4 - sigma^4) / R`` for the fourth
    central moment ``mu_4``; both moments are estimated from the samples.
    """
    samples = samples.double()
    centred = samples - samples.mean(0)
    m2 = centred.pow(2).mean(0)
    m4 = centred.pow(4).mean(0)
    return ((m4 - m2**2).clamp_min(0) / samples.shape[0]).sqrt()


def assert_variance_close(
    samples: Tensor, exact: float | Tensor, max_relative_tolerance: float = 0.1
) -> None:
    """Sample variance within ``Z_VARIANCE`` standard errors of ``exact``.

    The test also requires that tolerance to be under ``max_relative_tolerance`` of ``exact``,
    so it can tell a wrong variance from noise: too few repeats fail loudly instead.
    """
    exact = torch.as_tensor(exact, dtype=torch.float64)
    variance = samples.double().var(0)
    tolerance = Z_VARIANCE * variance_standard_error(samples)
    relative = tolerance / exact
    assert bool((relative <= max_relative_tolerance).all()), (
        f"too few repeats: tolerance is {relative.tolist()} of the exact variance"
    )
    assert bool(((variance - exact).abs() <= tolerance).all()), (
        f"variance {variance.tolist()} vs exact {exact.tolist()}, tolerance {tolerance.tolist()}"
    )
