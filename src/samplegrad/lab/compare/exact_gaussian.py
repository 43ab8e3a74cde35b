"""Exact gradients and exact estimator variances for ``E_{x ~ N(mu, sigma^2)}[f(x)]``, 1-D.

The ground truth behind the variance curves of Mohamed et al. (2020, JMLR, Figs. 2-3) and the
``compare`` problems: for a smooth scalar cost ``f`` (a :class:`Cost1D`: ``f``, ``f'``,
``f''``) every quantity below is a one-dimensional integral against the standard normal,
computed by quadrature to a relative accuracy of about ``1e-11`` (against the closed forms
and ``scipy.integrate`` the tests find ``1e-14``).

**Notation.** ``x = mu + s y`` with ``s = sigma`` and ``y ~ N(0, 1)`` (density ``phi``);
``F(y) = f(mu + s y)``, ``F1(y) = f'(mu + s y)``; ``E`` is the expectation over ``y``.

**Gradient.** ``d/dmu E f = E[F1]`` and ``d/dsigma E f = E[y F1]`` (differentiate under the
integral in ``x = mu + s y``).

**Variances** of one sample's estimate (the mean of ``K`` independent single-sample estimates
has ``1/K`` of it; the leave-one-out baseline, whose samples are not independent, is the
exception), with ``G`` the exact gradient of the parameter concerned:

- ``pathwise``: ``g_mu = F1(y)``, ``g_sigma = y F1(y)``; ``Var = E[(g - G)^2]``.
- ``score`` (REINFORCE, no baseline): ``g = F(y) S(y)`` with the scores of ``N(mu, s^2)``,
  ``S_mu = y / s`` and ``S_sigma = (y^2 - 1) / s``; ``Var = E[(F S - G)^2]``.
- ``score-loo`` (leave-one-out baseline, ``K >= 2``): ``g = (1/K) sum_k (F_k - b_k) S_k`` with
  ``b_k`` the mean cost of the other ``K - 1`` samples. With ``m = E F`` and ``v = Var F``,
  ``Var h = E[F^2 S^2] - 2 m E[F S^2] + (m^2 + v / (K - 1)) E[S^2] - G^2
  = E[((F - m) S - G)^2] + v E[S^2] / (K - 1)`` (the second form is the same number, free of
  cancellation; ``E[(F - m) S] = G`` because ``E[S] = 0``), and the samples' terms have
  covariance ``G^2 / (K - 1)^2``, so ``Var g = Var h / K + G^2 / (K (K - 1))`` (derived in
  :class:`samplegrad.lab.compare.problems.GaussianQuadratic`). ``E[S_mu^2] = 1/s^2``,
  ``E[S_sigma^2] = 2/s^2``.
- ``score-delta`` (:mod:`samplegrad.estimators.delta`, coefficient 1): the control variate is
  the second-order Taylor expansion around the mean, ``h(y) = f(mu) + f'(mu) s y +
  f''(mu) s^2 y^2 / 2``, and the estimate is ``(F - h) S + grad E[h]`` with
  ``grad E[h] = (f'(mu), s f''(mu))`` (the expansion point is held fixed). With ``R = F - h``:
  ``Var = E[(R S - (G - grad E[h]))^2]``; 0 for a quadratic ``f``.
- ``pathwise-delta`` (:mod:`samplegrad.estimators.pathwise`, coefficient 1): the pathwise
  gradient of ``f - h`` plus ``grad E[h]``: ``f'(x) - f''(mu) s y`` for ``mu`` and
  ``(f'(x) - f'(mu) - f''(mu) s y) y + s f''(mu)`` for ``sigma``, ``x = mu + s y``; 0 for a
  quadratic ``f``.
- ``measure-valued`` (:mod:`samplegrad.estimators.measure_valued`, coupled). Mean:
  ``g_mu = (F(W) - F(-W)) / (s sqrt(2 pi))`` with one Weibull ``W`` (density
  ``w exp(-w^2/2) = sqrt(2 pi) w phi(w)`` on ``w > 0``), ``Var = E_W[(g_mu - G_mu)^2]``.
  Scale: ``g_sigma = (F(M) - F(M U)) / s`` with ``M`` double-sided Maxwell (density
  ``m^2 phi(m)``) and ``U ~ U(0, 1)``; given ``M = m``, ``E_U[(F(m) - F(m U))^2] =
  F(m)^2 - 2 F(m) A(m) / m + B(m) / m`` with ``A(m) = int_0^m F``, ``B(m) = int_0^m F^2``, so
  ``E[(s g_sigma)^2] = int phi(m) (m^2 F(m)^2 - 2 m F(m) A(m) + m B(m)) dm`` and
  ``Var = E[g_sigma^2] - G_sigma^2``. ``g_sigma`` does not change when a constant is added to
  ``f``, so ``F`` is replaced by ``F - f(mu)`` first, which keeps the three terms small.
- ``measure-valued-uncoupled``: the two sides are independent, so the variances add:
  ``Var g_mu = (Var_W F(W) + Var_W F(-W)) / (2 pi s^2)`` and
  ``Var g_sigma = (Var_M F(M) + Var F(y)) / s^2``.

**Quadrature.** Every integral is over ``y``; folding ``y -> -y`` turns each into one over
``y in [0, L]`` (the Weibull's half-line, the Maxwell's and the normal's two halves, and the
antiderivatives ``A``, ``B`` from 0 outward). ``[0, L]`` is split into equal panels with a
16-point Gauss-Legendre rule each; ``A`` and ``B`` at the nodes come from the spectral
integration matrix of the same rule (integrate each panel's interpolating polynomial), so all
integrals share one set of cost evaluations. ``L`` is where the integrands, which decay like
``exp(-alpha y^2)`` around their peak, have fallen by ``exp(-72)``: ``alpha = 1/2 - p c s^2``
for a cost that grows like ``exp(c x^2)`` (``p = 1`` for the gradient, 2 for the variances).
The number of panels doubles from 16 per side until a probe (the integrals of ``F``,
``F1``, ``y F1`` and, for variances, ``(1 + y^4)(F^2 + F1^2)``) agrees between two grids
to ``1e-11`` of its scale; the finer grid is used. A last panel that still carries
``1e-14`` of that scale means the cost grows faster than declared: ``ValueError``.
``tests/test_exact.py`` checks the results against ``scipy.integrate.quad`` / ``dblquad``
and against the closed forms.

**Where variances are infinite.** Every variance needs ``E[f(x)^2 P(y)]`` for a polynomial
``P`` (and its Weibull and Maxwell analogues), finite only when ``|f|`` grows more slowly
than ``exp(x^2 / (4 s^2))``; the gradient needs growth below ``exp(x^2 / (2 s^2))``. For
``exp(-k x^2)`` that is ``k > -1/(4 s^2)`` for the variances and ``k > -1/(2 s^2)`` for the
gradient (Mohamed et al. 2020, Sec. 3). :attr:`Cost1D.growth` declares the rate ``c``;
:func:`exact_variance` and :func:`exact_gradient` raise ``ValueError`` naming the cost's
parameters where it is too large. Close to that bound the integration range is so wide that
``|f|^p`` exceeds :data:`LARGEST_POWER` on it and they raise ``ValueError`` too, rather than
overflow: for ``exp(-k x^2)`` at ``mu = sigma = 1`` the variances are computed for
``k >= -0.2`` (they diverge at ``-0.25``) and the gradient for ``k >= -0.4`` (``-0.5``).

**Closed forms** for the ready-made costs (``a = mu - k``):

- ``(x - k)^2``: ``E f = a^2 + s^2``; every variance is in
  :class:`samplegrad.lab.compare.problems.GaussianQuadratic`.
- ``exp(-k x^2)``, ``1 + 2 k s^2 > 0``: ``E f = exp(-k mu^2 / (1 + 2 k s^2)) /
  sqrt(1 + 2 k s^2)`` (complete the square).
- ``cos(k x)``: ``E f = cos(k mu) exp(-k^2 s^2 / 2)`` (the real part of the characteristic
  function ``E exp(i k x)``).

**Batches.** A cost may describe a batch of costs, e.g. ``cosine(np.linspace(0.1, 10,
200))``: its functions then map points of shape ``(*batch, N)`` to values of that shape, and
every result is an array of shape ``batch`` (one quadrature for all of them). A scalar cost
gives floats.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

NODES_PER_PANEL = 16
PANELS_PER_SIDE = (16, 32, 64, 128, 256, 512)
"""Grids tried in turn: panels on ``[0, L]``, each with :data:`NODES_PER_PANEL` nodes."""
TAIL_EXPONENT = 72.0
"""``L`` is where the integrand has decayed to ``exp(-TAIL_EXPONENT)`` of its peak."""
CONVERGENCE_TOLERANCE = 1e-11
TAIL_TOLERANCE = 1e-14
LARGEST_POWER = 1e200
"""Bound on ``|f|^p`` and ``|f'|^p`` on the grid (``p = 2`` for variances, 1 for gradients),
so that the integrands, these times polynomials, stay finite."""

_SQRT_2PI = math.sqrt(2.0 * math.pi)

Array = np.ndarray
Result = dict[str, float] | dict[str, Array]
"""Per parameter (``"mu"``, ``"sigma"``): a float, or an array of the cost's batch shape."""


@dataclass(frozen=True, eq=False)
class Cost1D:
    """A scalar cost with its first two derivatives, numpy-vectorised.

    ``value``, ``first`` and ``second`` map an array of points to ``f``, ``f'`` and ``f''``
    there, elementwise. A batch of costs (e.g. one per value of a constant ``k``) maps points
    of shape ``(*batch, N)`` to values of that shape. Compared and hashed by identity (its
    fields hold functions and arrays).

    ``growth`` is a ``c >= 0`` with ``|f|``, ``|f'|`` and ``|f''|`` bounded by a polynomial
    times ``exp(c x^2)`` (0 for a bounded or polynomial cost; per batch element or shared);
    it sets the integration range and decides where the variances are infinite (see the
    module docstring). ``name`` and ``parameters`` only serve error messages.
    """

    value: Callable[[Array], Array]
    first: Callable[[Array], Array]
    second: Callable[[Array], Array]
    growth: float | Array = 0.0
    name: str = "f"
    parameters: Mapping[str, float | Array] = field(default_factory=dict)


def _column(k: float | Array) -> Array:
    """``k`` with a trailing axis, to broadcast against points of shape ``(*batch, N)``."""
    return np.asarray(k, dtype=np.float64)[..., None]


def quadratic(k: float | Array) -> Cost1D:
    """``f(x) = (x - k)^2``; ``E f = (mu - k)^2 + sigma^2``. Variances in closed form:
    :class:`samplegrad.lab.compare.problems.GaussianQuadratic`."""
    kk = _column(k)
    return Cost1D(
        value=lambda x: (x - kk) ** 2,
        first=lambda x: 2.0 * (x - kk),
        second=lambda x: np.full(np.broadcast_shapes(np.shape(x), kk.shape), 2.0),
        name="(x - k)^2",
        parameters={"k": np.asarray(k, dtype=np.float64)},
    )


def exponential(k: float | Array) -> Cost1D:
    """``f(x) = exp(-k x^2)``; ``E f = exp(-k mu^2 / (1 + 2 k sigma^2)) / sqrt(1 + 2 k
    sigma^2)``. The gradient needs ``k > -1/(2 sigma^2)``; every variance is infinite for
    ``k <= -1/(4 sigma^2)`` (``E[f^2 ...]`` diverges), where a ``ValueError`` names ``k``."""
    kk = _column(k)

    def value(x: Array) -> Array:
        return np.exp(-kk * x**2)

    return Cost1D(
        value=value,
        first=lambda x: -2.0 * kk * x * value(x),
        second=lambda x: (4.0 * kk**2 * x**2 - 2.0 * kk) * value(x),
        growth=np.maximum(-np.asarray(k, dtype=np.float64), 0.0),
        name="exp(-k x^2)",
        parameters={"k": np.asarray(k, dtype=np.float64)},
    )


def cosine(k: float | Array) -> Cost1D:
    """``f(x) = cos(k x)``; ``E f = cos(k mu) exp(-k^2 sigma^2 / 2)``."""
    kk = _column(k)
    return Cost1D(
        value=lambda x: np.cos(kk * x),
        first=lambda x: -kk * np.sin(kk * x),
        second=lambda x: -(kk**2) * np.cos(kk * x),
        name="cos(k x)",
        parameters={"k": np.asarray(k, dtype=np.float64)},
    )


# ------------------------------------------------------------------------------- public API


def exact_gradient(cost: Cost1D, mu: float, sigma: float) -> Result:
    """``{"mu": d/dmu E f, "sigma": d/dsigma E f}`` for ``x ~ N(mu, sigma^2)``:
    ``E[f'(x)]`` and ``E[y f'(x)]`` with ``x = mu + sigma y``.

    Raises:
        ValueError: invalid ``mu``/``sigma``, a cost growing too fast for ``E f'`` to exist,
            or a cost that overflows or cannot be resolved on the integration range.
    """
    q = _Quadrature.build(cost, mu, sigma, power=1)
    return q.result(*q.gradient())


def exact_variance(
    cost: Cost1D, mu: float, sigma: float, estimator: str, num_samples: int
) -> Result | None:
    """Variance of the named estimator's gradient from ``num_samples`` samples, per parameter.

    ``estimator`` is one of :data:`ESTIMATORS`; any other name, or ``"score-loo"`` with
    ``num_samples < 2``, gives ``None``. Formulas: module docstring.

    Raises:
        ValueError: invalid arguments; a cost whose variances are infinite at this ``sigma``
            (the message names its parameters); a cost that overflows or cannot be resolved
            on the integration range.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
    if estimator not in ESTIMATORS or (estimator == "score-loo" and num_samples < 2):
        return None
    q = _Quadrature.build(cost, mu, sigma, power=2)
    return q.result(*_VARIANCES[estimator](q, num_samples))


# ------------------------------------------------------------------------------- quadrature


@functools.cache
def _panel_rule() -> tuple[Array, Array, Array]:
    """Gauss-Legendre nodes ``t`` and weights on ``[-1, 1]``, and the integration matrix
    ``Q`` with ``int_{-1}^{t_i} p = sum_j Q_ij p(t_j)`` for polynomials of degree < n.

    ``Q = V1 C V^-1``: ``V^-1`` takes values at the nodes to Legendre coefficients, ``C``
    (``numpy.polynomial.legendre.legint`` with lower bound -1) integrates them, ``V1``
    evaluates the result at the nodes.
    """
    legendre = np.polynomial.legendre
    t, w = legendre.leggauss(NODES_PER_PANEL)
    integrate = np.stack(
        [legendre.legint(column, lbnd=-1) for column in np.eye(NODES_PER_PANEL)], axis=1
    )
    values_to_coefficients = np.linalg.inv(legendre.legvander(t, NODES_PER_PANEL - 1))
    matrix = legendre.legvander(t, NODES_PER_PANEL) @ integrate @ values_to_coefficients
    return t, w, matrix


@functools.cache
def _half_line_grid(panels: int) -> tuple[Array, Array]:
    """Nodes and weights of the composite rule on ``[0, 1]``: ``panels`` equal panels."""
    t, w, _ = _panel_rule()
    half = 0.5 / panels
    nodes = np.arange(panels)[:, None] / panels + half * (t + 1.0)
    return nodes.ravel(), np.broadcast_to(half * w, nodes.shape).ravel()


def _standard_normal_density(y: Array) -> Array:
    return np.exp(-0.5 * y**2) / _SQRT_2PI


@dataclass(frozen=True)
class _Quadrature:
    """Cost values on the accepted grid over ``y in [0, L]``, for ``x = mu +- s y``.

    Arrays have shape ``(*batch, N)``: the nodes ``y`` (``panels`` panels of half-width
    ``half_width`` on ``[0, L]``), ``normal`` their weights times ``phi(y)``,
    ``Fp``/``Fm`` the values ``f(mu + s y)``/``f(mu - s y)`` minus ``f(mu)`` and
    ``F1p``/``F1m`` the derivatives there; ``f0, f1, f2`` are ``f, f', f''`` at ``mu``
    (shape ``batch``).
    """

    s: float
    batch: tuple[int, ...]
    panels: int
    half_width: Array
    y: Array
    normal: Array
    Fp: Array
    Fm: Array
    F1p: Array
    F1m: Array
    f0: Array
    f1: Array
    f2: Array

    @classmethod
    def build(cls, cost: Cost1D, mu: float, sigma: float, power: int) -> _Quadrature:
        """Evaluate ``cost`` on successively finer grids until the probe converges."""
        if not (math.isfinite(mu) and math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"need finite mu and sigma > 0, got mu={mu!r}, sigma={sigma!r}")
        mu, s = float(mu), float(sigma)
        centre = np.array([mu])
        f0, f1, f2 = (
            np.asarray(g(centre), dtype=np.float64)[..., 0]
            for g in (cost.value, cost.first, cost.second)
        )
        growth = np.asarray(cost.growth, dtype=np.float64)
        batch = np.broadcast_shapes(f0.shape, f1.shape, f2.shape, growth.shape)
        alpha = 0.5 - power * growth * s**2
        _check_growth(cost, alpha, s, power)
        peak = power * growth * abs(mu) * s / alpha  # the integrand's peak, in y
        length = np.broadcast_to(peak + np.sqrt(TAIL_EXPONENT / alpha), batch)[..., None]
        previous = None
        for panels in PANELS_PER_SIDE:
            nodes, weights = _half_line_grid(panels)
            y = length * nodes
            x = np.concatenate(np.broadcast_arrays(mu + s * y, mu - s * y), axis=-1)
            shape = (*batch, x.shape[-1])
            with np.errstate(over="ignore", invalid="ignore"):
                F = np.broadcast_to(np.asarray(cost.value(x), dtype=np.float64), shape)
                F1 = np.broadcast_to(np.asarray(cost.first(x), dtype=np.float64), shape)
            largest = LARGEST_POWER ** (1 / power)
            if not ((np.abs(F) < largest).all() and (np.abs(F1) < largest).all()):
                raise ValueError(
                    f"{_describe(cost)}: |f| or |f'| exceeds {largest:g} (or is not finite) on "
                    f"the integration range, |x - mu| up to {s * float(np.max(y)):.3g}, where "
                    f"the integrands would overflow float64: "
                    f"it grows too fast this close to the growth rate c = 1/({2 * power} "
                    f"sigma^2) = {1 / (2 * power * s**2):g} at which the integrals diverge"
                )
            half = y.shape[-1]
            q = cls(
                s=s,
                batch=batch,
                panels=panels,
                half_width=length / (2 * panels),
                y=np.broadcast_to(y, (*batch, half)),
                normal=np.broadcast_to(length * weights * _standard_normal_density(y), y.shape),
                Fp=F[..., :half] - f0[..., None],
                Fm=F[..., half:] - f0[..., None],
                F1p=F1[..., :half],
                F1m=F1[..., half:],
                f0=np.broadcast_to(f0, batch),
                f1=np.broadcast_to(f1, batch),
                f2=np.broadcast_to(f2, batch),
            )
            probe, scale = q._probe(power, cost)
            if previous is not None and np.all(
                np.abs(probe - previous) <= CONVERGENCE_TOLERANCE * scale
            ):
                return q
            previous = probe
        raise ValueError(
            f"{_describe(cost)}: the quadrature did not converge with {PANELS_PER_SIDE[-1]} "
            f"panels of {NODES_PER_PANEL} nodes on each side of mu; the cost varies too fast "
            f"on the scale of sigma={s:g} to integrate reliably"
        )

    def _probe(self, power: int, cost: Cost1D) -> tuple[Array, Array]:
        """Integrals whose agreement between two grids is the convergence test, and a positive
        scale in the same units to measure that agreement against: ``E[F1]``, ``E[y F1]``,
        ``E[F]`` and the scale ``E[(1 + y^(2p)) (|F|^p + |F1|^p)]`` (smooth for ``p = 2``, so
        itself a probe). Raises if the last panels still carry part of the scale."""
        y = self.y
        magnitude = (1.0 + y ** (2 * power)) * (
            np.abs(self.Fp) ** power
            + np.abs(self.Fm) ** power
            + np.abs(self.F1p) ** power
            + np.abs(self.F1m) ** power
        )
        weighted = self.normal * magnitude
        scale = weighted.sum(-1)
        tail = weighted[..., -NODES_PER_PANEL:].sum(-1)
        if np.any(tail > TAIL_TOLERANCE * scale):
            raise ValueError(
                f"{_describe(cost)}: the integrands have not decayed at |x - mu| = "
                f"{self.s * float(np.max(y)):.3g}; declare the cost's growth rate c "
                f"(|f(x)| <= poly(x) exp(c x^2)) in Cost1D.growth"
            )
        probes = [*self.gradient(), self.expect(self.Fp, self.Fm)]
        if power == 2:
            probes.append(scale)
        return np.stack(probes), scale

    # --- expectations over y, folded onto y >= 0 -----------------------------------------

    def expect(self, at_plus: Array, at_minus: Array) -> Array:
        """``E[g(y)]`` for ``y ~ N(0, 1)``, from ``g`` at ``+y`` and at ``-y``."""
        return (self.normal * (at_plus + at_minus)).sum(-1)

    def maxwell(self, at_plus: Array, at_minus: Array) -> Array:
        """``E[g(M)]`` for the double-sided Maxwell ``M`` (density ``m^2 phi(m)``)."""
        return (self.normal * self.y**2 * (at_plus + at_minus)).sum(-1)

    def weibull(self, values: Array) -> Array:
        """``E[g(W)]`` for ``W`` with density ``w exp(-w^2/2) = sqrt(2 pi) w phi(w)``."""
        return _SQRT_2PI * (self.normal * self.y * values).sum(-1)

    def antiderivative(self, values: Array) -> Array:
        """``int_0^y g`` at every node, from ``g`` at the nodes (panel by panel: the
        spectral integration matrix within a panel, plus the panels before it)."""
        _, weights, matrix = _panel_rule()
        panels = values.reshape(*values.shape[:-1], self.panels, NODES_PER_PANEL)
        width = self.half_width[..., None]
        partial = width * (panels @ matrix.T)
        whole = width[..., 0] * (panels @ weights)
        before = np.cumsum(whole, axis=-1) - whole
        return (before[..., None] + partial).reshape(values.shape)

    # --- results ----------------------------------------------------------------------------

    def gradient(self) -> tuple[Array, Array]:
        return self.expect(self.F1p, self.F1m), self.expect(self.y * self.F1p, -self.y * self.F1m)

    def result(self, mu: Array, sigma: Array) -> Result:
        if self.batch == ():
            return {"mu": float(mu), "sigma": float(sigma)}
        return {"mu": np.asarray(mu), "sigma": np.asarray(sigma)}

    def score_variances(
        self, at_plus: Array, at_minus: Array, means: tuple[Array, Array]
    ) -> tuple[Array, Array]:
        """``E[(g S - mean)^2]`` for the scores of ``mu`` and ``sigma``, ``S_mu = y / s`` and
        ``S_sigma = (y^2 - 1) / s``, from ``g`` at ``+y`` and ``-y``."""
        y, s = self.y, self.s
        scores = ((y / s, -y / s), ((y**2 - 1.0) / s, (y**2 - 1.0) / s))
        mu, sigma = (
            self.expect((at_plus * sp - m[..., None]) ** 2, (at_minus * sm - m[..., None]) ** 2)
            for (sp, sm), m in zip(scores, means, strict=True)
        )
        return mu, sigma


# -------------------------------------------------------------------------------- variances


def _pathwise(q: _Quadrature, K: int) -> tuple[Array, Array]:
    """``Var F1(y)`` and ``Var y F1(y)``."""
    g_mu, g_sigma = (g[..., None] for g in q.gradient())
    var_mu = q.expect((q.F1p - g_mu) ** 2, (q.F1m - g_mu) ** 2)
    var_sigma = q.expect((q.y * q.F1p - g_sigma) ** 2, (-q.y * q.F1m - g_sigma) ** 2)
    return var_mu / K, var_sigma / K


def _pathwise_delta(q: _Quadrature, K: int) -> tuple[Array, Array]:
    """With ``x = mu + s y``: ``f'(x) - f2 s y`` for ``mu`` and
    ``(f'(x) - f1 - f2 s y) y + f2 s`` for ``sigma`` (the pathwise gradient of ``f - h`` plus
    ``grad E[h] = (f1, f2 s)``), on both sides ``y -> +-y``."""
    y, s = q.y, q.s
    f1, f2 = q.f1[..., None], q.f2[..., None]
    g_mu, g_sigma = (g[..., None] for g in q.gradient())
    var_mu = q.expect((q.F1p - f2 * s * y - g_mu) ** 2, (q.F1m + f2 * s * y - g_mu) ** 2)
    sigma_p = (q.F1p - f1 - f2 * s * y) * y + f2 * s
    sigma_m = -(q.F1m - f1 + f2 * s * y) * y + f2 * s
    var_sigma = q.expect((sigma_p - g_sigma) ** 2, (sigma_m - g_sigma) ** 2)
    return var_mu / K, var_sigma / K


def _score(q: _Quadrature, K: int) -> tuple[Array, Array]:
    """``Var F S`` with the raw cost (the estimator is not shift-invariant)."""
    var_mu, var_sigma = q.score_variances(
        q.Fp + q.f0[..., None], q.Fm + q.f0[..., None], q.gradient()
    )
    return var_mu / K, var_sigma / K


def _score_loo(q: _Quadrature, K: int) -> tuple[Array, Array]:
    """``Var h / K + G^2 / (K (K - 1))`` with ``Var h = E[((F - m) S - G)^2] + v E[S^2]/(K-1)``."""
    m = q.expect(q.Fp, q.Fm)[..., None]
    v = q.expect((q.Fp - m) ** 2, (q.Fm - m) ** 2)
    gradient = q.gradient()
    var_h = q.score_variances(q.Fp - m, q.Fm - m, gradient)
    score_second_moments = (1.0 / q.s**2, 2.0 / q.s**2)
    var_mu, var_sigma = (
        (var + v * s2 / (K - 1)) / K + g**2 / (K * (K - 1))
        for var, g, s2 in zip(var_h, gradient, score_second_moments, strict=True)
    )
    return var_mu, var_sigma


def _score_delta(q: _Quadrature, K: int) -> tuple[Array, Array]:
    """``Var R S`` for the residual ``R = F - h`` of the Taylor expansion around ``mu``; the
    estimate's mean is ``E[R S] = G - grad E[h]``."""
    y, s = q.y, q.s
    linear = (q.f1 * s)[..., None] * y
    quadratic = (0.5 * q.f2 * s**2)[..., None] * y**2
    g_mu, g_sigma = q.gradient()
    var_mu, var_sigma = q.score_variances(
        q.Fp - linear - quadratic, q.Fm + linear - quadratic, (g_mu - q.f1, g_sigma - s * q.f2)
    )
    return var_mu / K, var_sigma / K


def _measure_valued(q: _Quadrature, K: int) -> tuple[Array, Array]:
    """Coupled: one Weibull for both sides of the mean; ``eps = M U`` for the scale."""
    g_mu, g_sigma = q.gradient()
    difference = (q.Fp - q.Fm) / (q.s * _SQRT_2PI)
    var_mu = q.weibull((difference - g_mu[..., None]) ** 2)
    y, Fp, Fm = q.y, q.Fp, q.Fm
    A_p, A_m = q.antiderivative(Fp), q.antiderivative(Fm)
    B_p, B_m = q.antiderivative(Fp**2), q.antiderivative(Fm**2)
    integrand = y**2 * (Fp**2 + Fm**2) - 2.0 * y * (Fp * A_p + Fm * A_m) + y * (B_p + B_m)
    var_sigma = (q.normal * integrand).sum(-1) / q.s**2 - g_sigma**2
    return var_mu / K, var_sigma / K


def _measure_valued_uncoupled(q: _Quadrature, K: int) -> tuple[Array, Array]:
    """Independent sides: the variances of the two parts add."""

    def weibull_variance(values: Array) -> Array:
        return q.weibull((values - q.weibull(values)[..., None]) ** 2)

    var_mu = (weibull_variance(q.Fp) + weibull_variance(q.Fm)) / (2.0 * math.pi * q.s**2)
    maxwell_mean = q.maxwell(q.Fp, q.Fm)[..., None]
    normal_mean = q.expect(q.Fp, q.Fm)[..., None]
    var_sigma = q.maxwell((q.Fp - maxwell_mean) ** 2, (q.Fm - maxwell_mean) ** 2) + q.expect(
        (q.Fp - normal_mean) ** 2, (q.Fm - normal_mean) ** 2
    )
    return var_mu / K, var_sigma / (q.s**2 * K)


_VARIANCES: dict[str, Callable[[_Quadrature, int], tuple[Array, Array]]] = {
    "pathwise": _pathwise,
    "pathwise-delta": _pathwise_delta,
    "score": _score,
    "score-loo": _score_loo,
    "score-delta": _score_delta,
    "measure-valued": _measure_valued,
    "measure-valued-uncoupled": _measure_valued_uncoupled,
}

ESTIMATORS = tuple(_VARIANCES)
"""The estimator names :func:`exact_variance` knows (names of the catalog)."""


# ----------------------------------------------------------------------------------- checks


def _check_growth(cost: Cost1D, alpha: Array, s: float, power: int) -> None:
    """Raise where the integrands do not decay: ``alpha = 1/2 - p c s^2 <= 0``."""
    infinite = np.asarray(alpha <= 0)
    if not infinite.any():
        return
    growth = np.broadcast_to(np.asarray(cost.growth, dtype=np.float64), infinite.shape)
    rates = ", ".join(f"{c:g}" for c in np.atleast_1d(growth[infinite]))
    what, integral = (
        ("every estimator's variance is", "E[f(x)^2 ...]")
        if power == 2
        else ("the gradient is", "E[f'(x)]")
    )
    raise ValueError(
        f"{_describe(cost, infinite)}: {what} infinite at sigma={s:g}: |f(x)| grows like "
        f"exp(c x^2) with c = {rates} >= 1/({2 * power} sigma^2) = {1 / (2 * power * s**2):g}, "
        f"so {integral} diverges under N(mu, sigma^2)"
    )


def _describe(cost: Cost1D, where: Array | None = None) -> str:
    """The cost's name and its parameters (those at ``where``, a mask over the batch)."""
    parts = []
    for name, values in cost.parameters.items():
        values = np.asarray(values, dtype=np.float64)
        if where is not None:
            values = np.broadcast_to(values, np.shape(where))[where]
        parts.append(f"{name} = {', '.join(f'{v:g}' for v in np.atleast_1d(values))}")
    return f"{cost.name} with {'; '.join(parts)}" if parts else cost.name
