"""Pieces shared by the VAEs: the loss record, the Bernoulli likelihood and importance weights.

Shapes: images ``x`` are ``(B, D)`` with values in ``{0, 1}`` (``(R, B, D)`` for a replicated
model, whose per-image quantities are then ``(R, B)``); latent samples carry leading sample
dimensions ``(S, B, ...)``; every per-image quantity is in nats.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.distributions import Distribution
from torch.nn import functional as F

import samplegrad as sg
from samplegrad.estimators import Estimator, log_mean_exp
from samplegrad.generators import draw


class LossOutput(NamedTuple):
    """What a VAE's ``loss`` returns.

    Attributes:
        loss: a scalar, the mean over the batch of the surrogate of the negative ELBO; call
            ``.backward()`` on it.
        elbo: the per-image ELBO estimate, shape ``(B,)``, detached, in nats: minus the
            surrogate's value (for a soft Gumbel-Softmax relaxation, minus the *relaxed*
            objective, which is not a bound; use the model's ``elbo`` for the discrete one).
    """

    loss: Tensor
    elbo: Tensor


def check_images(x: Tensor, data_dim: int) -> Tensor:
    """``x`` as a floating ``(B, data_dim)`` batch, or a ``ValueError`` saying what is wrong.

    A replicated model (:mod:`samplegrad.lab.models.replicated`) takes ``(R, B, data_dim)``, a
    batch per replica; a plain one treats that as ``R * B`` images.
    """
    if not isinstance(x, Tensor) or x.dim() not in (2, 3) or x.shape[-1] != data_dim:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(
            f"x must be a (batch, {data_dim}) tensor of binarized images, got {shape}; "
            "flatten 28x28 images with x.flatten(1)"
        )
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got {x.dtype}; use x.float()")
    return x


def bernoulli_log_likelihood(logits: Tensor, x: Tensor) -> Tensor:
    """``log p(x | z) = sum_d [x_d log sigmoid(l_d) + (1 - x_d) log sigmoid(-l_d)]``.

    ``logits`` ``(..., D)`` and ``x`` ``(B, D)`` broadcast; the result sums over pixels.
    """
    logits, x = torch.broadcast_tensors(logits, x)
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def iwae_from_log_weights(
    log_weight: Callable[[Tensor], Tensor],
    q: Distribution,
    k: int,
    chunk_size: int,
    generator: torch.Generator | None,
) -> Tensor:
    """``log (1/k) sum_k exp(log_weight(z_k))``, ``z_k ~ q``, drawing ``chunk_size`` at a time.

    Only the ``(k, B)`` log-weights are kept, so memory grows with ``chunk_size``, not ``k``.
    Call under ``torch.no_grad()``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1 (importance samples per image), got {k!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    chunks = []
    for start in range(0, k, chunk_size):
        size = min(chunk_size, k - start)
        z = draw(q, torch.Size((size,)), generator, reparameterized=False)
        chunks.append(log_weight(z))
    return log_mean_exp(torch.cat(chunks))


class VAE(nn.Module):
    """What every VAE shares: the importance-weighted bound from the model's proposal and
    log-weights (:meth:`importance_weights`)."""

    def importance_weights(self, x: Tensor) -> tuple[Distribution, Callable[[Tensor], Tensor]]:
        """``q(z | x)`` and ``log w(z) = log p(x, z) - log q(z | x)``, ``(S, B, ...) -> (S, B)``."""
        raise NotImplementedError

    def monte_carlo_loss(
        self,
        x: Tensor,
        estimator: str | Estimator,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        """The negative ELBO with the KL inside the cost, ``f(z) = log q(z | x) - log p(x, z)``,
        as ``sg.expectation(f, q, estimator, num_samples)``: any estimator that handles ``q``
        (``"stl"`` removes the score of ``q``'s parameters, Roeder et al. 2017)."""
        q, log_weight = self.importance_weights(x)
        surrogate = sg.expectation(lambda z: -log_weight(z), q, estimator, num_samples, generator)
        return LossOutput(surrogate.mean(), -surrogate.detach())

    def bound_loss(
        self,
        x: Tensor,
        estimator: str | Estimator = "pathwise",
        num_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        """The negative importance-weighted bound with ``K = num_samples`` as the training loss
        (Burda et al. 2016), its gradient by ``sg.iwae_bound``'s ``estimator``: ``"pathwise"``,
        ``"dreg"`` or ``"stl"`` for a reparameterizable latent, ``"vimco"`` for any. The
        loss output's ``elbo`` holds the per-image bound estimates."""
        q, log_weight = self.importance_weights(x)
        bound = sg.iwae_bound(log_weight, q, num_samples, estimator, generator)
        return LossOutput(-bound.mean(), bound.detach())

    def iwae_bound(
        self,
        x: Tensor,
        k: int = 100,
        chunk_size: int = 100,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``log (1/k) sum_k p(x, z_k) / q(z_k | x)``, ``z_k ~ q``, per image ``(B,)``, in nats.

        The importance-weighted bound of Burda et al. (2016): ``k = 1`` is an unbiased estimate
        of the ELBO, and the bound tightens towards ``log p(x)`` as ``k`` grows.
        """
        with torch.no_grad():
            q, log_weight = self.importance_weights(x)
            return iwae_from_log_weights(log_weight, q, k, chunk_size, generator)
