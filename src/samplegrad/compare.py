"""Compare gradient estimators on problems whose exact gradient and variance are known.

For a problem with parameters ``phi`` and a list of estimators, :func:`compare` measures, per
estimator and per parameter, the mean and variance of ``R`` independent gradient estimates (each
from ``K`` samples) and the wall time of one estimate, next to the exact gradient and, where it
is known in closed form, the exact variance of the estimator. The ``samplegrad compare``
command prints the result with :func:`format_table` and saves it with :func:`write_json`.

How it measures:

- **Estimates.** The ``R`` repeats are one batched call: every parameter is a leaf of shape
  ``(R,)``, the distribution has batch shape ``(R,)``, the cost returns ``(K, R)``, and
  ``surrogate.sum().backward()`` leaves ``R`` independent estimates in ``leaf.grad``
  (batch elements share no samples). float64 throughout. Each estimator draws from its own
  ``torch.Generator`` seeded with ``seed``, so the rows use common random numbers and do not
  depend on which other estimators are compared.
- **Statistics.** Sample mean ``g_bar``, its standard error ``sqrt(s^2 / R)``, the unbiased
  sample variance ``s^2`` and the standard error of ``s^2``,
  ``sqrt((m4 - s^4 (R - 3) / (R - 1)) / R)`` with ``m4`` the sample fourth central moment
  (the variance of the sample variance is ``mu4 / R - sigma^4 (R - 3) / (R (R - 1))``).
- **Time.** A separate single-threaded loop of single estimates (``R = 1``, forward and
  backward), in blocks of :data:`CALLS_PER_BLOCK` calls; the median block after
  :data:`WARMUP_BLOCKS` warm-up blocks, per call, in microseconds. The loop runs *before* the
  batched measurement and on the same estimator instance, so a stateful estimator
  (``score-ma``) is measured in the state a short training run leaves it in, not in its
  initial state (a moving average starts at zero).

Exact variances are those of the estimator with ``K`` independent samples; where none is known
(biased relaxations, a moving-average baseline whose value is itself random) it is ``None``.
"""

from __future__ import annotations

import abc
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, NamedTuple, TypedDict

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Normal

from samplegrad._files import write_atomic
from samplegrad.estimators.base import REGISTRY, Estimator
from samplegrad.estimators.baselines import MovingAverage

WARMUP_BLOCKS = 1
TIMED_BLOCKS = 5
CALLS_PER_BLOCK = 40
DTYPE = torch.float64


class CompareError(ValueError):
    """A request :func:`compare` cannot run; the message says what to change."""


# --------------------------------------------------------------------------- estimator specs


@dataclass(frozen=True)
class EstimatorSpec:
    """A name for ``samplegrad compare --estimators``: an estimator class and its options.

    ``options`` is called for every new instance, so stateful options (a moving average) are
    never shared between measurements.
    """

    name: str
    cls: type[Estimator]
    options: Callable[[], dict[str, object]] = dict
    summary: str = ""
    """What a variant adds to its class, for ``--help``; empty for a registry name."""

    def build(self) -> Estimator:
        return self.cls(**self.options())


@dataclass(frozen=True)
class Variant:
    """A registered estimator class with options, under a name of its own."""

    name: str
    summary: str
    options: Callable[[], dict[str, object]]


VARIANTS: dict[str, tuple[Variant, ...]] = {
    "score": (
        Variant("score-loo", "leave-one-out baseline, needs K >= 2", lambda: {"baseline": "loo"}),
        Variant(
            "score-ma",
            "moving-average baseline, decay 0.9",
            lambda: {"baseline": MovingAverage(0.9)},
        ),
        Variant(
            "score-delta",
            "delta-method control variate (second-order Taylor around the mean)",
            lambda: {"control_variate": "delta"},
        ),
    ),
    "gumbel": (Variant("gumbel-hard", "straight-through Gumbel-softmax", lambda: {"hard": True}),),
    "measure-valued": (
        Variant(
            "measure-valued-uncoupled",
            "independent positive and negative parts",
            lambda: {"coupling": False},
        ),
    ),
}
"""Configured variants of registered estimators, by the registry name they follow."""


class PointwiseControl(nn.Module):
    """A small learned control for ``RELAX`` on one-dimensional problems: an MLP
    ``1 -> 8 -> 1`` applied to every relaxed value, initialised from a fixed seed so that
    comparisons repeat. Untrained here: compare measures RELAX as it starts."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))

    def forward(self, relaxed: Tensor) -> Tensor:
        return self.layers(relaxed.unsqueeze(-1)).squeeze(-1)


REQUIRED_OPTIONS: dict[str, Callable[[], dict[str, object]]] = {
    "relax": lambda: {"control": PointwiseControl().double()},
}
"""Options for registered estimators that cannot be built without arguments."""


def estimator_specs() -> dict[str, EstimatorSpec]:
    """Every registered estimator under its registry name, each followed by its variants.

    Read from :data:`samplegrad.estimators.base.REGISTRY` at call time, so estimators
    registered later appear too.
    """
    specs: dict[str, EstimatorSpec] = {}
    for name, cls in REGISTRY.items():
        specs[name] = EstimatorSpec(name, cls, REQUIRED_OPTIONS.get(name, dict))
        for variant in VARIANTS.get(name, ()):
            specs[variant.name] = EstimatorSpec(variant.name, cls, variant.options, variant.summary)
    return specs


# --------------------------------------------------------------------------------- problems


class Problem(abc.ABC):
    """A distribution ``q_phi`` and a cost ``f`` with a known gradient of ``E_q[f]``.

    Subclasses define the parameters ``phi`` (each a scalar, repeated ``R`` times), the
    distribution, the cost, and the exact gradient and estimator variances.
    """

    name: ClassVar[str]
    formula: ClassVar[str]
    """The problem in words, for the table's header."""
    default_estimators: ClassVar[tuple[str, ...]]

    @abc.abstractmethod
    def constants(self) -> dict[str, float]:
        """The problem's numbers (parameter values and cost constants), for header and JSON."""

    @abc.abstractmethod
    def leaves(self, repeats: int) -> dict[str, Tensor]:
        """The differentiable parameters, each a float64 leaf of shape ``(repeats,)``."""

    @abc.abstractmethod
    def distribution(self, leaves: dict[str, Tensor]) -> Distribution:
        """``q_phi`` with batch shape ``(repeats,)``."""

    @abc.abstractmethod
    def cost(self, z: Tensor) -> Tensor:
        """``f(z)``: samples ``(S, repeats)`` to costs ``(S, repeats)``."""

    @abc.abstractmethod
    def exact_gradient(self) -> dict[str, float]:
        """``d/dphi E_q[f]`` for every parameter."""

    @abc.abstractmethod
    def exact_variance(self, estimator: str, num_samples: int) -> dict[str, float] | None:
        """Variance of the named estimator with ``num_samples`` samples, or ``None``."""


def _leaf(value: float, repeats: int) -> Tensor:
    return torch.full((repeats,), value, dtype=DTYPE, requires_grad=True)


@dataclass(frozen=True)
class GaussianQuadratic(Problem):
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
    ``Var = (16/pi - 4) a^2`` and ``4 a^2 + 4 s^2`` (DESIGN.md section 4); uncoupled,
    ``(8/pi - 2) a^2 + (4/pi) s^2`` and ``16 a^2 + 8 s^2``. Coupling lowers the mean's variance
    only while ``a^2 <= 2 s^2 / (4 - pi)``: at the defaults (``a = 2``, ``s = 1``) it raises it.
    """

    mu: float = 2.0
    sigma: float = 1.0
    k: float = 0.0

    name: ClassVar[str] = "gaussian-quadratic"
    formula: ClassVar[str] = "f(x) = (x - k)^2, x ~ N(mu, sigma^2)"
    default_estimators: ClassVar[tuple[str, ...]] = (
        "pathwise",
        "score",
        "score-loo",
        "score-delta",
        "measure-valued",
        "measure-valued-uncoupled",
    )

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mu) and math.isfinite(self.k) and 0 < self.sigma < math.inf):
            raise CompareError(f"need finite mu, k and 0 < sigma < inf, got {self}")

    def constants(self) -> dict[str, float]:
        return {"mu": self.mu, "sigma": self.sigma, "k": self.k}

    def leaves(self, repeats: int) -> dict[str, Tensor]:
        return {"mu": _leaf(self.mu, repeats), "sigma": _leaf(self.sigma, repeats)}

    def distribution(self, leaves: dict[str, Tensor]) -> Distribution:
        return Normal(leaves["mu"], leaves["sigma"])

    def cost(self, z: Tensor) -> Tensor:
        return (z - self.k) ** 2

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
        if estimator == "score-delta":  # f is quadratic, so h = f exactly
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
class BernoulliToy(Problem):
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
      8.33e-8, DisARM exactly 0; at ``phi = -1``: 1.458e-7 and 1.328e-7.
    - straight-through: ``z = b + theta - stop_gradient(theta)`` gives
      ``g = mean_s 2 (b_s - t) theta (1 - theta)``, so ``Var = 4 theta^3 (1 - theta)^3 / K``
      (``Var b = theta (1 - theta)``); biased, mean ``2 (theta - t) theta (1 - theta)``.
    - enumerate: exact, variance 0; so is the delta-method control variate (``f`` is quadratic
      in ``b``, so its Taylor expansion around ``theta`` is ``f`` itself).
    - REBAR, RELAX: unbiased, variance not known in closed form (and it changes as the control
      trains; compare measures the initial control).
    - Gumbel-softmax: biased, variance not known in closed form.
    """

    phi: float = 0.0
    t: float = 0.499

    name: ClassVar[str] = "bernoulli-toy"
    formula: ClassVar[str] = "f(b) = (b - t)^2, b ~ Bernoulli(sigmoid(phi))"
    default_estimators: ClassVar[tuple[str, ...]] = (
        "score",
        "score-loo",
        "score-delta",
        "arm",
        "disarm",
        "rebar",
        "relax",
        "gumbel",
        "straight-through",
        "enumerate",
    )

    def __post_init__(self) -> None:
        if not (math.isfinite(self.phi) and math.isfinite(self.t)):
            raise CompareError(f"need finite phi and t, got {self}")

    @property
    def theta(self) -> float:
        return 1.0 / (1.0 + math.exp(-self.phi))

    def constants(self) -> dict[str, float]:
        return {"phi": self.phi, "t": self.t}

    def leaves(self, repeats: int) -> dict[str, Tensor]:
        return {"phi": _leaf(self.phi, repeats)}

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
        if estimator in ("arm", "disarm") and K % 2 == 0:
            return {"phi": self._antithetic_pair_variance(estimator) / (K // 2)}
        if estimator == "straight-through":
            return {"phi": 4 * theta**3 * (1 - theta) ** 3 / K}
        if estimator in ("enumerate", "score-delta"):  # f is quadratic in b: h = f exactly
            return {"phi": 0.0}
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


PROBLEMS: dict[str, Problem] = {p.name: p for p in (GaussianQuadratic(), BernoulliToy())}
"""The problems ``samplegrad compare --problem`` offers, with their default constants."""


# ------------------------------------------------------------------------------ measurement


class Row(TypedDict):
    estimator: str
    parameter: str
    gradient_mean: float
    gradient_se: float
    exact_gradient: float
    variance: float
    variance_se: float
    exact_variance: float | None
    us_per_estimate: float


class Result(TypedDict):
    problem: str
    formula: str
    parameters: dict[str, float]
    num_samples: int
    repeats: int
    seed: int
    torch: str
    rows: list[Row]


def compare(
    problem: str | Problem,
    estimators: Sequence[str] | None = None,
    num_samples: int = 2,
    repeats: int = 100_000,
    seed: int = 0,
) -> Result:
    """Measure estimators on a problem; see the module docstring for how.

    Args:
        problem: a name in :data:`PROBLEMS` or a :class:`Problem` instance.
        estimators: names from :func:`estimator_specs`; ``None`` for the problem's defaults.
        num_samples: ``K``, samples per gradient estimate.
        repeats: ``R >= 2``, independent gradient estimates per estimator.
        seed: seeds every estimator's ``torch.Generator``.

    Returns:
        A JSON-ready dict: the problem, its constants, ``K``, ``R``, the seed, the torch
        version, and one row per estimator and parameter.

    Raises:
        CompareError: unknown problem or estimator, an estimator that cannot handle the
            problem's distribution or ``num_samples``, or invalid numbers.
    """
    problem = _resolve_problem(problem)
    _check_counts(num_samples, repeats)
    specs = _resolve_estimators(problem, estimators)
    for spec in specs:
        _check_runs(problem, spec, num_samples)
    rows = [row for spec in specs for row in _rows(problem, spec, num_samples, repeats, seed)]
    return {
        "problem": problem.name,
        "formula": problem.formula,
        "parameters": problem.constants(),
        "num_samples": num_samples,
        "repeats": repeats,
        "seed": seed,
        "torch": torch.__version__,
        "rows": rows,
    }


def _resolve_problem(problem: str | Problem) -> Problem:
    if isinstance(problem, Problem):
        return problem
    if problem not in PROBLEMS:
        raise CompareError(f"unknown problem {problem!r}; choose one of {', '.join(PROBLEMS)}")
    return PROBLEMS[problem]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_counts(num_samples: int, repeats: int) -> None:
    if not _is_int(num_samples) or num_samples < 1:
        raise CompareError(f"num_samples must be an int >= 1, got {num_samples!r}")
    if not _is_int(repeats) or repeats < 2:
        raise CompareError(
            f"repeats must be an int >= 2 (a variance needs two estimates), got {repeats!r}"
        )


def _resolve_estimators(problem: Problem, names: Sequence[str] | None) -> list[EstimatorSpec]:
    """The specs for ``names``, checked against the registry and the problem's distribution."""
    specs = estimator_specs()
    names = list(problem.default_estimators if names is None else names)
    if not names:
        raise CompareError("no estimators given; name at least one")
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise CompareError(
            f"unknown estimator{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; valid names: {', '.join(specs)}"
        )
    dist = problem.distribution(problem.leaves(1))
    unfit = [n for n in names if not specs[n].cls.supports(dist)]
    if unfit:
        fit = [n for n, spec in specs.items() if spec.cls.supports(dist)]
        raise CompareError(
            f"{', '.join(map(repr, unfit))} cannot handle the {type(dist).__name__} "
            f"distribution of problem {problem.name!r}; estimators that can: {', '.join(fit)}"
        )
    return [specs[n] for n in dict.fromkeys(names)]


def _check_runs(problem: Problem, spec: EstimatorSpec, num_samples: int) -> None:
    """Run one throw-away estimate, turning the estimator's own argument errors into ours."""
    leaves = problem.leaves(1)
    try:
        spec.build()(problem.cost, problem.distribution(leaves), num_samples)
    except ValueError as error:
        raise CompareError(
            f"estimator {spec.name!r} cannot run on problem {problem.name!r} with "
            f"num_samples={num_samples}: {error}"
        ) from error


def _rows(
    problem: Problem, spec: EstimatorSpec, num_samples: int, repeats: int, seed: int
) -> list[Row]:
    """Time, then measure, one fresh instance of ``spec``: a row per parameter."""
    estimator = spec.build()
    microseconds = _microseconds_per_estimate(problem, estimator, num_samples, seed)
    gradients = _gradients(problem, estimator, num_samples, repeats, seed)
    exact_gradient = problem.exact_gradient()
    exact_variance = problem.exact_variance(spec.name, num_samples)
    rows: list[Row] = []
    for parameter, values in gradients.items():
        moments = _moments(values)
        rows.append(
            {
                "estimator": spec.name,
                "parameter": parameter,
                "gradient_mean": moments.mean,
                "gradient_se": moments.mean_se,
                "exact_gradient": exact_gradient[parameter],
                "variance": moments.variance,
                "variance_se": moments.variance_se,
                "exact_variance": None if exact_variance is None else exact_variance[parameter],
                "us_per_estimate": microseconds,
            }
        )
    return rows


def _estimate(
    problem: Problem,
    estimator: Estimator,
    leaves: dict[str, Tensor],
    num_samples: int,
    generator: torch.Generator,
) -> None:
    """One forward and backward pass; the estimates land in ``leaf.grad``."""
    for leaf in leaves.values():
        leaf.grad = None
    surrogate = estimator(problem.cost, problem.distribution(leaves), num_samples, generator)
    surrogate.sum().backward()


def _gradients(
    problem: Problem, estimator: Estimator, num_samples: int, repeats: int, seed: int
) -> dict[str, Tensor]:
    """``repeats`` independent gradient estimates per parameter, from one batched call."""
    leaves = problem.leaves(repeats)
    generator = torch.Generator().manual_seed(seed)
    _estimate(problem, estimator, leaves, num_samples, generator)
    gradients = {}
    for name, leaf in leaves.items():
        if leaf.grad is None:
            raise RuntimeError(f"the surrogate of {estimator!r} does not reach parameter {name}")
        gradients[name] = leaf.grad.detach()
    return gradients


class Moments(NamedTuple):
    mean: float
    mean_se: float
    variance: float
    variance_se: float


def _moments(values: Tensor) -> Moments:
    """Mean and its standard error, unbiased variance and its standard error."""
    R = values.numel()
    mean = values.mean()
    variance = values.var(correction=1)
    fourth_moment = ((values - mean) ** 4).mean()
    variance_of_variance = (fourth_moment - variance**2 * (R - 3) / (R - 1)) / R
    return Moments(
        mean=mean.item(),
        mean_se=(variance / R).sqrt().item(),
        variance=variance.item(),
        variance_se=variance_of_variance.clamp_min(0).sqrt().item(),
    )


def _microseconds_per_estimate(
    problem: Problem, estimator: Estimator, num_samples: int, seed: int
) -> float:
    """Median wall time of one single estimate (``R = 1``, forward and backward).

    Timed on one thread: tensors of a few elements gain nothing from intra-op parallelism, and
    some kernels (``binary_cross_entropy_with_logits``, behind ``Bernoulli.log_prob``) open a
    parallel region even for two elements, which on a machine whose other cores are busy
    waits milliseconds for a scheduler slice and measures the machine's load, not the estimator.
    """
    leaves = problem.leaves(1)
    generator = torch.Generator().manual_seed(seed)
    block_seconds = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(WARMUP_BLOCKS + TIMED_BLOCKS):
            start = time.perf_counter()
            for _ in range(CALLS_PER_BLOCK):
                _estimate(problem, estimator, leaves, num_samples, generator)
            block_seconds.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return statistics.median(block_seconds[WARMUP_BLOCKS:]) / CALLS_PER_BLOCK * 1e6


# ---------------------------------------------------------------------------------- output

MISSING = "-"
"""Shown in the table where no exact variance is known (``null`` in the JSON)."""


def format_table(result: Result) -> str:
    """A header line naming the problem and its numbers, then aligned columns (``%.6g``)."""
    constants = ", ".join(f"{k}={v:g}" for k, v in result["parameters"].items())
    header = (
        f"{result['problem']}: {result['formula']}; {constants}; "
        f"K={result['num_samples']} samples per estimate, R={result['repeats']} repeats, "
        f"seed {result['seed']}"
    )
    columns = [
        "estimator",
        "parameter",
        "gradient mean",
        "s.e.",
        "exact gradient",
        "variance",
        "exact variance",
        "us/estimate",
    ]
    lines = [
        [
            row["estimator"],
            row["parameter"],
            *(
                _number(row[key])
                for key in (
                    "gradient_mean",
                    "gradient_se",
                    "exact_gradient",
                    "variance",
                    "exact_variance",
                    "us_per_estimate",
                )
            ),
        ]
        for row in result["rows"]
    ]
    widths = [max(len(cell) for cell in column) for column in zip(columns, *lines, strict=True)]

    def join(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([header, join(columns), *(join(cells) for cells in lines)])


def _number(value: object) -> str:
    return MISSING if value is None else f"{value:.6g}"


def write_json(result: Result, directory: str | os.PathLike[str]) -> Path:
    """Write ``result`` to ``directory/compare.json`` atomically (temp file, then replace).

    Readers never see a half-written file, and a failed write leaves no temp file behind.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "compare.json"
    write_atomic(path, lambda file: file.write(json.dumps(result, indent=2) + "\n"))
    return path
