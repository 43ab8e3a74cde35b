"""Numerical safety: no NaN or inf for extreme logits, small temperatures, low precision."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Independent, OneHotCategorical
from torch.nn import functional as F

import samplegrad as sg
from samplegrad.estimators.relaxed import gumbel_noise, logistic_noise

EXTREME_LOGITS = [-1e4, -30.0, -1.0, 0.0, 1.0, 30.0, 1e4]


def extreme_distributions(dtype):
    logits = torch.tensor(EXTREME_LOGITS, dtype=dtype, requires_grad=True)
    categorical_logits = (
        torch.stack([logits, torch.zeros_like(logits), -logits.detach()], dim=-1)
        .detach()
        .requires_grad_(True)
    )
    return [
        (logits, Independent(Bernoulli(logits=logits), 1)),
        (categorical_logits, Categorical(logits=categorical_logits)),
        (categorical_logits, OneHotCategorical(logits=categorical_logits)),
    ]


def weighted(z):
    """A cost with a nonzero gradient everywhere, for relaxed and discrete samples alike
    (Categorical's index samples are one-hot encoded first)."""
    z = z.float() if z.is_floating_point() else F.one_hot(z, 3).float()
    return (z * torch.linspace(0.5, 1.5, z.shape[-1])).sum(-1) ** 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [0.01, 1.0])
@pytest.mark.parametrize("hard", [False, True])
def test_gumbel_is_finite_at_extremes(dtype, temperature, hard, generator):
    for leaf, dist in extreme_distributions(dtype):
        surrogate = sg.expectation(
            weighted, dist, sg.GumbelSoftmax(temperature, hard), 16, generator
        )
        surrogate.sum().backward()
        assert torch.isfinite(surrogate).all()
        assert torch.isfinite(leaf.grad).all(), (type(dist).__name__, leaf.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("estimator", ["score", "straight-through", "enumerate"])
def test_discrete_estimators_are_finite_at_extremes(dtype, estimator, generator):
    for leaf, dist in extreme_distributions(dtype):
        if estimator == "enumerate" and isinstance(dist, Independent):
            continue  # 2^7 points is fine, but the check below is about sampling estimators
        surrogate = sg.expectation(weighted, dist, estimator, 16, generator)
        surrogate.sum().backward()
        assert torch.isfinite(surrogate).all()
        assert torch.isfinite(leaf.grad).all(), (type(dist).__name__, leaf.grad)


def test_noise_never_takes_log_of_zero(monkeypatch):
    """Even if the uniform generator returns exactly 0 (torch.rand's interval is [0, 1)) or the
    largest float below 1, the Gumbel and logistic noise stay finite."""
    edges = torch.tensor([0.0, 1.0 - 2**-24, 0.5])
    monkeypatch.setattr(torch, "rand", lambda *args, **kwargs: edges.clone())
    for noise in (gumbel_noise, logistic_noise):
        values = noise(torch.Size((3,)), torch.zeros(3), None)
        assert torch.isfinite(values).all(), (noise.__name__, values)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_noise_in_low_precision_is_finite(dtype, generator):
    like = torch.zeros(1, dtype=dtype)
    for noise in (gumbel_noise, logistic_noise):
        values = noise(torch.Size((100_000,)), like, generator).to(dtype)
        assert torch.isfinite(values).all()
