"""Derivatives that are zero, not an error, where a function does not depend on its input."""

from __future__ import annotations

import torch
from torch import Tensor


def gradient(output: Tensor, wrt: Tensor, *, create_graph: bool = False) -> Tensor:
    """``d output.sum() / d wrt``; zeros where ``output`` does not depend on ``wrt`` (a constant,
    or the derivative of a linear or piecewise-linear function, which carries no graph)."""
    if not output.requires_grad:
        return torch.zeros_like(wrt)
    (derivative,) = torch.autograd.grad(
        output.sum(), wrt, create_graph=create_graph, materialize_grads=True
    )
    return derivative
