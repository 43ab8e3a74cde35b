"""IndeCateR (De Smet, Sansone & Zuidberg Dos Martires 2023, "Differentiable sampling of
categorical distributions using the CatLog-derivative trick", NeurIPS): the score function
Rao-Blackwellised over each variable of a product of independent categoricals.

For ``z = (z_1, ..., z_D)`` with independent ``z_d ~ Cat(pi_d)`` and parameters ``theta_d`` of
variable ``d`` only, ``E[f(z)] = E_{z_-d}[sum_k pi_d(k) f(z_-d, k)]``, so::

    grad_theta_d E[f] = E_{z_-d}[ sum_k grad pi_d(k) f(z_-d, k) ]

IndeCateR estimates the outer expectation with one sample ``z ~ q`` shared by all ``D``
variables and sums the inner one exactly: per sample ``z_s``,
``g_d = sum_k grad pi_d(k) f(z_s with z_d := k)``. Each ``g_d`` is unbiased, because ``z_-d``
is independent of ``z_d``; no baseline is needed, because ``sum_k grad pi_d(k) = 0`` already
cancels any constant. A Bernoulli is the two-class case; without ``Independent`` (``D = 1``)
the estimate is exact.

**Cost: ``D K`` evaluations of ``f`` per sample**, the points ``(z_-d, k)`` of the ``D`` sums;
``D`` of them are the sample itself, so ``f`` is called once on ``1 + D (K - 1)`` points per
sample: the ``S`` samples first, then for each variable ``d`` and shift ``j = 1 .. K-1`` the
samples with ``z_d := (z_d + j) mod K``, a batch of shape ``((1 + D (K-1)) S, *B, *E)``.

**Surrogate.** Its value is the mean of ``f`` over the ``S`` samples, and its gradient for the
distribution's parameters is ``(1/S) sum_s sum_{d,k} stop(f(z_s; z_d := k)) grad pi_d(k)``,
attached as ``stop(f) (pi - stop(pi))``; parameters inside ``f`` receive the mean of ``grad f``
over the samples.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from samplegrad.estimators._categories import categories
from samplegrad.estimators.base import Cost, DiscreteChoiceEstimator
from samplegrad.estimators.catalog import register


def neighbours(indices: Tensor, num_classes: int) -> Tensor:
    """For class indices ``(S, *B, D)``, every sample with one variable changed:
    ``(D, K - 1, S, *B, D)``, entry ``(d, j - 1)`` with ``z_d := (z_d + j) mod K``."""
    num_variables = indices.shape[-1]
    points = indices.expand(num_variables, num_classes - 1, *indices.shape).clone()
    variable = torch.arange(num_variables, device=indices.device)
    shifts = torch.arange(1, num_classes, device=indices.device)
    shifted = indices.movedim(-1, 0).unsqueeze(1) + shifts.reshape(
        1, -1, *[1] * (indices.dim() - 1)
    )
    points[variable[:, None], torch.arange(num_classes - 1)[None, :], ..., variable[:, None]] = (
        shifted % num_classes
    )
    return points


@register
class IndeCateR(DiscreteChoiceEstimator):
    """IndeCateR (De Smet et al. 2023): exact sums over each variable's classes, the others
    sampled; unbiased. Bernoulli, Categorical, OneHotCategorical (and ``Independent`` products
    of them); ``D K`` evaluations of ``f`` per sample (``1 + D (K - 1)`` distinct points) for
    ``D`` variables of ``K`` classes."""

    name = "indecater"
    unbiased = True

    def estimate(
        self, cost: Cost, dist: Distribution, num_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        view = categories(dist)
        num_variables, num_classes = view.num_variables, view.num_classes
        indices = view.sample_indices(num_samples, generator)  # (S, *B, D)
        others = neighbours(indices, num_classes).flatten(0, 2)
        costs = cost(view.samples(torch.cat([indices, others])))
        sampled, changed = costs[:num_samples], costs[num_samples:].detach()
        # by shift j = 0 .. K-1 from the sampled class: (S, *B, D, K)
        by_shift = torch.cat(
            [
                sampled.detach().unsqueeze(-1).expand(*sampled.shape, num_variables).unsqueeze(-1),
                changed.reshape(num_variables, num_classes - 1, *sampled.shape).movedim(
                    (0, 1), (-2, -1)
                ),
            ],
            -1,
        )
        classes = torch.arange(num_classes, device=indices.device)
        by_class = by_shift.gather(-1, (classes - indices.unsqueeze(-1)) % num_classes)
        probs = view.log_probs.exp()  # (*B, D, K)
        attached = (by_class.mean(0) * (probs - probs.detach())).sum((-2, -1))
        return sampled.mean(0) + attached
