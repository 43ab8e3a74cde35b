"""From the Keras VAE to samplegrad: the classic Gaussian VAE, one sampling layer.

The Keras example builds a ``Sampling`` layer, ``z = z_mean + exp(0.5 * z_log_var) * eps``,
an encoder that outputs ``(z_mean, z_log_var, z)``, a decoder, and a ``train_step`` whose loss
is the reconstruction's binary cross-entropy plus the Gaussian KL. Here is the same model in
PyTorch: ``sg.nn.Sampling`` is the layer, and the KL comes from ``torch.distributions``.

    python examples/keras_vae.py --data-dir DIR   # 3 epochs on MNIST, test ELBO about -110 nats
    python examples/keras_vae.py --smoke          # a few steps, seconds
"""

from __future__ import annotations

import argparse

import torch
from _data import load_images
from torch import nn
from torch.distributions import Normal, kl_divergence
from torch.nn import functional as F

import samplegrad as sg


# --8<-- [start:model]
class Encoder(nn.Module):
    """x -> (z_mean, z_log_var, z), as the Keras encoder."""

    def __init__(self, data_dim: int, latent_dim: int, hidden: int = 400) -> None:
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(data_dim, hidden), nn.ReLU())
        self.z_mean = nn.Linear(hidden, latent_dim)
        self.z_log_var = nn.Linear(hidden, latent_dim)
        self.sampling = sg.nn.Sampling()  # the Keras Sampling layer

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.hidden(x)
        z_mean, z_log_var = self.z_mean(h), self.z_log_var(h)
        return z_mean, z_log_var, self.sampling(z_mean, z_log_var)


class VAE(nn.Module):
    def __init__(self, data_dim: int, latent_dim: int = 20, hidden: int = 400) -> None:
        super().__init__()
        self.encoder = Encoder(data_dim, latent_dim, hidden)
        self.decoder = nn.Sequential(  # z -> Bernoulli logits of the pixels
            nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, data_dim)
        )

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """The negative ELBO per image, averaged over the batch (Keras: ``total_loss``)."""
        z_mean, z_log_var, z = self.encoder(x)
        logits = self.decoder(z)
        reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        q = Normal(z_mean, torch.exp(0.5 * z_log_var))  # q(z | x)
        prior = Normal(torch.zeros_like(z_mean), torch.ones_like(z_mean))  # p(z)
        kl = kl_divergence(q, prior).sum(-1)  # closed form, per image
        return (reconstruction + kl).mean()


# --8<-- [end:model]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with the four MNIST .gz files")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="a few steps: checks that it runs")
    args = parser.parse_args()
    torch.manual_seed(0)

    # --8<-- [start:train]
    train, test = load_images(args.data_dir, smoke=args.smoke)
    model = VAE(data_dim=train.images.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = 20 if args.smoke else None
    for epoch in range(1 if args.smoke else args.epochs):
        for step, (x, _) in enumerate(train.batches(128)):
            if step == steps:
                break
            loss = model.loss(x)  # Keras: train_step
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            x = test.binarize(test.images)
            print(f"epoch {epoch + 1}: test ELBO {-model.loss(x).item():.2f} nats per image")
    # --8<-- [end:train]


if __name__ == "__main__":
    main()
