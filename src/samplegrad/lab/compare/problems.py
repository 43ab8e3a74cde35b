"""The problems of ``samplegrad compare``: expectations whose gradient is known (or wanted).

Each :class:`Problem` gives a distribution ``q_phi``, a cost ``f`` and a way to draw ``R``
gradient estimates of ``d/dphi E_q[f]`` with a given estimator; most also give the exact
gradient and the exact variance of each estimator, from closed forms, quadrature or
enumeration:

- ``gaussian-quadratic`` ``(x - k)^2``, ``gaussian-exp`` ``exp(-k x^2)`` and ``gaussian-cos``
  ``cos(k x)`` with ``x ~ N(mu, sigma^2)``: the three costs of Mohamed et al. (2020, JMLR,
  "Monte Carlo gradient estimation in machine learning", Sec. 3, Figs. 2-3), whose constant
  ``k`` is swept to show where each estimator wins; closed forms for the quadratic, quadrature
  (:mod:`samplegrad.lab.compare.exact_gaussian`) for the others.
- ``bernoulli-toy`` ``(b - t)^2`` with ``b ~ Bernoulli(sigmoid(phi))``: closed forms.
- ``bernoulli-3d``: docs/design.md's three-dimensional check, by enumeration
  (:mod:`samplegrad.lab.compare.exact_bernoulli` and, for IndeCateR, ReinMax and the unordered
  set, :mod:`samplegrad.lab.compare.exact_categorical`).
- ``categorical-2x3``: two categorical variables of three classes and a cubic cost, by
  enumeration (:mod:`samplegrad.lab.compare.exact_categorical`).
- ``iwae-gaussian``: the importance-weighted bound of Rainforth et al.'s (2018) Gaussian model,
  differentiated with respect to the encoder and the decoder with ``sg.iwae_bound``'s gradients
  (pathwise, DReG, STL, VIMCO) at ``K = 1, 4, 16, 64, 256``: the gradient signal-to-noise ratio
  against ``K`` and its log-log slope, against the exact gradient
  (:mod:`samplegrad.lab.compare.snr`).
- ``vae-encoder``: the negative ELBO of a VAE trained by ``samplegrad train vae``, differentiated
  with respect to its encoder's layers, on a fixed batch of test images: no exact gradient, but
  the estimators' variances, signal-to-noise ratios and costs on a real model.

The toy problems are :class:`BatchedProblem`\\ s: their ``R`` repeats are one batched float64
call (every parameter a leaf of shape ``(R,)``), see :func:`samplegrad.diagnostics.measure_batched`.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal, OneHotCategorical

from samplegrad import diagnostics
from samplegrad.diagnostics import GradientStats
from samplegrad.estimators import Estimator, catalog
from samplegrad.lab.compare import exact_categorical, snr
from samplegrad.lab.compare.exact_bernoulli import exact_gradient as bernoulli_exact_gradient
from samplegrad.lab.compare.exact_bernoulli import exact_variance as bernoulli_exact_variance
from samplegrad.lab.compare.exact_gaussian import Cost1D, cosine, exponential, quadratic
from samplegrad.lab.compare.exact_gaussian import exact_gradient as gaussian_exact_gradient
from samplegrad.lab.compare.exact_gaussian import exact_variance as gaussian_exact_variance

if TYPE_CHECKING:
    from samplegrad.lab.compare.runner import BoundGradientSpec, EstimatorSpec

DTYPE = torch.float64

DEFAULT_NUM_SAMPLES = 2
"""``K``, samples per gradient estimate, unless ``compare`` is told otherwise."""

TIMING_CALLS = 40
"""Default calls per timed block of single estimates (see :func:`BatchedProblem.measure`)."""
TIMING_BLOCKS = 5
"""Timed blocks of single estimates; the median block counts."""


class CompareError(ValueError):
    """A request ``compare`` cannot run; the message says what to change."""


@dataclass(frozen=True)
class Measurement:
    """What :meth:`Problem.measure` returns: statistics per parameter, and the evaluations of
    ``f`` per estimate (the points ``f`` was called with for one batch element, over all its
    calls: ``1 + D (K - 1)`` per sample for IndeCateR, ``2 S`` more for REBAR's relaxed
    points), or ``None`` where not counted."""

    stats: list[GradientStats]
    evaluations: float | None = None


class Problem(abc.ABC):
    """An expectation ``E_{q_phi}[f]`` and a way to measure gradient estimators on it."""

    name: ClassVar[str]
    formula: ClassVar[str]
    """The problem in words, for the table's header."""
    default_repeats: ClassVar[int] = 100_000
    event_dims: ClassVar[int] = 0
    """Event dimensions of ``q_phi`` (0 for a scalar variable)."""
    dtype: ClassVar[torch.dtype] = DTYPE
    default_num_samples: ClassVar[tuple[int, ...]] = (DEFAULT_NUM_SAMPLES,)
    """The ``K`` measured when none are given."""
    bound_gradients: ClassVar[tuple[str, ...]] = ()
    """For a problem of ``sg.iwae_bound``: the gradient names it measures (its ``estimator``
    argument) instead of the catalog's estimators of ``E_q[f]``."""
    fits_snr_slopes: ClassVar[bool] = False
    """Whether ``compare`` fits the log-log slope of the SNR against ``K`` (several ``K``)."""

    def constants(self) -> dict[str, float]:
        """The problem's settable numbers (for the header, the JSON and sweeps)."""
        return {}

    def with_constant(self, name: str, value: float) -> Problem:
        """A copy with constant ``name`` set to ``value`` (:class:`CompareError` if unknown)."""
        if name not in self.constants():
            known = ", ".join(self.constants()) or "none"
            raise CompareError(
                f"problem {self.name!r} has no constant {name!r}; its constants: {known}"
            )
        return dataclasses.replace(self, **{name: value})  # type: ignore[type-var]

    @property
    @abc.abstractmethod
    def default_estimators(self) -> tuple[str, ...]:
        """The estimators ``compare`` measures when none are named."""

    @abc.abstractmethod
    def example_distribution(self) -> Distribution:
        """A ``q_phi`` of this problem, to ask an estimator whether it supports the family."""

    @abc.abstractmethod
    def try_estimate(self, estimator: Estimator, num_samples: int) -> None:
        """One throw-away estimate, so that argument errors surface before measuring."""

    @abc.abstractmethod
    def measure(
        self, spec: EstimatorSpec, num_samples: int, repeats: int, seed: int, timing_calls: int
    ) -> Measurement:
        """``repeats`` estimates with a fresh instance of ``spec``: statistics per parameter,
        timed (``timing_calls`` per timed block where timing is separate), with the exact
        gradient where known, and the evaluations of ``f`` per estimate where counted."""

    def accepts(self, estimator: str, num_samples: int) -> str | None:
        """Why ``estimator`` cannot take ``num_samples`` samples here, or ``None``."""
        return catalog.entry(estimator).accepts(num_samples)

    def exact_gradient(self) -> dict[str, float]:
        """``d/dphi E_q[f]`` per parameter; empty where unknown."""
        return {}

    def exact_variance(self, estimator: str, num_samples: int) -> dict[str, float] | None:
        """Variance of the named estimator with ``num_samples`` samples, or ``None``."""
        return None


class BatchedProblem(Problem):
    """A problem with scalar parameters whose ``R`` repeats are one batched call."""

    @property
    def default_estimators(self) -> tuple[str, ...]:
        """Every estimator class of the catalog that can handle this problem, and those of
        their variants whose exact variance is known here (at :data:`DEFAULT_NUM_SAMPLES`), so
        that a variant's row can be checked; in catalog order."""
        dist = self.example_distribution()
        return tuple(
            name
            for name, entry in catalog.CATALOG.items()
            if entry.supports(dist)
            and (not entry.is_variant or self.exact_variance(name, DEFAULT_NUM_SAMPLES) is not None)
        )

    @abc.abstractmethod
    def parameter_values(self) -> dict[str, float]:
        """The differentiable parameters' values."""

    @abc.abstractmethod
    def distribution(self, leaves: dict[str, Tensor]) -> Distribution:
        """``q_phi`` with batch shape ``(repeats,)`` for leaves of shape ``(repeats,)``."""

    @abc.abstractmethod
    def cost(self, z: Tensor) -> Tensor:
        """``f(z)``: samples ``(S, repeats, *event)`` to costs ``(S, repeats)``."""

    def leaves(self, repeats: int) -> dict[str, Tensor]:
        """The parameters as float64 leaves of shape ``(repeats,)``."""
        return {
            name: torch.full((repeats,), value, dtype=DTYPE, requires_grad=True)
            for name, value in self.parameter_values().items()
        }

    def example_distribution(self) -> Distribution:
        return self.distribution(self.leaves(1))

    def try_estimate(self, estimator: Estimator, num_samples: int) -> None:
        estimator(self.cost, self.distribution(self.leaves(1)), num_samples)

    def measure(
        self, spec: EstimatorSpec, num_samples: int, repeats: int, seed: int, timing_calls: int
    ) -> Measurement:
        """Time single estimates, then draw all ``repeats`` in one batched call.

        The timing loop (``R = 1``, forward and backward, on one thread; the median of
        :data:`TIMING_BLOCKS` blocks of ``timing_calls`` calls) runs *before* the batched
        measurement and on the same estimator instance, so a stateful estimator (``score-ma``)
        is measured in the state a short training run leaves it in, not in its initial state
        (a moving average starts at zero). One thread: tensors of a few elements gain nothing
        from intra-op parallelism, and some kernels open a parallel region even for two
        elements, which on a busy machine measures the machine's load, not the estimator. The
        timed estimates also count the points ``f`` is called with, per estimate.
        """
        estimator = spec.build(self)
        generator = torch.Generator().manual_seed(seed)
        single = self.leaves(1)
        points, estimates = [], []

        def counted_cost(z: Tensor) -> Tensor:
            points.append(z.shape[0])
            return self.cost(z)

        def one_estimate() -> None:
            for leaf in single.values():
                leaf.grad = None
            estimates.append(1)
            estimator(counted_cost, self.distribution(single), num_samples, generator).backward()

        seconds = _seconds_on_one_thread(one_estimate, timing_calls)
        generator.manual_seed(seed)
        stats = diagnostics.measure_batched(
            lambda leaves: estimator(self.cost, self.distribution(leaves), num_samples, generator),
            self.parameter_values(),
            repeats,
            exact=self.exact_gradient(),
            seconds=seconds,
        )
        return Measurement(list(stats.values()), sum(points) / len(estimates))


def _seconds_on_one_thread(call: Callable[[], object], calls: int) -> float:
    """The median over :data:`TIMING_BLOCKS` blocks of ``calls`` calls of the seconds per
    call, on one thread (:meth:`BatchedProblem.measure` says why)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return diagnostics.seconds_per_call(call, calls, TIMING_BLOCKS)
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class GaussianProblem(BatchedProblem):
    """``E_{x ~ N(mu, sigma^2)}[f(x; k)]``, gradients with respect to ``mu`` and ``sigma``;
    exact values by quadrature (:mod:`samplegrad.lab.compare.exact_gaussian`)."""

    mu: float = 1.0
    sigma: float = 1.0
    k: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mu) and math.isfinite(self.k) and 0 < self.sigma < math.inf):
            raise CompareError(f"need finite mu, k and 0 < sigma < inf, got {self}")

    @abc.abstractmethod
    def cost_1d(self) -> Cost1D:
        """The cost as numpy functions with two derivatives, for quadrature."""

    def constants(self) -> dict[str, float]:
        return {"mu": self.mu, "sigma": self.sigma, "k": self.k}

    def parameter_values(self) -> dict[str, float]:
        return {"mu": self.mu, "sigma": self.sigma}

    def distribution(self, leaves: dict[str, Tensor]) -> Distribution:
        return Normal(leaves["mu"], leaves["sigma"])

    def exact_gradient(self) -> dict[str, float]:
        return gaussian_exact_gradient(self.cost_1d(), self.mu, self.sigma)

    def exact_variance(self, estimator: str, num_samples: int) -> dict[str, float] | None:
        return gaussian_exact_variance(self.cost_1d(), self.mu, self.sigma, estimator, num_samples)


@dataclass(frozen=True)
class GaussianQuadratic(GaussianProblem):
    """``E_{x ~ N(mu, sigma^2)}[(x - k)^2] = a^2 + sigma^2`` with ``a = mu - k``.

    Exact gradient: ``d/dmu = 2a``, ``d/dsigma = 2 sigma``. Write ``x = mu + s eps``,
    ``eps ~ N(0, 1)``, ``s = sigma``, and use ``E[eps^2, eps^4, eps^6, eps^8] = 1, 3, 15, 105``.
    Single-sample variances (Mohamed et al. 2020, JMLR, Secs. 4-5; divide by ``K`` for the mean
    of ``K`` independent samples):

    - pathwise: ``g_mu = 2(a + s eps)``, ``Var = 4 s^2``; ``g_sigma = 2(a + s eps) eps``,
      ``E[g_sigma^2] = 4(a^2 + 3 s^2)``, ``Var = 4a^2 + 8 s^2``.
    - score function: ``g = f(x) S`` with scores ``S_mu = eps / s``,
      ``S_sigma = (eps^2 - 1) / s``. ``E[f^2 S_mu^2] = (a^4 + 18 a^2 s^2 + 15 s^4) / s^2``,
      so ``Var = a^4/s^2 + 14 a^2 + 15 s^2``; ``E[f^2 S_sigma^2] =
      (2 a^4 + 60 a^2 s^2 + 78 s^4) / s^2``, so ``Var = 2 a^4/s^2 + 60 a^2 + 74 s^2``.

    Leave-one-out baseline, ``K >= 2``: ``g = (1/K) sum_s h_s`` with
    ``h_s = (f_s - b_s) S_s`` and ``b_s`` the mean cost of the other ``K - 1`` samples.
    ``b_s`` is independent of sample ``s``, so with ``m = E f``, ``v = Var f``, ``G = E g``:
    ``Var h = E[f^2 S^2] - 2 m E[f S^2] + (m^2 + v / (K - 1)) E[S^2] - G^2``; for ``s != j``
    only the ``f_s f_j`` and ``f_j f_s / (K-1)^2`` terms of ``h_s h_j`` survive ``E[S] = 0``,
    so ``Cov(h_s, h_j) = G^2 / (K - 1)^2``; hence
    ``Var g = Var h / K + G^2 / (K (K - 1))``. Here ``m = a^2 + s^2``,
    ``v = 4 a^2 s^2 + 2 s^4``, ``E[S_mu^2] = 1/s^2``, ``E[f S_mu^2] = (a^2 + 3 s^2)/s^2``,
    ``E[S_sigma^2] = 2/s^2``, ``E[f S_sigma^2] = (2 a^2 + 10 s^2)/s^2``, which gives

    - ``Var g_mu = (8 a^2 + 10 s^2 + (8 a^2 + 2 s^2) / (K - 1)) / K``,
    - ``Var g_sigma = (40 a^2 + 56 s^2 + (8 a^2 + 8 s^2) / (K - 1)) / K``.

    Score function with the delta-method control variate: ``f`` is quadratic, so its
    second-order expansion ``h`` equals ``f`` and the estimate is ``grad E[h]``, exact:
    variance 0.

    Measure-valued (Weibull for the mean, double-sided Maxwell ``M`` for the scale,
    :mod:`samplegrad.estimators.measure_valued`), per sample: coupled,
    ``g_mu = 4 a W / sqrt(2 pi)`` and ``g_sigma = 2 a M (1 - U) + s M^2 (1 - U^2)``, so
    ``Var = (16/pi - 4) a^2`` and ``4 a^2 + 4 s^2`` (docs/design.md, "Exact targets"); uncoupled,
    ``(8/pi - 2) a^2 + (4/pi) s^2`` and ``16 a^2 + 8 s^2``. Coupling lowers the mean's variance
    only while ``a^2 <= 2 s^2 / (4 - pi)``: at the defaults (``a = 2``, ``s = 1``) it raises it.
    """

    mu: float = 2.0
    sigma: float = 1.0
    k: float = 0.0

    name: ClassVar[str] = "gaussian-quadratic"
    formula: ClassVar[str] = "f(x) = (x - k)^2, x ~ N(mu, sigma^2)"

    def cost(self, z: Tensor) -> Tensor:
        return (z - self.k) ** 2

    def cost_1d(self) -> Cost1D:
        return quadratic(self.k)

    def exact_gradient(self) -> dict[str, float]:
        return {"mu": 2 * (self.mu - self.k), "sigma": 2 * self.sigma}

    def exact_variance(self, estimator: str, num_samples: int) -> dict[str, float] | None:
        a2, s2 = (self.mu - self.k) ** 2, self.sigma**2
        K = num_samples
        if estimator == "pathwise":
            return {"mu": 4 * s2 / K, "sigma": (4 * a2 + 8 * s2) / K}
        if estimator == "score":
            return {
                "mu": (a2 * a2 / s2 + 14 * a2 + 15 * s2) / K,
                "sigma": (2 * a2 * a2 / s2 + 60 * a2 + 74 * s2) / K,
            }
        if estimator == "score-loo" and K >= 2:
            return {
                "mu": (8 * a2 + 10 * s2 + (8 * a2 + 2 * s2) / (K - 1)) / K,
                "sigma": (40 * a2 + 56 * s2 + (8 * a2 + 8 * s2) / (K - 1)) / K,
            }
        if estimator in ("score-delta", "pathwise-delta"):  # f is quadratic, so h = f exactly
            return {"mu": 0.0, "sigma": 0.0}
        if estimator == "measure-valued":
            return {"mu": (16 / math.pi - 4) * a2 / K, "sigma": (4 * a2 + 4 * s2) / K}
        if estimator == "measure-valued-uncoupled":
            return {
                "mu": ((8 / math.pi - 2) * a2 + 4 / math.pi * s2) / K,
                "sigma": (16 * a2 + 8 * s2) / K,
            }
        return None


@dataclass(frozen=True)
class GaussianExp(GaussianProblem):
    """``E[exp(-k x^2)]``, ``x ~ N(mu, sigma^2)`` (Mohamed et al. 2020, Fig. 2, middle).

    ``E f = exp(-k mu^2 / (1 + 2 k sigma^2)) / sqrt(1 + 2 k sigma^2)`` for ``k > -1/(2 sigma^2)``;
    the estimators' variances need ``E[f^2 ...]``, finite only for ``k > -1/(4 sigma^2)``, which
    is required. A bump (``k > 0``) or a well (``k < 0``) around 0: where ``mu`` sits on its
    flank the pathwise gradient is large and varies, and the score function's term ``f S``
    stays bounded.
    """

    name: ClassVar[str] = "gaussian-exp"
    formula: ClassVar[str] = "f(x) = exp(-k x^2), x ~ N(mu, sigma^2)"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k <= -1 / (4 * self.sigma**2):
            raise CompareError(
                f"gaussian-exp needs k > -1/(4 sigma^2) = {-1 / (4 * self.sigma**2):g}, got "
                f"k={self.k:g}: below it the estimators' variances are infinite"
            )

    def cost(self, z: Tensor) -> Tensor:
        return torch.exp(-self.k * z**2)

    def cost_1d(self) -> Cost1D:
        return exponential(self.k)


@dataclass(frozen=True)
class GaussianCos(GaussianProblem):
    """``E[cos(k x)] = cos(k mu) exp(-k^2 sigma^2 / 2)``, ``x ~ N(mu, sigma^2)`` (Mohamed et
    al. 2020, Fig. 2, right): the faster ``f`` oscillates (large ``|k|``), the more the pathwise
    gradient ``-k sin(k x)`` varies, while the score function's ``f S`` stays bounded."""

    name: ClassVar[str] = "gaussian-cos"
    formula: ClassVar[str] = "f(x) = cos(k x), x ~ N(mu, sigma^2)"

    def cost(self, z: Tensor) -> Tensor:
        return torch.cos(self.k * z)

    def cost_1d(self) -> Cost1D:
        return cosine(self.k)


@dataclass(frozen=True)
class Bernoulli3D(BatchedProblem):
    """docs/design.md's three-dimensional check: ``f(b) = sum_i (b_i - t_i)^2`` with
    ``t = linspace(0.2, 0.9, 3)`` and ``b_i ~ Bernoulli(theta_i)``,
    ``theta = np.random.RandomState(0).rand(3)``; gradient with respect to the logits
    ``phi[i]``, exactly ``[0.14857, -0.02037, -0.19155]``. Exact variances by enumeration
    (:mod:`samplegrad.lab.compare.exact_bernoulli`)."""

    name: ClassVar[str] = "bernoulli-3d"
    formula: ClassVar[str] = (
        "f(b) = sum_i (b_i - t_i)^2, t = (0.2, 0.55, 0.9), b_i ~ Bernoulli(theta_i), "
        "theta = RandomState(0).rand(3)"
    )
    event_dims: ClassVar[int] = 1

    @cached_property
    def logits(self) -> np.ndarray:
        theta = np.random.RandomState(0).rand(3)
        return np.log(theta) - np.log1p(-theta)

    @cached_property
    def targets(self) -> np.ndarray:
        return np.linspace(0.2, 0.9, 3)

    def parameter_values(self) -> dict[str, float]:
        return {f"phi[{i}]": float(value) for i, value in enumerate(self.logits)}

    def distribution(self, leaves: dict[str, Tensor]) -> Distribution:
        return Independent(Bernoulli(logits=torch.stack(list(leaves.values()), -1)), 1)

    def cost(self, z: Tensor) -> Tensor:
        return (z - torch.as_tensor(self.targets, dtype=z.dtype)).pow(2).sum(-1)

    def _cost_numpy(self, b: np.ndarray) -> np.ndarray:
        return ((b - self.targets) ** 2).sum(-1)

    def exact_gradient(self) -> dict[str, float]:
        gradient = bernoulli_exact_gradient(self._cost_numpy, self.logits)
        return dict(zip(self.parameter_values(), map(float, gradient), strict=True))

    def exact_variance(self, estimator: str, num_samples: int) -> dict[str, float] | None:
        """By enumeration: :mod:`~samplegrad.lab.compare.exact_bernoulli`'s estimators, and as
        two-class categoricals (``theta = (0, phi)``, whose class-1 logit is ``phi``)
        :mod:`~samplegrad.lab.compare.exact_categorical`'s (IndeCateR, ReinMax, the
        unordered set); categorical DisARM's two-class case is DisARM."""
        if estimator == "score-delta":  # f is quadratic in b: its Taylor expansion is exact
            return dict.fromkeys(self.parameter_values(), 0.0)
        binary = "disarm" if estimator == "categorical-disarm" else estimator  # two classes
        variance = bernoulli_exact_variance(self._cost_numpy, self.logits, binary, num_samples)
        if variance is None:
            two_class = exact_categorical.exact_variance(
                self._cost_numpy,
                np.stack([np.zeros_like(self.logits), self.logits], -1),
                estimator,
                num_samples,
                gradient=self._one_hot_gradient,
            )
            variance = None if two_class is None else two_class[:, 1]
        if variance is None:
            return None
        return dict(zip(self.parameter_values(), map(float, variance), strict=True))

    def _one_hot_gradient(self, b: np.ndarray) -> np.ndarray:
        """``f``'s gradient at 0/1 points with respect to two-class one-hot vectors, whose
        class-1 component is ``b``: ``(0, 2 (b_i - t_i))`` per variable."""
        return np.stack([np.zeros(b.shape), 2 * (b - self.targets)], -1)


@dataclass(frozen=True)
class CategoricalProduct(BatchedProblem):
    """Two independent categorical variables of three classes: ``z_d ~ Cat(softmax(theta_d))``
    as one-hot vectors (``Independent(OneHotCategorical)``), class ``k`` standing for the value
    ``v_k = (0, 1/2, 1)[k]``, and the cost ``f(z) = (x_1 - 0.2)^2 + x_1 x_2 + 2 (x_2 - 0.3)^3``
    of the values ``x_d = v . z_d``; gradients with respect to the six logits ``theta[d, k]``.
    Cubic in ``x_2``, so that ReinMax, exact in expectation for costs at most quadratic in each
    variable, shows its bias. Exact gradient and variances (score, leave-one-out, IndeCateR,
    straight-through, ReinMax, categorical DisARM, the unordered set, enumeration) and the
    biased estimators' exact means by enumeration
    (:mod:`samplegrad.lab.compare.exact_categorical`)."""

    name: ClassVar[str] = "categorical-2x3"
    formula: ClassVar[str] = (
        "f(z) = (x_1 - 0.2)^2 + x_1 x_2 + 2 (x_2 - 0.3)^3, x_d = (0, 0.5, 1) . z_d, "
        "z_d ~ OneHotCategorical(softmax(theta_d)), d = 1, 2"
    )
    event_dims: ClassVar[int] = 2

    @property
    def theta(self) -> np.ndarray:
        return np.array([[0.4, -0.3, 0.1], [-0.6, 0.2, 0.5]])

    @property
    def values(self) -> np.ndarray:
        return np.array([0.0, 0.5, 1.0])

    def parameter_values(self) -> dict[str, float]:
        return {f"theta[{d},{k}]": float(v) for (d, k), v in np.ndenumerate(self.theta)}

    def distribution(self, leaves: dict[str, Tensor]) -> Distribution:
        logits = torch.stack(list(leaves.values()), -1).unflatten(-1, self.theta.shape)
        return Independent(OneHotCategorical(logits=logits), 1)

    def cost(self, z: Tensor) -> Tensor:
        x = z @ torch.as_tensor(self.values, dtype=z.dtype)
        return self._cost_of_values(x)

    @staticmethod
    def _cost_of_values(x: Tensor | np.ndarray) -> Tensor | np.ndarray:
        x1, x2 = x[..., 0], x[..., 1]
        return (x1 - 0.2) ** 2 + x1 * x2 + 2 * (x2 - 0.3) ** 3

    def _cost_numpy(self, z: np.ndarray) -> np.ndarray:
        return self._cost_of_values(self.values[z])

    def _one_hot_gradient(self, z: np.ndarray) -> np.ndarray:
        """``df/dz_dk = df/dx_d v_k`` at the configurations ``z`` (class indices)."""
        x1, x2 = self.values[z[:, 0]], self.values[z[:, 1]]
        slopes = np.stack([2 * (x1 - 0.2) + x2, x1 + 6 * (x2 - 0.3) ** 2], -1)
        return slopes[..., None] * self.values

    def exact_gradient(self) -> dict[str, float]:
        gradient = exact_categorical.exact_gradient(self._cost_numpy, self.theta)
        return dict(zip(self.parameter_values(), map(float, gradient.reshape(-1)), strict=True))

    def exact_variance(self, estimator: str, num_samples: int) -> dict[str, float] | None:
        variance = exact_categorical.exact_variance(
            self._cost_numpy, self.theta, estimator, num_samples, self._one_hot_gradient
        )
        if variance is None:
            return None
        return dict(zip(self.parameter_values(), map(float, variance.reshape(-1)), strict=True))


@dataclass(frozen=True)
class BernoulliToy(BatchedProblem):
    """``E_{b ~ Bern(theta)}[(b - t)^2]`` with ``theta = sigmoid(phi)``; gradient w.r.t. ``phi``.

    With ``f0 = t^2``, ``f1 = (1 - t)^2``, ``d = f1 - f0 = 1 - 2t`` and
    ``dtheta/dphi = theta (1 - theta)``: exact gradient ``G = theta (1 - theta) (1 - 2t)``.
    Variances with ``K`` samples:

    - score function: one sample gives ``f(b) (b - theta)`` (the score of the logit is
      ``b - theta``), so ``Var = (theta (1-theta)^2 f1^2 + (1-theta) theta^2 f0^2 - G^2) / K``;
      1.5625e-2 at ``phi = 0, t = 0.499, K = 1``.
    - leave-one-out: ``g = 1/(K-1) sum_s (f_s - fbar)(b_s - theta)``. Since
      ``sum_s (f_s - fbar) = 0`` and ``f_s - fbar = d (b_s - n1/K)`` with ``n1`` the number of
      ones, ``g = d/(K-1) sum_s (b_s - n1/K) b_s = d n1 (K - n1) / (K (K - 1))``, a function of
      ``n1 ~ Binomial(K, theta)`` only; its variance is the sum over ``n1``. ``E g = G`` because
      ``E[n1 (K - n1)] = K (K - 1) theta (1 - theta)``. 2.5e-7 at ``phi = 0, t = 0.499, K = 2``.
    - ARM and DisARM, ``K / 2`` antithetic pairs ``b = 1[u < theta]``, ``b~ = 1[1 - u < theta]``
      with ``m = min(theta, 1 - theta)``: the pair differs exactly when ``|u - 1/2| > 1/2 - m``.
      ARM's estimate is then ``d |u - 1/2|`` (0 otherwise), ``|u - 1/2| ~ U(0, 1/2)``, so
      ``E g^2 = d^2 (2/3) (1/8 - (1/2 - m)^3)``; DisARM's is the constant ``d (1 - m) / 2`` with
      probability ``2m``, variance ``(d (1 - m) / 2)^2 2m (1 - 2m)``; both have mean
      ``d m (1 - m) = G``; divide by ``K / 2``. At ``phi = 0``, ``t = 0.499``, ``K = 2``: ARM
      8.33e-8, DisARM exactly 0; at ``phi = -1``: 1.458e-7 and 1.328e-7. Categorical DisARM's
      two-class case is DisARM.
    - straight-through: ``z = b + theta - stop_gradient(theta)`` gives
      ``g = mean_s 2 (b_s - t) theta (1 - theta)``, so ``Var = 4 theta^3 (1 - theta)^3 / K``
      (``Var b = theta (1 - theta)``); biased, mean ``2 (theta - t) theta (1 - theta)``.
    - enumerate: exact, variance 0; so is the delta-method control variate (``f`` is quadratic
      in ``b``, so its Taylor expansion around ``theta`` is ``f`` itself), IndeCateR (its exact
      sum over the classes of the one variable) and the unordered set (``K >= 2`` points
      without replacement are the whole support).
    - REBAR, RELAX: unbiased, variance not known in closed form (and it changes as the control
      trains; compare measures the initial control).
    - Gumbel-softmax: biased, variance not known in closed form.
    """

    phi: float = 0.0
    t: float = 0.499

    name: ClassVar[str] = "bernoulli-toy"
    formula: ClassVar[str] = "f(b) = (b - t)^2, b ~ Bernoulli(sigmoid(phi))"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.phi) and math.isfinite(self.t)):
            raise CompareError(f"need finite phi and t, got {self}")

    @property
    def theta(self) -> float:
        return 1.0 / (1.0 + math.exp(-self.phi))

    def constants(self) -> dict[str, float]:
        return {"phi": self.phi, "t": self.t}

    def parameter_values(self) -> dict[str, float]:
        return {"phi": self.phi}

    def distribution(self, leaves: dict[str, Tensor]) -> Distribution:
        return Bernoulli(logits=leaves["phi"])

    def cost(self, z: Tensor) -> Tensor:
        return (z - self.t) ** 2

    def exact_gradient(self) -> dict[str, float]:
        theta = self.theta
        return {"phi": theta * (1 - theta) * (1 - 2 * self.t)}

    def exact_variance(self, estimator: str, num_samples: int) -> dict[str, float] | None:
        theta, K = self.theta, num_samples
        f0, f1 = self.t**2, (1 - self.t) ** 2
        gradient = self.exact_gradient()["phi"]
        if estimator == "score":
            second_moment = theta * (1 - theta) ** 2 * f1**2 + (1 - theta) * theta**2 * f0**2
            return {"phi": (second_moment - gradient**2) / K}
        if estimator == "score-loo" and K >= 2:
            return {"phi": self._loo_second_moment(K) - gradient**2}
        if estimator in ("arm", "disarm", "categorical-disarm") and K % 2 == 0:
            pair = self._antithetic_pair_variance(estimator.removeprefix("categorical-"))
            return {"phi": pair / (K // 2)}
        if estimator == "straight-through":
            return {"phi": 4 * theta**3 * (1 - theta) ** 3 / K}
        if estimator in ("enumerate", "score-delta", "indecater", "unordered-set"):
            return {"phi": 0.0}  # the last three: h = f (quadratic); sums over the support
        return None

    def _antithetic_pair_variance(self, estimator: str) -> float:
        """Variance of one ARM or DisARM pair; see the class docstring."""
        d, m = 1 - 2 * self.t, min(self.theta, 1 - self.theta)
        mean = d * m * (1 - m)
        if estimator == "arm":
            return d**2 * (2 / 3) * (1 / 8 - (0.5 - m) ** 3) - mean**2
        return (d * (1 - m) / 2) ** 2 * 2 * m * (1 - 2 * m)

    def _loo_second_moment(self, K: int) -> float:
        """``E[g^2]`` for ``g = d n1 (K - n1) / (K (K - 1))``, ``n1 ~ Binomial(K, theta)``."""
        theta, d = self.theta, 1 - 2 * self.t
        return sum(
            math.comb(K, n1)
            * theta**n1
            * (1 - theta) ** (K - n1)
            * (d * n1 * (K - n1) / (K * (K - 1))) ** 2
            for n1 in range(K + 1)
        )


@dataclass(frozen=True, eq=False)
class VAEEncoder(Problem):
    """The negative ELBO of a trained VAE on a fixed batch of images, differentiated with
    respect to the encoder's layers (one parameter group per layer).

    For the Gaussian VAE the surrogate is ``sg.expectation(f, q, estimator) + KL`` with
    ``f(z) = -log p(x | z)`` and the analytic KL, so every estimator of a Normal applies
    (pathwise, score function with baselines, measure-valued); for the discrete VAEs it is the
    model's own loss with the estimator. No exact gradient is known: the rows report means,
    variances (traces of the covariance over each layer's weights), signal-to-noise ratios and
    costs. Build it with :meth:`from_checkpoint`.

    Attributes:
        model: a :class:`samplegrad.lab.models.GaussianVAE`, ``BernoulliVAE`` or ``CategoricalVAE``.
        images: binarized images ``(B, data_dim)``.
        source: where the model came from, for the header.
    """

    model: nn.Module
    images: Tensor
    source: str = "a model"

    name: ClassVar[str] = "vae-encoder"
    formula: ClassVar[str] = "negative ELBO of a trained VAE, gradient w.r.t. its encoder"
    default_repeats: ClassVar[int] = 200
    dtype: ClassVar[torch.dtype] = torch.float32

    @classmethod
    def from_checkpoint(
        cls, checkpoint: str, data_dir: str | None = None, num_images: int = 100, seed: int = 0
    ) -> VAEEncoder:
        """The model of a ``samplegrad train vae`` checkpoint (of a ``--seeds`` run, the replica
        of its ``--seed``) and the first ``num_images`` MNIST test images, binarized
        dynamically once with ``seed``."""
        from samplegrad.lab.data import load_mnist
        from samplegrad.lab.models.replicated import replica
        from samplegrad.lab.training.vae import TrainError, load_model

        try:
            model, config = load_model(checkpoint)
        except TrainError as error:
            raise CompareError(str(error)) from None
        if config.seeds > 1:
            model = replica(model, 0)
        test = load_mnist(data_dir if data_dir is not None else config.data_dir, split="test")
        generator = torch.Generator().manual_seed(seed)
        images = test.binarize(test.images[:num_images], generator)
        return cls(model, images, f"{checkpoint} ({config.latent} latent, {config.arch})")

    @property
    def default_estimators(self) -> tuple[str, ...]:
        """A fixed selection, not derived from the catalog: one estimator or two per family
        that a trained model affords in a short measurement (enumeration cannot run on it);
        ``--estimators`` names any other."""
        if self._gaussian:
            return ("pathwise", "score", "score-loo", "measure-valued")
        return ("score", "score-loo", "arm", "disarm", "rebar", "gumbel", "straight-through")

    @property
    def event_dims(self) -> int:  # type: ignore[override]
        return 1 if self._gaussian else len(self.model.latent_shape)

    @property
    def _gaussian(self) -> bool:
        from samplegrad.lab.models import GaussianVAE

        return isinstance(self.model, GaussianVAE)

    def constants(self) -> dict[str, float]:
        return {"images": float(len(self.images))}

    def with_constant(self, name: str, value: float) -> Problem:
        raise CompareError(f"problem {self.name!r} has no constants to set or sweep")

    def encoder_layers(self) -> dict[str, list[Tensor]]:
        """The encoder's parameters, grouped by layer."""
        if self._gaussian:
            modules = {"encoder.hidden": self.model.encoder, "encoder.mean": self.model.mean}
            modules["encoder.log_var"] = self.model.log_var
        else:
            encoder = self.model.encoder
            modules = {
                f"encoder.{name}": layer
                for name, layer in encoder.named_children()
                if any(True for _ in layer.parameters())
            } or {"encoder": encoder}  # a single layer
        return {name: list(module.parameters()) for name, module in modules.items()}

    def _posterior(self) -> Distribution:
        if self._gaussian:
            mean, log_var = self.model.encode(self.images)
            return Independent(Normal(mean, (0.5 * log_var).exp()), 1)
        return self.model.posterior(self.images)

    def example_distribution(self) -> Distribution:
        with torch.no_grad():
            return self._posterior()

    def _loss(
        self, estimator: Estimator, num_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        from samplegrad import expectation
        from samplegrad.lab.models._common import bernoulli_log_likelihood

        x = self.images
        if not self._gaussian:
            return self.model.loss(x, estimator, num_samples, generator).loss
        mean, log_var = self.model.encode(x)
        q = Independent(Normal(mean, (0.5 * log_var).exp()), 1)

        def negative_log_likelihood(z: Tensor) -> Tensor:
            return -bernoulli_log_likelihood(self.model.decode(z), x)

        surrogate = expectation(negative_log_likelihood, q, estimator, num_samples, generator)
        return (surrogate + self.model.kl(mean, log_var)).mean()

    def try_estimate(self, estimator: Estimator, num_samples: int) -> None:
        self._loss(estimator, num_samples, None)

    def measure(
        self, spec: EstimatorSpec, num_samples: int, repeats: int, seed: int, timing_calls: int
    ) -> Measurement:
        """``repeats`` full forward and backward passes, each with fresh samples
        (:func:`samplegrad.diagnostics.measure`); the time is their mean (``timing_calls`` is
        not used: the measured passes are timed themselves). The decoder's evaluations are not
        counted."""
        estimator = spec.build(self)
        generator = torch.Generator().manual_seed(seed)
        stats = diagnostics.measure(
            lambda: self._loss(estimator, num_samples, generator),
            self.encoder_layers(),
            repeats,
        )
        return Measurement(list(stats.values()))


@dataclass(frozen=True)
class IWAEGaussian(Problem):
    """The importance-weighted bound ``L_K`` of Rainforth et al. (2018)'s Gaussian model
    (:class:`samplegrad.lab.compare.snr.GaussianModel`: ``D = 20``, one data point, parameters
    perturbed from the optimum by ``N(0, perturbation^2)``), differentiated by
    ``sg.iwae_bound`` with respect to the encoder's ``(A, b)`` and the decoder's ``mu`` (two
    parameter groups). The exact gradient of ``L_K`` is closed-form up to one scalar
    integral (:meth:`~samplegrad.lab.compare.snr.GaussianModel.exact_gradients`); no exact
    variance is known. Measured at several ``K``, ``compare`` fits the log-log slope of each
    group's SNR against ``K``: pathwise's encoder SNR falls, DReG's rises (Tucker et al. 2019).
    STL is biased for ``K > 1`` (its bias column shows it); VIMCO needs ``K >= 2``."""

    perturbation: float = 0.01

    name: ClassVar[str] = "iwae-gaussian"
    formula: ClassVar[str] = (
        "IWAE bound of p(z) = N(mu, I), p(x | z) = N(z, I), q(z | x) = N(A x + b, 2/3 I), "
        "D = 20 (Rainforth et al. 2018), gradients w.r.t. the encoder (A, b) and decoder mu"
    )
    default_repeats: ClassVar[int] = 2000
    default_num_samples: ClassVar[tuple[int, ...]] = (1, 4, 16, 64, 256)
    bound_gradients: ClassVar[tuple[str, ...]] = ("pathwise", "dreg", "stl", "vimco")
    fits_snr_slopes: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not 0 <= self.perturbation < math.inf:
            raise CompareError(f"need a finite perturbation >= 0, got {self.perturbation}")

    @property
    def model(self) -> snr.GaussianModel:
        return snr.GaussianModel(perturbation=self.perturbation)

    @property
    def default_estimators(self) -> tuple[str, ...]:
        """Those of the paper's figure; ``vimco`` when named."""
        return ("pathwise", "dreg", "stl")

    def constants(self) -> dict[str, float]:
        return {"perturbation": self.perturbation}

    def accepts(self, estimator: str, num_samples: int) -> str | None:
        if estimator == "vimco" and num_samples < 2:
            return "vimco needs num_samples >= 2 (leave-one-out signals)"
        return None

    def example_distribution(self) -> Distribution:
        values = self.model.parameters()
        return Independent(Normal(values["A"] @ values["x"] + values["b"], 1.0), 1)

    def try_estimate(self, estimator: Estimator | str, num_samples: int) -> None:
        self.model.gradients(estimator, num_samples, 1, torch.Generator())  # type: ignore[arg-type]

    def measure(
        self, spec: BoundGradientSpec, num_samples: int, repeats: int, seed: int, timing_calls: int
    ) -> Measurement:
        """Time single estimates (as :meth:`BatchedProblem.measure`), then draw ``repeats`` in
        one batched call; ``log_weight`` is evaluated at ``K`` points per estimate."""
        estimator, model = spec.build(self), self.model
        generator = torch.Generator().manual_seed(seed)
        seconds = _seconds_on_one_thread(
            lambda: model.gradients(estimator, num_samples, 1, generator), timing_calls
        )
        generator.manual_seed(seed)
        gradients = model.gradients(estimator, num_samples, repeats, generator)
        exact = model.exact_gradients(num_samples)
        stats = [
            diagnostics.gradient_stats(group, estimates, exact[group], seconds)
            for group, estimates in gradients.items()
        ]
        return Measurement(stats, float(num_samples))


PROBLEMS: dict[str, BatchedProblem] = {
    p.name: p
    for p in (
        GaussianQuadratic(),
        GaussianExp(),
        GaussianCos(),
        BernoulliToy(),
        Bernoulli3D(),
        CategoricalProduct(),
    )
}
"""The toy problems of ``E_q[f]``, with their default constants."""

BUILT_IN: dict[str, Problem] = {**PROBLEMS, IWAEGaussian.name: IWAEGaussian()}
"""Every problem ``samplegrad compare --problem`` builds by name, with its default constants:
the one place a new problem is declared (the command line's choices and help read it);
``vae-encoder`` is built from a checkpoint (:meth:`VAEEncoder.from_checkpoint`)."""

PROBLEM_NAMES: tuple[str, ...] = (*BUILT_IN, VAEEncoder.name)
"""The names ``samplegrad compare --problem`` takes."""
