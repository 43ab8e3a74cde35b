"""Figures of a trained VAE, written as PNG files: no display, no global pyplot state.

Figures are built with :class:`matplotlib.figure.Figure` directly (saved through the Agg
renderer), so plotting works on a headless machine and leaves ``matplotlib.pyplot`` and its
backend alone.

- :func:`plot_reconstructions`: test images above their reconstructions;
- :func:`plot_prior_samples`: decoded draws from the prior ``p(z)``;
- :func:`plot_elbo_curves`: training and validation ELBO against the optimiser step (over
  seeds: mean, band);
- :func:`plot_latent_map`: the posterior means of test images coloured by digit, for a
  two-dimensional Gaussian latent.

Pixels are shown as the decoder's Bernoulli means ``sigmoid(logits)``, not as samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from samplegrad.generators import draw
from samplegrad.lab.data import MNIST
from samplegrad.lab.models import GaussianVAE
from samplegrad.lab.plots._figure import new_figure

__all__ = [
    "image_grid",
    "plot_elbo_curves",
    "plot_latent_map",
    "plot_prior_samples",
    "plot_reconstructions",
    "plot_run",
]


def image_grid(images: Tensor, columns: int) -> np.ndarray:
    """``(N, side * side)`` square images in ``[0, 1]`` (28 x 28 for MNIST, 8 x 8 for the
    digits fallback) tiled into one array, ``columns`` per row, row-major."""
    n, pixels = images.shape
    side = math.isqrt(pixels)
    if side * side != pixels:
        raise ValueError(f"images must be square, got {pixels} pixels per image")
    rows = -(-n // columns)
    tiles = np.zeros((rows * columns, side, side), dtype=np.float32)
    tiles[:n] = images.detach().float().cpu().reshape(n, side, side).numpy()
    tiles = tiles.reshape(rows, columns, side, side).transpose(0, 2, 1, 3)
    return tiles.reshape(rows * side, columns * side)


def _show_grid(grid: np.ndarray, title: str, path: Path) -> Path:
    height, width = grid.shape
    scale = 40 * width / (28 * 8)  # the same figure size for any image size, 8 per row
    figure = new_figure(width / scale + 0.4, height / scale + 0.6)
    axes = figure.subplots()
    axes.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    axes.set_title(title, fontsize=9)
    axes.set_axis_off()
    figure.savefig(path, dpi=100)
    return path


@torch.no_grad()
def _reconstruct(model: nn.Module, x: Tensor, generator: torch.Generator) -> Tensor:
    """Pixel means decoded from the posterior mean (Gaussian) or one posterior sample."""
    if isinstance(model, GaussianVAE):
        z = model.encode(x)[0]
    else:
        z = draw(model.posterior(x), torch.Size(), generator, reparameterized=False)
    return model.decode(z).sigmoid()


@torch.no_grad()
def plot_reconstructions(
    model: nn.Module, x: Tensor, path: Path, generator: torch.Generator, columns: int = 8
) -> Path:
    """Each row of ``columns`` images of ``x`` followed by a row of their reconstructions."""
    columns = min(columns, len(x))
    x = x[: len(x) // columns * columns]
    recon = _reconstruct(model, x, generator)
    pixels = x.shape[-1]
    rows = [x.reshape(-1, columns, pixels), recon.reshape(-1, columns, pixels)]
    pairs = torch.stack(rows, 1).reshape(-1, pixels)  # image rows and reconstruction rows
    grid = image_grid(pairs, columns)
    return _show_grid(grid, "test images (odd rows) and reconstructions (even rows)", path)


@torch.no_grad()
def plot_prior_samples(
    model: nn.Module, path: Path, generator: torch.Generator, n: int = 64, columns: int = 8
) -> Path:
    """``n`` decoded draws ``z ~ p(z)``, shown as pixel means."""
    if isinstance(model, GaussianVAE):
        device = next(model.parameters()).device
        z = torch.randn((n, model.latent_dim), generator=generator, device=device)
    else:
        z = draw(model.prior(), torch.Size((n,)), generator, reparameterized=False)
    images = model.decode(z).sigmoid()
    return _show_grid(image_grid(images, columns), "samples from the prior (pixel means)", path)


_LABELLED_POINTS = 12
"""Up to this many points of an ELBO curve against steps carry their epoch as a label."""


def plot_elbo_curves(history: Sequence[dict[str, Any]], path: Path) -> Path:
    """Training and (where there is one) validation ELBO in nats per image.

    The x axis is the optimiser step when every row has a ``"step"`` (the trainers' rows, one
    per epoch, or rows recorded as often as a caller likes), else the ``"epoch"`` (which may be
    fractional). A row's ``train_elbo`` and ``valid_elbo`` (optional) are numbers, or lists with
    one value per seed (``samplegrad train vae --seeds N``): then the curve is their mean, with
    a band from the lowest to the highest seed. Against steps, up to
    :data:`_LABELLED_POINTS` points are labelled with their epoch; a history of one row (a
    ``--steps`` run that ended inside its first epoch) is drawn as one labelled point, and the
    title says that a curve needs more rows.
    """
    by_step = bool(history) and all("step" in row for row in history)
    key = "step" if by_step else "epoch"
    figure = new_figure(5, 3.5)
    axes = figure.subplots()
    train = [(row[key], row["train_elbo"]) for row in history]
    _curve(axes, train, "train", "o")
    valid = [(row[key], row["valid_elbo"]) for row in history if row.get("valid_elbo") is not None]
    _curve(axes, valid, "validation", "s")
    if by_step and len(history) <= _LABELLED_POINTS:
        for row, (x, value) in zip(history, train, strict=True):
            y = float(np.mean(value))
            axes.annotate(
                f"epoch {row['epoch']:g}",
                (x, y),
                textcoords="offset points",
                xytext=(4, 5),
                fontsize=7,
                color="0.35",
            )
    if len(history) == 1:
        axes.set_title(
            f"one row so far (step {history[0][key]:,}): a curve needs two or more",
            fontsize=8,
        )
    if by_step:
        from matplotlib.ticker import MaxNLocator

        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlim(0, max(row["step"] for row in history) * 1.08)  # training starts at 0
    axes.set_xlabel("optimiser step" if by_step else "epoch")
    axes.set_ylabel("ELBO (nats per image)")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.savefig(path, dpi=100)
    return path


def _curve(axes: Any, points: list[tuple[float, Any]], label: str, marker: str) -> None:
    """One ELBO curve: per point a number, or per seed a value (mean and min-max band)."""
    if not points:
        return
    xs = [x for x, _ in points]
    values = np.array([np.atleast_1d(value) for _, value in points], dtype=float)
    seeds = values.shape[1]
    if seeds > 1:
        label = f"{label} (mean, min-max of {seeds} seeds)"
    line = axes.plot(xs, values.mean(1), marker=marker, label=label)[0]
    if seeds > 1:
        axes.fill_between(xs, values.min(1), values.max(1), alpha=0.25, color=line.get_color())


@torch.no_grad()
def plot_latent_map(model: GaussianVAE, x: Tensor, labels: Tensor, path: Path) -> Path:
    """The posterior means of ``x`` in a two-dimensional latent space, coloured by label."""
    if model.latent_dim != 2:
        raise ValueError(f"a latent map needs a 2-D latent, the model has {model.latent_dim}")
    mean = model.encode(x)[0].cpu().numpy()
    figure = new_figure(5.5, 4.5)
    axes = figure.subplots()
    points = axes.scatter(mean[:, 0], mean[:, 1], c=labels.cpu().numpy(), cmap="tab10", s=4)
    points.set_clim(-0.5, 9.5)
    figure.colorbar(points, ax=axes, ticks=range(10), label="digit")
    axes.set_xlabel("z[0]")
    axes.set_ylabel("z[1]")
    axes.set_title("posterior means of test images", fontsize=9)
    figure.savefig(path, dpi=100)
    return path


def plot_run(
    model: nn.Module,
    test: MNIST,
    history: Sequence[dict[str, Any]],
    out: Path,
    generator: torch.Generator,
) -> list[Path]:
    """Every figure of a training run into ``out``; returns the files written.

    ``reconstructions.png``, ``prior_samples.png``, ``elbo.png`` and, for a two-dimensional
    Gaussian latent, ``latent_map.png`` (up to 5000 test images).
    """
    x, _ = next(test.batches(32, shuffle=False, generator=generator))
    paths = [
        plot_reconstructions(model, x, out / "reconstructions.png", generator),
        plot_prior_samples(model, out / "prior_samples.png", generator),
        plot_elbo_curves(history, out / "elbo.png"),
    ]
    if isinstance(model, GaussianVAE) and model.latent_dim == 2:
        images, labels = test.binarize(test.images[:5000], generator), test.labels[:5000]
        paths.append(plot_latent_map(model, images, labels, out / "latent_map.png"))
    return paths
