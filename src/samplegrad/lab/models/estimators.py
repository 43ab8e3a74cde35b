"""Estimators by name for the discrete VAEs, so a command line can select them.

| name | estimator | latents |
|---|---|---|
| ``"score"`` | ``sg.ScoreFunction()`` (REINFORCE, no baseline) | all |
| ``"score-loo"`` | ``sg.ScoreFunction(baseline="loo")``, ``num_samples >= 2`` | all |
| ``"score-ma"`` | ``sg.ScoreFunction(baseline=sg.MovingAverage(decay))``, ``decay=0.9`` | all |
| ``"arm"`` / ``"disarm"`` | ``sg.ARM()`` / ``sg.DisARM()``, even ``num_samples`` | Bernoulli |
| ``"rebar"`` | ``sg.REBAR(temperature=0.5, eta=1.0)`` | all |
| ``"relax"`` | ``sg.RELAX(LatentControl(model.latent_shape, hidden=64))`` | all |
| ``"gumbel"`` | ``sg.GumbelSoftmax(temperature=1.0, hard=False)`` (biased) | all |
| ``"straight-through"`` | ``sg.StraightThrough()`` (biased) | all |
| ``"enumerate"`` | ``sg.Enumerate()``, exact; only for at most ``2**16`` configurations | small |
| ``"auto"`` | ``"score-loo"`` if ``num_samples >= 2``, else ``"score-ma"`` | all |

``"auto"`` chooses as ``sg.expectation(..., "auto")`` does for a discrete latent. Keyword
options go to the estimator's constructor (``decay`` for ``"score-ma"``, ``hidden`` for
``"relax"``'s control). The Gaussian VAE takes no estimator: its sampling layer is pathwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from samplegrad.estimators import (
    ARM,
    REBAR,
    RELAX,
    DisARM,
    Enumerate,
    Estimator,
    GumbelSoftmax,
    MovingAverage,
    ScoreFunction,
    StraightThrough,
)
from samplegrad.lab.models.discrete import DiscreteVAE


class LatentControl(nn.Module):
    """RELAX's control ``c(y)``: a one-hidden-layer MLP on the flattened relaxed latent ``y``.

    Maps ``(S, B, *latent_shape)`` to ``(S, B)``. The output layer starts at zero, so training
    starts from the plain score function and the surrogate learns ``c`` to reduce the variance
    (Grathwohl et al. 2018).
    """

    def __init__(self, latent_shape: tuple[int, ...], hidden: int = 64) -> None:
        super().__init__()
        self.num_latent_dims = len(latent_shape)
        size = torch.Size(latent_shape).numel()
        self.net = nn.Sequential(nn.Linear(size, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, y: Tensor) -> Tensor:
        return self.net(y.flatten(-self.num_latent_dims)).squeeze(-1)


def _moving_average(model: DiscreteVAE, decay: float = 0.9, **options: Any) -> Estimator:
    return ScoreFunction(baseline=MovingAverage(decay), **options)


def _relax(model: DiscreteVAE, **options: Any) -> Estimator:
    return RELAX(LatentControl(model.latent_shape, **options))


Builder = Callable[..., Estimator]
"""``builder(model, **options)``: the estimator for ``model``."""

_BUILDERS: dict[str, tuple[type[Estimator], Builder]] = {
    "score": (ScoreFunction, lambda model, **options: ScoreFunction(**options)),
    "score-loo": (ScoreFunction, lambda model, **options: ScoreFunction("loo", **options)),
    "score-ma": (ScoreFunction, _moving_average),
    "arm": (ARM, lambda model, **options: ARM(**options)),
    "disarm": (DisARM, lambda model, **options: DisARM(**options)),
    "rebar": (REBAR, lambda model, **options: REBAR(**options)),
    "relax": (RELAX, _relax),
    "gumbel": (GumbelSoftmax, lambda model, **options: GumbelSoftmax(**options)),
    "straight-through": (StraightThrough, lambda model, **options: StraightThrough(**options)),
    "enumerate": (Enumerate, lambda model, **options: Enumerate(**options)),
}
"""Per name: the estimator class (whose ``supports`` decides applicability) and its builder."""

ESTIMATOR_NAMES = (*_BUILDERS, "auto")
"""Every name :func:`make_estimator` knows."""


def applicable_estimators(model: nn.Module) -> list[str]:
    """The names :func:`make_estimator` accepts for ``model``, in table order."""
    if not isinstance(model, DiscreteVAE):
        return []
    prior = model.prior()
    names = [name for name, (cls, _) in _BUILDERS.items() if cls.supports(prior)]
    if model.support_size > Enumerate().max_support_size:
        names.remove("enumerate")
    return [*names, "auto"]


def make_estimator(
    name: str, model: nn.Module, *, num_samples: int = 1, **options: Any
) -> Estimator:
    """The estimator called ``name`` (module table), built for ``model``'s latent.

    Args:
        name: one of :data:`ESTIMATOR_NAMES`.
        model: a :class:`~samplegrad.lab.models.BernoulliVAE` or
            :class:`~samplegrad.lab.models.CategoricalVAE`.
        num_samples: the samples per image the estimator will get; only ``"auto"`` uses it.
        options: keyword arguments of the estimator's constructor.

    Raises:
        ValueError: an unknown name; TypeError: a name that does not apply to ``model`` (or
            options its constructor rejects). Both messages list the applicable names.
    """
    applicable = applicable_estimators(model)
    if not applicable:
        raise TypeError(
            f"{type(model).__name__} takes no estimator: a GaussianVAE is trained pathwise by its "
            "sampling layer (model.loss(x, num_samples)); estimators apply to BernoulliVAE and "
            "CategoricalVAE"
        )
    listed = ", ".join(map(repr, applicable))
    if name not in ESTIMATOR_NAMES:
        raise ValueError(f"unknown estimator {name!r}; for {type(model).__name__}: {listed}")
    if name not in applicable:
        raise TypeError(
            f"estimator {name!r} does not apply to {type(model).__name__} "
            f"({model.latent_family} latents, {model.support_size} configurations); "
            f"estimators that do: {listed}"
        )
    if name == "auto":
        name = "score-loo" if num_samples >= 2 else "score-ma"
    try:
        return _BUILDERS[name][1](model, **options)
    except TypeError as error:
        raise TypeError(f"invalid options for estimator {name!r}: {error}") from error
