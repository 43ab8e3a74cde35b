"""The VAEs of ``samplegrad.lab.models``: shapes, gradients, bounds, and unbiased ELBO gradients.

All models are tiny (a dozen pixels) and the images random, so every test runs in seconds.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.distributions import Independent, Normal, kl_divergence

import samplegrad as sg
from samplegrad.estimators import catalog
from samplegrad.lab.models import (
    BernoulliVAE,
    CategoricalVAE,
    DiscreteVAE,
    GaussianVAE,
    LossOutput,
    applicable_estimators,
    make_estimator,
)

from stats import assert_mean_close

pytestmark = pytest.mark.usefixtures("one_thread")

PIXELS = 12

DISCRETE: dict[str, Callable[[], DiscreteVAE]] = {
    "bernoulli-linear": lambda: BernoulliVAE("linear", latent_dim=5, data_dim=PIXELS),
    "bernoulli-nonlinear": lambda: BernoulliVAE(
        "nonlinear", latent_dim=5, hidden=8, data_dim=PIXELS, learn_prior=True
    ),
    "categorical": lambda: CategoricalVAE(3, 4, hidden=(16, 8), data_dim=PIXELS),
}

CASES = [
    (model_name, estimator)
    for model_name, build in DISCRETE.items()
    for estimator in applicable_estimators(build())
]


def images(batch: int, seed: int = 0) -> torch.Tensor:
    return torch.bernoulli(
        torch.full((batch, PIXELS), 0.4), generator=torch.Generator().manual_seed(seed)
    )


def assert_all_parameters_reached(model: nn.Module) -> None:
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name} received no gradient"
        assert torch.isfinite(parameter.grad).all(), f"{name}'s gradient is not finite"
        assert parameter.grad.abs().sum() > 0, f"{name}'s gradient is zero"


@pytest.mark.parametrize(("model_name", "estimator_name"), CASES)
def test_discrete_loss_elbo_and_iwae(model_name: str, estimator_name: str) -> None:
    torch.manual_seed(0)
    model = DISCRETE[model_name]()
    estimator = make_estimator(estimator_name, model, num_samples=2)
    x = images(6)
    generator = torch.Generator().manual_seed(1)

    out = model.loss(x, estimator, num_samples=2, generator=generator)

    assert isinstance(out, LossOutput)
    assert out.loss.shape == () and torch.isfinite(out.loss)
    assert out.elbo.shape == (6,) and torch.isfinite(out.elbo).all()
    assert not out.elbo.requires_grad
    out.loss.backward()
    assert_all_parameters_reached(model)
    for bound in (model.elbo(x, 3, generator), model.iwae_bound(x, 7, 3, generator)):
        assert bound.shape == (6,) and torch.isfinite(bound).all()
        assert not bound.requires_grad


def test_gaussian_loss_elbo_and_iwae() -> None:
    torch.manual_seed(0)
    model = GaussianVAE(latent_dim=2, hidden=16, data_dim=PIXELS)
    x = images(6)
    generator = torch.Generator().manual_seed(1)

    out = model.loss(x, num_samples=3, generator=generator)

    assert out.loss.shape == () and torch.isfinite(out.loss)
    assert out.elbo.shape == (6,) and torch.isfinite(out.elbo).all()
    out.loss.backward()
    assert_all_parameters_reached(model)
    assert model.elbo(x, 2).shape == model.iwae_bound(x, 5, chunk_size=2).shape == (6,)


def test_gaussian_loss_is_kl_plus_monte_carlo_likelihood() -> None:
    torch.manual_seed(0)
    model = GaussianVAE(latent_dim=3, hidden=16, data_dim=PIXELS)
    x = images(4)
    out = model.loss(x, num_samples=5, generator=torch.Generator().manual_seed(2))

    mean, log_var = model.encode(x)
    z = sg.nn.Sampling(5)(mean, log_var, torch.Generator().manual_seed(2))
    logits = model.decode(z)
    nll = nn.functional.binary_cross_entropy_with_logits(
        logits, x.expand_as(logits), reduction="none"
    ).sum(-1)
    q = Independent(Normal(mean, (0.5 * log_var).exp()), 1)
    prior = Independent(Normal(torch.zeros_like(mean), torch.ones_like(mean)), 1)
    kl = kl_divergence(q, prior)
    torch.testing.assert_close(model.kl(mean, log_var), kl)
    torch.testing.assert_close(out.elbo, -(kl + nll.mean(0)).detach())
    torch.testing.assert_close(out.loss, (kl + nll.mean(0)).mean())


@pytest.mark.parametrize("model_name", ["gaussian", *DISCRETE])
def test_iwae_bound_tightens_with_k(model_name: str) -> None:
    """``E[IWAE_1] = E[ELBO]`` (both average ``log p(x, z) - log q(z)``, or its analytic-KL
    form), and ``E[IWAE_k]`` increases with ``k`` (Burda et al. 2016, Theorem 1)."""
    torch.manual_seed(0)
    if model_name == "gaussian":
        model: nn.Module = GaussianVAE(latent_dim=2, hidden=16, data_dim=PIXELS)
    else:
        model = DISCRETE[model_name]()
    repeats = 2000
    x = images(1).expand(repeats, PIXELS)
    generator = torch.Generator().manual_seed(3)
    elbo = model.elbo(x, 1, generator)
    iwae = {k: model.iwae_bound(x, k, 16, generator) for k in (1, 10, 100)}

    assert_mean_close(iwae[1] - elbo, 0.0)
    means = [iwae[k].mean() for k in (1, 10, 100)]
    assert elbo.mean() < means[1] < means[2]
    assert means[0] < means[1]


def _flat_gradient(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def tiny_model(latent: str) -> DiscreteVAE:
    """A VAE small enough to enumerate: ``2^3`` Bernoulli or ``3^2`` categorical latents."""
    if latent == "bernoulli":
        return BernoulliVAE("nonlinear", latent_dim=3, hidden=4, data_dim=4)
    return CategoricalVAE(2, 3, hidden=(4,), data_dim=4)


UNBIASED = [
    (latent, name)
    for latent in ("bernoulli", "categorical")
    for name in applicable_estimators(tiny_model(latent))
    if name in catalog.CATALOG
    and catalog.CATALOG[name].unbiased
    and not catalog.CATALOG[name].is_variant
    and not issubclass(catalog.CATALOG[name].cls, sg.Enumerate)
]
"""Each unbiased estimator class that applies to the latent family, by its own name (the
variants' unbiasedness is checked family by family in ``test_conformance.py``), except
enumeration, the reference."""


def gradient_estimates(latent: str, estimator_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``G`` independent estimates of the ELBO gradient (all parameters), and the exact one.

    Exact: ``sg.Enumerate()`` sums ``q(z) f(z)`` over the ``2^3`` (or ``3^2``) latent
    configurations, so the surrogate's gradient is ``grad E_q[f]`` exactly. Each of ``G``
    estimates averages ``R`` copies of the two images in one batch (independent samples per
    copy), so the ``G`` estimates are independent and their spread gives the standard error.
    """
    torch.manual_seed(0)
    model = tiny_model(latent)
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]])

    model.loss(x, sg.Enumerate()).loss.backward()
    exact = _flat_gradient(model)

    estimator = make_estimator(estimator_name, model)
    generator = torch.Generator().manual_seed(4)
    batch = x.repeat(100, 1)
    estimates = []
    for _ in range(200):
        model.zero_grad()
        model.loss(batch, estimator, num_samples=2, generator=generator).loss.backward()
        estimates.append(_flat_gradient(model))
    return torch.stack(estimates), exact


@pytest.mark.parametrize(("latent", "estimator_name"), UNBIASED)
def test_elbo_gradient_is_unbiased(latent: str, estimator_name: str) -> None:
    """Mean gradient of every parameter within 4 standard errors of the exact ELBO gradient."""
    assert_mean_close(*gradient_estimates(latent, estimator_name))


def test_unbiasedness_check_detects_the_gumbel_softmax_bias() -> None:
    """The relaxation's gradient is biased: the same check must fail for it."""
    with pytest.raises(AssertionError):
        assert_mean_close(*gradient_estimates("bernoulli", "gumbel"))


@pytest.mark.parametrize("model_name", list(DISCRETE))
def test_linear_log_mass_matches_log_prob_at_discrete_points(model_name: str) -> None:
    """The linear-in-``z`` formula used for relaxed samples is ``log q(z)`` on the support."""
    model = DISCRETE[model_name]()
    logits = model.encode(images(3))
    q = model.distribution(logits)
    z = q.sample((4,))
    torch.testing.assert_close(model.log_mass(z, logits), q.log_prob(z))
    torch.testing.assert_close(model.log_mass(z, model.prior_logits), model.prior().log_prob(z))


def test_paper_architectures() -> None:
    def shapes(module: nn.Module) -> list[tuple[int, ...]]:
        return [tuple(m.weight.shape) for m in module.modules() if isinstance(m, nn.Linear)]

    gaussian = GaussianVAE()
    assert shapes(gaussian.encoder) + shapes(gaussian.mean) == [(400, 784), (20, 400)]
    assert shapes(gaussian.decoder) == [(400, 20), (784, 400)]
    linear = BernoulliVAE("linear")
    assert shapes(linear.encoder) == [(200, 784)] and shapes(linear.decoder) == [(784, 200)]
    nonlinear = BernoulliVAE("nonlinear")
    assert shapes(nonlinear.encoder) == [(200, 784), (200, 200), (200, 200)]
    assert sum(isinstance(m, nn.LeakyReLU) for m in nonlinear.decoder) == 2
    categorical = CategoricalVAE()
    assert shapes(categorical.encoder) == [(512, 784), (256, 512), (300, 256)]
    assert shapes(categorical.decoder) == [(256, 300), (512, 256), (784, 512)]
    assert isinstance(BernoulliVAE(learn_prior=True).prior_logits, nn.Parameter)
    assert "prior_logits" in dict(linear.named_buffers())


def test_auto_chooses_like_expectation() -> None:
    model = DISCRETE["bernoulli-linear"]()
    single = make_estimator("auto", model, num_samples=1)
    several = make_estimator("auto", model, num_samples=4)
    assert isinstance(single, sg.ScoreFunction) and isinstance(single.baseline, sg.MovingAverage)
    assert isinstance(several, sg.ScoreFunction) and isinstance(several.baseline, sg.LeaveOneOut)


def test_estimator_errors_name_the_applicable_estimators() -> None:
    bernoulli, categorical = BernoulliVAE(), CategoricalVAE()
    with pytest.raises(ValueError, match=r"unknown estimator 'nonsense'.*'disarm'"):
        make_estimator("nonsense", bernoulli)
    with pytest.raises(TypeError, match=r"'pathwise' does not apply .*that do: .*'disarm'"):
        make_estimator("pathwise", bernoulli)  # a catalog name, for other families
    with pytest.raises(TypeError, match=r"estimators that do: .*'score-loo'") as error:
        make_estimator("arm", categorical)
    assert "'arm'" not in str(error.value).split("estimators that do:")[1]
    with pytest.raises(TypeError, match="'enumerate' does not apply"):
        make_estimator("enumerate", bernoulli)
    with pytest.raises(TypeError, match="pathwise"):
        make_estimator("score", GaussianVAE())
    with pytest.raises(TypeError, match="invalid options for estimator 'disarm'"):
        make_estimator("disarm", bernoulli, temperature=0.5)
    with pytest.raises(TypeError, match="make_estimator"):
        bernoulli.loss(torch.zeros(2, 784), "score")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="even"):
        bernoulli.loss(torch.zeros(2, 784), sg.DisARM(), num_samples=3)
    with pytest.raises(ValueError, match=r"\(batch, 784\)"):
        bernoulli.elbo(torch.zeros(2, 28, 28))
    with pytest.raises(ValueError, match="k must be"):
        bernoulli.iwae_bound(torch.zeros(2, 784), k=0)
