"""The classic Gaussian VAE (Kingma & Welling 2014, "Auto-encoding variational Bayes", ICLR).

Encoder ``x -> h = relu(W x + b) -> (mean, log_var)``, approximate posterior
``q(z | x) = N(mean, diag(exp(log_var)))``, prior ``p(z) = N(0, I)``, decoder
``z -> relu -> Bernoulli logits`` for binarized images. The negative ELBO per image is::

    -ELBO(x) = KL(q(z | x) || p(z)) + E_q[-log p(x | z)]
    KL = 1/2 sum_j (exp(log_var_j) + mean_j^2 - 1 - log_var_j)          (closed form)

and the expectation is estimated with ``L`` samples from :class:`samplegrad.nn.Sampling`, the
reparameterization trick (the Keras and PyTorch tutorial VAE): no estimator to choose.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from samplegrad.estimators import Cost, check_num_samples
from samplegrad.lab.models._common import (
    VAE,
    LossOutput,
    bernoulli_log_likelihood,
    check_images,
)
from samplegrad.nn.sampling import Sampling


class GaussianVAE(VAE):
    """VAE with a diagonal Gaussian latent: ``data_dim``-``hidden``-``latent_dim`` and back.

    Args:
        latent_dim: dimensions of ``z`` (20 in the tutorial; 2 for a plottable latent space).
        hidden: ReLU units of the encoder's and the decoder's hidden layer.
        data_dim: pixels per image (784 for MNIST).
    """

    def __init__(self, latent_dim: int = 20, hidden: int = 400, data_dim: int = 784) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.data_dim = data_dim
        self.encoder = nn.Sequential(nn.Linear(data_dim, hidden), nn.ReLU())
        self.mean = nn.Linear(hidden, latent_dim)
        self.log_var = nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, data_dim)
        )

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, log_var)`` of ``q(z | x)``, each ``(B, latent_dim)``."""
        h = self.encoder(check_images(x, self.data_dim))
        return self.mean(h), self.log_var(h)

    def decode(self, z: Tensor) -> Tensor:
        """Bernoulli logits of the pixels ``(..., data_dim)`` for latents ``(..., latent_dim)``."""
        return self.decoder(z)

    @staticmethod
    def kl(mean: Tensor, log_var: Tensor) -> Tensor:
        """``KL(N(mean, exp(log_var)) || N(0, I))`` per image, summed over the latent."""
        return 0.5 * (log_var.exp() + mean.pow(2) - 1 - log_var).sum(-1)

    def loss(
        self, x: Tensor, num_samples: int = 1, generator: torch.Generator | None = None
    ) -> LossOutput:
        """The negative ELBO: analytic KL plus the ``num_samples``-sample pathwise likelihood."""
        mean, log_var = self.encode(x)
        z = Sampling(check_num_samples(num_samples))(mean, log_var, generator)  # (L, B, latent)
        nll = -bernoulli_log_likelihood(self.decode(z), x).mean(0)
        negative_elbo = self.kl(mean, log_var) + nll
        return LossOutput(negative_elbo.mean(), -negative_elbo.detach())

    def elbo(
        self, x: Tensor, num_samples: int = 1, generator: torch.Generator | None = None
    ) -> Tensor:
        """The ELBO estimate per image, ``(B,)``, in nats (analytic KL, ``num_samples`` draws)."""
        with torch.no_grad():
            return self.loss(x, num_samples, generator).elbo

    def importance_weights(self, x: Tensor) -> tuple[Distribution, Cost]:
        """``q(z | x)`` and ``log w(z) = log p(x | z) + log p(z) - log q(z | x)`` for
        :meth:`iwae_bound` (whose ``k = 1`` is an ELBO estimate with a Monte Carlo KL)."""
        mean, log_var = self.encode(x)
        q = Independent(Normal(mean, (0.5 * log_var).exp()), 1)
        prior = Normal(torch.zeros_like(mean), torch.ones_like(mean))

        def log_weight(z: Tensor) -> Tensor:
            log_joint = bernoulli_log_likelihood(self.decode(z), x)
            return log_joint + prior.log_prob(z).sum(-1) - q.log_prob(z)

        return q, log_weight
