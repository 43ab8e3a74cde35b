"""Bayesian layers in five lines: ``sg.nn.to_bayesian`` and the KL scaling of the ELBO.

A deterministic classifier becomes a Bayesian neural network with a factorized Gaussian
posterior over its weights, ``N(mu, softplus(rho)^2)``, and a ``N(0, prior_scale^2)`` prior;
every forward pass draws weights (Flipout: one draw per batch, decorrelated per example by
random signs). The loss per training example is ``mean NLL + KL / N_train``, with ``N_train``
the number of training images: the KL counts once per pass over the data.

    python examples/bayesian_layers.py --data-dir DIR   # 1 epoch on MNIST
    python examples/bayesian_layers.py --smoke          # a few steps, seconds
"""

from __future__ import annotations

import argparse

import torch
from _data import load_images
from torch import nn
from torch.nn import functional as F

import samplegrad as sg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with the four MNIST .gz files")
    parser.add_argument("--layer", choices=["flipout", "local-reparam", "naive"], default="flipout")
    parser.add_argument("--smoke", action="store_true", help="a few steps: checks that it runs")
    args = parser.parse_args()
    torch.manual_seed(0)
    train, test = load_images(args.data_dir, smoke=args.smoke, binarize="none")
    pixels = train.images.shape[1]

    # --8<-- [start:bayesian]
    net = nn.Sequential(nn.Linear(pixels, 400), nn.ReLU(), nn.Linear(400, 10))
    bnn = sg.nn.to_bayesian(net, args.layer, prior_scale=1.0)  # Linear -> Flipout layers
    optimizer = torch.optim.Adam(bnn.parameters(), lr=1e-3)
    num_train = len(train)  # N_train: images, not batches
    for step, (x, y) in enumerate(train.batches(128)):
        logits = bnn(x)  # one weight draw per forward pass
        loss = F.cross_entropy(logits, y) + sg.nn.kl_divergence(bnn) / num_train
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if args.smoke and step == 20:
            break
    # --8<-- [end:bayesian]

    # --8<-- [start:predict]
    with torch.no_grad():  # the predictive: the mean of K = 10 softmaxes, one weight draw each
        probs = torch.stack([bnn(test.images).softmax(-1) for _ in range(10)]).mean(0)
    accuracy = (probs.argmax(-1) == test.labels).float().mean().item()
    nll = F.nll_loss(probs.log(), test.labels).item()
    print(f"{args.layer}: test accuracy {accuracy:.2%}, NLL {nll:.3f} nats per image")
    # --8<-- [end:predict]


if __name__ == "__main__":
    main()
