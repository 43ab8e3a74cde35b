"""Layers that sample inside a network's forward pass; each returns a tensor."""

from samplegrad.nn.bayesian import (
    BayesConv2d,
    BayesianLayer,
    BayesLinear,
    FlipoutConv2d,
    FlipoutLinear,
    LocalReparamConv2d,
    LocalReparamLinear,
    kl_divergence,
    to_bayesian,
)
from samplegrad.nn.relaxed import GumbelSoftmax, StraightThrough
from samplegrad.nn.sampling import Sampling

__all__ = [
    "BayesConv2d",
    "BayesLinear",
    "BayesianLayer",
    "FlipoutConv2d",
    "FlipoutLinear",
    "GumbelSoftmax",
    "LocalReparamConv2d",
    "LocalReparamLinear",
    "Sampling",
    "StraightThrough",
    "kl_divergence",
    "to_bayesian",
]
