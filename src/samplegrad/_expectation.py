"""``sg.expectation``: resolve the estimator, then let it build the surrogate."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor
from torch.distributions import Distribution

from samplegrad._internal import validation as _validation
from samplegrad.estimators import catalog
from samplegrad.estimators.base import Estimator
from samplegrad.estimators.catalog import AUTO


class AutoEstimatorWarning(UserWarning):
    """Issued once per choice when ``estimator="auto"`` picks an estimator."""


_named: dict[str, Estimator] = {}
"""One instance per name given to :func:`resolve`: names stand for estimators without state
(:attr:`samplegrad.estimators.catalog.Entry.stateful` is false), so one instance serves all."""

_announced: set[tuple[str, str]] = set()

_AUTO_CHOICES = {
    "pathwise": "pathwise",
    "score-loo": "score function with a leave-one-out baseline",
    "score": (
        "score function without a baseline (a baseline needs num_samples >= 2, or an instance "
        "kept between calls: sg.ScoreFunction(baseline=sg.MovingAverage(0.9)))"
    ),
}
"""How the warning of ``"auto"`` names each choice of :func:`samplegrad.estimators.catalog.auto`
(with ``stateless=True``)."""


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
        estimator: an :class:`~samplegrad.Estimator` instance, or a name of the catalog
            (:data:`samplegrad.estimators.catalog.CATALOG`: ``"pathwise"``, ``"score"``,
            ``"score-loo"``, ``"gumbel"``, ``"arm"``, ...) without state of its own, or
            ``"auto"`` (:func:`samplegrad.estimators.catalog.auto`: pathwise where
            ``dist.has_rsample``, else the score function with a leave-one-out baseline, or
            without a baseline when ``num_samples == 1``; a warning names the choice once).
            Estimators that need arguments (``sg.RELAX``'s control) or keep state between
            calls (``sg.REBAR``'s trained temperature, a moving-average baseline) are passed as
            instances, created once and kept.
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
        dist = _validation.check_distribution(dist)
        n = num_samples if isinstance(num_samples, int) else 1
        name = catalog.auto(dist, n, stateless=True)
        return announce(_AUTO_CHOICES[name], dist, resolve(name, f, dist, num_samples))
    if estimator == "vimco":
        raise ValueError(
            "estimator 'vimco' estimates the gradient of the importance-weighted bound, not of "
            "E[f]: use sg.iwae_bound(log_weight, dist, num_samples, estimator='vimco')"
        )
    if not isinstance(estimator, str) or estimator not in catalog.CATALOG:
        names = ", ".join(repr(n) for n in [*catalog.CATALOG, AUTO])
        raise ValueError(
            f"estimator must be an sg.Estimator instance or one of {names}, got {estimator!r}"
        )
    if estimator not in _named:
        _named[estimator] = _build(catalog.CATALOG[estimator])
    return _named[estimator]


def _build(entry: catalog.Entry) -> Estimator:
    """The instance a name stands for; a name whose estimator keeps state is refused: one
    instance per name would be shared by every caller in the process, in no ``state_dict``."""
    if entry.required_options:
        raise ValueError(
            f"estimator {entry.name!r} cannot be built from its name alone (it needs "
            f"{', '.join(entry.required_options)}); pass an instance, e.g. "
            f"sg.{entry.cls.__name__}(...)"
        )
    if entry.stateful:
        raise ValueError(
            f"estimator {entry.name!r} keeps state between calls, which a name cannot: create "
            f"the instance once and keep it, e.g. estimator = sg.{entry.cls.__name__}(...), "
            "and pass it to every call (and its parameters, if any, to the optimizer)"
        )
    return entry.build()


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
