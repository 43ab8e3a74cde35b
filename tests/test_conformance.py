"""Every name of the catalog on every family it supports: the contract of ``sg.expectation``.

The cases are generated from :data:`samplegrad.estimators.catalog.CATALOG` and the families
below, so an estimator is covered by registering it: no test lists estimator names. For each
(name, family) pair the suite checks

- the surrogate's shape is the batch shape, for batch shapes ``()``, ``(3,)``, ``(3, 4)`` and
  the empty ``(0,)`` in float64, and ``(3, 4)`` in float32, and it follows the parameters'
  dtype (the dtype and the batch shape take separate paths, so their cross product adds
  nothing but time);
- its value is the mean of ``f`` over the samples evaluated (the first ``num_samples`` points
  ``f`` is called with: the relaxed samples of a relaxation, the Gaussian base points of the
  measure-valued estimator), or the exact expectation for enumeration;
- the same generator state gives the same surrogate and gradient;
- where ``entry.unbiased``, the mean of ``R`` gradient estimates (one batched call, ``R`` copies
  of the parameters as the batch dimension) is within 4 standard errors of the exact gradient,
  which comes from a closed form (Normal, Gamma, Beta, Poisson) or from enumerating the support
  (the discrete families), differentiated by autograd; the standard error comes from the ``R``
  estimates themselves and must be small enough to see a bias of a quarter of the gradient;
- a biased name is measurably biased (more than 8 standard errors) on one of its families.

Seeds are fixed, so every outcome is the same on every run.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import (
    Bernoulli,
    Beta,
    Categorical,
    Distribution,
    Gamma,
    Independent,
    Normal,
    OneHotCategorical,
    Poisson,
)
from torch.nn import functional as F

import samplegrad as sg
from samplegrad._internal.families import log_prob
from samplegrad.estimators import catalog
from samplegrad.estimators.unordered_set import leave_out_ratios

from problems import RecordingCost
from stats import Z_MEAN, assert_mean_close

pytestmark = pytest.mark.usefixtures("one_thread")

REPEATS = 20_000
"""Gradient estimates per unbiasedness check, drawn as one call with batch shape ``(R,)``."""

SEED = 20261127

BIAS_STANDARD_ERRORS = 8.0
"""A biased name's mean gradient is this many standard errors from the exact one somewhere."""


# -------------------------------------------------------------------------------- families


NUM_CLASSES = 3


@dataclass(frozen=True)
class Family:
    """A distribution family with a cost ``f`` and its exact expectation.

    ``parameters`` holds each parameter's value for one batch element (a tuple for a parameter
    with an event or class dimension). The exact ``E_q[f]``, of shape ``B`` and differentiable
    (so its gradient is the exact gradient), is ``closed_form(**parameters)``, or for a finite
    family the sum of ``q(z) f(z)`` over ``support`` (``(N, *E)``).
    """

    name: str
    parameters: dict[str, float | tuple[float, ...]]
    build: Callable[..., Distribution]
    cost: Callable[[Tensor], Tensor]
    closed_form: Callable[..., Tensor] | None = None
    support: Tensor | None = None

    def leaves(self, batch_shape: tuple[int, ...], dtype: torch.dtype) -> dict[str, Tensor]:
        """The parameters as leaves of shape ``(*batch_shape, *parameter_shape)``."""
        leaves = {}
        for name, value in self.parameters.items():
            value = torch.tensor(value, dtype=dtype)
            leaves[name] = value.expand((*batch_shape, *value.shape)).clone().requires_grad_()
        return leaves

    def distribution(self, leaves: dict[str, Tensor]) -> Distribution:
        """``q`` for these parameters. torch.distributions' own argument checks fail on an
        empty batch (a reshape to ``(0, -1)``), so an empty batch is built without them (and
        with the default off: ``OneHotCategorical`` does not pass ``validate_args`` on)."""
        if all(leaf.numel() for leaf in leaves.values()):
            return self.build(**leaves, validate_args=None)
        Distribution.set_default_validate_args(False)
        try:
            return self.build(**leaves, validate_args=False)
        finally:
            Distribution.set_default_validate_args(True)

    def example(self) -> Distribution:
        return self.distribution(self.leaves((), torch.float64))

    def f(self, dtype: torch.dtype) -> Callable[[Tensor], Tensor]:
        """The cost for parameters of ``dtype``; a ``Categorical``'s indices are made one-hot
        vectors (relaxations pass one-hot vectors already)."""

        def cost(z: Tensor) -> Tensor:
            if not z.is_floating_point():
                z = F.one_hot(z, NUM_CLASSES).to(dtype)
            return self.cost(z)

        return cost

    def exact(self, leaves: dict[str, Tensor]) -> Tensor:
        if self.support is None:
            return self.closed_form(**leaves)
        dist = self.distribution(leaves)
        dtype = next(iter(leaves.values())).dtype
        points = self.support.to(dtype) if self.support.is_floating_point() else self.support
        points = points.reshape(len(points), *(1,) * len(dist.batch_shape), *dist.event_shape)
        points = points.expand(len(points), *dist.batch_shape, *dist.event_shape)
        return (log_prob(dist, points).exp() * self.f(dtype)(points)).sum(0)


def normal_cost(z: Tensor) -> Tensor:
    """``(z - 1/2)^2 + z^3 / 4``: not quadratic, so the delta method's expansion is not exact."""
    return (z - 0.5) ** 2 + 0.25 * z**3


def normal_exact(loc: Tensor, scale: Tensor) -> Tensor:
    """``E[(z - 1/2)^2] = (mu - 1/2)^2 + s^2`` and ``E[z^3] = mu^3 + 3 mu s^2``."""
    return (loc - 0.5) ** 2 + scale**2 + 0.25 * (loc**3 + 3 * loc * scale**2)


def bernoulli_cost(b: Tensor) -> Tensor:
    """``sum_i (b_i - t_i)^2 + b_0 b_1``: an interaction, so no coordinate is alone."""
    targets = torch.tensor((0.2, 0.5, 0.9), dtype=b.dtype)
    return (b - targets).pow(2).sum(-1) + b[..., 0] * b[..., 1]


def class_cost(z: Tensor) -> Tensor:
    """``(v . z - 0.2)^2`` for one-hot (or relaxed one-hot) ``z`` and class values ``v``."""
    return (z @ torch.tensor((0.1, 0.5, 0.9), dtype=z.dtype) - 0.2) ** 2


def beta_exact(concentration1: Tensor, concentration0: Tensor) -> Tensor:
    """``E[(z - 0.6)^2] = Var z + (E z - 0.6)^2`` with ``E z = a / (a + b)`` and
    ``Var z = a b / ((a + b)^2 (a + b + 1))``."""
    total = concentration1 + concentration0
    mean = concentration1 / total
    return mean * (1 - mean) / (total + 1) + (mean - 0.6) ** 2


FAMILIES = [
    Family(
        "Normal",
        {"loc": 0.7, "scale": 0.8},
        lambda loc, scale, validate_args: Normal(loc, scale, validate_args),
        normal_cost,
        normal_exact,
    ),
    Family(
        "Independent(Normal)",
        {"loc": (0.7, -0.4), "scale": (0.8, 1.2)},
        lambda loc, scale, validate_args: Independent(
            Normal(loc, scale, validate_args), 1, validate_args
        ),
        lambda z: normal_cost(z).sum(-1),
        lambda loc, scale: normal_exact(loc, scale).sum(-1),
    ),
    Family(
        "Bernoulli",
        {"logits": 0.4},
        lambda logits, validate_args: Bernoulli(logits=logits, validate_args=validate_args),
        lambda b: (b - 0.3) ** 3,  # cubic: second-order methods (ReinMax) are not exact
        support=torch.tensor([0.0, 1.0]),
    ),
    Family(
        "Independent(Bernoulli)",
        {"logits": (0.4, -1.0, 1.5)},
        lambda logits, validate_args: Independent(
            Bernoulli(logits=logits, validate_args=validate_args), 1, validate_args
        ),
        bernoulli_cost,
        support=torch.tensor(list(itertools.product([0.0, 1.0], repeat=3))),
    ),
    *(
        Family(
            family.__name__,
            {"logits": (0.3, -0.5, 0.1)},
            lambda logits, validate_args, family=family: family(
                logits=logits, validate_args=validate_args
            ),
            class_cost,
            support=support,
        )
        for family, support in (
            (Categorical, torch.arange(NUM_CLASSES)),  # indices
            (OneHotCategorical, torch.eye(NUM_CLASSES)),
        )
    ),
    Family(
        "Gamma",
        {"concentration": 2.0, "rate": 1.5},
        Gamma,
        lambda z: (z - 1.0) ** 2,
        lambda concentration, rate: concentration / rate**2 + (concentration / rate - 1) ** 2,
    ),
    Family(
        "Beta",
        {"concentration1": 2.0, "concentration0": 3.0},
        Beta,
        lambda z: (z - 0.6) ** 2,
        beta_exact,
    ),
    Family(
        "Poisson",
        {"rate": 3.0},
        Poisson,
        lambda z: (z - 2.0) ** 2,
        lambda rate: rate + (rate - 2.0) ** 2,
    ),
]


# ----------------------------------------------------------------------- required options


class PointwiseControl(nn.Module):
    """A small control for RELAX: an MLP ``1 -> 8 -> 1`` on every relaxed value, summed over
    the dimensions after ``(S, *B)``; initialised from a fixed seed."""

    def __init__(self, batch_ndims: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.leading = 1 + batch_ndims
        self.layers = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
        self.to(dtype)

    def forward(self, relaxed: Tensor) -> Tensor:
        values = self.layers(relaxed.unsqueeze(-1)).squeeze(-1)
        if values.dim() == self.leading:  # nothing to sum (sum over () would sum everything)
            return values
        return values.sum(tuple(range(self.leading, values.dim())))


REQUIRED_OPTIONS: dict[str, Callable[[Distribution, torch.dtype], object]] = {
    "control": lambda dist, dtype: PointwiseControl(len(dist.batch_shape), dtype),
}
"""How the suite builds each constructor argument a class requires, by the option's name."""


def build(entry: catalog.Entry, dist: Distribution, dtype: torch.dtype) -> sg.Estimator:
    """A fresh estimator of ``entry``'s name, its required options built for ``dist``."""
    missing = [o for o in entry.required_options if o not in REQUIRED_OPTIONS]
    assert not missing, f"add a builder for {missing} to REQUIRED_OPTIONS"
    return entry.build(**{o: REQUIRED_OPTIONS[o](dist, dtype) for o in entry.required_options})


def num_samples_for(entry: catalog.Entry) -> int:
    """The fewest samples, at least 2, that ``entry`` accepts."""
    return next(n for n in range(max(2, entry.min_num_samples), 64) if entry.accepts(n) is None)


# ---------------------------------------------------------------------------------- cases


def supported_pairs() -> list[tuple[catalog.Entry, Family]]:
    return [
        (entry, family)
        for entry in catalog.CATALOG.values()
        for family in FAMILIES
        if entry.supports(family.example())
    ]


PAIRS = supported_pairs()
PAIR_IDS = [f"{entry.name}-{family.name}" for entry, family in PAIRS]

BATCH_SHAPES = [(), (3,), (3, 4), (0,)]
SHAPES_AND_DTYPES = [*((shape, torch.float64) for shape in BATCH_SHAPES), ((3, 4), torch.float32)]


def contract_cases() -> list:
    cases = []
    for (entry, family), pair_id in zip(PAIRS, PAIR_IDS, strict=True):
        for batch_shape, dtype in SHAPES_AND_DTYPES:
            cases.append(
                pytest.param(
                    entry,
                    family,
                    batch_shape,
                    dtype,
                    id=f"{pair_id}-{batch_shape}-{str(dtype).removeprefix('torch.')}",
                )
            )
    return cases


def first_family_of_each_name() -> list:
    """For each name, its first pair."""
    firsts = {}
    for (entry, family), pair_id in zip(PAIRS, PAIR_IDS, strict=True):
        firsts.setdefault(entry.name, pytest.param(entry, family, id=pair_id))
    return list(firsts.values())


def test_every_name_supports_some_family() -> None:
    """A name no family here supports would escape the suite: add its family."""
    covered = {entry.name for entry, _ in PAIRS}
    assert covered == set(catalog.CATALOG)


def run(
    entry: catalog.Entry,
    family: Family,
    leaves: dict[str, Tensor],
    seed: int,
    cost: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The surrogate and the gradient of its sum w.r.t. the parameters, from a fresh estimator
    and a generator seeded with ``seed``."""
    dist = family.distribution(leaves)
    dtype = next(iter(leaves.values())).dtype
    estimator = build(entry, dist, dtype)
    generator = torch.Generator().manual_seed(seed)
    num_samples = num_samples_for(entry)
    cost = cost or family.f(dtype)
    surrogate = sg.expectation(cost, dist, estimator, num_samples, generator)
    gradients = torch.autograd.grad(surrogate.sum(), list(leaves.values()), allow_unused=True)
    return surrogate.detach(), {
        name: torch.zeros_like(leaf) if gradient is None else gradient
        for (name, leaf), gradient in zip(leaves.items(), gradients, strict=True)
    }


def unordered_set_estimate(
    family: Family, leaves: dict[str, Tensor], recorded: RecordingCost
) -> Tensor:
    """Kool et al.'s (2020) estimate ``sum_s q(s) R(S, s) f(s)`` over the set ``f`` was called
    with: the unordered-set estimator's value (a plain mean is biased without replacement)."""
    points, costs = recorded.inputs[0], recorded.outputs[0].detach()
    log_probs = log_prob(family.distribution(leaves), points).detach().movedim(0, -1)
    ratios, _ = leave_out_ratios(log_probs, whole_support=len(points) == len(family.support))
    return ((log_probs.double() + ratios).exp().movedim(-1, 0) * costs).sum(0)


@pytest.mark.parametrize(("entry", "family", "batch_shape", "dtype"), contract_cases())
def test_shape_value_dtype_and_reproducibility(
    entry: catalog.Entry, family: Family, batch_shape: tuple[int, ...], dtype: torch.dtype
) -> None:
    leaves = family.leaves(batch_shape, dtype)
    recorded = RecordingCost(family.f(dtype))
    surrogate, gradients = run(entry, family, leaves, SEED, recorded)

    assert surrogate.shape == batch_shape
    assert surrogate.dtype == dtype
    for name, gradient in gradients.items():
        assert gradient.dtype == dtype and gradient.shape == leaves[name].shape, name
        assert torch.isfinite(gradient).all(), name
    if issubclass(entry.cls, sg.Enumerate):
        expected = family.exact(leaves).detach()
    elif issubclass(entry.cls, sg.UnorderedSet):
        expected = unordered_set_estimate(family, leaves, recorded)
    else:
        expected = recorded.outputs[0][: num_samples_for(entry)].detach().mean(0)
    torch.testing.assert_close(surrogate, expected.to(dtype))

    again, gradients_again = run(entry, family, leaves, SEED)
    assert torch.equal(again, surrogate)
    for name, gradient in gradients.items():
        assert torch.equal(gradients_again[name], gradient), name


@pytest.mark.parametrize(("entry", "family"), first_family_of_each_name())
def test_stateful_names_keep_state_that_changes_or_trains(entry: catalog.Entry, family: Family):
    """``entry.stateful`` (the names ``--seeds`` refuses and ``sg.expectation`` takes only as
    instances) says whether one call changes the estimator's buffers (a moving average) or
    gives its parameters a gradient (REBAR's temperature, RELAX's control): state that must
    persist between calls. A constant buffer (the Gumbel-softmax temperature) is not state."""
    leaves = family.leaves((3,), torch.float64)
    dist = family.distribution(leaves)
    estimator = build(entry, dist, torch.float64)
    before = {name: value.clone() for name, value in estimator.state_dict().items()}
    generator = torch.Generator().manual_seed(SEED)
    surrogate = sg.expectation(family.f(torch.float64), dist, estimator, 2, generator)
    surrogate.sum().backward()
    changed = any(
        not torch.equal(before[name], value) for name, value in estimator.state_dict().items()
    )
    trained = any(parameter.grad is not None for parameter in estimator.parameters())
    assert entry.stateful == (changed or trained)


# -------------------------------------------------------------------------- unbiasedness


def gradient_estimates(entry: catalog.Entry, family: Family) -> tuple[Tensor, Tensor]:
    """``R`` gradient estimates, flattened over the parameters ``(R, P)``, and the exact
    gradient ``(P,)``, in float64."""
    single = family.leaves((), torch.float64)
    exact = torch.autograd.grad(family.exact(single), list(single.values()))
    _, gradients = run(entry, family, family.leaves((REPEATS,), torch.float64), SEED)
    estimates = torch.cat([g.reshape(REPEATS, -1) for g in gradients.values()], dim=1)
    return estimates, torch.cat([g.reshape(-1) for g in exact])


@pytest.mark.parametrize(
    ("entry", "family"),
    [pytest.param(e, f, id=i) for (e, f), i in zip(PAIRS, PAIR_IDS, strict=True) if e.unbiased],
)
def test_unbiased_names_have_the_exact_mean_gradient(entry: catalog.Entry, family: Family):
    estimates, exact = gradient_estimates(entry, family)
    standard_error = estimates.var(0).div(REPEATS).sqrt()
    assert (Z_MEAN * standard_error <= 0.25 * exact.abs().max()).all(), (
        f"too few repeats to see a bias: standard errors {standard_error.tolist()}, "
        f"exact gradient {exact.tolist()}"
    )
    assert_mean_close(estimates, exact)


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(entry, id=entry.name)
        for entry in catalog.CATALOG.values()
        if not entry.unbiased
    ],
)
def test_biased_names_are_measurably_biased_somewhere(entry: catalog.Entry) -> None:
    deviations = {}
    for pair_entry, family in PAIRS:
        if pair_entry is entry:
            estimates, exact = gradient_estimates(entry, family)
            standard_error = estimates.var(0).div(REPEATS).sqrt().clamp_min(1e-300)
            deviations[family.name] = ((estimates.mean(0) - exact).abs() / standard_error).max()
    assert max(deviations.values()) > BIAS_STANDARD_ERRORS, deviations
