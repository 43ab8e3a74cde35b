"""Layers that sample inside a network's forward pass; each returns a tensor."""

from samplegrad.nn.relaxed import GumbelSoftmax, StraightThrough
from samplegrad.nn.sampling import Sampling

__all__ = ["GumbelSoftmax", "Sampling", "StraightThrough"]
