"""Figures of a trained Bayesian classifier, written as PNG files (no display, no pyplot).

Built with :class:`matplotlib.figure.Figure` and saved through the Agg renderer, as
:mod:`samplegrad.lab.plots.vae` does:

- :func:`plot_calibration`: the reliability diagram (accuracy against confidence in 15 bins,
  with the ECE);
- :func:`plot_entropy`: histograms of the predictive entropy of test images and of noise
  images (out of distribution);
- :func:`plot_training_curves`: training NLL and validation accuracy per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from samplegrad.lab.plots._figure import new_figure
from samplegrad.lab.training.calibration import ECE_BINS, predictive_entropy, reliability

__all__ = ["plot_bnn_run", "plot_calibration", "plot_entropy", "plot_training_curves"]


def plot_calibration(probs: Tensor, labels: Tensor, path: Path, bins: int = ECE_BINS) -> Path:
    """Reliability diagram: per confidence bin, the accuracy (bars) against the diagonal of
    perfect calibration; the gap to the bin's mean confidence is shaded."""
    table = reliability(probs, labels, bins)
    edges = table.edges.numpy()
    width = edges[1] - edges[0]
    filled = table.counts.numpy() > 0
    figure = new_figure(4.5, 4.5)
    axes = figure.subplots()
    axes.bar(
        edges[:-1][filled],
        table.accuracy.numpy()[filled],
        width=width,
        align="edge",
        edgecolor="black",
        label="accuracy",
    )
    axes.bar(
        edges[:-1][filled],
        (table.confidence - table.accuracy).numpy()[filled],
        bottom=table.accuracy.numpy()[filled],
        width=width,
        align="edge",
        color="tab:red",
        alpha=0.3,
        label="gap to confidence",
    )
    axes.plot([0, 1], [0, 1], color="gray", linestyle="--", label="calibrated")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("confidence (largest predictive probability)")
    axes.set_ylabel("accuracy")
    axes.set_title(f"reliability, ECE = {table.ece():.4f} ({bins} bins)", fontsize=10)
    axes.legend(loc="upper left")
    figure.savefig(path, dpi=100)
    return path


def plot_entropy(probs: Tensor, noise_probs: Tensor, path: Path) -> Path:
    """Histograms of the predictive entropy (nats) of MNIST test images and noise images."""
    figure = new_figure(5, 3.5)
    axes = figure.subplots()
    edges = np.linspace(0.0, math.log(probs.shape[-1]), 41)
    for values, label in ((probs, "MNIST test"), (noise_probs, "uniform noise")):
        entropy = predictive_entropy(values).double().numpy()
        axes.hist(entropy, bins=edges, alpha=0.6, label=f"{label} (mean {entropy.mean():.3f})")
    axes.set_yscale("log")
    axes.set_xlabel("predictive entropy (nats)")
    axes.set_ylabel("images")
    axes.legend()
    figure.savefig(path, dpi=100)
    return path


def plot_training_curves(history: Sequence[dict[str, Any]], path: Path) -> Path:
    """Training NLL (left) and, where there is one, validation accuracy (right) per epoch."""
    figure = new_figure(8, 3.2)
    left, right = figure.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    left.plot(epochs, [row["train_nll"] for row in history], marker="o", label="train")
    valid = [(row["epoch"], row["valid_nll"]) for row in history if row["valid_nll"] is not None]
    if valid:
        left.plot(*zip(*valid, strict=True), marker="s", label="validation")
    left.set_xlabel("epoch")
    left.set_ylabel("NLL (nats per image)")
    left.legend()
    accuracy = [
        (row["epoch"], row["valid_accuracy"])
        for row in history
        if row["valid_accuracy"] is not None
    ]
    if accuracy:
        right.plot(*zip(*accuracy, strict=True), marker="s", color="tab:orange")
    right.set_xlabel("epoch")
    right.set_ylabel("validation accuracy")
    for axes in (left, right):
        axes.grid(alpha=0.3)
    figure.savefig(path, dpi=100)
    return path


def plot_bnn_run(
    probs: Tensor,
    labels: Tensor,
    noise_probs: Tensor,
    history: Sequence[dict[str, Any]],
    out: Path,
) -> list[Path]:
    """The plots of a run: ``calibration.png``, ``entropy.png``, ``curves.png`` in ``out``."""
    return [
        plot_calibration(probs, labels, out / "calibration.png"),
        plot_entropy(probs, noise_probs, out / "entropy.png"),
        plot_training_curves(history, out / "curves.png"),
    ]
