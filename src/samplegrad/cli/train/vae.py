"""Train a VAE on binarized MNIST with Adam. Writes into DIR: metrics.csv (one row per epoch:
epoch, step, train_elbo, valid_elbo, seconds), checkpoint.pt (every epoch, and on Ctrl-C or
SIGTERM, which stop training after the current step), metrics.json (test ELBO and IWAE bound in
nats per image, the settings, the torch version) and PNG plots. The same --seed gives the same
run on the CPU, also when it is interrupted and resumed with --resume. Under `torchrun
--nproc-per-node N -m samplegrad train vae ...` the N processes train one model with
DistributedDataParallel: --batch-size is the global batch (a multiple of N), each process
trains on its share, and rank 0 evaluates and writes the files.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from samplegrad.cli.train import TrainCommand
from samplegrad.lab.models import applicable_estimators
from samplegrad.lab.training import distributed
from samplegrad.lab.training.seeds import replicable
from samplegrad.lab.training.vae import ARCHS, TrainConfig, fewest_samples, fit


def _options() -> dict[str, dict[str, Any]]:
    """``--estimator``'s names per latent, ``--num-samples``' defaults and ``--seeds``' refused
    names, from the catalog (through :func:`~samplegrad.lab.models.applicable_estimators`)."""
    per_latent, stateful, more = [], [], {}
    with torch.random.fork_rng(devices=[]):  # the models are built only to be asked
        for latent, archs in ARCHS.items():
            names = applicable_estimators(next(iter(archs.values()))())
            if names:
                per_latent.append(f"{latent}: {', '.join(names)}")
            stateful += [name for name in names if name != "auto" and not replicable(name)]
            more |= {name: fewest_samples("elbo", name) for name in names}
    more["vimco"] = fewest_samples("iwae", "vimco")
    fields = TrainConfig.__dataclass_fields__
    estimator, seeds = fields["estimator"].metadata["help"], fields["seeds"].metadata["help"]
    refused = ", ".join(dict.fromkeys(stateful))
    by_count: dict[int, list[str]] = {}
    for name, count in more.items():
        by_count.setdefault(count, []).append(name)
    fewest = "; ".join(f"{n} for {', '.join(names)}" for n, names in by_count.items() if n > 1)
    return {
        "estimator": {"help": f"{estimator}. By latent: {'; '.join(per_latent)}"},
        "num_samples": {"help": f"{fields['num_samples'].metadata['help']}: 1, or {fewest}"},
        "seeds": {"help": f"{seeds}: {refused}"},
    }


def report(summary: dict[str, Any], args: argparse.Namespace) -> None:
    if distributed.is_main():  # under torchrun, every process returns the same summary
        print(
            f"test ELBO {_nats(summary['test_elbo'])}, IWAE (k={summary['iwae_k']}) "
            f"{_nats(summary['test_iwae'])} nats per image; wrote {args.out}/metrics.json"
        )


def _nats(value: float | list[float]) -> str:
    """A number of nats, or one per seed (``--seeds``) with their mean."""
    if isinstance(value, float):
        return f"{value:.2f}"
    listed = ", ".join(f"{v:.2f}" for v in value)
    return f"{sum(value) / len(value):.2f} (mean of {len(value)} seeds: {listed})"


HELP = "train a variational autoencoder with a Gaussian, Bernoulli or categorical latent"
COMMAND = TrainCommand("vae", HELP, __doc__, TrainConfig, fit, report, _options())
"""``samplegrad train vae`` (:func:`samplegrad.lab.training.vae.fit`); the module docstring is
its description."""
