"""IWAE against the ELBO on the Gaussian VAE at equal steps; pathwise against DReG gradients.

Every run is ``samplegrad train vae --latent gaussian`` (784-400-20, Adam 1e-3, batch 128,
dynamic binarization, all 60 000 training images) with ``--seeds 3`` (three seeds in one
batched process) for the same number of optimiser steps:

- ``elbo``: the ELBO, one sample (the sampling layer, analytic KL);
- ``iwae-K-pathwise`` / ``iwae-K-dreg``: the importance-weighted bound with ``K`` = 5 and 50
  samples (Burda et al. 2016), trained with the pathwise (IWAE) or the doubly reparameterized
  (Tucker et al. 2019) gradient.

After training, each replica's test log-likelihood is estimated by the importance-weighted bound
with ``k = 5000`` (the IWAE paper's estimate) on the first ``--test-images`` test images
(dynamically binarized with a fixed generator, the same images for every run). Reported per
run: the last epoch's training bound, the test ELBO and the k = 5000 estimate (mean and
standard error over the seeds), and seconds per step. Writes ``iwae_quality.{json,md}`` into
``--out``. The published numbers (Burda et al. 2016, Table 1, one stochastic layer of 50 units
and two deterministic layers of 200, after 3280 passes: -86.76 nats for the VAE, -84.78 for
IWAE with k = 50) are beside ours for orientation only: another architecture and a far larger
budget. Usage::

    python benchmarks/iwae_quality.py [--data-dir DIR] [--steps 500] [--test-images 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from samplegrad.lab.data import load_mnist
from samplegrad.lab.models.replicated import replica
from samplegrad.lab.training.vae import TrainConfig, fit, load_model

from _machine import cpu_model, machine, source_revision

RUNS = {
    "elbo": ("elbo", "pathwise", 1),
    "iwae-5-pathwise": ("iwae", "pathwise", 5),
    "iwae-5-dreg": ("iwae", "dreg", 5),
    "iwae-50-pathwise": ("iwae", "pathwise", 50),
    "iwae-50-dreg": ("iwae", "dreg", 50),
}
"""Per run: the objective, the estimator and the samples per image (the bound's K)."""

PUBLISHED = {"elbo": -86.76, "iwae-50-pathwise": -84.78}
"""Burda et al. (2016), Table 1, MNIST, one stochastic layer: test log-likelihood in nats."""

SEEDS = 3
LOG_LIKELIHOOD_K = 5000


def mean_and_se(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) / len(values) ** 0.5


def test_log_likelihood(checkpoint: Path, x: torch.Tensor) -> list[float]:
    """Per replica, the mean over ``x`` of the k = 5000 importance-weighted bound."""
    model, _ = load_model(checkpoint)
    estimates = []
    for index in range(SEEDS):
        generator = torch.Generator().manual_seed(index)
        chunk = max(1, 50_000 // len(x))  # decoder rows per chunk, to bound memory
        bound = replica(model, index).iwae_bound(x, LOG_LIKELIHOOD_K, chunk, generator)
        estimates.append(float(bound.double().mean()))
    return estimates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="the MNIST folder (default: $SAMPLEGRAD_DATA, ...)")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--test-images", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", default=",".join(RUNS), help="comma-separated run names")
    parser.add_argument("--work", type=Path, default=Path("iwae-quality-runs"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    test = load_mnist(args.data_dir, split="test")
    generator = torch.Generator().manual_seed(12345)
    x = next(iter(test.batches(args.test_images, shuffle=False, generator=generator)))[0]
    results = {}
    for name in args.runs.split(","):
        objective, estimator, k = RUNS[name]
        config = TrainConfig(
            latent="gaussian",
            objective=objective,
            estimator=estimator,
            num_samples=k,
            steps=args.steps,
            seeds=SEEDS,
            validation_size=0,
            iwae_k=1,  # the test bound is the k = 5000 estimate below
            data_dir=args.data_dir,
            out=str(args.work / name),
            progress=False,
        )
        start = time.perf_counter()
        summary = fit(config)
        train_seconds = sum(summary["epoch_seconds"])
        likelihood = test_log_likelihood(args.work / name / "checkpoint.pt", x)
        results[name] = {
            "objective": objective,
            "estimator": estimator,
            "k": k,
            "train_bound": summary["train_elbo"],
            "test_elbo": summary["test_elbo"],
            "test_log_likelihood": likelihood,
            "seconds_per_step": train_seconds / args.steps,
            "seconds": time.perf_counter() - start,
        }
        print(name, mean_and_se(likelihood), flush=True)
    command = (
        f"python benchmarks/iwae_quality.py --steps {args.steps} --test-images "
        f"{args.test_images} --threads {args.threads}"
    )
    report = {
        "command": command,
        "steps": args.steps,
        "seeds": SEEDS,
        "test_images": args.test_images,
        "log_likelihood_k": LOG_LIKELIHOOD_K,
        "runs": results,
        "published": PUBLISHED,
        "machine": machine(args.threads),
        "torch": torch.__version__,
        "source": source_revision(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "iwae_quality.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# IWAE against the ELBO on the Gaussian VAE, pathwise against DReG",
        "",
        f"`{command}` (commit {report['source']}, {cpu_model()}, torch {torch.__version__}). "
        f"{args.steps} steps of batch 128 for every run (about {args.steps * 128 / 60000:.1f} "
        f"passes over the data), {SEEDS} seeds in one process; mean and standard error over "
        f"the seeds, nats per image. Test log-likelihood: the k = {LOG_LIKELIHOOD_K} bound on "
        f"the first {args.test_images} test images. Published (Burda et al. 2016, Table 1; "
        "another architecture, 3280 passes): VAE -86.76, IWAE k = 50 -84.78.",
        "",
        "| run | training bound | test ELBO | test log-likelihood (k = 5000) | published | "
        "s / step |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, run in results.items():
        cells = [
            "{:.2f} ± {:.2f}".format(*mean_and_se(run[key]))
            for key in ("train_bound", "test_elbo", "test_log_likelihood")
        ]
        published = f"{PUBLISHED[name]:.2f}" if name in PUBLISHED else "—"
        lines.append(
            f"| {name} | {' | '.join(cells)} | {published} | {run['seconds_per_step']:.3f} |"
        )
    (args.out / "iwae_quality.md").write_text("\n".join([*lines, ""]))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
