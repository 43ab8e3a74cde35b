"""VIMCO: the multi-sample score-function estimator for the importance-weighted bound.

The importance-weighted (IWAE) bound of Burda, Grosse & Salakhutdinov (2016) draws ``K``
samples ``z_1..z_K ~ q_phi`` and averages their weights ``w_k = exp(l_k)``,
``l_k = log_weight(z_k)`` (in variational inference ``l_k = log p(x, z_k) - log q_phi(z_k)``)::

    L_K = E_q[ L_hat ],    L_hat = log (1/K) sum_k w_k.

Its gradient (``grad q = q grad log q`` for each of the ``K`` independent samples) is::

    grad L_K = E_q[ sum_k L_hat grad log q(z_k) + sum_k w~_k grad l_k ],   w~_k = w_k / sum_j w_j.

The first term is the score function with the *same* learning signal ``L_hat`` for every
sample: it cannot tell good samples from bad ones and its variance grows with the scale of
``L_hat``. VIMCO (Mnih & Rezende 2016, "Variational inference for Monte Carlo objectives",
ICML) gives sample ``k`` the signal ``L_hat - L_hat_{-k}``, where ``L_hat_{-k}`` is the bound
with ``w_k`` replaced by the geometric mean of the other weights::

    L_hat_{-k} = log (1/K) ( sum_{j != k} w_j + exp( (1/(K-1)) sum_{j != k} l_j ) ).

``L_hat_{-k}`` depends only on ``z_{-k}``, and ``E_{z_k}[grad log q(z_k)] = 0``, so the
baseline adds no bias; the signal is how much ``z_k`` raises the bound over a typical sample.
The estimate is::

    g = sum_k (L_hat - L_hat_{-k}) grad log q(z_k) + sum_k w~_k grad l_k.

As a surrogate, with ``z`` drawn without gradient and ``sg`` the stop-gradient::

    S = L_hat + sum_k sg[L_hat - L_hat_{-k}] (log q(z_k) - sg[log q(z_k)]).

Its value is ``L_hat``; differentiating ``L_hat`` gives the second term of ``g``, which covers
both the parameters inside ``log_weight`` (the model's) and, when ``log_weight`` calls
``q.log_prob(z)`` as in variational inference, the direct dependence of the weight on ``phi``:
``-sum_k w~_k grad log q(z_k)``, a term of the exact gradient too. Because ``z`` carries no
gradient nothing else flows through it, so a closure over ``q.log_prob`` is handled correctly.

The ``K`` leave-one-out bounds come from exclusive prefix and suffix scans along the samples
(``cumsum`` for ``sum_{j != k} l_j``, ``logcumsumexp`` for ``log sum_{j != k} w_j``): ``O(K)``
time and memory per batch element, no ``log(sum - w_k)`` cancellation when one weight
dominates, no overflow, and finite signals when single weights are zero (``l_k = -inf``).
"""

from __future__ import annotations

import math
from typing import NoReturn

import torch
from torch import Tensor
from torch.distributions import Distribution

from samplegrad._internal.sampling import draw
from samplegrad._internal.scans import exclusive_scans
from samplegrad.estimators.base import Cost, Estimator, zero_with_gradient_of

_NOT_AN_EXPECTATION = (
    "VIMCO estimates the gradient of the importance-weighted bound E[log mean_k w_k], not of "
    "E[f(z)]; call sg.iwae_bound(log_weight, dist, num_samples, estimator='vimco') with "
    "log_weight(z) = log p(x, z) - log q(z), or use estimator='score' with baseline='loo' for "
    "sg.expectation"
)


def log_mean_exp(x: Tensor, dim: int = 0) -> Tensor:
    """``log((1/K) sum_k exp(x_k))`` along ``dim`` (``K = x.shape[dim]``), without overflow."""
    return torch.logsumexp(x, dim) - math.log(x.shape[dim])


def leave_one_out_bounds(log_weights: Tensor) -> Tensor:
    """``L_hat_{-k}`` for every ``k``: the bound with ``l_k`` replaced by the others' mean.

    Args:
        log_weights: ``l``, shape ``(K, *B)`` with ``K >= 2``.

    Returns:
        Shape ``(K, *B)``: ``log (1/K) (sum_{j != k} exp(l_j) + exp(mean_{j != k} l_j))``.
    """
    num_samples = log_weights.shape[0]
    sum_before, sum_after = exclusive_scans(log_weights, torch.cumsum, 0.0)
    others_mean = (sum_before + sum_after) / (num_samples - 1)
    log_sum_before, log_sum_after = exclusive_scans(log_weights, torch.logcumsumexp, -math.inf)
    terms = torch.stack([log_sum_before, log_sum_after, others_mean])
    return torch.logsumexp(terms, 0) - math.log(num_samples)


class VIMCO(Estimator):
    """Leave-one-out multi-sample score function for ``sg.iwae_bound`` (any distribution).

    Use it as ``sg.iwae_bound(log_weight, dist, num_samples, estimator="vimco")`` (or pass an
    instance); it needs ``num_samples >= 2`` and only ``dist.log_prob``, so discrete and
    continuous distributions alike.

    API decision: VIMCO estimates the gradient of the bound ``E[log mean_k w_k]``, which is not
    an expectation of a per-sample cost, so it cannot honour ``sg.expectation``'s contract (the
    value is the mean of ``f`` over the samples). Reading ``f`` as a log-weight there would
    silently change what ``sg.expectation`` computes, so ``sg.expectation(f, dist, VIMCO())``
    raises a ``TypeError`` pointing to ``sg.iwae_bound`` instead, and the work is in
    :meth:`bound`. For the same reason the class is not in the name registry of
    ``sg.expectation`` (whose error messages list the estimators of ``E_q[f]``): the name
    ``"vimco"`` is resolved by ``sg.iwae_bound``.
    """

    name = "vimco"
    unbiased = True
    min_num_samples = 2

    @classmethod
    def supports(cls, dist: Distribution) -> bool:
        return True

    def forward(self, *arguments: object, **keywords: object) -> NoReturn:
        """Refused: VIMCO estimates the IWAE bound, see :func:`samplegrad.iwae_bound`."""
        raise TypeError(_NOT_AN_EXPECTATION)

    def bound(
        self,
        log_weight: Cost,
        dist: Distribution,
        num_samples: int,
        generator: torch.Generator | None,
    ) -> Tensor:
        """The IWAE-bound surrogate with VIMCO's gradient, for arguments already validated.

        Args:
            log_weight: maps ``z`` of shape ``(K, *B, *E)`` to log-weights ``(K, *B)``.
            dist: the proposal ``q``, batch shape ``B``.
            num_samples: ``K >= 2``.
            generator: a ``torch.Generator`` or ``None``.

        Returns:
            Shape ``B``: value ``log mean_k w_k``, gradient the VIMCO estimate (module docstring).
        """
        z = draw(dist, torch.Size((num_samples,)), generator, reparameterized=False)
        log_weights = log_weight(z)
        value = log_mean_exp(log_weights)
        signals = value.detach() - leave_one_out_bounds(log_weights.detach())
        score = zero_with_gradient_of(dist.log_prob(z))
        return value + (signals * score).sum(0)
