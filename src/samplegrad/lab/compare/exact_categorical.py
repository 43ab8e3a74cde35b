"""Exact gradients and exact estimator variances for products of independent categoricals.

``E_{z ~ prod_d Cat(pi_d)}[f(z)]`` with ``pi_d = softmax(theta_d)`` for ``D`` variables of ``K``
classes (a few: the work grows as ``K^(2D)`` for categorical DisARM), by enumeration. ``f`` maps
an ``(N, D)`` integer array of class indices to ``N`` costs; ``gradient``, where an estimator
needs it, maps the same array to ``(N, D, K)``, the gradient of ``f`` with respect to the one-hot
vectors at those points. A Bernoulli is the two-class case with ``theta = (0, logit)``: the
gradient with respect to its logit is the class-1 component (see
:class:`samplegrad.lab.compare.problems.Bernoulli3D`).

**Gradient.** With the score of logit ``(d, k)``, ``S_dk(z) = 1[z_d = k] - pi_d(k)``:
``G_dk = E[f(z) S_dk(z)]``.

**Variances** per logit for ``num_samples`` ``S`` (all estimates are means of ``S`` independent
per-sample estimates unless said otherwise):

- ``score``: per sample ``f(z) S_dk(z)``.
- ``score-loo``: ``Var h / S + G^2 / (S (S - 1))`` with
  ``Var h = E[((f - m) S_dk - G_dk)^2] + v E[S_dk^2] / (S - 1)``, ``m = E f``, ``v = Var f``,
  ``E[S_dk^2] = pi_d(k) (1 - pi_d(k))`` (derived for any score function in
  :class:`samplegrad.lab.compare.problems.GaussianQuadratic`).
- ``indecater``: per sample ``pi_d(k) (f(z; z_d := k) - sum_c pi_d(c) f(z; z_d := c))``
  (:mod:`samplegrad.estimators.indecater`); 0 for ``D = 1``.
- ``straight-through``: per sample ``[J(pi_d) grad_d f(z)]_k`` with
  ``J(p) = diag(p) - p p^T``; ``reinmax`` (at its default temperature 1): per sample
  ``[2 J((pi_d + e_{z_d}) / 2) grad_d f(z) - J(pi_d) grad_d f(z) / 2]_k``
  (:mod:`samplegrad.estimators.reinmax`). Both biased; their means are computed too.
- ``categorical-disarm`` (``S`` even, ``S / 2`` pairs): every variable's pair ``(a, b)`` has the
  stick-breaking antithetic joint law (:mod:`samplegrad.estimators.categorical_disarm`): with
  classes in increasing order of probability and ``sigma_i = pi_(i) / sum_{j >= i} pi_(j)``,
  for sorted positions ``n < m``, ``p(n, m) = prod_{i < n} (1 - 2 sigma_i) sigma_n sigma_m
  prod_{n < i < m} (1 - sigma_i)`` (``sigma_K = 1``), symmetrically for ``n > m``, ``p(n, n) = 0``
  but ``p(K, K) = prod_{i < K} (1 - 2 sigma_i)``. The pair estimate
  ``1/2 q(a) q(b) / p(a, b) (f(z) - f(z~)) (S_dk(a) - S_dk(b))`` is summed over all ``K^(2D)``
  pairs of configurations under the product of these laws.
- ``unordered-set`` (``k = S`` points without replacement): over every set ``A`` of
  ``min(k, K^D)`` configurations, its probability ``P(A)`` (the sum over its orderings of the
  products of ``q(a_i) / (1 - sum_{j < i} q(a_j))``) and the estimate
  ``sum_{s in A} q(s) S_dk(s) R(A, s) (f(s) - b(A, s))`` of
  :mod:`samplegrad.estimators.unordered_set`, the ratios by the same sums over orderings.
- ``enumerate``: exact, variance 0.

Any other name gives ``None``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np

from samplegrad.lab.compare.exact_bernoulli import checked_costs

Array = np.ndarray
Cost = Callable[[Array], Array]

MAX_SUPPORT = 64
"""Enumeration visits ``K^D`` configurations (``K^(2D)`` pairs for categorical DisARM)."""


def exact_gradient(f: Cost, theta: Array) -> Array:
    """``d/dtheta_dk E[f(z)]``, shape ``(D, K)``."""
    pi = _softmax(_check(theta))
    z, q = _configurations(pi)
    return np.einsum("n,ndk->dk", q * checked_costs(f, z, "class indices"), _scores(z, pi))


def exact_mean(f: Cost, theta: Array, estimator: str, gradient: Cost | None = None) -> Array | None:
    """The expectation of a biased estimator's estimate (``"straight-through"``,
    ``"reinmax"``), ``(D, K)``; ``None`` for another name or without ``gradient``."""
    per_sample = _per_sample(f, _check(theta), estimator, gradient)
    return None if per_sample is None else np.einsum("n,ndk->dk", *per_sample)


def exact_variance(
    f: Cost, theta: Array, estimator: str, num_samples: int, gradient: Cost | None = None
) -> Array | None:
    """Variance of each logit's estimate, ``(D, K)``, for the named estimator with
    ``num_samples``; ``None`` where not known (module docstring)."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
    theta = _check(theta)
    S = num_samples
    if estimator == "enumerate":
        return np.zeros_like(theta)
    if estimator == "score-loo":
        return None if S < 2 else _leave_one_out_variance(f, theta, S)
    if estimator == "categorical-disarm":
        return None if S % 2 else disarm_pair_moments(f, theta)[1] / (S // 2)
    if estimator == "unordered-set":
        moments = unordered_set_moments(f, theta, S)
        return None if moments is None else moments[1]
    per_sample = _per_sample(f, theta, estimator, gradient)
    if per_sample is None:
        return None
    q, estimates = per_sample
    mean = np.einsum("n,ndk->dk", q, estimates)
    return np.einsum("n,ndk->dk", q, (estimates - mean) ** 2) / S


def _check(theta: Array) -> Array:
    theta = np.asarray(theta, dtype=np.float64)
    if theta.ndim != 2 or theta.shape[1] ** theta.shape[0] > MAX_SUPPORT:
        raise ValueError(
            f"theta must be a (D, K) array with K^D <= {MAX_SUPPORT}, got shape {theta.shape}"
        )
    if not np.isfinite(theta).all():
        raise ValueError(f"theta must be finite, got {theta}")
    return theta


def _softmax(theta: Array) -> Array:
    shifted = np.exp(theta - theta.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def _configurations(pi: Array) -> tuple[Array, Array]:
    """Every configuration ``z`` (``(K^D, D)`` class indices) and its probability."""
    D, K = pi.shape
    z = np.array(list(itertools.product(range(K), repeat=D)), dtype=np.int64).reshape(-1, D)
    return z, np.prod(pi[np.arange(D), z], axis=1)


def _scores(z: Array, pi: Array) -> Array:
    """``S_dk(z) = 1[z_d = k] - pi_d(k)``, ``(N, D, K)``."""
    return np.eye(pi.shape[1])[z] - pi


def _per_sample(
    f: Cost, theta: Array, estimator: str, gradient: Cost | None
) -> tuple[Array, Array] | None:
    """``(q(z), g(z))`` over every configuration for the estimators whose one-sample estimate
    is a function of the sample: score, IndeCateR, straight-through, ReinMax."""
    pi = _softmax(theta)
    z, q = _configurations(pi)
    if estimator == "score":
        return q, checked_costs(f, z, "class indices")[:, None, None] * _scores(z, pi)
    if estimator == "indecater":
        return q, _indecater_estimates(f, z, pi)
    if estimator not in ("straight-through", "reinmax") or gradient is None:
        return None
    slopes = np.asarray(gradient(z), dtype=np.float64)
    if slopes.shape != (*z.shape, pi.shape[1]):
        raise ValueError(f"gradient must map (N, D) to (N, D, K), got shape {slopes.shape}")
    estimates = _softmax_jacobian_product(np.broadcast_to(pi, slopes.shape), slopes)
    if estimator == "reinmax":
        midpoint = 0.5 * (pi + np.eye(pi.shape[1])[z])
        estimates = 2 * _softmax_jacobian_product(midpoint, slopes) - 0.5 * estimates
    return q, estimates


def _softmax_jacobian_product(p: Array, v: Array) -> Array:
    """``J(p) v = p * v - p (p . v)`` over the last axis."""
    return p * v - p * (p * v).sum(-1, keepdims=True)


def _indecater_estimates(f: Cost, z: Array, pi: Array) -> Array:
    """``pi_d(k) (f(z; z_d := k) - sum_c pi_d(c) f(z; z_d := c))``, ``(N, D, K)``."""
    N, D = z.shape
    K = pi.shape[1]
    changed = np.repeat(z[:, None, None, :], D, 1).repeat(K, 2)  # (N, D, K, D)
    changed[:, np.arange(D), :, np.arange(D)] = np.arange(K)
    costs = checked_costs(f, changed.reshape(-1, D), "class indices").reshape(N, D, K)
    return pi * (costs - (pi * costs).sum(-1, keepdims=True))


def _leave_one_out_variance(f: Cost, theta: Array, S: int) -> Array:
    pi = _softmax(theta)
    z, q = _configurations(pi)
    costs, scores = checked_costs(f, z, "class indices"), _scores(z, pi)
    exact = np.einsum("n,ndk->dk", q * costs, scores)
    mean = q @ costs
    variance = q @ (costs - mean) ** 2
    var_h = np.einsum("n,ndk->dk", q, ((costs - mean)[:, None, None] * scores - exact) ** 2)
    var_h = var_h + variance * pi * (1 - pi) / (S - 1)
    return var_h / S + exact**2 / (S * (S - 1))


def coupled_pair_law(pi_d: Array) -> Array:
    """The stick-breaking antithetic joint law ``p(a, b)`` of one variable's pair (module
    docstring), ``(K, K)`` over the classes."""
    K = pi_d.shape[0]
    order = np.argsort(pi_d, kind="stable")
    sorted_pi = pi_d[order]
    remaining = np.cumsum(sorted_pi[::-1])[::-1]
    sigma = np.append(sorted_pi[:-1] / remaining[:-1], 1.0)
    law = np.zeros((K, K))
    for n, m in itertools.product(range(K), repeat=2):
        first, second = min(n, m), max(n, m)
        both_fail = np.prod(1 - 2 * sigma[:first])
        if n == m:
            law[n, m] = both_fail if n == K - 1 else 0.0
        else:
            rest = sigma[second] * np.prod(1 - sigma[first + 1 : second])
            law[n, m] = both_fail * sigma[first] * rest
    unsorted = np.empty_like(law)
    unsorted[np.ix_(order, order)] = law
    return unsorted


def disarm_pair_moments(f: Cost, theta: Array) -> tuple[Array, Array]:
    """Mean and variance of one categorical DisARM pair's estimate, ``(D, K)`` each."""
    pi = _softmax(_check(theta))
    D = pi.shape[0]
    z, _ = _configurations(pi)
    costs, scores = checked_costs(f, z, "class indices"), _scores(z, pi)
    laws = [coupled_pair_law(pi[d]) for d in range(D)]
    estimates, probabilities = [], []
    for i, j in itertools.product(range(len(z)), repeat=2):
        joint = np.array([laws[d][z[i, d], z[j, d]] for d in range(D)])
        if joint.prod() == 0:
            continue
        marginal = pi[np.arange(D), z[i]] * pi[np.arange(D), z[j]]
        weight = np.where(z[i] == z[j], 0.0, marginal / joint)
        half_difference = 0.5 * (costs[i] - costs[j])
        estimates.append(half_difference * weight[:, None] * (scores[i] - scores[j]))
        probabilities.append(joint.prod())
    p, g = np.array(probabilities), np.array(estimates)
    mean = np.einsum("n,ndk->dk", p, g)
    return mean, np.einsum("n,ndk->dk", p, (g - mean) ** 2)


def _ordered_probability(q: Array, outside: float) -> float:
    """``sum`` over the orderings of the points with probabilities ``q`` of the products of
    ``q_i / (q_i + q_later + outside)``: drawing them, in any order, before anything else from
    a distribution whose remaining mass is ``q.sum() + outside``."""
    total = 0.0
    for ordering in itertools.permutations(range(len(q))):
        left, probability = q.sum() + outside, 1.0
        for i in ordering:
            probability *= q[i] / left
            left -= q[i]
        total += probability
    return total


def _unordered_set_estimates(
    costs: Array, q: Array, scores: Array, points: tuple[int, ...], outside: float
) -> Array:
    """The unordered-set estimate for the set ``points`` (module docstring), ``(D, K)``."""
    chosen = list(points)
    qs = q[chosen]
    whole = _ordered_probability(qs, outside)
    estimate = np.zeros(scores.shape[1:])
    for a, s in enumerate(chosen):
        others = [b for b in range(len(chosen)) if b != a]
        without = _ordered_probability(qs[others], outside)
        ratio = without / whole
        baseline = qs[a] * costs[s]
        for b in others:
            pair = [c for c in others if c != b]
            baseline += qs[b] * _ordered_probability(qs[pair], outside) / without * costs[chosen[b]]
        estimate += qs[a] * scores[s] * ratio * (costs[s] - baseline)
    return estimate


def unordered_set_moments(f: Cost, theta: Array, k: int) -> tuple[Array, Array] | None:
    """Mean and variance of the unordered-set estimate with ``k`` points, ``(D, K)`` each, by
    enumerating the sets; ``None`` where that takes over two million terms."""
    pi = _softmax(_check(theta))
    z, q = _configurations(pi)
    size = min(k, len(z))
    if math.comb(len(z), size) * math.factorial(size) > 2_000_000:
        return None
    costs, scores = checked_costs(f, z, "class indices"), _scores(z, pi)
    estimates, probabilities = [], []
    for points in itertools.combinations(range(len(z)), size):
        outside = max(1.0 - q[list(points)].sum(), 0.0) if size < len(z) else 0.0
        probabilities.append(_ordered_probability(q[list(points)], outside))
        estimates.append(_unordered_set_estimates(costs, q, scores, points, outside))
    p, g = np.array(probabilities), np.array(estimates)
    mean = np.einsum("n,ndk->dk", p, g)
    return mean, np.einsum("n,ndk->dk", p, (g - mean) ** 2)
