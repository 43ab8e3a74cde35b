"""Measuring your own estimator: ``sg.diagnostics`` on a toy with an exact answer and on a model.

An estimator is judged by the distribution of its gradient estimates: their mean (is it
unbiased?), their variance (how noisy?), the signal-to-noise ratio ``|mean| / std`` and the
variance times the time of one estimate (what a fixed budget of compute buys). Part 1 draws
100 000 estimates in one batched call on a problem whose gradient is known exactly; part 2
measures a model's encoder, where no exact gradient exists, by calling it again and again.

    python examples/measuring.py --data-dir DIR   # about a minute
    python examples/measuring.py --smoke          # fewer repeats, seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import math

import torch
from _data import load_images
from torch import nn
from torch.distributions import Independent, Normal
from torch.nn import functional as F

import samplegrad as sg


def toy(repeats: int) -> None:
    # --8<-- [start:toy]
    # E[cos(3x)], x ~ N(mu, sigma^2) is exp(-9 sigma^2 / 2) cos(3 mu): its exact gradient
    mu, sigma = 1.0, 1.0
    exact = {
        "mu": -3 * math.exp(-4.5 * sigma**2) * math.sin(3 * mu),
        "sigma": -9 * sigma * math.exp(-4.5 * sigma**2) * math.cos(3 * mu),
    }
    rows = []
    for estimator in ("pathwise", "score", "score-loo", "measure-valued"):
        stats = sg.diagnostics.measure_batched(  # R estimates in one call: batch shape (R,)
            lambda p, estimator=estimator: sg.expectation(
                lambda x: torch.cos(3 * x), Normal(p["mu"], p["sigma"]), estimator, num_samples=2
            ),
            {"mu": mu, "sigma": sigma},
            repeats=repeats,
            exact=exact,
        )
        rows += [dataclasses.replace(s, name=f"{estimator}/{s.name}") for s in stats.values()]
    print(sg.diagnostics.format_table(rows))
    # --8<-- [end:toy]


def model(data_dir: str | None, repeats: int, smoke: bool) -> None:
    torch.manual_seed(0)
    train, _ = load_images(data_dir, smoke=smoke)
    x, _ = next(train.batches(64))
    pixels = x.shape[1]
    # --8<-- [start:model]
    encoder = nn.Linear(pixels, 2 * 16)  # x -> (mean, log std) of 16 latents
    decoder = nn.Linear(16, pixels)

    def negative_elbo(estimator: str) -> torch.Tensor:
        mean, log_std = encoder(x).chunk(2, dim=-1)
        q = Independent(Normal(mean, log_std.exp()), 1)
        prior = Independent(Normal(torch.zeros_like(mean), 1.0), 1)

        def f(z):  # (S, B, 16) -> (S, B): -log p(x | z) - log p(z) + log q(z | x)
            logits = decoder(z)
            nll = F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
            return nll.sum(-1) - prior.log_prob(z) + q.log_prob(z)

        return sg.expectation(f, q, estimator, num_samples=4).mean()

    rows = []
    for estimator in ("pathwise", "score-loo"):
        stats = sg.diagnostics.measure(lambda e=estimator: negative_elbo(e), encoder, repeats)
        rows += [dataclasses.replace(s, name=f"{estimator}/{s.name}") for s in stats.values()]
    print(sg.diagnostics.format_table(rows))
    # --8<-- [end:model]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with the four MNIST .gz files")
    parser.add_argument("--smoke", action="store_true", help="fewer repeats: checks that it runs")
    args = parser.parse_args()
    torch.manual_seed(0)
    toy(repeats=2_000 if args.smoke else 100_000)
    model(args.data_dir, repeats=20 if args.smoke else 200, smoke=args.smoke)


if __name__ == "__main__":
    main()
