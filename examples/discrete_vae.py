"""A discrete VAE in 40 lines: 200 Bernoulli latents, trained with DisARM or Gumbel-Softmax.

The whole model is ``DiscreteVAE`` below. Three things differ from the Gaussian VAE:

- the cost ``f`` of ``sg.expectation`` receives samples of shape ``(S, B, D)`` (``S`` samples
  of a batch of ``B`` images with ``D`` latents) and returns costs ``(S, B)``;
- the posterior is ``Independent(Bernoulli(logits), 1)``: batch shape ``(B,)``, event shape
  ``(D,)``, so one sample is one image's whole latent vector and ``f`` is one number per image;
- the KL is either analytic (``kl_divergence(q, prior)``, outside the expectation) or part of
  the cost (``f = -log p(x|z) - log p(z) + log q(z|x)``, one expectation for everything).

    python examples/discrete_vae.py --data-dir DIR    # 2000 steps each, test ELBO near -145
    python examples/discrete_vae.py --smoke           # a few steps each, seconds
"""

from __future__ import annotations

import argparse

import torch
from _data import load_images
from torch import nn
from torch.distributions import Bernoulli, Independent, kl_divergence
from torch.nn import functional as F

import samplegrad as sg


# --8<-- [start:model]
def log_mass(z: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log Bernoulli(z; logits) summed over the latents, linear in z: the same function at a
    binary sample and at a relaxed one in (0, 1), which Gumbel-Softmax evaluates f at."""
    return (z * logits - F.softplus(logits)).sum(-1)


class DiscreteVAE(nn.Module):
    def __init__(self, data_dim: int, latent_dim: int = 200) -> None:
        super().__init__()
        self.encoder = nn.Linear(data_dim, latent_dim)  # x -> logits of q(z | x)
        self.decoder = nn.Linear(latent_dim, data_dim)  # z -> logits of p(x | z)
        self.register_buffer("prior_logits", torch.zeros(latent_dim))  # p(z): Bernoulli(1/2)

    def loss(self, x, estimator, num_samples=2, analytic_kl=True) -> torch.Tensor:
        """The negative ELBO per image, averaged over the batch, as a surrogate."""
        logits = self.encoder(x)  # (B, D)
        q = Independent(Bernoulli(logits=logits), 1)  # batch (B,), event (D,)

        def reconstruction(z):  # z: (S, B, D) -> (S, B)
            pixel_logits = self.decoder(z)  # (S, B, data_dim)
            nll = F.binary_cross_entropy_with_logits(
                pixel_logits, x.expand_as(pixel_logits), reduction="none"
            )
            return nll.sum(-1)

        if analytic_kl:
            prior = Independent(Bernoulli(logits=self.prior_logits.expand_as(logits)), 1)
            surrogate = sg.expectation(reconstruction, q, estimator, num_samples)  # (B,)
            return (surrogate + kl_divergence(q, prior)).mean()

        def negative_log_weight(z):  # -log p(x|z) - log p(z) + log q(z|x), (S, B)
            return reconstruction(z) - log_mass(z, self.prior_logits) + log_mass(z, logits)

        return sg.expectation(negative_log_weight, q, estimator, num_samples).mean()


# --8<-- [end:model]


@torch.no_grad()
def test_elbo(model: DiscreteVAE, x: torch.Tensor) -> float:
    """The ELBO per image with one exact (binary) sample per image and the analytic KL."""
    return -model.loss(x, sg.ScoreFunction(), num_samples=1).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with the four MNIST .gz files")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--smoke", action="store_true", help="a few steps: checks that it runs")
    args = parser.parse_args()
    train, test = load_images(args.data_dir, smoke=args.smoke)
    steps = 20 if args.smoke else args.steps

    # --8<-- [start:train]
    runs = {  # name: (estimator, analytic KL?)
        "disarm, analytic KL": (sg.DisARM(), True),
        "disarm, KL in the cost": (sg.DisARM(), False),
        "gumbel, analytic KL": (sg.GumbelSoftmax(temperature=1.0), True),
    }
    for name, (estimator, analytic_kl) in runs.items():
        torch.manual_seed(0)
        model = DiscreteVAE(data_dim=train.images.shape[1])
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        step = 0
        while step < steps:
            for x, _ in train.batches(128):
                loss = model.loss(x, estimator, num_samples=2, analytic_kl=analytic_kl)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
                if step == steps:
                    break
        elbo = test_elbo(model, test.binarize(test.images))
        print(f"{name:24s} {steps} steps: test ELBO {elbo:.2f} nats per image")
    # --8<-- [end:train]


if __name__ == "__main__":
    main()
