"""Measure a gradient estimator: mean, bias, variance, signal-to-noise ratio and cost.

An estimator is judged by the distribution of the gradient estimates it produces, so the
diagnostics draw ``R`` independent estimates and summarise them, per *parameter group* (a
scalar, one tensor, or several tensors flattened and concatenated into one vector ``g`` of
``size`` coordinates):

- **mean** ``g_bar = (1/R) sum_r g_r`` and, against an exact gradient ``G`` when one is known,
  the **bias** ``g_bar - G`` (its norm ``||g_bar - G||`` for a group of more than one
  coordinate) with standard error ``sqrt(V / R)``;
- **variance** ``V = (1/(R-1)) sum_r ||g_r - g_bar||^2``, the trace of the covariance (for a
  scalar, the ordinary unbiased sample variance), with standard error ``sqrt(Var V)``, where
  ``Var V = (m4 - V^2 (R-3)/(R-1)) / R`` and ``m4 = (1/R) sum_r ||g_r - g_bar||^4``: exact for a
  scalar (the variance of the sample variance), for a group an upper bound up to ``O(1/R^2)``;
- **signal-to-noise ratio** ``SNR = ||g_bar|| / sqrt(V)`` (Roberts et al. 2018; Rainforth et
  al. 2018, "Tighter variational bounds are not necessarily better", use the per-coordinate
  ``|E g| / std g``, which this is for a scalar); ``inf`` when ``V = 0``;
- **cost**: seconds per estimate (forward and backward), and the **work-normalised
  variance** ``V x seconds``: the variance per unit of compute, the number to compare when one
  estimator is cheaper and can afford more samples (Glynn & Whitt 1992), since ``K`` times the
  samples divide ``V`` by ``K`` and multiply the time by about ``K``.

Two ways to draw the ``R`` estimates:

- :func:`measure` calls ``estimate()`` ``R`` times, each call building a fresh surrogate, and
  differentiates it with :func:`torch.autograd.grad` with respect to each group's tensors; it
  works on anything, e.g. the encoder of a trained VAE (``parameters=model.encoder``).
- :func:`measure_batched` holds ``R`` copies of scalar parameters in one leaf of shape
  ``(R,)``: one call of the estimator with batch shape ``(R,)`` and one backward pass give all
  ``R`` estimates (batch elements share no samples). Much faster for toy problems.

Diagnostics only observe: they never change the estimator or the model, apart from the
parameters' ``.grad`` (left untouched by :func:`measure`, reset on the leaves they create by
:func:`measure_batched`) and the state of a stateful estimator that the estimates run through.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from samplegrad._internal import replicas

__all__ = [
    "GradientStats",
    "format_table",
    "gradient_stats",
    "measure",
    "measure_batched",
    "seconds_per_call",
]

Groups = nn.Module | Mapping[str, Tensor | Sequence[Tensor]]
"""Parameter groups: a module (one group per named trainable parameter) or ``name -> tensors``."""


@dataclass(frozen=True)
class GradientStats:
    """Summary of ``repeats`` gradient estimates of one parameter group (see the module text).

    Attributes:
        name: the group's name.
        size: coordinates in the group.
        repeats: ``R``, the number of estimates.
        mean: ``g_bar``, shape ``(size,)``, float64 on the CPU.
        coordinate_variance: the unbiased variance of each coordinate, shape ``(size,)``.
        variance: ``V``, the sum of ``coordinate_variance`` (the covariance's trace).
        variance_se: the standard error of ``V``.
        exact: the exact gradient ``G``, shape ``(size,)``, or ``None``.
        seconds: wall time of one estimate (forward and backward), or ``None`` if not timed.
    """

    name: str
    size: int
    repeats: int
    mean: Tensor
    coordinate_variance: Tensor
    variance: float
    variance_se: float
    exact: Tensor | None = None
    seconds: float | None = None

    @property
    def gradient_mean(self) -> float:
        """``g_bar`` for a scalar, ``||g_bar||`` for a group."""
        return self.mean.item() if self.size == 1 else self.mean.norm().item()

    @property
    def gradient_se(self) -> float:
        """Standard error of the mean, ``sqrt(V / R)`` (of its norm, to first order, for a group
        whose mean is far from zero)."""
        return math.sqrt(self.variance / self.repeats)

    @property
    def exact_gradient(self) -> float | None:
        """``G`` for a scalar, ``||G||`` for a group, ``None`` when unknown."""
        if self.exact is None:
            return None
        return self.exact.item() if self.size == 1 else self.exact.norm().item()

    @property
    def bias(self) -> float | None:
        """``g_bar - G`` for a scalar, ``||g_bar - G||`` for a group; ``None`` without ``G``.

        Compare it with :attr:`gradient_se`: an unbiased estimator's bias is within a few
        standard errors of zero (for a group, its norm is about ``sqrt(V / R)``).
        """
        if self.exact is None:
            return None
        difference = self.mean - self.exact
        return difference.item() if self.size == 1 else difference.norm().item()

    @property
    def snr(self) -> float:
        """``||g_bar|| / sqrt(V)``; ``inf`` for a zero variance (and a non-zero mean), ``nan``
        when both are zero."""
        norm = self.mean.norm().item()
        if self.variance > 0:
            return norm / math.sqrt(self.variance)
        return math.inf if norm > 0 else math.nan

    @property
    def work_normalized_variance(self) -> float | None:
        """``V x seconds`` per estimate; ``None`` if not timed."""
        return None if self.seconds is None else self.variance * self.seconds

    def as_row(self) -> dict[str, object]:
        """The summary as JSON-ready numbers; ``snr`` is ``None`` where infinite or undefined,
        times are in microseconds (``us_per_estimate``, ``work_normalized_variance`` in
        variance x microseconds)."""
        microseconds = None if self.seconds is None else self.seconds * 1e6
        return {
            "parameter": self.name,
            "size": self.size,
            "gradient_mean": self.gradient_mean,
            "gradient_se": self.gradient_se,
            "exact_gradient": self.exact_gradient,
            "bias": self.bias,
            "bias_se": self.gradient_se,
            "variance": self.variance,
            "variance_se": self.variance_se,
            "snr": self.snr if math.isfinite(self.snr) else None,
            "us_per_estimate": microseconds,
            "work_normalized_variance": (
                None if microseconds is None else self.variance * microseconds
            ),
        }


def gradient_stats(
    name: str,
    estimates: Tensor,
    exact: Tensor | float | Sequence[float] | None = None,
    seconds: float | None = None,
) -> GradientStats:
    """Summarise ``estimates`` of shape ``(R, size)`` (or ``(R,)`` for a scalar), ``R >= 2``.

    Statistics are computed in float64 whatever the estimates' dtype.
    """
    estimates = estimates.detach().to("cpu", torch.float64)
    if estimates.dim() == 1:
        estimates = estimates.unsqueeze(1)
    if estimates.dim() != 2 or estimates.shape[0] < 2:
        raise ValueError(
            f"estimates must have shape (repeats, size) with repeats >= 2, got "
            f"{tuple(estimates.shape)}; a variance needs at least two estimates"
        )
    repeats, size = estimates.shape
    mean = estimates.mean(0)
    squared_distance = (estimates - mean).pow(2).sum(1)  # ||g_r - g_bar||^2, (R,)
    variance = squared_distance.sum() / (repeats - 1)
    fourth = squared_distance.pow(2).mean()
    variance_of_variance = (fourth - variance**2 * (repeats - 3) / (repeats - 1)) / repeats
    if exact is not None:
        exact = torch.as_tensor(exact, dtype=torch.float64).flatten()
        if exact.numel() != size:
            raise ValueError(
                f"exact gradient of {name!r} has {exact.numel()} values, the estimates {size}"
            )
    return GradientStats(
        name=name,
        size=size,
        repeats=repeats,
        mean=mean,
        coordinate_variance=estimates.var(0, correction=1),
        variance=variance.item(),
        variance_se=variance_of_variance.clamp_min(0).sqrt().item(),
        exact=exact,
        seconds=seconds,
    )


def _groups(parameters: Groups) -> dict[str, list[Tensor]]:
    if isinstance(parameters, nn.Module):
        groups = {n: [p] for n, p in parameters.named_parameters() if p.requires_grad}
    elif isinstance(parameters, Mapping):
        groups = {
            name: [tensors] if isinstance(tensors, Tensor) else list(tensors)
            for name, tensors in parameters.items()
        }
    else:
        raise TypeError(
            "parameters must be an nn.Module or a mapping from group names to tensors, got "
            f"{type(parameters).__name__}"
        )
    if not groups or not all(groups.values()):
        raise ValueError("parameters must name at least one tensor in every group")
    for name, tensors in groups.items():
        if not all(t.requires_grad for t in tensors):
            raise ValueError(f"parameter group {name!r} holds tensors that do not require grad")
    return groups


def _check_repeats(repeats: int) -> None:
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 2:
        raise ValueError(
            f"repeats must be an int >= 2 (a variance needs two estimates), got {repeats!r}"
        )


def measure(
    estimate: Callable[[], Tensor],
    parameters: Groups,
    repeats: int = 100,
    exact: Mapping[str, Tensor | float | Sequence[float]] | None = None,
    warmup: int = 1,
) -> dict[str, GradientStats]:
    """Draw ``repeats`` gradient estimates by calling ``estimate()`` and differentiating it.

    Args:
        estimate: builds one fresh surrogate per call (any shape; its sum is differentiated),
            for example ``lambda: sg.expectation(f, q(), "score", 4).mean()`` or a model's
            training loss; it draws its own randomness (give it a seeded generator to repeat).
        parameters: the groups to measure: an ``nn.Module`` (one group per named trainable
            parameter) or a mapping from group names to a tensor or a list of tensors
            (flattened and concatenated).
        repeats: ``R >= 2``.
        exact: exact gradients by group name, each with the group's number of coordinates.
        warmup: calls before timing starts (their estimates are not used).

    Returns:
        :class:`GradientStats` by group name, each timed as the mean wall time of one call
        (surrogate and gradient) over the ``R`` measured calls.
    """
    _check_repeats(repeats)
    groups = _groups(parameters)
    tensors = [t for group in groups.values() for t in group]
    sizes = [sum(t.numel() for t in group) for group in groups.values()]

    def one_estimate() -> Tensor:
        gradients = torch.autograd.grad(estimate().sum(), tensors, allow_unused=True)
        return torch.cat(
            [
                (torch.zeros_like(t) if g is None else g).detach().flatten()
                for g, t in zip(gradients, tensors, strict=True)
            ]
        )

    for _ in range(warmup):
        one_estimate()
    start = time.perf_counter()
    rows = [one_estimate() for _ in range(repeats)]
    seconds = (time.perf_counter() - start) / repeats
    all_estimates = torch.stack(rows)
    exact = exact or {}
    return {
        name: gradient_stats(name, part, exact.get(name), seconds)
        for name, part in zip(groups, all_estimates.split(sizes, dim=1), strict=True)
    }


def measure_batched(
    surrogate: Callable[[dict[str, Tensor]], Tensor],
    values: Mapping[str, float],
    repeats: int,
    exact: Mapping[str, float] | None = None,
    seconds: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> dict[str, GradientStats]:
    """Draw ``repeats`` estimates for scalar parameters in one batched call.

    Each parameter becomes a leaf of shape ``(repeats,)`` filled with its value;
    ``surrogate(leaves)`` must return shape ``(repeats,)`` whose elements are independent
    estimates (build the distribution with batch shape ``(repeats,)``), so one backward pass
    of its sum leaves ``repeats`` independent estimates in each leaf's ``.grad``. An estimator
    that pools its samples across the batch (:attr:`samplegrad.Estimator.pools_across_batch`:
    the score function's ``coefficient="optimal"``) would correlate them and understate every
    standard error: it raises a ``ValueError`` here; measure it with :func:`measure`.

    Args:
        surrogate: maps the leaves to the batched surrogate.
        values: the parameters' values, by name.
        repeats: ``R >= 2``.
        exact: exact gradients by parameter name.
        seconds: the time of one (unbatched) estimate, measured elsewhere (see
            :func:`seconds_per_call`); batching makes the time of this call meaningless per
            estimate.
        dtype: of the leaves (float64 by default: variances of ``1e-7`` need it).
    """
    _check_repeats(repeats)
    leaves = {
        name: torch.full((repeats,), float(value), dtype=dtype, requires_grad=True)
        for name, value in values.items()
    }
    with replicas.independent_elements():
        result = surrogate(leaves)
    if result.shape != (repeats,):
        raise ValueError(
            f"surrogate must return shape ({repeats},), one estimate per repeat, got "
            f"{tuple(result.shape)}; give the distribution batch shape (repeats,)"
        )
    gradients = torch.autograd.grad(result.sum(), list(leaves.values()), allow_unused=True)
    exact = exact or {}
    stats = {}
    for name, gradient in zip(leaves, gradients, strict=True):
        if gradient is None:
            raise ValueError(f"the surrogate does not depend on parameter {name!r}")
        stats[name] = gradient_stats(name, gradient, exact.get(name), seconds)
    return stats


def seconds_per_call(
    call: Callable[[], object], calls: int = 40, blocks: int = 5, warmup_blocks: int = 1
) -> float:
    """The median over ``blocks`` timed blocks of ``calls`` calls, per call, in seconds,
    after ``warmup_blocks`` untimed blocks. The median of blocks resists the outliers of a
    shared machine better than a mean."""
    block_seconds = []
    for _ in range(warmup_blocks + blocks):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        block_seconds.append(time.perf_counter() - start)
    return statistics.median(block_seconds[warmup_blocks:]) / calls


def format_table(stats: Iterable[GradientStats], label: str = "") -> str:
    """An aligned text table, a row per group: mean, s.e., exact, bias, variance (s.e.), SNR,
    microseconds and work-normalised variance (``%.4g``; ``-`` where unknown)."""
    columns = ["group", "size", "mean", "s.e.", "exact", "bias", "variance", "var s.e.", "SNR"]
    columns += ["us/estimate", "var x us"]
    lines = []
    for s in stats:
        row = s.as_row()
        snr = s.snr
        lines.append(
            [
                f"{label}{s.name}",
                str(s.size),
                *(
                    _number(row[key])
                    for key in (
                        "gradient_mean",
                        "gradient_se",
                        "exact_gradient",
                        "bias",
                        "variance",
                        "variance_se",
                    )
                ),
                "inf" if snr == math.inf else _number(None if math.isnan(snr) else snr),
                _number(row["us_per_estimate"]),
                _number(row["work_normalized_variance"]),
            ]
        )
    widths = [max(len(cell) for cell in column) for column in zip(columns, *lines, strict=True)]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [columns, *lines]
    )


def _number(value: object) -> str:
    return "-" if value is None else f"{value:.4g}"
