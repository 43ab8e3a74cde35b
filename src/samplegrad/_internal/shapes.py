"""Reductions over trailing dimensions that also hold for empty batches.

``torch.distributions`` sums event dimensions by reshaping to ``(*batch, -1)``, which is
ambiguous when the batch has no elements (``0 * k == 0`` for every ``k``); summing over an
explicit tuple of dimensions is not.
"""

from __future__ import annotations

from torch import Tensor


def sum_rightmost(x: Tensor, ndims: int) -> Tensor:
    """``x`` summed over its last ``ndims`` dimensions (none for ``ndims == 0``; ``x.sum(())``
    would sum over all of them)."""
    return x.sum(tuple(range(x.dim() - ndims, x.dim()))) if ndims > 0 else x


def sum_after(x: Tensor, leading: int) -> Tensor:
    """``x`` summed over every dimension after the first ``leading`` ones."""
    return sum_rightmost(x, x.dim() - leading)
