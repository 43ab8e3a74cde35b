"""ReinMax (Liu et al. 2023) against its reference implementation: with the sample fixed, the
gradient equals ``reinmax.ReinMax_Auto.backward`` (the paper's package, which samples with the
global random state, so its backward pass is called on our sample); the temperature is refused
below 1; the estimate is exact in expectation for a quadratic cost and biased for a cubic one."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from reinmax.reinmax import ReinMax_Auto
from torch import Tensor
from torch.distributions import Bernoulli, Categorical, Independent, OneHotCategorical

import samplegrad as sg

from problems import RecordingCost
from stats import assert_mean_close

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_gradient(logits: Tensor, one_hot: Tensor, slope: Tensor, tau: float) -> Tensor:
    """``ReinMax_Auto.backward`` for a fixed one-hot sample, gradient ``slope`` at the sample and
    none at the probabilities."""
    context = SimpleNamespace(
        saved_tensors=(one_hot, logits, logits.softmax(-1), logits.new_tensor([tau]))
    )
    gradient, _ = ReinMax_Auto.backward(context, slope, torch.zeros_like(slope))
    return gradient


def cubic(z: Tensor) -> Tensor:
    """A cost of one-hot vectors whose gradient depends on the sample."""
    values = torch.linspace(-1, 2, z.shape[-1], dtype=z.dtype)
    x = z @ values
    return torch.sin(3 * x) + x**3


@pytest.mark.parametrize("num_classes", [2, 3, 6])
@pytest.mark.parametrize("tau", [1.0, 1.5, 4.0])
def test_the_gradient_is_the_reference_formula_at_the_same_sample(
    num_classes: int, tau: float
) -> None:
    generator = torch.Generator().manual_seed(num_classes)
    logits = torch.randn(5, num_classes, generator=generator, dtype=torch.float64)
    logits.requires_grad_(True)
    recorded = RecordingCost(cubic)
    surrogate = sg.ReinMax(tau)(recorded, Categorical(logits=logits), 1, generator)
    (gradient,) = torch.autograd.grad(surrogate.sum(), logits)
    one_hot = recorded.inputs[0][0].detach()  # (5, K): the sample, one-hot
    assert ((one_hot == 0) | (one_hot == 1)).all() and (one_hot.sum(-1) == 1).all()
    at_sample = one_hot.clone().requires_grad_(True)
    (slope,) = torch.autograd.grad(cubic(at_sample).sum(), at_sample)
    expected = reference_gradient(logits.detach(), one_hot, slope, tau)
    torch.testing.assert_close(gradient, expected, rtol=1e-12, atol=1e-14)


def test_a_bernoulli_is_the_reference_on_two_classes() -> None:
    """``f(b)`` of a Bernoulli with logit ``l`` is the two-class case with logits ``(0, l)``:
    the gradient with respect to ``l`` is the reference's class-1 component."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, generator=generator, dtype=torch.float64).requires_grad_(True)

    def f(b: Tensor) -> Tensor:
        return (torch.sin(3 * b) + b**3 + b[..., :1] * b).sum(-1)

    recorded = RecordingCost(f)
    dist = Independent(Bernoulli(logits=logits), 1)
    surrogate = sg.ReinMax(2.0)(recorded, dist, 1, generator)
    (gradient,) = torch.autograd.grad(surrogate.sum(), logits)
    b = recorded.inputs[0][0].detach().requires_grad_(True)
    (slope,) = torch.autograd.grad(f(b).sum(), b)
    one_hot = torch.stack([1 - b.detach(), b.detach()], -1)
    two_class = torch.stack([torch.zeros_like(logits), logits], -1).detach()
    slopes = torch.stack([torch.zeros_like(slope), slope], -1)
    expected = reference_gradient(
        two_class.reshape(-1, 2), one_hot.reshape(-1, 2), slopes.reshape(-1, 2), 2.0
    )
    torch.testing.assert_close(gradient, expected[:, 1].reshape(3, 4), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("temperature", [0.5, 0.999, float("inf"), True, "1"])
def test_a_temperature_below_one_is_refused(temperature: object) -> None:
    with pytest.raises(ValueError, match=r"temperature must be a finite number >= 1 for ReinMax"):
        sg.ReinMax(temperature)


def test_exact_in_expectation_for_a_quadratic_cost_biased_for_a_cubic_one() -> None:
    """Heun's method is exact for quadratics: at ``tau = 1`` the mean gradient is exact for
    ``(v . z - 0.2)^2`` and more than 8 standard errors off for the cubic cost."""
    repeats = 50_000
    values = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    start = torch.tensor([0.3, -0.5, 0.1], dtype=torch.float64)

    def quadratic(z: Tensor) -> Tensor:
        return (z @ values - 0.2) ** 2

    for cost, biased in ((quadratic, False), (cubic, True)):
        single = start.clone().requires_grad_(True)
        exact_value = sg.Enumerate()(cost, OneHotCategorical(logits=single))
        (exact,) = torch.autograd.grad(exact_value, single)
        logits = start.expand(repeats, 3).clone().requires_grad_(True)
        generator = torch.Generator().manual_seed(4)
        surrogate = sg.ReinMax()(cost, OneHotCategorical(logits=logits), 1, generator)
        (estimates,) = torch.autograd.grad(surrogate.sum(), logits)
        if biased:
            standard_error = (estimates.var(0) / repeats).sqrt()
            assert ((estimates.mean(0) - exact).abs() / standard_error).max() > 8
        else:
            assert_mean_close(estimates, exact)
