"""Categorical DisARM (Dong, Mnih & Tucker 2021, "Coupled gradient estimators for discrete
latent variables", NeurIPS): antithetic pairs of categorical samples through stick-breaking,
importance-weighted.

**The coupled estimator.** Let ``(z, z~)`` be any pair of samples with the same marginal ``q``
and joint ``p(z, z~)``. With the score ``s(z) = grad log q(z)`` and the importance weight
``w = q(z) q(z~) / p(z, z~)``::

    g = 1/2 w (f(z) - f(z~)) (s(z) - s(z~))

has ``E[g] = 1/2 sum_{a, b} q(a) q(b) (f(a) - f(b)) (s(a) - s(b)) = E[f s] - E[f] E[s]
= grad E[f]`` (``E[s] = 0``), provided ``p(a, b) > 0`` for every ``a != b`` (``g = 0`` when
``z = z~``). An antithetic coupling makes ``f(z) - f(z~)`` small where ``q`` is concentrated.

**Stick-breaking coupling.** Sort the ``K`` classes by increasing probability ``pi_(1) <= ...
<= pi_(K)`` and write the class as the first success of ``K - 1`` independent binary variables
``b_i ~ Bernoulli(sigma_i)`` with ``sigma_i = pi_(i) / sum_{j >= i} pi_(j)`` (``z = K`` if none
succeeds), each drawn antithetically as in binary DisARM: ``b_i = 1[u_i < sigma_i]``,
``b~_i = 1[1 - u_i < sigma_i]`` from one ``u ~ U(0, 1)^(K-1)``. The ascending order makes
``sigma_i <= 1/2`` (``<= 1/3`` for ``i <= K - 2``), so both chains can continue past any
position and every pair of distinct classes has ``p(a, b) > 0``. For ``z != z~`` with
``j = min(z, z~)`` (in sorted positions), both chains failed before ``j`` and exactly one
succeeded at ``j``, and the weight is (the paper's importance-weighted estimator)::

    w = prod_{i < j} (1 - sigma_i)^2 / (1 - 2 sigma_i) * (1 - sigma_j)

For ``K = 2`` this is binary DisARM (:mod:`samplegrad.estimators.antithetic`): the same law of
the pair and the same weight ``w = sigmoid(|logit|)``, so a Bernoulli, the two-class case, gets
``"disarm"``'s estimator.

**Products.** For ``Independent`` products every variable ``d`` is coupled this way with its own
noise, and ``g_d = 1/2 w_d (f(z) - f(z~)) (s_d(z_d) - s_d(z~_d))`` is unbiased for the
parameters of variable ``d``: the other variables of ``z`` and ``z~`` are independent of the pair
``(z_d, z~_d)``, each with marginal ``q``.

**Surrogate.** ``num_samples`` counts evaluations of ``f``: even, ``num_samples / 2`` pairs;
``f`` is called once on the samples ``z`` followed by their partners ``z~``. The value is the
mean of ``f`` over all of them, parameters inside ``f`` receive the mean of ``grad f``, and the
distribution's parameters the average of ``g`` over the pairs, attached as
``stop(g-weight) (log q_d(z_d) - log q_d(z~_d))``. Categorical and OneHotCategorical, and
Bernoulli as two classes (and ``Independent`` of them).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution
from torch.nn import functional as F

from samplegrad._internal.sampling import open_uniform
from samplegrad.estimators._categories import categories
from samplegrad.estimators.base import Cost, DiscreteChoiceEstimator
from samplegrad.estimators.catalog import register


def stick_breaking_probabilities(sorted_log_probs: Tensor) -> Tensor:
    """``sigma_i = pi_(i) / sum_{j >= i} pi_(j)`` for ``i = 1 .. K - 1``, from log-probabilities
    in increasing order (``(..., K)``): shape ``(..., K - 1)``."""
    remaining = sorted_log_probs.flip(-1).logcumsumexp(-1).flip(-1)
    return (sorted_log_probs - remaining)[..., :-1].exp()


def first_success(successes: Tensor) -> Tensor:
    """The position of the first ``True`` over the last dimension, ``K - 1`` (one past the
    last) where there is none."""
    return F.pad(successes.to(torch.uint8), (0, 1), value=1).argmax(-1)


def importance_weight(sigma: Tensor, first: Tensor) -> Tensor:
    """``q(z) q(z~) / p(z, z~)`` for a pair whose earlier stop is at sorted position ``first``
    (module docstring); ``sigma`` ``(..., K - 1)``, ``first`` of the leading shape. Where
    ``first = K - 1`` both samples are the last class and the weight is not used (set to 1)."""
    both_fail = 2 * torch.log1p(-sigma) - torch.log1p(-2 * sigma).nan_to_num(neginf=0.0)
    before = F.pad(both_fail.cumsum(-1), (1, 0))  # sum over i < j, for j = 0 .. K - 1
    one_stops = F.pad(torch.log1p(-sigma), (0, 1))
    log_weight = (before + one_stops).expand(*first.shape, sigma.shape[-1] + 1)
    return log_weight.gather(-1, first.unsqueeze(-1)).squeeze(-1).exp()


@register
class CategoricalDisARM(DiscreteChoiceEstimator):
    """Categorical DisARM (Dong, Mnih & Tucker 2021): antithetic stick-breaking pairs,
    importance-weighted; unbiased. Categorical, OneHotCategorical, and Bernoulli as two classes
    (binary DisARM), and ``Independent`` products of them; ``num_samples`` counts evaluations of
    ``f``, even."""

    name = "categorical-disarm"
    unbiased = True
    min_num_samples = 2
    even_num_samples = True

    def estimate(
        self, cost: Cost, dist: Distribution, num_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        view = categories(dist)
        log_probs = view.log_probs  # (*B, D, K)
        pairs = num_samples // 2
        order = log_probs.detach().argsort(-1)  # ascending probabilities
        # u and the stick-breaking probabilities in float32 or wider (open_uniform's dtype)
        u = open_uniform(
            torch.Size((pairs, *log_probs.shape[:-1], view.num_classes - 1)), log_probs, generator
        )
        sigma = stick_breaking_probabilities(log_probs.detach().gather(-1, order).to(u.dtype))
        position, partner_position = first_success(u < sigma), first_success(1 - u < sigma)
        orders = order.expand(pairs, *order.shape)
        sample = orders.gather(-1, position.unsqueeze(-1)).squeeze(-1)  # (P, *B, D)
        partner = orders.gather(-1, partner_position.unsqueeze(-1)).squeeze(-1)
        costs = cost(view.samples(torch.cat([sample, partner])))
        difference = (costs[:pairs] - costs[pairs:]).detach().unsqueeze(-1)  # (P, *B, 1)
        weight = importance_weight(sigma, torch.minimum(position, partner_position))
        signal = torch.where(sample == partner, 0.0, 0.5 * weight * difference)  # (P, *B, D)
        expanded = log_probs.expand(pairs, *log_probs.shape)
        scores = expanded.gather(-1, sample.unsqueeze(-1)) - expanded.gather(
            -1, partner.unsqueeze(-1)
        )  # log q_d(z_d) - log q_d(z~_d), (P, *B, D, 1)
        attached = (signal.to(log_probs.dtype) * (scores - scores.detach()).squeeze(-1)).mean(0)
        return costs.mean(0) + attached.sum(-1)
