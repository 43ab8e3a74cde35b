"""Properties of ``sg.expectation`` and ``sg.Graph`` over generated cases (``hypothesis``).

Cases draw a family with random parameters (categorical logits with masked classes among
them), a batch shape (empty ones too), a dtype (float16 and bfloat16 too), a number of samples
and an estimator: a name of :data:`samplegrad.estimators.catalog.CATALOG` or ``"auto"``, given
by name or built as an instance. Every outcome must be one of

- a surrogate of the batch shape and the parameters' dtype, finite, whose gradient is finite;
- a ``ValueError`` or ``TypeError`` raised by samplegrad itself (the argument is refused with a
  message that names it): never an error raised inside torch, never a silent NaN.

The profile is derandomized (the same cases on every run, so CI is deterministic), with a
bounded number of examples and no deadline (a shared machine's timing varies).
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.distributions import (
    Bernoulli,
    Beta,
    Binomial,
    Categorical,
    Distribution,
    Exponential,
    Gamma,
    Independent,
    Laplace,
    Normal,
    OneHotCategorical,
    Poisson,
)
from torch.nn import functional as F

import samplegrad as sg
from samplegrad.estimators import catalog

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore::samplegrad.AutoEstimatorWarning"),
]

settings.register_profile(
    "samplegrad",
    derandomize=True,
    deadline=None,
    max_examples=4000,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE = settings.get_profile("samplegrad")

SAMPLEGRAD = Path(sg.__file__).resolve().parent
CLASSES = 3
NAMES = [*catalog.CATALOG, catalog.AUTO]
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
BATCH_SHAPES = [(), (1,), (3,), (2, 3), (0,), (2, 0)]


# ------------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """A distribution, the parameter leaves it was built from, their dtype and a seed."""

    dist: Distribution
    leaves: list[Tensor]
    dtype: torch.dtype
    seed: int


def uniform(generator: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)


def leaf(values: Tensor, dtype: torch.dtype) -> Tensor:
    return values.to(dtype).requires_grad_()


def masked_logits(
    generator: torch.Generator, shape: tuple[int, ...], spread: float, dtype
) -> Tensor:
    """Logits with some classes masked (``-inf``), at least one class left per row."""
    logits = uniform(generator, (*shape, CLASSES), -spread, spread)
    masked = torch.rand((*shape, CLASSES), generator=generator) < 0.3
    masked[..., 0] = False
    return leaf(logits.masked_fill(masked, -math.inf), dtype)


Parameters = Callable[[torch.Generator, tuple[int, ...], float, torch.dtype], list[Tensor]]

FAMILIES: dict[str, Parameters] = {
    "Normal": lambda g, b, s, d: [leaf(uniform(g, b, -s, s), d), leaf(uniform(g, b, 0.1, 3), d)],
    "Independent(Normal)": lambda g, b, s, d: [
        leaf(uniform(g, (*b, 2), -s, s), d),
        leaf(uniform(g, (*b, 2), 0.1, 3), d),
    ],
    "Bernoulli": lambda g, b, s, d: [leaf(uniform(g, b, -s, s), d)],
    "Bernoulli(probs)": lambda g, b, s, d: [leaf(uniform(g, b, 0.05, 0.95), d)],
    "Independent(Bernoulli)": lambda g, b, s, d: [leaf(uniform(g, (*b, 3), -s, s), d)],
    "Categorical": lambda g, b, s, d: [masked_logits(g, b, s, d)],
    "OneHotCategorical": lambda g, b, s, d: [masked_logits(g, b, s, d)],
    "Gamma": lambda g, b, s, d: [leaf(uniform(g, b, 0.5, 5), d), leaf(uniform(g, b, 0.5, 5), d)],
    "Beta": lambda g, b, s, d: [leaf(uniform(g, b, 0.5, 5), d), leaf(uniform(g, b, 0.5, 5), d)],
    "Poisson": lambda g, b, s, d: [leaf(uniform(g, b, 0.5, 5), d)],
    "Binomial": lambda g, b, s, d: [leaf(uniform(g, b, -s, s), d)],
    "Exponential": lambda g, b, s, d: [leaf(uniform(g, b, 0.5, 5), d)],
    "Laplace": lambda g, b, s, d: [leaf(uniform(g, b, -s, s), d), leaf(uniform(g, b, 0.1, 3), d)],
}
"""Each family's parameter leaves for a batch shape, a spread of its unbounded parameters
(locations and logits in ``[-spread, spread]``) and a dtype, drawn from a generator."""

SPREADS = [3.0, 30.0]
"""Moderate and wide parameters; float16 and bfloat16 take moderate ones only: a gradient
estimate larger than their largest number (65504 for float16) cannot be represented, which is
the dtype's limit, not an estimator's fault."""

BUILDERS: dict[str, Callable[..., Distribution]] = {
    "Normal": Normal,
    "Independent(Normal)": lambda loc, scale: Independent(Normal(loc, scale), 1),
    "Bernoulli": lambda logits: Bernoulli(logits=logits),
    "Bernoulli(probs)": lambda probs: Bernoulli(probs=probs),
    "Independent(Bernoulli)": lambda logits: Independent(Bernoulli(logits=logits), 1),
    "Categorical": lambda logits: Categorical(logits=logits),
    "OneHotCategorical": lambda logits: OneHotCategorical(logits=logits),
    "Gamma": Gamma,
    "Beta": Beta,
    "Poisson": Poisson,
    "Binomial": lambda logits: Binomial(3, logits=logits),
    "Exponential": Exponential,
    "Laplace": Laplace,
}


def make_case(
    family: str, batch_shape: tuple[int, ...], spread: float, dtype: torch.dtype, seed: int
) -> Case:
    """The family's distribution; an empty batch is built without torch.distributions' own
    argument checks, which reshape it ambiguously (``(0, -1)``). A case torch itself refuses
    to build (a bfloat16 softmax that misses the simplex's tolerance) is no case."""
    if torch.finfo(dtype).bits < 32:
        spread = min(spread, SPREADS[0])  # a low-precision estimate must fit in 65504
    leaves = FAMILIES[family](torch.Generator().manual_seed(seed), batch_shape, spread, dtype)
    empty = math.prod(batch_shape) == 0
    previous = Distribution._validate_args
    Distribution.set_default_validate_args(not empty)
    try:
        return Case(BUILDERS[family](*leaves), leaves, dtype, seed)
    except ValueError:
        reject()
        raise
    finally:
        Distribution.set_default_validate_args(previous)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """A family with random parameters, a batch shape, a spread and a dtype."""
    return make_case(
        draw(st.sampled_from(list(FAMILIES))),
        draw(st.sampled_from(BATCH_SHAPES)),
        draw(st.sampled_from(SPREADS)),
        draw(st.sampled_from(DTYPES)),
        draw(st.integers(0, 2**16)),
    )


def draw_name(data: st.DataObject, dist: Distribution) -> str:
    """Mostly a name whose estimator supports ``dist`` or ``"auto"``; sometimes any name, for
    the refusals."""
    supporting = [*catalog.names_supporting(dist), catalog.AUTO]
    return data.draw(st.sampled_from(supporting) | st.sampled_from(NAMES), label="name")


def cost_for(dist: Distribution, dtype: torch.dtype) -> Callable[[Tensor], Tensor]:
    """A smooth cost of one number per sample and batch element, for any family's samples
    (a categorical's indices one-hot, relaxed samples as they come)."""
    batch_ndims = len(dist.batch_shape)

    def f(z: Tensor) -> Tensor:
        if not z.is_floating_point():
            z = F.one_hot(z, CLASSES)
        z = z.to(dtype)
        values = (z - 0.3) ** 2 + 0.5 * z
        trailing = tuple(range(1 + batch_ndims, values.dim()))
        return values.sum(trailing) if trailing else values

    return f


class Control(nn.Module):
    """A RELAX control: an element-wise affine map of the relaxed sample, summed over the
    dimensions after ``(S, *B)``."""

    def __init__(self, batch_ndims: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.leading = 1 + batch_ndims
        self.scale = nn.Parameter(torch.tensor(0.5, dtype=dtype))

    def forward(self, relaxed: Tensor) -> Tensor:
        values = self.scale * relaxed
        trailing = tuple(range(self.leading, values.dim()))
        return values.sum(trailing) if trailing else values


def estimator_for(name: str, instance: bool, dist: Distribution, dtype) -> str | sg.Estimator:
    """``name`` itself, or an instance of it (its required options built for ``dist``): the
    names of estimators that keep state are refused, their instances are not."""
    if name == catalog.AUTO or not instance:
        return name
    entry = catalog.entry(name)
    if entry.required_options:
        return entry.build(control=Control(len(dist.batch_shape), dtype))
    return entry.build()


def assert_ours(error: Exception) -> None:
    """``error`` is a ValueError or TypeError raised by a ``raise`` statement of samplegrad
    (not by a torch function that samplegrad called, whose frame would be samplegrad's too)."""
    last = traceback.extract_tb(error.__traceback__)[-1]
    ours = Path(last.filename).resolve().is_relative_to(SAMPLEGRAD)
    assert isinstance(error, ValueError | TypeError) and ours and last.line.startswith("raise"), (
        f"{type(error).__name__} raised at {last.filename}:{last.lineno} ({last.line}): {error}"
    )


def assert_finite(surrogate: Tensor, case: Case) -> None:
    """A surrogate in the case's dtype, finite, with finite gradients."""
    assert surrogate.dtype == case.dtype
    assert torch.isfinite(surrogate).all(), surrogate
    if surrogate.requires_grad:
        gradients = torch.autograd.grad(surrogate.sum(), case.leaves, allow_unused=True)
        for gradient in gradients:
            assert gradient is None or torch.isfinite(gradient).all(), gradient


RAISED = (ValueError, TypeError, RuntimeError, NotImplementedError, IndexError)
"""What an outcome may raise for :func:`assert_ours` to judge."""


# ------------------------------------------------------------------------- expectation


@PROFILE
@given(case=cases(), num_samples=st.integers(1, 6), instance=st.booleans(), data=st.data())
def test_expectation_gives_a_finite_surrogate_or_our_error(
    case: Case, num_samples: int, instance: bool, data: st.DataObject
) -> None:
    estimator = estimator_for(draw_name(data, case.dist), instance, case.dist, case.dtype)
    generator = torch.Generator().manual_seed(case.seed)
    cost = cost_for(case.dist, case.dtype)
    try:
        surrogate = sg.expectation(cost, case.dist, estimator, num_samples, generator)
    except RAISED as error:
        assert_ours(error)
        return
    assert surrogate.shape == case.dist.batch_shape
    assert_finite(surrogate, case)


# ------------------------------------------------------------------------------- graph

MIXES: dict[str, Callable[[Tensor], Tensor]] = {
    "none": lambda c: c,
    "roll": lambda c: torch.roll(c, 1, c.dim() - 1) if c.dim() else c,
    "sum": lambda c: c.sum(-1, keepdim=True).expand_as(c) if c.dim() else c,
    "matmul": lambda c: c @ torch.ones(c.shape[-1], c.shape[-1], dtype=c.dtype) if c.dim() else c,
    "transpose": lambda c: c.mT.contiguous().mT if c.dim() >= 2 else c,
}
"""How a graph's cost may mix the elements of its batch (the last dimension)."""


@PROFILE
@given(
    case=cases(),
    joint_samples=st.sampled_from([None, 1, 3]),
    mix=st.sampled_from(list(MIXES)),
    data=st.data(),
)
def test_graph_gives_a_finite_surrogate_or_our_error(
    case: Case, joint_samples: int | None, mix: str, data: st.DataObject
) -> None:
    estimator = estimator_for(draw_name(data, case.dist), True, case.dist, case.dtype)
    generator = torch.Generator().manual_seed(case.seed)
    cost = cost_for(case.dist, case.dtype)
    graph = sg.Graph()
    try:
        value = graph.sample("z", case.dist, estimator, joint_samples, generator)
        costs = cost(value) if joint_samples else cost(value.unsqueeze(0))[0]
        graph.cost(MIXES[mix](costs))
        surrogate = graph.surrogate("none")
    except RAISED as error:
        assert_ours(error)
        return
    assert_finite(surrogate, case)
