"""Gradient variance against the batch size: naive weight sampling, Flipout, local reparam.

Reproduces the point of Wen et al. (2018, Fig. 1): with one weight sample shared by the
mini-batch, the variance of the gradient with respect to the posterior means does not fall
with the batch size; with Flipout (and the local reparameterization trick) it falls roughly as
``1 / batch``.

Setup: a Bayesian MLP 784-``hidden``-10 (ReLU) on MNIST grey levels, the posterior means at
``nn.Linear``'s default initialisation (seed 0) and every posterior standard deviation
``sigma``; the same posterior for the three layer kinds. For each batch size ``B`` the first
``B`` training images form the batch, and
:func:`samplegrad.lab.compare.bnn_variance.gradient_variance`
draws ``R`` noise draws at once and returns the variance of the mean cross-entropy's gradient
over them, averaged over all weight and bias means (the data fixed: the part of the variance
the sampling scheme controls). Writes ``bnn_variance.{json,png,md}`` into ``--out`` (default
``benchmarks/results``) and, with ``--image``, a copy of the plot. Usage::

    python benchmarks/bnn_variance.py [--data-dir DIR] [--repeats 200] [--sigma 0.05]
        [--image docs/images/bnn_variance.png]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import torch
from matplotlib.figure import Figure

from samplegrad.lab.compare.bnn_variance import gradient_variance
from samplegrad.lab.data import load_mnist
from samplegrad.nn import BayesLinear, FlipoutLinear, LocalReparamLinear

from _machine import cpu_model, source_revision

KINDS = {"naive": BayesLinear, "flipout": FlipoutLinear, "local-reparam": LocalReparamLinear}
BATCHES = (4, 16, 64, 256, 1024)


def layers(cls: type, hidden: int, sigma: float) -> list:
    """The MLP's two layers, with the same means (seed 0) whatever the class."""
    torch.manual_seed(0)
    return [cls(784, hidden, init_scale=sigma), cls(hidden, 10, init_scale=sigma)]


def plot(result: dict, path: Path) -> None:
    figure = Figure(figsize=(5.5, 4), layout="constrained")
    axes = figure.subplots()
    batches = result["batch_sizes"]
    for kind, marker in zip(KINDS, "osD", strict=True):
        axes.loglog(batches, result["variance"][kind], marker=marker, label=kind)
    first = result["variance"]["flipout"][0]
    axes.loglog(
        batches,
        [first * batches[0] / b for b in batches],
        color="gray",
        linestyle=":",
        label="1 / batch",
    )
    axes.set_xlabel("batch size")
    axes.set_ylabel("variance of d loss / d posterior means")
    axes.set_title(
        f"784-{result['hidden']}-10 MLP on MNIST, sigma = {result['sigma']:g}, "
        f"R = {result['repeats']}",
        fontsize=9,
    )
    axes.legend()
    axes.grid(alpha=0.3, which="both")
    figure.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--sigma", type=float, default=0.05)
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--image", type=Path, default=None, help="also copy the plot here")
    args = parser.parse_args(argv)
    train = load_mnist(args.data_dir, split="train", binarize="none")
    x, y = train.images[: max(BATCHES)], train.labels[: max(BATCHES)]
    start = time.perf_counter()
    variance = {}
    for kind, cls in KINDS.items():
        mlp = layers(cls, args.hidden, args.sigma)
        generator = torch.Generator().manual_seed(args.seed)
        variance[kind] = [
            gradient_variance(mlp, x[:b], y[:b], args.repeats, generator, chunk_size=50)
            for b in BATCHES
        ]
        print(kind, variance[kind], flush=True)
    result = {
        "batch_sizes": list(BATCHES),
        "variance": variance,
        "ratio_largest_to_smallest": {
            kind: values[-1] / values[0] for kind, values in variance.items()
        },
        "repeats": args.repeats,
        "sigma": args.sigma,
        "hidden": args.hidden,
        "seed": args.seed,
        "seconds": time.perf_counter() - start,
        "machine": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "cpu": cpu_model(),
            "source": source_revision(),
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bnn_variance.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "bnn_variance.png")
    if args.image is not None:
        args.image.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.out / "bnn_variance.png", args.image)
    ideal = BATCHES[0] / BATCHES[-1]
    lines = [
        "# Gradient variance against the batch size (Wen et al. 2018, Fig. 1)",
        "",
        f"Variance over R = {args.repeats} weight-noise draws of the gradient of the batch's "
        f"mean cross-entropy with respect to the posterior means, averaged over all means; "
        f"784-{args.hidden}-10 MLP, means at the default initialisation, sigma = "
        f"{args.sigma:g}, the first B MNIST training images. torch {torch.__version__}, "
        f"{result['machine']['cpu']}, source {result['machine']['source']}. Command: "
        f"`python benchmarks/bnn_variance.py --repeats {args.repeats} --sigma {args.sigma:g}`.",
        "",
        "| layer | " + " | ".join(f"B = {b}" for b in BATCHES) + f" | ratio (1/B: {ideal:.4f}) |",
        "|---|" + "---:|" * (len(BATCHES) + 1),
    ]
    for kind, values in variance.items():
        cells = " | ".join(f"{v:.3e}" for v in values)
        lines.append(f"| {kind} | {cells} | {values[-1] / values[0]:.4f} |")
    (args.out / "bnn_variance.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
