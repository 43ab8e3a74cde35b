"""Variational autoencoders for binarized MNIST, built on samplegrad's estimators.

- :class:`GaussianVAE`: the tutorial VAE, pathwise through :class:`samplegrad.nn.Sampling`.
- :class:`BernoulliVAE`, :class:`CategoricalVAE`: discrete latents; ``loss(x, estimator)``
  takes any applicable :class:`samplegrad.Estimator`, e.g. ``make_estimator("disarm", model)``.

Every model has ``loss(...) -> LossOutput``, ``elbo(x, num_samples)`` and
``iwae_bound(x, k)``, per image and in nats.
"""

from samplegrad.models._common import LossOutput
from samplegrad.models.discrete import BernoulliVAE, CategoricalVAE, DiscreteVAE
from samplegrad.models.estimators import (
    ESTIMATOR_NAMES,
    LatentControl,
    applicable_estimators,
    make_estimator,
)
from samplegrad.models.gaussian import GaussianVAE

__all__ = [
    "ESTIMATOR_NAMES",
    "BernoulliVAE",
    "CategoricalVAE",
    "DiscreteVAE",
    "GaussianVAE",
    "LatentControl",
    "LossOutput",
    "applicable_estimators",
    "make_estimator",
]
