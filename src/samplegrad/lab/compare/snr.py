"""Gradient signal-to-noise ratio of the importance-weighted bound against ``K``.

Rainforth et al. (2018, "Tighter variational bounds are not necessarily better", ICML) showed
that as the number of importance samples ``K`` grows, the pathwise (IWAE) gradient's
signal-to-noise ratio ``SNR = |E g| / sd(g)`` *falls* like ``1/sqrt(K)`` for the inference
network's parameters while it rises like ``sqrt(K)`` for the generative model's; DReG (Tucker
et al. 2019) makes the inference network's rise too. This module measures it on their Gaussian
model, where every quantity is cheap and the repeats are one batched call:

- generative model ``p(z) = N(mu, I_D)``, ``p(x | z) = N(x; z, I_D)``, so
  ``p(z | x) = N((x + mu) / 2, I / 2)``; one data point ``x ~ p(x) = N(mu*, 2 I)``;
- inference network ``q(z | x) = N(A x + b, (2/3) I_D)``, with ``A`` and ``b`` the optimum
  ``A* = I / 2``, ``b* = mu / 2`` perturbed by ``N(0, perturbation^2)`` noise, and ``mu`` the
  true ``mu*`` perturbed likewise (the paper's setup: near, not at, the optimum).

Every parameter is repeated ``R`` times (one leaf of shape ``(R, ...)``), so one
``sg.iwae_bound(...).sum().backward()`` gives ``R`` independent gradient estimates ``g_r`` of a
parameter group's gradient vector. Its SNR is ``|E g| / sqrt(tr Cov g)`` (the norm of the mean
over the root of the total variance), with ``|E g|^2`` estimated without bias as
``|mean_r g_r|^2 - tr Cov / R``: the plain ``|mean|`` has a floor of about ``sqrt(tr Cov / R)``
that would hide an SNR falling towards zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal

import samplegrad as sg

ENCODER, DECODER = "encoder", "decoder"
"""The parameter groups: the inference network's ``(A, b)`` and the model's ``mu``."""


@dataclass(frozen=True)
class GaussianModel:
    """The model and the perturbed parameters (module docstring), drawn from ``seed``."""

    dim: int = 20
    perturbation: float = 0.01
    seed: int = 0

    def parameters(self) -> dict[str, Tensor]:
        """``x`` and the perturbed ``mu``, ``A``, ``b`` (float64)."""
        generator = torch.Generator().manual_seed(self.seed)

        def normal(*shape: int) -> Tensor:
            return torch.randn(shape, generator=generator, dtype=torch.float64)

        mu_true = normal(self.dim)
        x = mu_true + math.sqrt(2.0) * normal(self.dim)
        noise = self.perturbation
        return {
            "x": x,
            "mu": mu_true + noise * normal(self.dim),
            "A": 0.5 * torch.eye(self.dim, dtype=torch.float64)
            + noise * normal(self.dim, self.dim),
            "b": 0.5 * mu_true + noise * normal(self.dim),
        }

    def gradients(
        self, estimator: str, num_samples: int, repeats: int, generator: torch.Generator
    ) -> dict[str, Tensor]:
        """``repeats`` gradient estimates of the bound per group, ``(repeats, elements)``."""
        values = self.parameters()
        x = values["x"]
        leaves = {
            name: values[name].expand(repeats, *values[name].shape).clone().requires_grad_(True)
            for name in ("mu", "A", "b")
        }
        mu, weights, bias = leaves["mu"], leaves["A"], leaves["b"]
        q = Independent(Normal(weights @ x + bias, math.sqrt(2.0 / 3.0)), 1)

        def log_weight(z: Tensor) -> Tensor:
            log_prior = Normal(mu, 1.0).log_prob(z).sum(-1)
            log_likelihood = Normal(z, 1.0).log_prob(x).sum(-1)
            return log_prior + log_likelihood - q.log_prob(z)

        bound = sg.iwae_bound(log_weight, q, num_samples, estimator, generator)
        bound.sum().backward()
        return {
            ENCODER: torch.cat([weights.grad.flatten(1), bias.grad], 1),
            DECODER: mu.grad,
        }


def signal_to_noise(gradients: Tensor) -> float:
    """``|E g| / sqrt(tr Cov g)`` from the rows of ``gradients`` (the repeats), with the
    squared norm of the mean debiased (module docstring); 0 where the debiased norm is <= 0."""
    repeats = gradients.shape[0]
    total_variance = gradients.var(0).sum()
    signal = (gradients.mean(0).pow(2).sum() - total_variance / repeats).clamp_min(0)
    return float((signal / total_variance).sqrt())


def log_log_slope(ks: Sequence[int], values: Sequence[float]) -> float:
    """The least-squares slope of ``log value`` against ``log K``."""
    slope, _ = np.polyfit(np.log(np.asarray(ks, float)), np.log(np.asarray(values, float)), 1)
    return float(slope)


@dataclass(frozen=True)
class Curve:
    """SNR against ``K`` for one estimator and parameter group, with its log-log slope."""

    estimator: str
    group: str
    ks: list[int]
    snr: list[float]

    @property
    def slope(self) -> float:
        return log_log_slope(self.ks, self.snr)


def snr_curves(
    gradients: Callable[[str, int], dict[str, Tensor]],
    estimators: Sequence[str],
    ks: Sequence[int],
) -> list[Curve]:
    """One :class:`Curve` per estimator and group, from ``gradients(estimator, K)``."""
    snr: dict[tuple[str, str], list[float]] = {}
    for estimator in estimators:
        for k in ks:
            for group, estimates in gradients(estimator, k).items():
                snr.setdefault((estimator, group), []).append(signal_to_noise(estimates))
    return [Curve(estimator, group, list(ks), values) for (estimator, group), values in snr.items()]


def vae_gradients(
    model: nn.Module,
    x: Tensor,
    estimator: str,
    num_samples: int,
    repeats: int,
    generator: torch.Generator,
) -> dict[str, Tensor]:
    """``repeats`` gradient estimates of a VAE's mean IWAE bound on the images ``x`` (``K =
    num_samples``, :meth:`samplegrad.lab.models.GaussianVAE.bound_loss`), per group: the
    decoder's parameters (those under ``decoder``) and the encoder's (all others), each
    ``(repeats, parameters)``. One backward pass per repeat: the network's parameters cannot be
    repeated as a batch the way the Gaussian model's are."""
    groups: dict[str, list[Tensor]] = {ENCODER: [], DECODER: []}
    named = list(model.named_parameters())
    for _ in range(repeats):
        model.zero_grad(set_to_none=True)
        model.bound_loss(x, estimator, num_samples, generator).loss.backward()
        for group in groups:
            groups[group].append(
                torch.cat(
                    [
                        p.grad.flatten()
                        for name, p in named
                        if (name.split(".")[0] == "decoder") == (group == DECODER)
                    ]
                )
            )
    model.zero_grad(set_to_none=True)
    return {group: torch.stack(rows) for group, rows in groups.items()}
