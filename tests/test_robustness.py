"""Regression tests for issue 15, "Robustness": one or more per item of the library's list.

Each test is the item's reproducer, checked against the behaviour the issue asks for; the
statistical ones hold ``R`` independent copies of the parameters in one batch and compare the
mean gradient with an exact one from enumeration or a closed form (``tests/stats.py``).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import (
    Bernoulli,
    Beta,
    Binomial,
    Categorical,
    Dirichlet,
    Distribution,
    Gamma,
    Independent,
    Normal,
    OneHotCategorical,
)
from torch.nn import functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import samplegrad as sg
from samplegrad.diagnostics import measure, measure_batched
from samplegrad.estimators import catalog
from samplegrad.graph import _maps

from stats import assert_mean_close

pytestmark = pytest.mark.usefixtures("one_thread")

DTYPE = torch.float64


def copies(values: list[float], repeats: int) -> Tensor:
    """``repeats`` copies of ``values`` as one leaf of shape ``(repeats, len(values))``."""
    return torch.tensor(values, dtype=DTYPE).expand(repeats, len(values)).clone().requires_grad_()


# ------------------------------------------------------- 1. optimal coefficient, batch ()


def test_optimal_delta_coefficient_takes_an_unbatched_distribution(generator) -> None:
    loc = torch.zeros(3, requires_grad=True)
    estimator = sg.ScoreFunction(control_variate="delta", coefficient="optimal")
    dist = Independent(Normal(loc, 1.0), 1)
    surrogate = sg.expectation(lambda z: torch.cos(z).sum(-1), dist, estimator, 4, generator)
    assert surrogate.shape == ()
    surrogate.backward()
    assert torch.isfinite(loc.grad).all()


# ------------------------------------------- 2. delta: linear and piecewise-linear costs


@pytest.mark.parametrize("name", ["score-delta", "pathwise-delta"])
def test_delta_is_exact_for_a_linear_cost(name: str, generator) -> None:
    """``f = 2 z`` is its own expansion: every estimate is the exact gradient, 2."""
    loc = torch.zeros(5, dtype=DTYPE, requires_grad=True)
    surrogate = sg.expectation(lambda z: 2 * z, Normal(loc, 1.0), name, 4, generator)
    surrogate.sum().backward()
    torch.testing.assert_close(loc.grad, torch.full_like(loc, 2.0))


@pytest.mark.parametrize("name", ["score-delta", "pathwise-delta"])
def test_delta_is_unbiased_for_a_piecewise_linear_cost(name: str, generator) -> None:
    """``E[max(z, 0)]`` for ``z ~ N(mu, 1)`` has derivative ``Phi(mu)``: a zero second
    derivative is zero, not an error."""
    mu = 0.3
    loc = torch.full((40_000,), mu, dtype=DTYPE, requires_grad=True)
    surrogate = sg.expectation(lambda z: z.clamp(min=0), Normal(loc, 1.0), name, 4, generator)
    surrogate.sum().backward()
    assert_mean_close(loc.grad, 0.5 * (1 + math.erf(mu / math.sqrt(2))))


# --------------------------------------------- 3. optimal coefficient: linear memory


class LargestStorage(TorchDispatchMode):
    """Records the largest storage, in bytes, of any tensor an operation returns."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        result = func(*args, **(kwargs or {}))
        for value in result if isinstance(result, tuple | list) else [result]:
            if isinstance(value, Tensor):
                self.bytes = max(self.bytes, value.untyped_storage().nbytes())
        return result


def optimal_surrogate(num_samples: int, batch: int, generator: torch.Generator) -> Tensor:
    loc = torch.zeros(batch, requires_grad=True)
    estimator = sg.ScoreFunction(control_variate="delta", coefficient="optimal")
    surrogate = sg.expectation(
        lambda z: torch.cos(z), Normal(loc, 1.0), estimator, num_samples, generator
    )
    surrogate.sum().backward()
    assert torch.isfinite(loc.grad).all()
    return surrogate


def test_optimal_coefficient_builds_no_samples_by_samples_tensor(generator) -> None:
    """No tensor larger than a few ``(S, B)`` ones: the quadratic version held ``(S, S, B)``."""
    num_samples, batch = 2_000, 8
    with LargestStorage() as largest:
        optimal_surrogate(num_samples, batch, generator)
    assert largest.bytes <= 4 * (num_samples + 1) * batch * 4


def test_optimal_coefficient_handles_the_issue_size(generator) -> None:
    """7,000 samples and a batch of 60 asked for 70 GB before."""
    assert optimal_surrogate(7_000, 60, generator).shape == (60,)


# -------------------------------------------------------- 4. names are stateless


def test_rebar_by_name_asks_for_an_instance() -> None:
    with pytest.raises(ValueError, match=r"create the instance once.*sg\.REBAR\(\.\.\.\)"):
        sg.expectation(lambda b: b, Bernoulli(logits=torch.zeros(3)), "rebar", 2)


def test_auto_with_one_sample_keeps_no_state_between_calls() -> None:
    """One call of a cost a hundred times larger must not change the next call's gradient:
    ``"auto"`` is the plain score function, as ``"score"`` gives it."""

    def gradient(name: str, scale: float) -> Tensor:
        logits = torch.zeros(4, dtype=DTYPE, requires_grad=True)
        generator = torch.Generator().manual_seed(3)
        sg.expectation(
            lambda b: scale * b, Bernoulli(logits=logits), name, 1, generator
        ).sum().backward()
        return logits.grad

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sg.AutoEstimatorWarning)
        gradient("auto", 100.0)
        after = gradient("auto", 1.0)
    torch.testing.assert_close(after, gradient("score", 1.0))


def test_auto_keeps_its_moving_average_where_the_caller_keeps_the_estimator() -> None:
    """The lab's models build ``"auto"`` once and keep it, so one sample still gets the
    moving-average baseline there (``tests/test_models.py`` checks the model's choice)."""
    bernoulli = Bernoulli(logits=torch.zeros(2))
    assert catalog.auto(bernoulli, 1) == "score-ma" and catalog.entry("score-ma").stateful
    assert catalog.auto(bernoulli, 1, stateless=True) == "score"
    assert not catalog.entry("score").stateful
    assert catalog.auto(bernoulli, 2, stateless=True) == "score-loo"


# --------------------------------------------- 5. Graph: costs that mix batch elements

R = 40_000
LOGITS = [0.4, -1.0, 1.5]
WEIGHTS = torch.tensor([1.0, -2.0, 3.0], dtype=DTYPE)
MIXING = torch.tensor([[1.0, 0.5, -1.0], [2.0, -0.3, 0.0], [-0.7, 1.1, 0.4]], dtype=DTYPE)
PERMUTATION = torch.tensor([2, 0, 1])

MIXING_COSTS: dict[str, Callable[[Tensor], Tensor]] = {
    "roll": lambda b: torch.roll(b, 1, 1) * WEIGHTS,
    "sum": lambda b: b.sum(1, keepdim=True) * WEIGHTS,
    "matmul": lambda b: b @ MIXING,
    "gather": lambda b: b.gather(1, PERMUTATION.expand(b.shape[0], 3)) * WEIGHTS,
    "index": lambda b: b[:, PERMUTATION.tolist()] * WEIGHTS,
    "flip": lambda b: b.flip(1) * WEIGHTS,
    "transposed-roll": lambda b: torch.roll(b.T, 1, 0).T * WEIGHTS,
}
"""Costs of shape ``(R, 3)`` whose element ``(r, j)`` depends on elements ``i != j`` of row
``r`` of the sample ``b``; dimension 0 holds ``R`` independent copies."""


def bernoulli_expectation(logits: Tensor, cost: Callable[[Tensor], Tensor]) -> Tensor:
    """``E[sum cost(b)]`` for independent ``b_i ~ Bernoulli(sigmoid(logits_i))``, by
    enumerating the ``2^3`` outcomes (``cost`` takes a batch of rows)."""
    outcomes = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)), dtype=DTYPE)
    p = torch.sigmoid(logits)
    probabilities = (outcomes * p + (1 - outcomes) * (1 - p)).prod(-1)
    return (probabilities * cost(outcomes).sum(-1)).sum()


@pytest.mark.parametrize("name", list(MIXING_COSTS))
def test_graph_costs_mixing_the_batch_get_the_exact_mean_gradient(name: str) -> None:
    cost = MIXING_COSTS[name]
    logits = copies(LOGITS, R)
    g = sg.Graph()
    b = g.sample("b", Bernoulli(logits=logits), "score", generator=torch.Generator().manual_seed(5))
    g.cost(cost(b))
    g.surrogate().backward()
    single = torch.tensor(LOGITS, dtype=DTYPE, requires_grad=True)
    (exact,) = torch.autograd.grad(bernoulli_expectation(single, cost), single)
    assert_mean_close(logits.grad, exact)


def test_graph_roll_across_the_batch_as_in_the_issue() -> None:
    """``torch.roll(b, 1, 0) * 1.0`` with ``b``'s two elements in dimension 0 (the copies in
    dimension 1): each logit's gradient is ``p (1 - p)``, not 0."""
    logits = torch.zeros(2, R, dtype=DTYPE, requires_grad=True)
    g = sg.Graph()
    b = g.sample("b", Bernoulli(logits=logits), "score", generator=torch.Generator().manual_seed(6))
    g.cost(torch.roll(b, 1, 0) * 1.0)
    g.surrogate().backward()
    assert_mean_close(logits.grad.T, torch.full((2,), 0.25, dtype=DTYPE))


def test_graph_records_every_role_of_a_tensor_and_assignments() -> None:
    """``b @ b`` and ``outer(b, b)`` use ``b`` as rows and as columns: every element depends on
    a whole row and a whole column, so nothing is kept. A value written into a sample's copy
    makes the copy depend on it densely; into a plain tensor, which cannot record it, refused."""
    g = sg.Graph()
    b = g.sample("b", Bernoulli(logits=torch.zeros(3, 3)), "score")
    assert map_of(b) == (0, 1) and map_of(b.T) == (1, 0) and map_of(b * b) == (0, 1)
    assert map_of(b @ b) == (None, None) and map_of(torch.outer(b[0], b[0])) == (None, None)
    copy = b.clone()
    copy[0] = b[1]
    assert map_of(copy) == (None, None)
    plain = torch.zeros(3)
    with pytest.raises(ValueError, match=r"written into a plain tensor.*zeros_like\(sample\)"):
        plain[0] = b[1, 0]


def map_of(value: Tensor) -> tuple[int | None, ...]:
    """The dimension map of ``value`` with respect to its one node."""
    (only,) = _maps(value).values()
    return only


def test_graph_keeps_elementwise_costs_elementwise() -> None:
    """Costs that keep the elements apart still get only their own elements' score terms:
    the estimate of a logit does not move when another element's cost changes."""
    logits = torch.zeros(3, dtype=DTYPE, requires_grad=True)
    gradients = []
    for weights in ([1.0, 2.0, 3.0], [1.0, 50.0, 3.0]):
        logits.grad = None
        g = sg.Graph()
        generator = torch.Generator().manual_seed(7)
        b = g.sample("b", Bernoulli(logits=logits), "score", generator=generator)
        hot = F.one_hot(b.long(), 2).to(DTYPE)  # (3, 2): a new last dimension per element
        g.cost((hot[..., 1] + b.unsqueeze(-1).sum(-1)) * torch.tensor(weights, dtype=DTYPE))
        g.surrogate().backward()
        gradients.append(logits.grad.clone())
    assert gradients[0][0] == gradients[1][0] and gradients[0][2] == gradients[1][2]


# ---------------------------------------------------------- 6. masked categorical logits

MASKED_LOGITS = [0.3, -math.inf, -0.5, 0.1]
CLASS_VALUES = torch.tensor([1.0, 100.0, -2.0, 0.5], dtype=DTYPE)


def masked_cost(z: Tensor) -> Tensor:
    """``(v . onehot(z) - 0.2)^2``; the masked class's value is large, so drawing it shows."""
    one_hot = z if z.is_floating_point() else F.one_hot(z, 4).to(DTYPE)
    return (one_hot @ CLASS_VALUES - 0.2) ** 2


class ClassControl(nn.Module):
    """A small RELAX control on relaxed one-hot vectors ``(..., 4)``."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1).double()

    def forward(self, relaxed: Tensor) -> Tensor:
        return self.linear(relaxed).squeeze(-1)


@pytest.mark.parametrize("family", [Categorical, OneHotCategorical])
@pytest.mark.parametrize("name", catalog.names_supporting(Categorical(logits=torch.zeros(4))))
def test_masked_classes_have_zero_probability_and_a_correct_gradient(family, name) -> None:
    """No surrogate value counts the masked class's cost (about 9960; the others' are at most
    4.84, relaxed ones too), its logit gets no gradient, and unbiased names have the exact
    mean gradient."""
    entry = catalog.entry(name)
    estimator = entry.build(control=ClassControl()) if entry.required_options else entry.build()
    repeats = 20_000
    logits = copies(MASKED_LOGITS, repeats)
    num_samples = max(entry.min_num_samples + entry.min_num_samples % 2, 2)
    generator = torch.Generator().manual_seed(8)
    surrogate = sg.expectation(
        masked_cost, family(logits=logits), estimator, num_samples, generator
    )
    surrogate.sum().backward()
    assert torch.isfinite(surrogate).all() and torch.isfinite(logits.grad).all()
    assert (surrogate.detach() <= masked_cost(torch.eye(4, dtype=DTYPE)[2]) + 1e-9).all()
    assert (logits.grad[:, 1] == 0).all()
    if entry.unbiased:
        single = torch.tensor(MASKED_LOGITS, dtype=DTYPE, requires_grad=True)
        probabilities = torch.softmax(single, -1)
        exact_value = (probabilities * masked_cost(torch.eye(4, dtype=DTYPE))).sum()
        (exact,) = torch.autograd.grad(exact_value, single)
        assert_mean_close(logits.grad, exact)


def test_graph_and_expectation_agree_on_masked_and_nan_logits() -> None:
    logits = torch.tensor([0.0, -math.inf, 1.0], requires_grad=True)
    sg.expectation(lambda k: k.double(), Categorical(logits=logits), "score", 2).sum().backward()
    g = sg.Graph()
    k = g.sample("k", Categorical(logits=logits), "score", num_samples=4)
    assert not (k == 1).any()
    nan_logits = torch.tensor([math.nan, 0.0])
    for run in (
        lambda d: sg.Graph().sample("k", d, "score"),
        lambda d: sg.expectation(lambda k: k.double(), d, "score", 2),
    ):
        with pytest.raises(ValueError, match=r"dist\.logits contains NaN"):
            run(Categorical(logits=nan_logits, validate_args=False))


# ------------------------------------------------------- 7. REBAR: low precision, NaN


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("family", ["bernoulli", "categorical"])
def test_rebar_is_finite_in_low_precision_at_extreme_logits(dtype, family) -> None:
    leaf = torch.tensor([-1e4, -30.0, 0.0, 30.0, 1e4], dtype=dtype, requires_grad=True)
    if family == "bernoulli":
        dist: Distribution = Independent(Bernoulli(logits=leaf), 1)
    else:
        dist = OneHotCategorical(logits=torch.stack([leaf, torch.zeros_like(leaf), -leaf], -1))
    estimator = sg.REBAR()

    def cost(z: Tensor) -> Tensor:
        return (z * torch.linspace(0.5, 1.5, z.shape[-1], dtype=z.dtype)).sum(-1) ** 2

    surrogate = sg.expectation(cost, dist, estimator, 4, torch.Generator().manual_seed(9))
    assert surrogate.dtype == dtype and torch.isfinite(surrogate).all()
    surrogate.sum().backward()
    for tensor in (leaf.grad, *(p.grad for p in estimator.parameters())):
        assert torch.isfinite(tensor).all()


def test_rebar_with_diverged_parameters_says_so() -> None:
    estimator = sg.REBAR()
    with torch.no_grad():
        estimator.eta.fill_(math.nan)
    dist = Independent(Bernoulli(logits=torch.zeros(3)), 1)
    with pytest.raises(ValueError, match="REBAR's parameter eta holds NaN or inf"):
        sg.expectation(lambda b: b.sum(-1), dist, estimator, 2)


# ------------------------------------------------------------------ 8. empty batches


def empty(build: Callable[[], Distribution]) -> Distribution:
    """torch.distributions' own argument checks reject an empty batch: build it without."""
    Distribution.set_default_validate_args(False)
    try:
        return build()
    finally:
        Distribution.set_default_validate_args(True)


EMPTY_CASES = {
    "measure-valued": lambda: Normal(torch.zeros(0, requires_grad=True), 1.0),
    "disarm": lambda: Bernoulli(logits=torch.zeros(0, requires_grad=True)),
    "score": lambda: Independent(Normal(torch.zeros(0, 2, requires_grad=True), 1.0), 1),
    "enumerate": lambda: Binomial(4, logits=torch.zeros(0, requires_grad=True)),
}


@pytest.mark.parametrize("name", list(EMPTY_CASES))
def test_an_empty_batch_gives_an_empty_surrogate(name: str) -> None:
    dist = empty(EMPTY_CASES[name])

    def cost(z: Tensor) -> Tensor:
        return z.sum(-1) if z.dim() > 2 else z * 1.0

    surrogate = sg.expectation(cost, dist, name, 2)
    assert surrogate.shape == (0,)
    surrogate.sum().backward()


# ------------------------------------------------------- 9. low-precision samplers


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "build",
    [
        lambda x: Gamma(x, x),
        lambda x: Beta(x, x),
        lambda x: Dirichlet(x.expand(2, 3)),
        lambda x: Binomial(4, probs=x / 2),
    ],
    ids=["Gamma", "Beta", "Dirichlet", "Binomial"],
)
def test_low_precision_families_name_the_dtypes_they_sample_in(build, dtype) -> None:
    dist = build(torch.ones(3, dtype=dtype))
    name = "pathwise" if dist.has_rsample else "score"
    with pytest.raises(TypeError, match=r"samples only in float32 and float64.*\.float\(\)"):
        sg.expectation(lambda z: z.sum(-1), dist, name, 2)


# -------------------------------------------- 10. pooling estimators and measure_batched


OPTIMAL = sg.ScoreFunction(control_variate="delta", coefficient="optimal")


def test_measure_batched_refuses_an_estimator_that_pools_across_the_batch() -> None:
    with pytest.raises(ValueError, match=r"pools its samples across the batch.*measure\("):
        measure_batched(
            lambda leaves: sg.expectation(lambda x: x**2, Normal(leaves["mu"], 1.0), OPTIMAL, 4),
            {"mu": 1.0},
            repeats=100,
        )
    mu = torch.ones((), requires_grad=True)
    stats = measure(
        lambda: sg.expectation(lambda x: x**2, Normal(mu, 1.0), OPTIMAL, 4), {"mu": mu}, 20
    )
    assert math.isfinite(stats["mu"].variance)


def other_element_moves_the_first(
    build: Callable[[], sg.Estimator], dist_of: Callable[[Tensor], Distribution], f, n: int
) -> bool:
    """Whether changing batch element 1's parameter changes element 0's gradient estimate,
    with the same random numbers and a fresh estimator."""
    gradients = []
    for second in (0.3, 2.0):
        leaf = torch.tensor([0.3, second], dtype=DTYPE, requires_grad=True)
        generator = torch.Generator().manual_seed(11)
        sg.expectation(f, dist_of(leaf), build(), n, generator).sum().backward()
        gradients.append(leaf.grad[0].item())
    return gradients[0] != gradients[1]


def normal_of(leaf: Tensor) -> Distribution:
    return Normal(leaf, 1.0)


@pytest.mark.parametrize("name", [n for n, e in catalog.CATALOG.items() if not e.required_options])
def test_pools_across_batch_says_whether_elements_share_their_samples(name: str) -> None:
    """The fact is checked against what the estimator does; the optimal coefficient is the
    estimator that pools."""
    entry = catalog.entry(name)
    if entry.supports(normal_of(torch.zeros(2))):
        dist_of, f = normal_of, (lambda z: torch.cos(z) + z**2)
    else:
        dist_of, f = (lambda leaf: Bernoulli(logits=leaf)), (lambda b: (b - 0.3) ** 2)
    n = max(entry.min_num_samples, 4)
    pools = other_element_moves_the_first(entry.build, dist_of, f, n)
    assert pools == entry.build().pools_across_batch
    assert other_element_moves_the_first(lambda: OPTIMAL, normal_of, f, 4)
    assert OPTIMAL.pools_across_batch
