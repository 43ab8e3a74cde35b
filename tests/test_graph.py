"""``sg.Graph``: many stochastic nodes against exact enumeration, to first and second order.

Every statistical test holds ``R`` independent copies of the parameters (a leading dimension of
size ``R``), builds one graph whose nodes have batch shape ``(R,)`` (or ``(S, R)`` with ``S``
joint samples), and sums the surrogate: its gradient holds ``R`` independent estimates, one per
copy. Exact values come from enumerating every joint outcome with the same parameters, as a
differentiable function (``torch.autograd`` then gives the exact gradient and Hessian).
Tolerances: ``tests/stats.py`` (means within 4 standard errors).
"""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest
import torch
from torch import Tensor
from torch.distributions import Bernoulli, Categorical, Normal, OneHotCategorical

import samplegrad as sg
from samplegrad.estimators.baselines import LeaveOneOut
from samplegrad.graph import UntracedCostWarning, _baseline_values, depends_on

from stats import assert_mean_close

pytestmark = pytest.mark.usefixtures("one_thread")

R = 100_000
DTYPE = torch.float64
L1 = [0.2, -0.5, 1.0]  # logits of a ~ Categorical(3)
W = [0.3, -1.0, 2.0]  # logit of b given a
V = [[0.5, -0.4], [1.2, 0.1], [-0.8, 0.9]]  # logit of c given (a, b) in the fork / chain
TABLE = torch.tensor([[1.0, 3.0], [-2.0, 0.5], [0.7, -1.5]], dtype=DTYPE)  # f(a, b)


def copies(values: list, repeats: int = R) -> Tensor:
    """``repeats`` copies of ``values`` as a leaf of shape ``(repeats, *shape)``."""
    base = torch.tensor(values, dtype=DTYPE)
    return base.expand(repeats, *base.shape).clone().requires_grad_(True)


def pick(table: Tensor, *indices: Tensor) -> Tensor:
    """``table[r, i, j, ...]`` per copy ``r``: ``table`` has the copies in dimension 0."""
    rows = torch.arange(table.shape[0])
    return table[(rows, *indices)]


# ------------------------------------------------------------------------ exact targets


def chain_expectation(l1: Tensor, w: Tensor) -> Tensor:
    """``E[f(a, b)]``, ``a ~ Cat(softmax(l1))``, ``b ~ Bern(sigmoid(w[a]))``: enumeration."""
    pa, pb = torch.softmax(l1, -1), torch.sigmoid(w)
    return (pa * (pb * TABLE[:, 1] + (1 - pb) * TABLE[:, 0])).sum(-1)


def staged_expectation(l1: Tensor, w: Tensor, v: Tensor) -> Tensor:
    """``E[f1(a) + f2(a, b) + f3(c)]`` for the chain ``a -> b -> c`` of
    :func:`build_staged`: every joint outcome weighted by its probability."""
    pa, pb, pc = torch.softmax(l1, -1), torch.sigmoid(w), torch.sigmoid(v)
    total = torch.zeros((), dtype=DTYPE)
    for a, b, c in itertools.product(range(3), range(2), range(2)):
        p = pa[a] * (pb[a] if b else 1 - pb[a]) * (pc[a, b] if c else 1 - pc[a, b])
        total = total + p * (stage_costs(a, b, c))
    return total


STAGE_ONE = [12.0, 9.0, 10.5]
"""``f1(a)``: large, so that the score terms it would add to ``b`` and ``c`` are loud noise."""


def stage_costs(a: int | Tensor, b: int | Tensor, c: int | Tensor) -> Tensor:
    f1 = torch.tensor(STAGE_ONE, dtype=DTYPE)[a]
    f2 = TABLE[a, b]
    f3 = 3.0 * torch.as_tensor(c, dtype=DTYPE) - 1.0
    return f1 + f2 + f3


def exact_gradient(function, *values: list) -> list[Tensor]:
    leaves = [torch.tensor(v, dtype=DTYPE, requires_grad=True) for v in values]
    return list(torch.autograd.grad(function(*leaves), leaves))


# ------------------------------------------------------------------------------- graphs


def build_chain(
    l1: Tensor, w: Tensor, estimator_b: object = "score", num_samples: int | None = None
) -> tuple[sg.Graph, Tensor]:
    generator = torch.Generator().manual_seed(0)
    g = sg.Graph()
    a = g.sample("a", Categorical(logits=l1), "score", num_samples, generator)
    b = g.sample(
        "b",
        Bernoulli(logits=pick(w, a) if a.dim() == 1 else w.gather(-1, a[..., None])[..., 0]),
        estimator_b,
        generator=generator,
    )
    g.cost(TABLE[a, b.long()])
    return g, g.surrogate()


def build_staged(l1: Tensor, w: Tensor, v: Tensor, causal: bool) -> sg.Graph:
    """``a -> b -> c`` with a cost at each stage: ``f1(a)``, ``f2(a, b)``, ``f3(c)``."""
    generator = torch.Generator().manual_seed(1)
    g = sg.Graph()
    a = g.sample("a", Categorical(logits=l1), "score", generator=generator)
    b = g.sample("b", Bernoulli(logits=pick(w, a)), "score", generator=generator)
    c = g.sample("c", Bernoulli(logits=pick(v, a, b.long())), "score", generator=generator)
    declared = None if causal else "all"
    g.cost(torch.tensor(STAGE_ONE, dtype=DTYPE)[a], depends_on=declared)
    g.cost(TABLE[a, b.long()], depends_on=declared)
    g.cost(3.0 * c - 1.0, depends_on=declared)
    return g


def test_the_issue_example_runs_and_its_value_is_the_cost() -> None:
    l1 = torch.tensor(L1, requires_grad=True)
    w = torch.tensor(W, requires_grad=True)
    g = sg.Graph()
    a = g.sample("a", Categorical(logits=l1), estimator="score")
    b = g.sample(
        "b", Bernoulli(logits=w[a]), estimator=sg.ScoreFunction(baseline=sg.MovingAverage())
    )
    cost = TABLE[a, b.long()].float()
    g.cost(cost)
    loss = g.surrogate()
    assert loss.item() == pytest.approx(cost.item())
    loss.backward()
    assert l1.grad is not None and w.grad is not None
    assert depends_on(b) == {"a", "b"} and depends_on(cost) == {"a", "b"}


def test_two_node_chain_is_unbiased() -> None:
    l1, w = copies(L1), copies(W)
    _, loss = build_chain(l1, w)
    loss.backward()
    gl, gw = exact_gradient(chain_expectation, L1, W)
    assert_mean_close(l1.grad, gl)
    assert_mean_close(w.grad, gw)


def test_leave_one_out_over_joint_samples_is_unbiased_and_lowers_the_variance() -> None:
    S = 4
    gl, gw = exact_gradient(chain_expectation, L1, W)
    variances = {}
    for name, estimator in (("none", "score"), ("loo", sg.ScoreFunction(baseline="loo"))):
        l1, w = copies(L1, R // 4), copies(W, R // 4)
        g = sg.Graph()
        generator = torch.Generator().manual_seed(2)
        a = g.sample("a", Categorical(logits=l1), estimator, num_samples=S, generator=generator)
        assert a.shape == (S, R // 4) and g.num_samples == S
        b = g.sample("b", Bernoulli(logits=w.gather(-1, a.T).T), estimator, generator=generator)
        g.cost(TABLE[a, b.long()] + 10.0)  # far from 0, where a baseline matters
        g.surrogate().backward()
        assert_mean_close(l1.grad, gl)
        assert_mean_close(w.grad, gw)
        variances[name] = torch.cat([l1.grad, w.grad], -1).var(0)
    assert bool((variances["loo"] < 0.5 * variances["none"]).all()), variances


def test_three_node_chain_causality_is_unbiased_and_no_noisier() -> None:
    gl, gw, gv = exact_gradient(staged_expectation, L1, W, V)
    estimates = {}
    for causal in (True, False):
        l1, w, v = copies(L1), copies(W), copies(V)
        g = build_staged(l1, w, v, causal)
        g.surrogate().backward()
        for grad, exact in ((l1.grad, gl), (w.grad, gw), (v.grad, gv)):
            assert_mean_close(grad, exact)
        estimates[causal] = torch.cat([l1.grad, w.grad, v.grad.flatten(1)], -1)
    causal, everything = estimates[True].var(0), estimates[False].var(0)
    # a gets every cost either way; b and c lose f1 (and c f2) with causality.
    assert bool((causal[:3] == everything[:3]).all())
    assert bool((causal[3:] < 0.9 * everything[3:]).all()), (causal, everything)


def test_fork_is_unbiased_and_finds_its_dependencies() -> None:
    """``a`` feeds two independent children ``b`` and ``c``; costs ``f(a, b)`` and ``h(c)``."""

    def expectation(l1: Tensor, w: Tensor, u: Tensor) -> Tensor:
        pa, pb, pc = torch.softmax(l1, -1), torch.sigmoid(w), torch.sigmoid(u)
        first = (pa * (pb * TABLE[:, 1] + (1 - pb) * TABLE[:, 0])).sum(-1)
        return first + (pa * pc * 2.0).sum(-1)

    U = [1.0, -1.0, 0.0]
    l1, w, u = copies(L1), copies(W), copies(U)
    generator = torch.Generator().manual_seed(3)
    g = sg.Graph()
    a = g.sample("a", Categorical(logits=l1), "score", generator=generator)
    b = g.sample("b", Bernoulli(logits=pick(w, a)), "score", generator=generator)
    c = g.sample("c", Bernoulli(logits=pick(u, a)), "score", generator=generator)
    first, second = TABLE[a, b.long()], 2.0 * c
    assert depends_on(first) == {"a", "b"} and depends_on(second) == {"a", "c"}
    g.cost(first)
    g.cost(second)
    g.surrogate().backward()
    exact = exact_gradient(expectation, L1, W, U)
    for grad, target in zip((l1.grad, w.grad, u.grad), exact, strict=True):
        assert_mean_close(grad, target)


def hessian_estimates(l1: Tensor, w: Tensor, surrogate: Tensor) -> Tensor:
    """Per copy, the 6 x 6 Hessian of the surrogate with respect to ``(l1, w)``: ``(R, 6, 6)``."""
    first = torch.cat(torch.autograd.grad(surrogate, [l1, w], create_graph=True), -1)
    rows = [
        torch.cat(torch.autograd.grad(first[:, j].sum(), [l1, w], retain_graph=True), -1)
        for j in range(6)
    ]
    return torch.stack(rows, 1)


def test_second_order_dice_is_unbiased_and_the_naive_surrogate_is_not() -> None:
    exact = torch.autograd.functional.hessian(
        lambda x: chain_expectation(x[:3], x[3:]), torch.tensor(L1 + W, dtype=DTYPE)
    )
    l1, w = copies(L1, 50_000), copies(W, 50_000)
    g, dice = build_chain(l1, w)
    assert_mean_close(hessian_estimates(l1, w, dice).flatten(1), exact.flatten())

    cost = g._costs[0].value
    log_probs = g.nodes["a"].log_prob + g.nodes["b"].log_prob
    naive = (cost + cost.detach() * log_probs).sum()  # right first derivative only
    naive_mean = hessian_estimates(l1, w, naive).flatten(1).mean(0)
    assert (naive_mean - exact.flatten()).abs().max() > 0.05  # far beyond the noise


def test_pathwise_node_feeding_a_score_node() -> None:
    """``x ~ N(mu, 1)`` (pathwise), ``b ~ Bern(sigmoid(x))`` (score), cost ``(b - 0.3)^2 + x^2``:
    ``d/dmu E = 0.4 E[sigmoid'(x)] + 2 mu``, by Gauss-Hermite quadrature."""
    mu = copies(0.5)
    generator = torch.Generator().manual_seed(4)
    g = sg.Graph()
    x = g.sample("x", Normal(mu, 1.0), "pathwise", generator=generator)
    b = g.sample("b", Bernoulli(logits=x), "score", generator=generator)
    g.cost((b - 0.3) ** 2 + x**2)
    g.surrogate().backward()
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    sig = 1 / (1 + np.exp(-(0.5 + nodes)))
    exact = 0.4 * np.sum(weights * sig * (1 - sig)) / np.sqrt(2 * np.pi) + 1.0
    assert_mean_close(mu.grad, exact)


def test_relaxed_node_is_one_hot_and_has_no_score_term() -> None:
    logits = torch.zeros(5, 3, requires_grad=True)
    g = sg.Graph()
    y = g.sample("y", Categorical(logits=logits), sg.GumbelSoftmax(temperature=0.5))
    assert y.shape == (5, 3) and g.nodes["y"].log_prob is None
    g.cost((y * torch.arange(3.0)).sum(-1))
    g.surrogate().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_learned_baseline_trains_towards_the_expected_cost() -> None:
    b = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.SGD([b], lr=0.05)
    logits = torch.zeros(64)
    generator = torch.Generator().manual_seed(5)
    for _ in range(300):
        g = sg.Graph()
        z = g.sample(
            "z", Bernoulli(logits=logits), sg.ScoreFunction(baseline=lambda: b), generator=generator
        )
        g.cost(3.0 * z + 1.0)
        optimizer.zero_grad()
        (g.surrogate(reduction="mean")).backward()
        optimizer.step()
    assert b.item() == pytest.approx(2.5, abs=0.2)  # E[3 z + 1] at p = 1/2


def test_reductions_and_masks() -> None:
    logits = torch.zeros(4, requires_grad=True)
    g = sg.Graph(num_samples=4)
    mask = torch.tensor([True, True, False, True])
    z = g.sample("z", Bernoulli(logits=logits), sg.ScoreFunction(baseline="loo"), mask=mask)
    cost = (z * mask)[:, None] * torch.arange(1.0, 4.0)  # (4, 3): the node broadcasts
    g.cost(cost)
    assert g.nodes["z"].log_prob[2] == 0  # inactive: no score term
    per_element = cost.mean(0)
    assert torch.allclose(g.surrogate("none"), per_element)
    assert g.surrogate("sum").item() == pytest.approx(per_element.sum().item())
    assert g.surrogate("mean").item() == pytest.approx(per_element.mean().item())
    g.surrogate("sum").backward()
    assert logits.grad[2] == 0
    downstream = torch.tensor([1.0, 2.0, 10.0, 4.0])
    values = _baseline_values(LeaveOneOut(), downstream, mask)
    assert values.tolist() == pytest.approx([3.0, 2.5, 7 / 3, 1.5])  # the active others


def test_two_graphs_in_two_threads() -> None:
    def run(seed: int, out: dict, barrier: threading.Barrier) -> None:
        l1, w = copies(L1, 1000), copies(W, 1000)
        generator = torch.Generator().manual_seed(seed)
        g = sg.Graph()
        barrier.wait()
        a = g.sample("a", Categorical(logits=l1), "score", generator=generator)
        barrier.wait()  # both graphs hold a node now
        b = g.sample("b", Bernoulli(logits=pick(w, a)), "score", generator=generator)
        g.cost(TABLE[a, b.long()])
        g.surrogate().backward()
        out[seed] = torch.cat([l1.grad, w.grad], -1)

    threaded: dict = {}
    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=run, args=(s, threaded, barrier)) for s in (7, 8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for seed in (7, 8):
        alone: dict = {}
        run(seed, alone, threading.Barrier(1))
        assert torch.equal(threaded[seed], alone[seed])


def test_errors_name_the_problem() -> None:
    logits = torch.zeros(3, requires_grad=True)
    g = sg.Graph()
    z = g.sample("z", Bernoulli(logits=logits), "score")
    with pytest.raises(ValueError, match="exists already"):
        g.sample("z", Bernoulli(logits=logits), "score")
    with pytest.raises(TypeError, match="evaluates the cost at several points"):
        g.sample("y", Bernoulli(logits=logits), "disarm")
    with pytest.raises(TypeError, match="cannot handle Bernoulli"):
        g.sample("y", Bernoulli(logits=logits), "pathwise")
    with pytest.raises(ValueError, match="unknown nodes"):
        g.cost(z.float(), depends_on=["nope"])
    with pytest.raises(ValueError, match="floating-point tensor"):
        g.cost(z.long())
    with pytest.raises(ValueError, match="no cost"):
        g.surrogate()
    with pytest.warns(UntracedCostWarning, match="depends_on"):
        g.cost(torch.ones(3))
    other = sg.Graph()
    with pytest.raises(ValueError, match="another graph"):
        other.cost(z * 2.0)
    with pytest.raises(ValueError, match=r"needs num_samples >= 2|num_samples must be"):
        sg.Graph().sample("a", Bernoulli(logits=logits), sg.ScoreFunction(baseline="loo"))
    joint = sg.Graph()
    joint.sample("a", Bernoulli(logits=logits), "score", num_samples=4)
    with pytest.raises(ValueError, match="joint samples in dimension 0"):
        joint.cost(torch.ones(3))
    with pytest.raises(ValueError, match="give num_samples on the first node only"):
        joint.sample("b", Bernoulli(logits=logits), "score", num_samples=8)
    with pytest.raises(ValueError, match="reduction must be"):
        g.surrogate("max")  # type: ignore[arg-type]


def test_auto_chooses_and_announces() -> None:
    g = sg.Graph()
    loc = torch.zeros(2, requires_grad=True)
    with pytest.warns(sg.AutoEstimatorWarning, match="pathwise"):
        x = g.sample("x", Normal(loc, 1.0))
    assert x.requires_grad
    with pytest.warns(sg.AutoEstimatorWarning, match="one joint sample"):
        g.sample("b", OneHotCategorical(logits=torch.zeros(2, 3)))


def test_records_pass_through_indexing_reductions_and_layers() -> None:
    g = sg.Graph()
    x = g.sample("x", Normal(torch.zeros(4, 3), 1.0), "pathwise")
    k = g.sample("k", Categorical(logits=torch.zeros(4)), "score")
    layer = torch.nn.Linear(3, 2)
    assert depends_on(layer(x)) == {"x"}
    assert depends_on(torch.max(x, 0).values) == {"x"} == depends_on(torch.max(x, 0).indices)
    assert depends_on(x[k]) == {"x", "k"} and depends_on(torch.ones(4)[k]) == {"k"}
    assert depends_on(torch.tensor(1.0)) == frozenset()
