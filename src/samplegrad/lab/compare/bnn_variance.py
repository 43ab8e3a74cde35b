"""The variance of a Bayesian MLP's gradient with respect to its posterior means.

Wen et al. (2018, Flipout, Sec. 4.1 and Fig. 1) make the point this module measures: with one
weight sample shared by the mini-batch (naive), the gradient's variance due to the weight
noise does not fall with the batch size, because every example's gradient moves with the same
``eps``; Flipout's pseudo-independent perturbations (and the local reparameterization trick's
independent pre-activations) make it fall roughly as ``1 / batch``.

:func:`gradient_variance` fixes a batch ``(x, y)`` and the posterior, draws ``repeats``
independent noise draws for every layer at once (a leading repeat dimension,
:meth:`samplegrad.nn.BayesianLayer.sample_noise`), computes one gradient of the batch's mean
cross-entropy per draw with ``torch.func.vmap(torch.func.grad(...))``, and returns the
unbiased variance over the draws, averaged over every weight and bias mean. It is the part of
the stochastic gradient's variance that the sampling scheme controls (the data are fixed).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from samplegrad.nn.bayesian import BayesianLayer, Noise

__all__ = ["gradient_variance"]

_MEANS = ("weight_mu", "bias_mu")


def _mlp_loss(
    layers: Sequence[BayesianLayer],
    means: list[dict[str, Tensor]],
    noises: list[Noise],
    x: Tensor,
    y: Tensor,
) -> Tensor:
    h = x
    for index, (layer, mean, noise) in enumerate(zip(layers, means, noises, strict=True)):
        h = functional_call(layer, mean, (h,), {"noise": noise})
        if index < len(layers) - 1:
            h = F.relu(h)
    return F.cross_entropy(h, y)


def gradient_variance(
    layers: Sequence[BayesianLayer],
    x: Tensor,
    y: Tensor,
    repeats: int,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
) -> float:
    """The mean over the posterior means of the variance of the gradient, given the batch.

    Args:
        layers: Bayesian linear layers forming an MLP with ReLUs between them (logits out).
        x: the batch's inputs ``(B, in_features)``; y: its labels ``(B,)``.
        repeats: independent noise draws ``R >= 2``, all drawn in one call per layer.
        generator: draws the noise.
        chunk_size: draws per vectorised chunk (``None``: all at once), to bound memory.

    Returns:
        ``mean_j Var_eps[d loss / d mu_j]``, the unbiased variance over the ``R`` gradients.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 2:
        raise ValueError(f"repeats must be an int >= 2 (a variance needs two draws), got {repeats}")
    means = [
        {name: getattr(layer, name) for name in _MEANS if getattr(layer, name) is not None}
        for layer in layers
    ]
    noises, h = [], x
    for layer in layers:
        noises.append(layer.sample_noise(h, (repeats,), generator))
        h = torch.empty(*h.shape[:-1], layer.out_features, device="meta")
    means = [{name: value.detach() for name, value in mean.items()} for mean in means]

    def gradient(noise: list[Noise]) -> list[dict[str, Tensor]]:
        return grad(lambda m: _mlp_loss(layers, m, noise, x, y))(means)

    gradients = vmap(gradient, chunk_size=chunk_size)(noises)
    variances = [g.var(dim=0).flatten() for per_layer in gradients for g in per_layer.values()]
    return float(torch.cat(variances).mean().detach())
