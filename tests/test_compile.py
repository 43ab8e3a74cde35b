"""``torch.compile`` of a training step.

With no graph break (``fullgraph=True``), compiled graphs draw their random numbers differently
from eager mode, so that check is statistical: the compiled gradient estimates are unbiased,
against the closed forms. Distributions are built with ``validate_args=False``:
torch.distributions' own value checks are data-dependent branches that ``torch.compile`` cannot
trace (samplegrad skips its value checks while compiling).

The VAE's ``training_step(compile=...)`` (``samplegrad train vae --compile``) draws its noise
from the step's generator, outside the graphs, so it must train exactly as eager does, to float
rounding: checked on a tiny VAE.
"""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal

import samplegrad as sg
from samplegrad.lab.models import GaussianVAE
from samplegrad.lab.training.vae import CompilePlan, training_step

from problems import GaussianQuadratic
from stats import assert_mean_close

pytestmark = [
    pytest.mark.slow,
    # Inductor itself touches the deprecated torch.jit.script_method while compiling.
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
]


@pytest.mark.parametrize(
    ("estimator", "num_samples"),
    [(sg.Pathwise(), 1), (sg.ScoreFunction("loo"), 2)],
    ids=["pathwise", "score-loo"],
)
def test_compiled_training_step_is_unbiased(estimator, num_samples):
    torch._dynamo.reset()
    problem = GaussianQuadratic(repeats=100_000, dtype=torch.float32)
    optimizer = torch.optim.SGD([problem.loc, problem.scale], lr=0.0)

    @torch.compile(fullgraph=True)
    def loss(loc, scale):
        dist = Normal(loc, scale, validate_args=False)
        return sg.expectation(problem.f, dist, estimator, num_samples).sum()

    for _ in range(2):  # the second step reuses the compiled graph
        optimizer.zero_grad()
        loss(problem.loc, problem.scale).backward()
        optimizer.step()
    exact_mu, exact_sigma = problem.exact_gradients
    assert_mean_close(problem.loc.grad, exact_mu)
    assert_mean_close(problem.scale.grad, exact_sigma)


def _trained_parameters(compile: bool | CompilePlan) -> list[torch.Tensor]:
    """A 16-8-2 Gaussian VAE after 2 Adam steps on a batch of 4, from fixed seeds."""
    torch.manual_seed(0)
    model = GaussianVAE(latent_dim=2, hidden=8, data_dim=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(1)
    step = training_step(
        model, None, optimizer, num_samples=1, generator=generator, compile=compile
    )
    x = torch.bernoulli(torch.full((4, 16), 0.3), generator=torch.Generator().manual_seed(2))
    for _ in range(2):
        step(x)
    return [p.detach() for p in model.parameters()]


# Dynamo reads .grad of the intermediate tensors it traces.
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")
@pytest.mark.parametrize(
    "compile",
    [True, CompilePlan(loss=True, optimizer=True)],
    ids=["default-plan", "loss+optimizer"],
)
def test_compiled_vae_step_trains_as_eager(compile):
    torch._dynamo.reset()
    eager = _trained_parameters(False)
    for compiled, expected in zip(_trained_parameters(compile), eager, strict=True):
        torch.testing.assert_close(compiled, expected, rtol=1e-5, atol=1e-5)
