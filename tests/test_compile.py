"""``torch.compile`` of a training step, with no graph break (``fullgraph=True``).

Compiled graphs draw their random numbers differently from eager mode, so the check is
statistical: the compiled gradient estimates are unbiased, against the closed forms.
Distributions are built with ``validate_args=False``: torch.distributions' own value checks are
data-dependent branches that ``torch.compile`` cannot trace (samplegrad skips its value checks
while compiling).
"""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal

import samplegrad as sg

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
