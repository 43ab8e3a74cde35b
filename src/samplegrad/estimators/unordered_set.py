"""Unordered-set REINFORCE (Kool, van Hoof & Welling 2020, "Estimating gradients for discrete
random variables by sampling without replacement", ICLR).

**The sample.** ``k`` distinct points of the support drawn without replacement, an unordered
set ``S``: the top ``k`` of ``log q(z) + G_z`` with independent Gumbels ``G_z`` (Gumbel-top-k;
Vieira 2014, Kool et al. 2019). For an ``Independent`` product of ``D`` categoricals the
support has ``K^D`` points, and the top ``k`` are found without enumerating it by *stochastic
beam search* (Kool, van Hoof & Welling 2019, "Stochastic beams and where to find them", ICML):
variable by variable, each of the ``k`` partial configurations (beams) gets a perturbed value
for every class of the next variable, Gumbels conditioned on their maximum being the parent's
value, and the ``k`` largest survive; the result is an exact Gumbel-top-k sample of the joint.
A support of fewer than ``k`` points is drawn whole.

**The estimator.** With the probability ``P(S)`` of drawing the set (in any order) and
``P^{D \\ C}(A)`` that of drawing the set ``A`` from the distribution with the points ``C``
removed (renormalised)::

    R(S, s) = P^{D \\ s}(S \\ s) / P(S)                      (first-order leave-one-out ratio)
    E[f] ~= sum_{s in S} q(s) R(S, s) f(s)                    (unbiased)
    grad E[f] ~= sum_{s in S} grad q(s) R(S, s) (f(s) - b(S, s))
    b(S, s) = sum_{s' in S} q(s') R^{D \\ s}(S, s') f(s')      (the built-in baseline)

with ``R^{D \\ s}(S, s') = P^{D \\ {s, s'}}(S \\ {s, s'}) / P^{D \\ s}(S \\ s)`` for
``s' != s`` and 1 for ``s' = s`` (Kool et al. 2020, Theorems 1-4): the baseline is the
unordered-set estimate of ``E[f]`` from the other points, conditioned on ``s`` being in the set,
so it keeps the estimator unbiased. When ``S`` is the whole support, ``P(S) = 1`` and every
ratio is 1: the estimate is exact.

**Set probabilities** (``Q(A) = P^{D \\ (S \\ A)}(A)`` for the subsets ``A`` of ``S``): drawing
``A`` first takes some ``a in A``, with probability ``q(a)`` over the mass left, which is that
of ``A`` plus that of the points outside ``S``, so::

    Q(A) = sum_{a in A} q(a) / (q(A) + q(outside S)) Q(A \\ a),     Q({}) = 1

computed for all ``2^k`` subsets at once, level by level of their size (in float64, in log
space); ``P(S) = Q(S)``, ``P^{D \\ s}(S \\ s) = Q(S \\ s)`` and so on. The mass outside ``S`` is
computed once, as ``1 - q(S)``, or is exactly 0 where ``S`` is the whole support; sums of the
points' own probabilities never cancel. Work and memory grow as ``2^k k``: ``num_samples = k``
is at most :data:`MAX_SET_SIZE`.

**Surrogate.** ``f`` is called once, on the ``min(k, K^D)`` points of the set. Its value is the
unbiased estimate ``sum_s q(s) R(S, s) f(s)`` (not the plain mean of the costs, which is biased
for a sample without replacement); parameters inside ``f`` receive ``sum_s q(s) R(S, s)
grad f(s)``, and the distribution's parameters the estimate above, attached as
``stop(q(s) R(S, s) (f(s) - b(S, s))) (log q(s) - stop(log q(s)))``. Bernoulli, Categorical,
OneHotCategorical (and ``Independent`` products of them).
"""

from __future__ import annotations

import functools
import itertools

import torch
from torch import Tensor
from torch.distributions import Distribution

from samplegrad.estimators._categories import Categories, categories
from samplegrad.estimators.base import Cost, DiscreteChoiceEstimator, zero_with_gradient_of
from samplegrad.estimators.catalog import register
from samplegrad.estimators.relaxed import gumbel_noise

MAX_SET_SIZE = 12
"""The largest ``num_samples`` (set size ``k``): the set probabilities take ``2^k k`` terms."""


def log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(x))`` for ``x <= 0``, accurate on both sides of ``-log 2`` (Maechler 2012)."""
    return torch.where(x > -0.6931, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def shift_maximum(perturbed: Tensor, maximum: Tensor) -> Tensor:
    """Gumbels ``perturbed`` (``(..., K)``) shifted to have the maximum ``maximum`` (``(...)``),
    as Gumbels conditioned on it (Kool et al. 2019, eq. 23, in its stable form)."""
    current = perturbed.max(-1, keepdim=True).values
    target = maximum.unsqueeze(-1)
    v = target - perturbed + log1mexp(perturbed - current)
    return target - v.clamp_min(0) - torch.log1p(torch.exp(-v.abs()))


def gumbel_top_k(
    view: Categories, set_size: int, generator: torch.Generator | None
) -> tuple[Tensor, int]:
    """Class indices ``(m, *B, D)`` of a Gumbel-top-``m`` sample of the joint configurations,
    ``m = min(set_size, K^D)``, by stochastic beam search (module docstring)."""
    log_probs = view.log_probs.detach()  # (*B, D, K)
    num_classes = view.num_classes
    batch = log_probs.shape[:-2]
    beams = log_probs.new_zeros((*batch, 1, 0), dtype=torch.long)  # (*B, n, d)
    score = log_probs.new_zeros((*batch, 1))  # log q of each beam
    value = log_probs.new_zeros((*batch, 1))  # its perturbed value; the root's is arbitrary
    for variable in range(view.num_variables):
        child_score = score.unsqueeze(-1) + log_probs[..., variable, None, :]  # (*B, n, K)
        noise = gumbel_noise(child_score.shape, child_score, generator).to(log_probs.dtype)
        child_value = shift_maximum(child_score + noise, value)
        kept = min(set_size, beams.shape[-2] * num_classes)
        value, chosen = child_value.flatten(-2).topk(kept, -1)
        parent, klass = chosen // num_classes, chosen % num_classes
        score = child_score.flatten(-2).gather(-1, chosen)
        history = beams.gather(-2, parent.unsqueeze(-1).expand(*parent.shape, variable))
        beams = torch.cat([history, klass.unsqueeze(-1)], -1)
    return beams.movedim(-2, 0), beams.shape[-2]


@functools.cache
def _subset_levels(size: int) -> list[tuple[Tensor, Tensor, Tensor]]:
    """For each subset size ``r = 1 .. size`` of ``{0 .. size-1}``, as bit masks: the masks,
    their members ``(M_r, r)`` and the masks without each member ``(M_r, r)``."""
    levels = []
    for r in range(1, size + 1):
        members = list(itertools.combinations(range(size), r))
        masks = [sum(1 << i for i in m) for m in members]
        without = [[mask ^ (1 << i) for i in m] for mask, m in zip(masks, members, strict=True)]
        levels.append((torch.tensor(masks), torch.tensor(members), torch.tensor(without)))
    return levels


def leave_out_ratios(log_probs: Tensor, whole_support: bool) -> tuple[Tensor, Tensor]:
    """``log R(S, s)`` (``(..., m)``) and ``log R^{D \\ s}(S, s')`` (``(..., m, m)``, row ``s``)
    for a set of ``m`` points with log-probabilities ``log_probs`` (``(..., m)``); see the module
    docstring. ``whole_support``: the set is the whole support (the mass outside it is 0)."""
    log_probs = log_probs.detach().double()
    size = log_probs.shape[-1]
    if whole_support:
        outside = torch.full_like(log_probs[..., 0], -torch.inf)
    else:
        outside = log1mexp(log_probs.logsumexp(-1).clamp_max(0.0))
    table = log_probs.new_full((*log_probs.shape[:-1], 1 << size), -torch.inf)
    table[..., 0] = 0.0
    for masks, members, without in _subset_levels(size):
        members, without = members.to(log_probs.device), without.to(log_probs.device)
        chosen = log_probs[..., members]  # (..., M_r, r)
        remaining = torch.logaddexp(chosen.logsumexp(-1), outside.unsqueeze(-1))
        first = chosen - remaining.unsqueeze(-1) + table[..., without]
        table[..., masks.to(log_probs.device)] = first.logsumexp(-1)
    full = (1 << size) - 1
    bits = 1 << torch.arange(size, device=log_probs.device)
    without_one = table[..., full ^ bits]  # Q(S \ s), (..., m)
    without_two = table[..., full ^ (bits[:, None] | bits[None, :])]  # Q(S \ {s, s'})
    first_order = without_one - table[..., full, None]
    second_order = without_two - without_one.unsqueeze(-1)
    return first_order, second_order.diagonal_scatter(
        torch.zeros_like(without_one), dim1=-2, dim2=-1
    )


@register
class UnorderedSet(DiscreteChoiceEstimator):
    """Unordered-set REINFORCE (Kool et al. 2020): ``k = num_samples`` points without
    replacement, weighted, with the built-in baseline; unbiased, and exact where the support has
    at most ``k`` points. Bernoulli, Categorical, OneHotCategorical (and ``Independent``
    products, sampled by stochastic beam search). ``2 <= num_samples <= 12``."""

    name = "unordered-set"
    unbiased = True
    min_num_samples = 2

    def check_num_samples(self, num_samples: object) -> int:
        num_samples = super().check_num_samples(num_samples)
        if num_samples > MAX_SET_SIZE:
            raise ValueError(
                f"num_samples must be <= {MAX_SET_SIZE} for estimator {self.name!r} (the set's "
                f"probabilities take 2^k k terms), got {num_samples}; draw several sets with "
                "a batch dimension instead"
            )
        return num_samples

    def estimate(
        self, cost: Cost, dist: Distribution, num_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        view = categories(dist)
        points, size = gumbel_top_k(view, num_samples, generator)  # (m, *B, D)
        log_probs = view.gather(points)  # (m, *B), differentiable
        costs = cost(view.samples(points))
        first, second = leave_out_ratios(
            log_probs.movedim(0, -1), whole_support=size == view.support_size
        )
        weights = (log_probs.detach().double().movedim(0, -1) + first).exp()  # q(s) R(S, s)
        others = (log_probs.detach().double().movedim(0, -1).unsqueeze(-2) + second).exp()
        detached = costs.detach().double().movedim(0, -1)
        baseline = (others * detached.unsqueeze(-2)).sum(-1)
        signal = (weights * (detached - baseline)).movedim(-1, 0).to(log_probs.dtype)
        value = (weights.movedim(-1, 0).to(costs.dtype) * costs).sum(0)
        return value + (signal * zero_with_gradient_of(log_probs)).sum(0)
