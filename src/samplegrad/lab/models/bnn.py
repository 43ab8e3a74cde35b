"""Bayesian neural networks for MNIST classification, built from :mod:`samplegrad.nn`'s layers.

- :class:`BayesianMLP`: ``784 - 400 - 400 - 10`` with ReLUs (the hidden sizes are options);
- :class:`BayesianCNN`: two 5 x 5 convolutions (16 and 32 channels, each followed by a ReLU and
  2 x 2 max pooling) and two linear layers ``1568 - 128 - 10``.

Every weight has a factorized Gaussian posterior sampled by the chosen ``layer``: ``"flipout"``,
``"local-reparam"`` or ``"naive"`` (see :mod:`samplegrad.nn.bayesian`). Both models take images
``(B, 784)`` with grey levels in ``[0, 1]`` and return class logits ``(B, 10)``.

**Objective.** :meth:`BayesianClassifier.loss` is the negative ELBO per training example,

    loss = mean_n [-log p(y_n | x_n, W)] + KL(q || p) / N_train,   W ~ q (one draw),

an unbiased estimate of ``-ELBO / N_train`` from a mini-batch: the KL is counted once per pass
over the ``N_train`` training examples, so it is divided by ``N_train`` (not by the number of
batches, and not weighted per batch).

**Prediction.** :meth:`BayesianClassifier.predict` averages the softmax over ``K`` posterior
draws, ``p(y | x) ~ (1/K) sum_k softmax(f(x; W_k))``, the Monte Carlo posterior predictive.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from samplegrad.nn.bayesian import (
    DEFAULT_INIT_SCALE,
    LAYER_CLASSES,
    Layer,
    check_layer,
    kl_divergence,
)

__all__ = ["BNNLoss", "BayesianCNN", "BayesianClassifier", "BayesianMLP"]

NUMLAYER_CLASSES = 10
IMAGE_PIXELS = 28 * 28


class BNNLoss(NamedTuple):
    """What :meth:`BayesianClassifier.loss` returns.

    Attributes:
        loss: the scalar to minimise, ``nll + kl / num_train`` (call ``.backward()`` on it).
        nll: the batch's mean negative log-likelihood under the one weight draw, detached.
        kl: ``KL(q || p)`` of the whole network, detached.
    """

    loss: Tensor
    nll: Tensor
    kl: Tensor


class BayesianClassifier(nn.Module):
    """The loss and predictive shared by the Bayesian classifiers; subclasses define
    ``forward(x, generator=None) -> logits``."""

    def _check(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[-1] != IMAGE_PIXELS:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"x must be a (batch, {IMAGE_PIXELS}) tensor of images, got {shape}; flatten "
                "28x28 images with x.flatten(1)"
            )
        return x

    def loss(
        self, x: Tensor, y: Tensor, num_train: int, generator: torch.Generator | None = None
    ) -> BNNLoss:
        """The negative ELBO per training example on the batch ``(x, y)`` (module docstring).

        Args:
            x: images ``(B, 784)``; y: their labels ``(B,)``.
            num_train: ``N_train``, the size of the training set the KL is spread over.
            generator: draws the weight noise.
        """
        if isinstance(num_train, bool) or not isinstance(num_train, int) or num_train < 1:
            raise ValueError(
                f"num_train must be an int >= 1 (the training set's size), got {num_train!r}"
            )
        nll = F.cross_entropy(self(x, generator), y)
        kl = kl_divergence(self)
        return BNNLoss(nll + kl / num_train, nll.detach(), kl.detach())

    @torch.no_grad()
    def predict(
        self, x: Tensor, num_samples: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Predictive class probabilities ``(B, 10)``: the mean softmax over ``num_samples``
        independent posterior draws (one forward pass each)."""
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
        total = torch.zeros(len(x), NUMLAYER_CLASSES, device=x.device, dtype=x.dtype)
        for _ in range(num_samples):
            total += F.softmax(self(x, generator), dim=-1)
        return total / num_samples


class BayesianMLP(BayesianClassifier):
    """``784 - hidden... - 10``, ReLU, every linear layer Bayesian.

    Args:
        layer: ``"flipout"``, ``"local-reparam"`` or ``"naive"``.
        hidden: the hidden layers' widths.
        prior_scale, init_scale: passed to every layer (:mod:`samplegrad.nn.bayesian`).
    """

    def __init__(
        self,
        layer: Layer | str = Layer.FLIPOUT,
        hidden: Sequence[int] = (400, 400),
        *,
        prior_scale: float = 1.0,
        init_scale: float = DEFAULT_INIT_SCALE,
    ) -> None:
        super().__init__()
        self.layer = check_layer(layer)
        linear = LAYER_CLASSES[self.layer][nn.Linear]
        sizes = [IMAGE_PIXELS, *hidden, NUMLAYER_CLASSES]
        options = {"prior_scale": prior_scale, "init_scale": init_scale}
        self.layers = nn.ModuleList(linear(a, b, **options) for a, b in itertools.pairwise(sizes))

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        h = self._check(x)
        for index, layer in enumerate(self.layers):
            h = layer(h, generator)
            if index < len(self.layers) - 1:
                h = F.relu(h)
        return h


class BayesianCNN(BayesianClassifier):
    """Two Bayesian 5 x 5 convolutions (16, 32 channels; ReLU, 2 x 2 max pooling) and two
    Bayesian linear layers ``1568 - 128 - 10``.

    Args: as :class:`BayesianMLP`, without ``hidden``.
    """

    def __init__(
        self,
        layer: Layer | str = Layer.FLIPOUT,
        *,
        prior_scale: float = 1.0,
        init_scale: float = DEFAULT_INIT_SCALE,
    ) -> None:
        super().__init__()
        self.layer = check_layer(layer)
        conv, linear = LAYER_CLASSES[self.layer][nn.Conv2d], LAYER_CLASSES[self.layer][nn.Linear]
        options = {"prior_scale": prior_scale, "init_scale": init_scale}
        self.conv1 = conv(1, 16, 5, padding=2, **options)
        self.conv2 = conv(16, 32, 5, padding=2, **options)
        self.fc1 = linear(32 * 7 * 7, 128, **options)
        self.fc2 = linear(128, NUMLAYER_CLASSES, **options)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        h = self._check(x).reshape(-1, 1, 28, 28)
        h = F.max_pool2d(F.relu(self.conv1(h, generator)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h, generator)), 2)
        h = F.relu(self.fc1(h.flatten(1), generator))
        return self.fc2(h, generator)
