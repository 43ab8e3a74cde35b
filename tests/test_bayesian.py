"""sg.nn's Bayesian layers: forward against explicit weight samples, expectation, gradcheck,
KL against torch.distributions, conversion, errors, and the gradient-variance ordering."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Normal
from torch.func import functional_call, vmap
from torch.nn import functional as F

import samplegrad as sg
from samplegrad.lab.compare.bnn_variance import gradient_variance
from samplegrad.nn.bayesian import FlipoutNoise, OutputNoise, WeightNoise

LINEAR = [sg.nn.BayesLinear, sg.nn.FlipoutLinear, sg.nn.LocalReparamLinear]
CONV = [sg.nn.BayesConv2d, sg.nn.FlipoutConv2d, sg.nn.LocalReparamConv2d]
ALL = LINEAR + CONV


def make(cls: type, dtype: torch.dtype = torch.float32, **options: object) -> sg.nn.BayesianLayer:
    """A small layer with visible noise (posterior scales ~ 0.3, not the 1e-3 default)."""
    torch.manual_seed(0)
    options = {"init_scale": 0.3, "dtype": dtype, **options}
    shape = (5, 3) if cls in LINEAR else (2, 3, 3)
    extra = {} if cls in LINEAR else {"padding": 1, "stride": 2}
    layer = cls(*shape, **extra, **options)
    with torch.no_grad():  # scales that differ per weight, so a transposed sigma would show
        layer.weight_rho.add_(torch.rand_like(layer.weight_rho))
        layer.bias_rho.add_(torch.rand_like(layer.bias_rho))
    return layer


def example_input(cls: type, dtype: torch.dtype = torch.float32) -> Tensor:
    shape = (4, 5) if cls in LINEAR else (4, 2, 5, 5)
    return torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=dtype)


def op(layer: sg.nn.BayesianLayer, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """The deterministic operation of ``layer`` with a given weight and bias."""
    if isinstance(layer, tuple(LINEAR)):
        return F.linear(x, weight, bias)
    return F.conv2d(x, weight, bias, layer.stride, layer.padding)


def explicit(layer: sg.nn.BayesianLayer, x: Tensor, noise: object) -> Tensor:
    """The output computed from explicitly sampled weights (per example where the layer
    perturbs per example)."""
    mu, sigma, b_mu, b_sigma = layer.weight_mu, layer.weight_sigma, layer.bias_mu, layer.bias_sigma
    if isinstance(noise, WeightNoise):
        return op(layer, x, mu + sigma * noise.weight, b_mu + b_sigma * noise.bias)
    if isinstance(noise, FlipoutNoise):
        rows = []
        for n in range(len(x)):
            r_in = noise.sign_in[n].flatten()  # per input feature / channel
            r_out = noise.sign_out[n].flatten()
            flip = torch.outer(r_out, r_in).reshape(len(r_out), len(r_in), *[1] * (mu.dim() - 2))
            weight = mu + sigma * noise.weight * flip
            bias = b_mu + b_sigma * noise.bias * r_out
            rows.append(op(layer, x[n : n + 1], weight, bias))
        return torch.cat(rows)
    assert isinstance(noise, OutputNoise)
    mean = op(layer, x, mu, b_mu)
    std = op(layer, x.pow(2), sigma.pow(2), b_sigma.pow(2)).sqrt()
    return mean + std * noise.output


@pytest.mark.parametrize("cls", ALL)
def test_forward_with_fixed_noise_equals_the_explicit_computation(cls: type) -> None:
    layer, x = make(cls), example_input(cls)
    noise = layer.sample_noise(x, generator=torch.Generator().manual_seed(3))
    expected = explicit(layer, x, noise)
    torch.testing.assert_close(layer(x, noise=noise), expected)
    # forward draws the same noise, in the same order, from the same generator state
    torch.testing.assert_close(layer(x, torch.Generator().manual_seed(3)), expected)


@pytest.mark.parametrize("cls", [sg.nn.FlipoutLinear, sg.nn.FlipoutConv2d])
def test_flipout_per_example_weights_are_distinct_posterior_samples(cls: type) -> None:
    """The signs really differ between examples (else Flipout is naive sampling)."""
    layer, x = make(cls), example_input(cls)
    noise = layer.sample_noise(x, generator=torch.Generator().manual_seed(3))
    assert noise.sign_in.abs().eq(1).all() and noise.sign_out.abs().eq(1).all()
    assert not torch.equal(noise.sign_out[0], noise.sign_out[1])


def test_local_reparam_linear_matches_independent_weights_per_example() -> None:
    """The local reparameterization's outputs have the distribution of x W_n^T + b_n with an
    independent W_n ~ q per example: equal means and variances (R = 4000 draws each;
    the differences are compared with 5 standard errors of the difference)."""
    layer, x = make(sg.nn.LocalReparamLinear), example_input(sg.nn.LocalReparamLinear)
    repeats, generator = 4000, torch.Generator().manual_seed(5)
    with torch.no_grad():
        noise = layer.sample_noise(x, (repeats,), generator)
        local = vmap(lambda n: layer(x, noise=n))(noise)
        eps = torch.randn((repeats, len(x), 3, 5), generator=generator)
        eps_b = torch.randn((repeats, len(x), 3), generator=generator)
        weights = layer.weight_mu + layer.weight_sigma * eps
        bias = layer.bias_mu + layer.bias_sigma * eps_b
        sampled = torch.einsum("rnoi,ni->rno", weights, x) + bias
    for a, b in ((local, sampled), (local.pow(2), sampled.pow(2))):
        se = ((a.var(0) + b.var(0)) / repeats).sqrt()
        assert ((a.mean(0) - b.mean(0)).abs() / se).max() < 5


@pytest.mark.parametrize("cls", ALL)
def test_expected_output_is_the_mean_weight_output(cls: type) -> None:
    """The mean over R = 4000 independent noise draws (drawn as one batch, vmapped) is within
    5 standard errors of the output of the mean weights, for every output value."""
    layer, x = make(cls), example_input(cls)
    repeats = 4000
    with torch.no_grad():
        noise = layer.sample_noise(x, (repeats,), torch.Generator().manual_seed(7))
        outputs = vmap(lambda n: layer(x, noise=n))(noise)
        target = op(layer, x, layer.weight_mu, layer.bias_mu)
    z = (outputs.mean(0) - target).abs() / (outputs.var(0) / repeats).sqrt()
    assert z.max() < 5


@pytest.mark.parametrize("cls", ALL)
def test_gradients_pass_gradcheck_in_float64(cls: type) -> None:
    layer, x = make(cls, torch.float64), example_input(cls, torch.float64)[:2]
    noise = layer.sample_noise(x, generator=torch.Generator().manual_seed(3))
    names = ["weight_mu", "weight_rho", "bias_mu", "bias_rho"]
    params = [getattr(layer, name).detach().clone().requires_grad_() for name in names]

    def forward(x: Tensor, *values: Tensor) -> Tensor:
        state = dict(zip(names, values, strict=True))
        return functional_call(layer, state, (x,), {"noise": noise})

    # fast mode: the Jacobian checked along random directions (the full one takes ~10 s here)
    inputs = (x.clone().requires_grad_(), *params)
    assert torch.autograd.gradcheck(forward, inputs, fast_mode=True)


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("prior_scale", [1.0, 0.1])
def test_kl_matches_torch_distributions(cls: type, prior_scale: float) -> None:
    layer = make(cls, torch.float64, prior_scale=prior_scale)
    expected = sum(
        torch.distributions.kl_divergence(Normal(mu, sigma), Normal(0.0, prior_scale)).sum()
        for mu, sigma in (
            (layer.weight_mu, layer.weight_sigma),
            (layer.bias_mu, layer.bias_sigma),
        )
    )
    torch.testing.assert_close(layer.kl(), expected)
    model = nn.Sequential(layer, nn.ReLU(), make(cls, torch.float64, prior_scale=prior_scale))
    torch.testing.assert_close(sg.nn.kl_divergence(model), 2 * expected)


def test_kl_without_bias_counts_the_weight_only() -> None:
    layer = sg.nn.FlipoutLinear(4, 2, bias=False, dtype=torch.float64)
    expected = torch.distributions.kl_divergence(
        Normal(layer.weight_mu, layer.weight_sigma), Normal(0.0, 1.0)
    ).sum()
    torch.testing.assert_close(layer.kl(), expected)
    x = torch.zeros(3, 4, dtype=torch.float64)
    assert layer.sample_noise(x).bias is None and layer(x).shape == (3, 2)


@pytest.mark.parametrize("cls", ALL)
def test_initialisation_like_the_deterministic_layers(cls: type) -> None:
    layer = cls(8, 4) if cls in LINEAR else cls(8, 4, 3)
    fan_in = layer.weight_mu[0].numel()
    assert layer.weight_mu.abs().max() <= 1 / math.sqrt(fan_in) + 1e-6  # kaiming_uniform(a=√5)
    assert layer.bias_mu.abs().max() <= 1 / math.sqrt(fan_in)
    torch.testing.assert_close(layer.weight_sigma, torch.full_like(layer.weight_sigma, 1e-3))
    torch.testing.assert_close(layer.bias_sigma, torch.full_like(layer.bias_sigma, 1e-3))


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_noise_follows_the_layer_dtype_and_leaves_the_global_state(
    cls: type, dtype: torch.dtype
) -> None:
    layer, x = make(cls, dtype), example_input(cls, dtype)
    state = torch.random.get_rng_state()
    y = layer(x, torch.Generator().manual_seed(0))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert y.dtype == dtype and torch.isfinite(y).all()
    assert all(t.dtype == dtype for t in layer.sample_noise(x) if t is not None)


def test_unbatched_conv_input_and_extra_leading_dimensions() -> None:
    conv = make(sg.nn.FlipoutConv2d)
    assert conv(torch.randn(2, 5, 5)).shape == (3, 3, 3)
    linear = make(sg.nn.FlipoutLinear)
    noise = linear.sample_noise(torch.randn(6, 4, 5))
    assert noise.sign_in.shape == (6, 4, 5) and noise.sign_out.shape == (6, 4, 3)


def test_to_bayesian_copies_the_weights_and_leaves_the_original() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 5, bias=False),
    )
    x = torch.randn(3, 1, 6, 6)
    for layer, classes in [
        ("flipout", (sg.nn.FlipoutConv2d, sg.nn.FlipoutLinear)),
        ("local-reparam", (sg.nn.LocalReparamConv2d, sg.nn.LocalReparamLinear)),
        ("naive", (sg.nn.BayesConv2d, sg.nn.BayesLinear)),
    ]:
        bnn = sg.nn.to_bayesian(net, layer, init_scale=1e-6, prior_scale=0.5)
        assert (type(bnn[0]), type(bnn[3])) == classes
        assert bnn[0].padding == (1, 1) and bnn[3].bias_mu is None
        assert bnn[3].prior_scale == 0.5
        assert torch.equal(bnn[0].weight_mu, net[0].weight)
        torch.testing.assert_close(bnn(x), net(x), atol=1e-4, rtol=0)
        assert sg.nn.kl_divergence(bnn) > 0
    assert type(net[0]) is nn.Conv2d  # the original is left alone
    assert isinstance(sg.nn.to_bayesian(nn.Linear(3, 2)), sg.nn.FlipoutLinear)


def test_to_bayesian_errors() -> None:
    with pytest.raises(ValueError, match=r"no nn\.Linear or nn\.Conv2d"):
        sg.nn.to_bayesian(nn.Sequential(nn.ReLU()))
    with pytest.raises(TypeError, match=r"must be an nn\.Module"):
        sg.nn.to_bayesian(lambda x: x)
    with pytest.raises(ValueError, match="layer must be one of 'flipout', 'local-reparam'"):
        sg.nn.to_bayesian(nn.Linear(2, 2), "dropout")
    with pytest.raises(ValueError, match="padding_mode='zeros'"):
        sg.nn.to_bayesian(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(ValueError, match="no Bayesian layer"):
        sg.nn.kl_divergence(nn.Linear(2, 2))


def test_argument_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="prior_scale must be a finite number > 0"):
        sg.nn.FlipoutLinear(3, 2, prior_scale=0.0)
    with pytest.raises(ValueError, match="init_scale must be a finite number > 0"):
        sg.nn.BayesLinear(3, 2, init_scale=math.inf)
    with pytest.raises(TypeError, match="prior_scale must be a number"):
        sg.nn.FlipoutLinear(3, 2, prior_scale="1")
    with pytest.raises(ValueError, match="in_features must be an int >= 1"):
        sg.nn.LocalReparamLinear(0, 2)
    with pytest.raises(ValueError, match="divisible by groups"):
        sg.nn.FlipoutConv2d(3, 4, 3, groups=2)
    layer = sg.nn.FlipoutLinear(3, 2)
    with pytest.raises(ValueError, match=r"expects an input of shape \(\*, 3\)"):
        layer(torch.zeros(4, 5))
    with pytest.raises(ValueError, match=r"\(N, 2, H, W\)"):
        sg.nn.FlipoutConv2d(2, 3, 3)(torch.zeros(4, 5))
    noise = layer.sample_noise(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"noise.sign_in has shape \(4, 3\), expected \(5, 3\)"):
        layer(torch.zeros(5, 3), noise=noise)
    with pytest.raises(TypeError, match="noise must be a FlipoutNoise"):
        layer(torch.zeros(4, 3), noise=WeightNoise(noise.weight, noise.bias))


# --------------------------------------------------------------------------------------------
# The variance of the gradient against the batch size (Wen et al. 2018, Fig. 1)

REPEATS = 400
SMALL, LARGE = 32, 512


def ratio_bound() -> float:
    """How far the ratio of two variance estimates may stray: each of R draws has relative
    standard error sqrt(2 / (R - 1)) (Gaussian gradients; averaging over parameters only
    shrinks it), so at 3 standard errors each the ratio lies within this factor."""
    error = 3 * math.sqrt(2 / (REPEATS - 1))
    return (1 + error) / (1 - error)


def variance_ratio(cls: type) -> tuple[float, float]:
    """Var(batch LARGE) / Var(batch SMALL) of a 10-8-3 MLP's gradient w.r.t. the posterior
    means (posterior scales 1, so the weight noise dominates), and Var at LARGE."""
    torch.manual_seed(1)
    layers = [cls(10, 8, init_scale=1.0), cls(8, 3, init_scale=1.0)]
    data = torch.Generator().manual_seed(0)
    x = torch.randn(LARGE, 10, generator=data)
    y = torch.randint(0, 3, (LARGE,), generator=data)
    generator = torch.Generator().manual_seed(2)
    small = gradient_variance(layers, x[:SMALL], y[:SMALL], REPEATS, generator)
    large = gradient_variance(layers, x, y, REPEATS, generator)
    return large / small, large


def test_flipout_gradient_variance_falls_as_one_over_batch_and_naive_does_not() -> None:
    """From batch 32 to 512 (16x), 1/batch scaling divides the variance by 16. Flipout and the
    local reparameterization must come within 2x of that (measured: 1/8 and 1/14); naive
    sampling must keep more than half its variance (measured: 0.74), each with the
    statistical slack of :func:`ratio_bound`. A Flipout with signs shared by the batch would
    be naive sampling and fail."""
    slack = ratio_bound()
    naive, naive_large = variance_ratio(sg.nn.BayesLinear)
    flipout, flipout_large = variance_ratio(sg.nn.FlipoutLinear)
    local, local_large = variance_ratio(sg.nn.LocalReparamLinear)
    assert flipout < 2 / 16 * slack
    assert local < 2 / 16 * slack
    assert naive > 0.5 / slack
    assert local_large < flipout_large < naive_large


def test_gradient_variance_needs_two_repeats() -> None:
    layer = sg.nn.FlipoutLinear(3, 2)
    with pytest.raises(ValueError, match="repeats must be an int >= 2"):
        gradient_variance([layer], torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), 1)
