"""Estimators by name for the discrete VAEs, so a command line can select them.

The names are those of :data:`samplegrad.estimators.catalog.CATALOG` whose estimator can handle
a Bernoulli or one-hot categorical latent (``"score"``, ``"score-loo"``, ``"score-ma"``,
``"arm"``, ``"rebar"``, ``"relax"``, ``"gumbel"``, ``"enumerate"``, ...; which ones apply to a
model: :func:`applicable_estimators`), and ``"auto"``, which chooses as ``sg.expectation(...,
"auto")`` does (:func:`samplegrad.estimators.catalog.auto`: ``"score-loo"`` for
``num_samples >= 2``, else ``"score-ma"``). Each name builds its catalog entry with the model's
part where the estimator needs one (``"relax"``'s control: a :class:`LatentControl`);
``"enumerate"`` applies to latents of at most ``2**16`` configurations.

Keyword options go to the estimator's constructor (``temperature`` for ``"gumbel"``), to the
variant (``decay`` for ``"score-ma"``, default 0.9), or, for ``"relax"``, to its control
(``hidden``, default 64). The Gaussian VAE takes no estimator: its sampling layer is pathwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Independent, OneHotCategorical

from samplegrad.estimators import Enumerate, Estimator, catalog
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


REQUIRED_OPTIONS: dict[str, Callable[..., object]] = {
    "control": lambda model, **options: LatentControl(model.latent_shape, **options),
}
"""How each constructor argument an estimator class requires
(:attr:`samplegrad.Estimator.required_options`) is built for a model, from the options."""

_LATENTS = (
    Independent(Bernoulli(logits=torch.zeros(1)), 1),
    Independent(OneHotCategorical(logits=torch.zeros(1, 2)), 1),
)
"""One latent of each family the discrete VAEs use, to ask the catalog which names apply."""

ESTIMATOR_NAMES = (
    *(name for name, entry in catalog.CATALOG.items() if any(map(entry.supports, _LATENTS))),
    catalog.AUTO,
)
"""Every name :func:`make_estimator` knows, in catalog order, then ``"auto"``."""


def applicable_estimators(model: nn.Module) -> list[str]:
    """The names :func:`make_estimator` accepts for ``model``, in catalog order, then ``"auto"``."""
    if not isinstance(model, DiscreteVAE):
        return []
    prior = model.prior()
    too_large = model.support_size > Enumerate().max_support_size
    names = [
        name
        for name, entry in catalog.CATALOG.items()
        if entry.supports(prior) and not (too_large and issubclass(entry.cls, Enumerate))
    ]
    return [*names, catalog.AUTO]


def make_estimator(
    name: str, model: nn.Module, *, num_samples: int = 1, **options: Any
) -> Estimator:
    """The estimator called ``name`` (module docstring), built for ``model``'s latent.

    Args:
        name: one of :data:`ESTIMATOR_NAMES`.
        model: a :class:`~samplegrad.lab.models.BernoulliVAE` or
            :class:`~samplegrad.lab.models.CategoricalVAE`.
        num_samples: the samples per image the estimator will get; only ``"auto"`` uses it.
        options: keyword arguments of the estimator's constructor, of its name's variant, or,
            for an estimator with required options (``"relax"``), of what builds them.

    Raises:
        ValueError: an unknown name; TypeError: a name that does not apply to ``model`` (a
            catalog name for other families too, such as ``"pathwise"``, or options its
            constructor rejects). Both messages list the applicable names.
    """
    applicable = applicable_estimators(model)
    if not applicable:
        raise TypeError(
            f"{type(model).__name__} takes no estimator: a GaussianVAE is trained pathwise by its "
            "sampling layer (model.loss(x, num_samples)); estimators apply to BernoulliVAE and "
            "CategoricalVAE"
        )
    listed = ", ".join(map(repr, applicable))
    if name not in ESTIMATOR_NAMES and name not in catalog.CATALOG:
        raise ValueError(f"unknown estimator {name!r}; for {type(model).__name__}: {listed}")
    if name not in applicable:
        too_many = name in ESTIMATOR_NAMES  # it handles the family: the support is too large
        detail = f", {model.support_size} configurations" if too_many else ""
        raise TypeError(
            f"estimator {name!r} does not apply to {type(model).__name__} "
            f"({model.latent_family} latents{detail}); estimators that do: {listed}"
        )
    if name == catalog.AUTO:
        name = catalog.auto(model.prior(), num_samples)
    entry = catalog.entry(name)
    try:
        if entry.required_options:
            return entry.build(
                **{
                    option: REQUIRED_OPTIONS[option](model, **options)
                    for option in entry.required_options
                }
            )
        return entry.build(**options)
    except TypeError as error:
        raise TypeError(f"invalid options for estimator {name!r}: {error}") from error
