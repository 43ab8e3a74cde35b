"""Exact enumeration: the ground truth of the other tests, checked against closed forms."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Independent, OneHotCategorical

import samplegrad as sg

from problems import BernoulliToy, three_dimensional_bernoulli

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bernoulli_toy_exact_value_and_gradient():
    problem = BernoulliToy(phi=0.7, t=0.2, repeats=3)
    surrogate = sg.expectation(problem.f, problem.dist(), "enumerate")
    theta = problem.theta
    expected_value = theta * (1 - problem.t) ** 2 + (1 - theta) * problem.t**2
    assert torch.allclose(surrogate, torch.full((3,), expected_value, dtype=torch.float64))
    grad = problem.gradient(surrogate)
    assert torch.allclose(grad, torch.full((3,), problem.exact_gradient, dtype=torch.float64))


def test_three_dimensional_design_check():
    logits, dist, f, exact = three_dimensional_bernoulli(repeats=2)
    sg.expectation(f, dist, sg.Enumerate()).sum().backward()
    assert torch.allclose(logits.grad, exact.expand(2, 3), atol=1e-12)
    assert torch.allclose(
        logits.grad[0].float(), torch.tensor([0.14857, -0.02037, -0.19155]), atol=1e-5
    )


def test_independent_product_support_is_complete():
    dist = Independent(Bernoulli(probs=torch.full((2, 3), 0.5)), 1)
    support = sg.Enumerate().support(dist)
    assert support.shape == (8, 2, 3)
    assert len({tuple(row.tolist()) for row in support[:, 0]}) == 8
    assert torch.allclose(dist.log_prob(support).exp().sum(0), torch.ones(2))


@pytest.mark.parametrize("family", [Categorical, OneHotCategorical])
def test_categorical_value_and_gradient(family):
    """``E[v_k] = sum_k p_k v_k``: gradient w.r.t. logits ``p_k (v_k - E[v])``."""
    logits = torch.tensor(
        [[0.2, -0.4, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True
    )
    values = torch.tensor([1.0, 4.0, -2.0], dtype=torch.float64)

    def f(z):
        return values[z] if family is Categorical else (z * values).sum(-1)

    surrogate = sg.expectation(f, family(logits=logits), "enumerate")
    p = logits.detach().softmax(-1)
    mean = (p * values).sum(-1)
    assert torch.allclose(surrogate, mean)
    surrogate.sum().backward()
    assert torch.allclose(logits.grad, p * (values - mean[:, None]))


def test_independent_categorical_product():
    """Two independent categorical elements: ``E[v_{k1} + v_{k2}] = 2 sum_k p_k v_k``."""
    logits = torch.tensor([[0.2, -0.4, 1.0], [0.5, 0.1, 0.0]], dtype=torch.float64)
    values = torch.tensor([1.0, 4.0, -2.0], dtype=torch.float64)
    dist = Independent(Categorical(logits=logits), 1)
    surrogate = sg.expectation(lambda k: values[k].sum(-1), dist, "enumerate")
    assert torch.allclose(surrogate, (logits.softmax(-1) * values).sum())


def test_gradcheck():
    values = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)

    def surrogate(logits):
        return sg.expectation(
            lambda b: (b * values).sum(-1) ** 2,
            Independent(Bernoulli(logits=logits), 1),
            "enumerate",
        )

    logits = torch.tensor([[0.3, -0.2, 1.1]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(surrogate, (logits,))


def test_refuses_a_support_too_large():
    dist = Independent(Bernoulli(logits=torch.zeros(17)), 1)
    with pytest.raises(ValueError, match=r"2\^17 = 131072 points.*max_support_size"):
        sg.expectation(lambda b: b.sum(-1), dist, "enumerate")
