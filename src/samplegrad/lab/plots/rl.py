"""Figures of a policy-gradient run, as PNG files (matplotlib ``Figure`` + Agg, no pyplot).

- :func:`plot_training_curve`: the mean training return per optimiser step and the
  validation scores, against environment steps;
- :func:`plot_confusion`: the bandit's greedy guesses against the true digits;
- :func:`plot_eval_returns`: CartPole's evaluation episodes' returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from samplegrad.lab.plots._figure import new_figure


def plot_training_curve(history: Sequence[dict[str, Any]], ylabel: str, path: Path) -> Path:
    """Training return per step (faint), its running mean over 5% of the steps, and the
    validation score at each evaluation, against environment steps."""
    figure = new_figure(5.5, 3.5)
    axes = figure.subplots()
    x = np.array([row["env_steps"] for row in history], dtype=float)
    y = np.array([row["train_return"] for row in history], dtype=float)
    axes.plot(x, y, alpha=0.3, color="C0", linewidth=0.8)
    width = max(1, len(y) // 20)
    smooth = np.convolve(y, np.ones(width) / width, mode="valid")
    axes.plot(x[width - 1 :], smooth, color="C0", label=f"training (mean of {width} steps)")
    valid = [(row["env_steps"], row["valid_return"]) for row in history]
    valid = [(a, b) for a, b in valid if b is not None]
    if valid:
        axes.plot(*zip(*valid, strict=True), marker="o", color="C1", label="validation (greedy)")
    axes.set_xlabel("environment steps")
    axes.set_ylabel(ylabel)
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    figure.savefig(path, dpi=100)
    return path


def plot_confusion(confusion: np.ndarray, path: Path) -> Path:
    """Row-normalised confusion matrix (true digit by row); each row's accuracy on its tick."""
    totals = confusion.sum(1, keepdims=True).clip(min=1)
    rates = confusion / totals
    figure = new_figure(5.5, 4.5)
    axes = figure.subplots()
    image = axes.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, label="fraction of the digit's images")
    digits = range(len(confusion))
    axes.set_xticks(digits)
    axes.set_yticks(digits, [f"{d} ({rates[d, d]:.0%})" for d in digits], fontsize=8)
    axes.set_xlabel("greedy guess")
    axes.set_ylabel("true digit (accuracy)")
    axes.set_title(f"test accuracy {np.trace(confusion) / confusion.sum():.2%}", fontsize=9)
    figure.savefig(path, dpi=100)
    return path


def plot_eval_returns(returns: np.ndarray, path: Path) -> Path:
    """The return of each greedy evaluation episode, with their mean."""
    figure = new_figure(5.5, 3.5)
    axes = figure.subplots()
    axes.bar(range(len(returns)), returns, color="C0")
    axes.axhline(returns.mean(), color="C1", label=f"mean {returns.mean():.1f}")
    axes.set_xlabel("evaluation episode")
    axes.set_ylabel("return")
    axes.legend(fontsize=8)
    figure.savefig(path, dpi=100)
    return path
