"""Train a Bayesian MLP (784-400-400-10) or small CNN on MNIST grey levels with Adam on the ELBO
per training example: mean NLL of the batch under one weight draw + KL(q || p) / N_train, where
N_train is the number of training images (60000 - --validation-size), so the KL counts once per
pass over the data. Evaluates with K posterior draws (the predictive is the mean of the K
softmaxes): test accuracy, NLL (nats per image), expected calibration error (15 equal-width
confidence bins), predictive entropy on MNIST and on noise images. Writes into DIR: metrics.csv
(a row per epoch), checkpoint.pt (every epoch, and on Ctrl-C or SIGTERM), metrics.json and PNG
plots (calibration.png, entropy.png, curves.png).
"""

from __future__ import annotations

import argparse
from typing import Any

from samplegrad.cli.train import TrainCommand
from samplegrad.lab.training.bnn import BNNConfig, fit_bnn


def report(summary: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"test accuracy {summary['test_accuracy']:.4f}, NLL {summary['test_nll']:.4f}, "
        f"ECE {summary['test_ece']:.4f} (K={summary['eval_samples']}); "
        f"wrote {args.out}/metrics.json"
    )


HELP = "train a Bayesian neural network (Flipout, local reparameterization or naive) on MNIST"
COMMAND = TrainCommand("bnn", HELP, __doc__, BNNConfig, fit_bnn, report)
"""``samplegrad train bnn`` (:func:`samplegrad.lab.training.bnn.fit_bnn`); the module
docstring is its description."""
