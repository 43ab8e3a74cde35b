"""``samplegrad._internal.detach.detached``: a distribution's copy with detached parameters."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import (
    Beta,
    Dirichlet,
    Gamma,
    Independent,
    LowRankMultivariateNormal,
    MultivariateNormal,
    Normal,
    TransformedDistribution,
)
from torch.distributions.transforms import AffineTransform, ExpTransform

from samplegrad._internal.detach import detached

LOC = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
LOG_SCALE = torch.tensor([-0.1, 0.2, 0.0], dtype=torch.float64)

FAMILIES = {
    "normal": lambda loc, s: Normal(loc, s.exp()),
    "independent": lambda loc, s: Independent(Normal(loc, s.exp()), 1),
    "low-rank-mvn": lambda loc, s: LowRankMultivariateNormal(
        loc, torch.stack([s, loc], -1), s.exp()
    ),
    "mvn": lambda loc, s: MultivariateNormal(loc, scale_tril=torch.diag(s.exp())),
    "gamma": lambda loc, s: Gamma(s.exp(), loc.exp()),
    "beta": lambda loc, s: Beta(s.exp(), loc.exp()),
    "dirichlet": lambda loc, s: Dirichlet(s.exp()),
    "transformed": lambda loc, s: TransformedDistribution(
        Normal(loc, s.exp()), [AffineTransform(loc, s.exp()), ExpTransform()]
    ),
}


@pytest.mark.parametrize("family", FAMILIES.values(), ids=FAMILIES.keys())
def test_same_density_without_the_parameters_gradient(family):
    loc, log_scale = LOC.clone().requires_grad_(), LOG_SCALE.clone().requires_grad_()
    dist = family(loc, log_scale)
    dist.log_prob(dist.rsample())  # fill the lazily cached attributes, which must detach too
    z = dist.rsample((5,)).detach()
    frozen = detached(dist)
    assert torch.equal(frozen.log_prob(z), dist.log_prob(z).detach())
    assert not frozen.log_prob(z).requires_grad
    assert dist.log_prob(z).requires_grad  # the original keeps its graph


def test_gradient_still_flows_through_the_sample():
    loc = LOC.clone().requires_grad_()
    dist = Normal(loc, 1.0)
    z = dist.rsample()
    (gradient,) = torch.autograd.grad(detached(dist).log_prob(z).sum(), loc)
    # d/dloc log N(z(loc); stop(loc), 1) = -(z - loc) * dz/dloc = -(z - loc)
    assert torch.allclose(gradient, -(z - loc).detach())
