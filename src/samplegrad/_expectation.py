"""``sg.expectation``: resolve the estimator, then let it build the surrogate."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor
from torch.distributions import Distribution

from samplegrad import _validation
from samplegrad.estimators.base import REGISTRY, Estimator
from samplegrad.estimators.baselines import MovingAverage
from samplegrad.estimators.score import ScoreFunction

AUTO = "auto"


class AutoEstimatorWarning(UserWarning):
    """Issued once per choice when ``estimator="auto"`` picks an estimator."""


_named: dict[str, Estimator] = {}
"""One default-configured instance per name: the named estimators are stateless."""

_auto_leave_one_out = ScoreFunction(baseline="loo")
"""``"auto"``'s choice for ``num_samples >= 2`` without ``rsample`` (stateless)."""

_auto_moving_averages: dict[object, ScoreFunction] = {}
"""``"auto"``'s moving-average estimators, one per cost function, so their state persists."""

_announced: set[tuple[str, str]] = set()


def expectation(
    f: Callable[[Tensor], Tensor],
    dist: Distribution,
    estimator: str | Estimator = AUTO,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """A surrogate for ``E_{z ~ dist}[f(z)]`` whose gradient is a Monte Carlo gradient estimate.

    Args:
        f: maps samples of shape ``(S, *B, *E)`` to costs of shape ``(S, *B)``, for any ``S``.
        dist: a ``torch.distributions.Distribution`` with batch shape ``B``, event shape ``E``.
        estimator: an :class:`~samplegrad.Estimator` instance, or a name: ``"pathwise"``,
            ``"score"``, ``"gumbel"``, ``"straight-through"``, ``"enumerate"``, ``"arm"``,
            ``"disarm"``, ``"rebar"``, ``"measure-valued"``, or ``"auto"`` (``sg.RELAX`` needs
            its control, so only an instance)
            (pathwise where ``dist.has_rsample``, else the score function with a leave-one-out
            baseline, or a moving average when ``num_samples == 1``; a warning names the choice
            once).
        num_samples: samples per batch element.
        generator: a ``torch.Generator``; the same state gives the same samples and surrogate.

    Returns:
        The surrogate, shape ``B``: its value is the mean of ``f`` over the samples evaluated
        (for a relaxation, the relaxed samples; for enumeration, the exact expectation), and
        ``surrogate.mean().backward()`` is one training step's gradient.
    """
    return resolve(estimator, f, dist, num_samples)(f, dist, num_samples, generator)


def resolve(
    estimator: str | Estimator, f: object, dist: Distribution, num_samples: int
) -> Estimator:
    """The estimator instance that ``estimator`` names."""
    if isinstance(estimator, Estimator):
        return estimator
    if estimator == AUTO:
        return _auto(f, _validation.check_distribution(dist), num_samples)
    if isinstance(estimator, str) and estimator in REGISTRY:
        if estimator not in _named:
            try:
                _named[estimator] = REGISTRY[estimator]()
            except TypeError as error:  # a required argument, such as RELAX's control
                cls = REGISTRY[estimator].__name__
                raise ValueError(
                    f"estimator {estimator!r} cannot be built from its name alone ({error}); "
                    f"pass an instance, e.g. sg.{cls}(...)"
                ) from error
        return _named[estimator]
    if estimator == "vimco":
        raise ValueError(
            "estimator 'vimco' estimates the gradient of the importance-weighted bound, not of "
            "E[f]: use sg.iwae_bound(log_weight, dist, num_samples, estimator='vimco')"
        )
    names = ", ".join(repr(n) for n in [*sorted(REGISTRY), AUTO])
    raise ValueError(
        f"estimator must be an sg.Estimator instance or one of {names}, got {estimator!r}"
    )


def _auto(f: object, dist: Distribution, num_samples: int) -> Estimator:
    if dist.has_rsample:
        return announce("pathwise", dist, resolve("pathwise", f, dist, num_samples))
    if isinstance(num_samples, int) and num_samples >= 2:
        return announce("score function with a leave-one-out baseline", dist, _auto_leave_one_out)
    # A lambda re-created at every step keeps its code object: key the state on that.
    key = getattr(f, "__code__", type(f))
    if key not in _auto_moving_averages:
        _auto_moving_averages[key] = ScoreFunction(baseline=MovingAverage(0.9))
    return announce(
        "score function with a moving-average baseline (decay 0.9, kept per cost function)",
        dist,
        _auto_moving_averages[key],
    )


def announce(choice: str, dist: Distribution, estimator: Estimator) -> Estimator:
    key = (choice, type(dist).__name__)
    if key not in _announced and not torch.compiler.is_compiling():
        _announced.add(key)
        warnings.warn(
            f"estimator='auto' chose the {choice} for {type(dist).__name__}; pass the "
            "estimator explicitly to choose it yourself and silence this warning",
            AutoEstimatorWarning,
            stacklevel=4,
        )
    return estimator
