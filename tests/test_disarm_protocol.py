"""The DisARM code's input and initialisation (``BernoulliVAE(data_mean=...)``) and the
per-image gradient w.r.t. the encoder logits (``DiscreteVAE.logit_gradients``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from samplegrad.lab.models import BernoulliVAE, CategoricalVAE, make_estimator
from samplegrad.lab.models.discrete import logit_of_mean
from samplegrad.lab.models.replicated import replicate

pytestmark = pytest.mark.usefixtures("one_thread")

PIXELS = 12


def images(batch: int, seed: int = 0) -> torch.Tensor:
    return torch.bernoulli(
        torch.full((batch, PIXELS), 0.4), generator=torch.Generator().manual_seed(seed)
    )


@pytest.mark.parametrize("arch", ["linear", "nonlinear"])
def test_data_mean_centres_the_input_signs_the_latent_and_sets_the_output_bias(arch) -> None:
    mean = torch.linspace(0.0, 0.5, PIXELS)
    torch.manual_seed(0)
    model = BernoulliVAE(arch, latent_dim=3, hidden=5, data_dim=PIXELS, data_mean=mean)
    torch.manual_seed(0)
    plain = BernoulliVAE(arch, latent_dim=3, hidden=5, data_dim=PIXELS)
    x = images(4)
    torch.testing.assert_close(model.encode(x), plain.encode(x - mean))
    # The output bias is the logit of the mean, clipped to [0.001, 0.999] (DisARM's code).
    bias = [m for m in model.decoder.modules() if isinstance(m, nn.Linear)][-1].bias
    torch.testing.assert_close(bias[0], torch.logit(torch.tensor(1e-3)))
    torch.testing.assert_close(bias, logit_of_mean(mean))
    with torch.no_grad():
        [m for m in plain.decoder.modules() if isinstance(m, nn.Linear)][-1].bias.copy_(bias)
    z = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.25]])
    torch.testing.assert_close(model.decode(z), plain.decode(2 * z - 1))
    with pytest.raises(ValueError, match=r"data_mean must be the mean image, shape \(12,\)"):
        BernoulliVAE(data_dim=PIXELS, data_mean=torch.zeros(3))


@pytest.mark.parametrize("name", ["disarm", "relax", "indecater"])
def test_logit_gradients_are_what_the_loss_back_propagates(name) -> None:
    """Back-propagated through the encoder, the per-image logit gradients give the gradient
    of ``B`` times the loss, with the same draws."""
    torch.manual_seed(0)
    model = BernoulliVAE("nonlinear", latent_dim=3, hidden=5, data_dim=PIXELS)
    estimator = make_estimator(name, model)
    x, samples = images(6), 2 if name == "disarm" else 1
    output = model.loss(x, estimator, samples, torch.Generator().manual_seed(1))
    expected = torch.autograd.grad(output.loss * len(x), list(model.encoder.parameters()))
    gradient = model.logit_gradients(
        x, estimator, num_samples=samples, generator=torch.Generator().manual_seed(1)
    )
    assert gradient.shape == (6, 3)
    actual = torch.autograd.grad(model.encode(x), list(model.encoder.parameters()), gradient)
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e)


def test_logit_gradients_of_replicas_and_categories() -> None:
    torch.manual_seed(0)
    models = [CategoricalVAE(2, 3, hidden=(4,), data_dim=PIXELS) for _ in range(2)]
    estimator = make_estimator("score-loo", models[0])
    x = images(5).expand(2, 5, PIXELS)
    gradient = replicate(models).logit_gradients(x, estimator, num_samples=2)
    assert gradient.shape == (2, 5, 2, 3)
    # A softmax's logits: the gradient of each variable sums to zero over its classes.
    torch.testing.assert_close(gradient.sum(-1), torch.zeros(2, 5, 2))
