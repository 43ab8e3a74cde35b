"""Layers: the VAE sampling layer and the discrete sampling layers."""

from __future__ import annotations

import pytest
import torch

import samplegrad as sg

from problems import RecordingCost
from stats import assert_mean_close, assert_variance_close


def test_sampling_layer_moments_and_gradients(generator):
    """``z = m + exp(v/2) eps``: ``E[z] = m``, ``Var z = exp(v)``; for ``f = z^2`` the pathwise
    gradients are ``2z`` (mean ``2m``) and ``z * exp(v/2) eps`` (mean ``exp(v)``)."""
    repeats = 200_000
    mean = torch.full((repeats,), 0.7, dtype=torch.float64, requires_grad=True)
    log_var = torch.full((repeats,), -0.4, dtype=torch.float64, requires_grad=True)
    z = sg.nn.Sampling()(mean, log_var, generator)
    assert z.shape == (repeats,)
    assert_mean_close(z.detach(), 0.7, torch.tensor(-0.4).exp().item())
    assert_variance_close(z.detach(), torch.tensor(-0.4).exp().item())
    (z**2).sum().backward()
    assert_mean_close(mean.grad, 2 * 0.7)
    assert_mean_close(log_var.grad, torch.tensor(-0.4).exp().item())


def test_sampling_layer_num_samples_and_gradcheck():
    layer = sg.nn.Sampling(num_samples=3)
    mean = torch.zeros(2, 4, dtype=torch.float64, requires_grad=True)
    log_var = torch.zeros(2, 4, dtype=torch.float64, requires_grad=True)
    assert layer(mean, log_var).shape == (3, 2, 4)

    def sample(m, v):
        return layer(m, v, torch.Generator().manual_seed(0))

    assert torch.autograd.gradcheck(sample, (mean, log_var))


def test_sampling_layer_errors():
    with pytest.raises(ValueError, match="mean and log_var must have the same shape"):
        sg.nn.Sampling()(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="num_samples must be None or an int >= 1"):
        sg.nn.Sampling(num_samples=0)


@pytest.mark.parametrize("kind", ["categorical", "bernoulli"])
@pytest.mark.parametrize("hard", [False, True])
def test_gumbel_softmax_layer_matches_the_estimator(kind, hard):
    """The layer and ``sg.GumbelSoftmax`` draw the same sample from the same generator."""
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    layer = sg.nn.GumbelSoftmax(0.3, hard=hard, kind=kind)
    sample = layer(logits, torch.Generator().manual_seed(9))
    dist = (
        torch.distributions.OneHotCategorical(logits=logits)
        if kind == "categorical"
        else torch.distributions.Bernoulli(logits=logits)
    )
    reduce = (lambda z: z.sum(-1)) if kind == "categorical" else (lambda z: z)
    cost = RecordingCost(reduce)
    sg.expectation(cost, dist, sg.GumbelSoftmax(0.3, hard), 1, torch.Generator().manual_seed(9))
    assert torch.allclose(sample, cost.inputs[0][0])
    if kind == "categorical":
        assert torch.allclose(sample.sum(-1), torch.ones(5))
    if hard:
        assert torch.equal(sample, sample.round())


@pytest.mark.parametrize(
    "layer",
    [sg.nn.GumbelSoftmax(num_samples=4), sg.nn.StraightThrough(num_samples=4)],
    ids=["gumbel", "straight-through"],
)
def test_discrete_layers_draw_num_samples(layer):
    logits = torch.randn(2, 3, requires_grad=True)
    sample = layer(logits)
    assert sample.shape == (4, 2, 3)
    sample.sum().backward()
    assert logits.grad.shape == (2, 3)


def test_gumbel_softmax_layer_temperature_buffer_and_error():
    layer = sg.nn.GumbelSoftmax(1.0)
    assert dict(layer.named_buffers())["temperature"].item() == 1.0
    layer(torch.zeros(3))
    layer.temperature.fill_(-1.0)  # annealed in place: checked again at the next call
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        layer(torch.zeros(3))
    layer.temperature = torch.tensor(0.0)  # replaced: checked again too
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        layer(torch.zeros(3))
    with pytest.raises(ValueError, match="kind must be 'categorical'"):
        sg.nn.GumbelSoftmax(kind="gaussian")


@pytest.mark.parametrize("kind", ["categorical", "bernoulli"])
def test_straight_through_layer_frequencies_and_gradient(kind, generator):
    """Samples follow the probabilities; the gradient is that of the probabilities."""
    repeats = 100_000
    logits = torch.tensor([0.5, -0.3, 1.2]).expand(repeats, 3).clone().requires_grad_(True)
    sample = sg.nn.StraightThrough(kind)(logits, generator)
    probs = logits.detach().softmax(-1) if kind == "categorical" else logits.detach().sigmoid()
    assert torch.equal(sample, sample.round())
    assert_mean_close(sample.detach(), probs[0], probs[0] * (1 - probs[0]))
    weights = torch.tensor([1.0, 2.0, 3.0])
    (sample * weights).sum().backward()
    expected = torch.autograd.grad(
        ((logits.softmax(-1) if kind == "categorical" else logits.sigmoid()) * weights).sum(),
        logits,
    )[0]
    assert torch.allclose(logits.grad, expected)
