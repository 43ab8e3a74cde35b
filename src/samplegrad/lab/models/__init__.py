"""Models for MNIST built on samplegrad: variational autoencoders and Bayesian classifiers.

- :class:`GaussianVAE`: the tutorial VAE, pathwise through :class:`samplegrad.nn.Sampling`.
- :class:`BernoulliVAE`, :class:`CategoricalVAE`: discrete latents; ``loss(x, estimator)``
  takes any applicable :class:`samplegrad.Estimator`, e.g. ``make_estimator("disarm", model)``.
- :class:`BayesianMLP`, :class:`BayesianCNN`: Bayesian classifiers built from
  :mod:`samplegrad.nn`'s Flipout, local-reparameterization or naive layers, with
  ``loss(x, y, num_train)`` (the negative ELBO per example) and ``predict(x, num_samples)``.

:mod:`samplegrad.lab.models.replicated` stacks ``R`` copies of a VAE (e.g. from ``R`` seeds) into
one model trained in a single batched pass (``samplegrad train vae --seeds R``).

Every VAE has ``loss(...) -> LossOutput``, ``elbo(x, num_samples)`` and
``iwae_bound(x, k)``, per image and in nats.
"""

from samplegrad.lab.models._common import LossOutput
from samplegrad.lab.models.bnn import BayesianClassifier, BayesianCNN, BayesianMLP, BNNLoss
from samplegrad.lab.models.discrete import BernoulliVAE, CategoricalVAE, DiscreteVAE
from samplegrad.lab.models.estimators import (
    ESTIMATOR_NAMES,
    LatentControl,
    applicable_estimators,
    make_estimator,
)
from samplegrad.lab.models.gaussian import GaussianVAE

__all__ = [
    "ESTIMATOR_NAMES",
    "BNNLoss",
    "BayesianCNN",
    "BayesianClassifier",
    "BayesianMLP",
    "BernoulliVAE",
    "CategoricalVAE",
    "DiscreteVAE",
    "GaussianVAE",
    "LatentControl",
    "LossOutput",
    "applicable_estimators",
    "make_estimator",
]
