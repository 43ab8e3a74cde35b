"""Exact gradients and exact estimator variances for independent Bernoulli variables.

``E_{b ~ prod_j Bernoulli(theta_j)}[f(b)]`` with ``theta = sigmoid(phi)`` for logits ``phi`` of
``D`` coordinates (a few: the work grows as ``3^D``), by enumeration. ``f`` maps an ``(N, D)``
array of 0/1 vectors to ``N`` costs.

**Gradient.** ``d/dphi_j E f = E[f(b) (b_j - theta_j)]`` (the score of a logit is
``b_j - theta_j``), a sum over the ``2^D`` vectors ``b`` with probabilities
``p(b) = prod_j theta_j^b_j (1 - theta_j)^(1 - b_j)``.

**Variances** per coordinate, with ``G_j`` the exact gradient and ``S_j = b_j - theta_j``:

- ``score``: one sample gives ``f(b) S_j``; ``Var = E[(f S_j - G_j)^2] / K``.
- ``score-loo`` (``K >= 2``): as for any score-function estimator with the leave-one-out
  baseline (:class:`samplegrad.lab.compare.problems.GaussianQuadratic` derives it),
  ``Var = Var h / K + G_j^2 / (K (K - 1))`` with
  ``Var h = E[((f - m) S_j - G_j)^2] + v E[S_j^2] / (K - 1)``,
  ``m = E f``, ``v = Var f``, ``E[S_j^2] = theta_j (1 - theta_j)``.
- ``arm`` and ``disarm`` (:mod:`samplegrad.estimators.antithetic`; ``K`` even, ``K / 2``
  independent pairs): one pair draws ``u ~ U(0, 1)^D`` and sets ``b = 1[u < theta]``,
  ``b~ = 1[1 - u < theta]``; its estimate is ``g_j = 1/2 (f(b) - f(b~)) w_j`` with
  ``w_j = 1 - 2 u_j`` (ARM) or ``w_j = (b_j - b~_j) sigmoid(|phi_j|)`` (DisARM). Each ``u_i``
  falls in one of three intervals cut at ``min(theta_i, 1 - theta_i)`` and
  ``max(theta_i, 1 - theta_i)``, on each of which the pair ``(b_i, b~_i)`` is constant. On
  each of the ``3^D`` boxes the estimate is therefore ``alpha + beta u_j`` with constants
  (``beta = -f(b) + f(b~)`` for ARM, 0 for DisARM), and with ``c = alpha - E g_j``,
  ``int_lo^hi (c + beta u)^2 du = c^2 (hi - lo) + c beta (hi^2 - lo^2) + beta^2 (hi^3 -
  lo^3) / 3`` exactly; the other coordinates contribute their interval lengths. The
  variance is the sum over boxes, divided by ``K / 2``; the mean (the same sum for
  ``alpha + beta u_j``) equals ``G_j``, which the tests check.
- ``straight-through`` (biased): ``g_j = df/db_j(b) theta_j (1 - theta_j)`` at the sample,
  so ``Var = theta_j^2 (1 - theta_j)^2 Var[df/db_j(b)] / K``. It needs ``f``'s gradient at
  0/1 points, passed as ``gradient`` (``(N, D) -> (N, D)``); without it the result is
  ``None``.
- ``enumerate``: exact, variance 0.

Any other name gives ``None``: ``score-delta`` would need ``f``'s Hessian at ``theta``, REBAR
and RELAX depend on a trained control, the Gumbel-softmax relaxations have no finite sum.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

MAX_DIMENSIONS = 12
"""Enumeration visits ``3^D`` boxes (ARM, DisARM) and ``2^D`` vectors; beyond this, refuse."""

Array = np.ndarray
Cost = Callable[[Array], Array]


def _sigmoid(phi: np.ndarray | float) -> np.ndarray:
    """``1 / (1 + exp(-phi))``, computed as ``exp(-log(1 + exp(-phi)))`` without overflow."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(phi, dtype=np.float64)))


def exact_gradient(f: Cost, phi: Array) -> Array:
    """``d/dphi_j E_{b ~ Bernoulli(sigmoid(phi))}[f(b)]``, shape ``(D,)``."""
    phi, theta = _logits(phi)
    b, p, costs = _enumerate(f, theta)
    return (p * costs) @ (b - theta)


def exact_variance(
    f: Cost,
    phi: Array,
    estimator: str,
    num_samples: int,
    gradient: Cost | None = None,
) -> Array | None:
    """Variance per coordinate, shape ``(D,)``, of the named estimator with ``num_samples``.

    ``estimator``: ``"score"``, ``"score-loo"`` (``num_samples >= 2``), ``"arm"`` and
    ``"disarm"`` (even ``num_samples``), ``"straight-through"`` (needs ``gradient``, ``f``'s
    gradient at 0/1 points) or ``"enumerate"``; otherwise ``None``. Formulas: module docstring.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
    K = num_samples
    phi, theta = _logits(phi)
    if estimator == "enumerate":
        return np.zeros_like(theta)
    if estimator in ("arm", "disarm"):
        return None if K % 2 else _antithetic_pair_moments(f, phi, theta, estimator)[1] / (K // 2)
    if estimator == "straight-through":
        return None if gradient is None else _straight_through_variance(gradient, theta) / K
    if estimator not in ("score", "score-loo") or (estimator == "score-loo" and K < 2):
        return None
    b, p, costs = _enumerate(f, theta)
    scores = b - theta
    exact = (p * costs) @ scores
    if estimator == "score":
        return p @ (costs[:, None] * scores - exact) ** 2 / K
    mean = p @ costs
    variance = p @ (costs - mean) ** 2
    var_h = p @ ((costs - mean)[:, None] * scores - exact) ** 2
    var_h = var_h + variance * theta * (1 - theta) / (K - 1)
    return var_h / K + exact**2 / (K * (K - 1))


def _logits(phi: Array) -> tuple[Array, Array]:
    phi = np.asarray(phi, dtype=np.float64)
    if phi.ndim != 1 or not 1 <= phi.shape[0] <= MAX_DIMENSIONS:
        raise ValueError(
            f"phi must be a 1-D array of 1 to {MAX_DIMENSIONS} logits, got shape {phi.shape}"
        )
    if not np.isfinite(phi).all():
        raise ValueError(f"phi must be finite, got {phi}")
    return phi, _sigmoid(phi)


def checked_costs(f: Cost, points: Array, what: str = "0/1 vectors") -> Array:
    """``f(points)`` as float64, one cost per row of ``points`` (``(N, D)`` arrays of
    ``what``); a ``ValueError`` naming the shapes otherwise."""
    costs = np.asarray(f(points), dtype=np.float64)
    if costs.shape != points.shape[:1]:
        raise ValueError(
            f"f must map an (N, D) array of {what} to N costs, got shape {costs.shape} "
            f"for input shape {points.shape}"
        )
    return costs


def _binary_vectors(theta: Array) -> tuple[Array, Array]:
    """Every 0/1 vector ``b`` (``(2^D, D)``) and its probability."""
    b = np.array(list(itertools.product((0.0, 1.0), repeat=theta.shape[0])))
    return b, np.prod(np.where(b == 1.0, theta, 1.0 - theta), axis=1)


def _enumerate(f: Cost, theta: Array) -> tuple[Array, Array, Array]:
    """Every 0/1 vector ``b``, its probability and its cost."""
    b, p = _binary_vectors(theta)
    return b, p, checked_costs(f, b)


def _antithetic_pair_moments(
    f: Cost, phi: Array, theta: Array, estimator: str
) -> tuple[Array, Array]:
    """Mean and variance of one ARM or DisARM pair, per coordinate, integrating ``u`` exactly."""
    D = theta.shape[0]
    low, high = np.minimum(theta, 1 - theta), np.maximum(theta, 1 - theta)
    cuts = np.stack([np.zeros(D), low, high, np.ones(D)], axis=1)  # (D, 4)
    boxes = np.array(list(itertools.product(range(3), repeat=D)))  # (3^D, D)
    coordinates = np.arange(D)
    lo, hi = cuts[coordinates, boxes], cuts[coordinates, boxes + 1]  # (3^D, D)
    middle = 0.5 * (lo + hi)
    b, b_anti = (middle < theta).astype(np.float64), (1 - middle < theta).astype(np.float64)
    difference = checked_costs(f, b) - checked_costs(f, b_anti)  # f(b) - f(b~), per box
    lengths = hi - lo
    mean, variance = np.empty(D), np.empty(D)
    for j in range(D):
        others = np.prod(np.delete(lengths, j, axis=1), axis=1)
        if estimator == "arm":  # 1/2 (f(b) - f(b~)) (1 - 2 u_j) = alpha + beta u_j
            alpha, beta = 0.5 * difference, -difference
        else:
            alpha = 0.5 * difference * (b[:, j] - b_anti[:, j]) * _sigmoid(abs(phi[j]))
            beta = np.zeros_like(alpha)
        l1, l2, l3 = (hi[:, j] ** n - lo[:, j] ** n for n in (1, 2, 3))
        mean[j] = others @ (alpha * l1 + beta * l2 / 2)
        centred = alpha - mean[j]
        variance[j] = others @ (centred**2 * l1 + centred * beta * l2 + beta**2 * l3 / 3)
    return mean, variance


def _straight_through_variance(gradient: Cost, theta: Array) -> Array:
    """``theta^2 (1 - theta)^2 Var[df/db_j(b)]``, per coordinate, for one sample."""
    b, p = _binary_vectors(theta)
    slopes = np.asarray(gradient(b), dtype=np.float64)
    if slopes.shape != b.shape:
        raise ValueError(
            f"gradient must map an (N, D) array to (N, D), got shape {slopes.shape} for input "
            f"shape {b.shape}"
        )
    centred = slopes - p @ slopes
    return (theta * (1 - theta)) ** 2 * (p @ centred**2)
