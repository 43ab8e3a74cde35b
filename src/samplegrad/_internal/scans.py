"""Leave-one-out reductions along dimension 0 in linear time and memory, without subtracting.

``sum_{j != k} x_j`` as ``total - x_k`` cancels: its rounding error depends on ``x_k``, and
where the other terms are small it is all that is left. Combining an exclusive prefix scan
(``x_0..x_{k-1}``) with an exclusive suffix scan (``x_{k+1}..x_{K-1}``) never touches ``x_k``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def exclusive_scans(
    x: Tensor, scan: Callable[[Tensor, int], Tensor], identity: float
) -> tuple[Tensor, Tensor]:
    """``scan`` of ``x_0..x_{k-1}`` and of ``x_{k+1}..x_{K-1}`` for each ``k`` along dim 0.

    ``scan`` is an inclusive scan (``torch.cumsum``, ``torch.logcumsumexp``) whose empty
    reduction is ``identity``; combining the two never subtracts, so it cannot cancel.
    """
    pad = torch.full_like(x[:1], identity)
    before = scan(torch.cat([pad, x[:-1]]), 0)
    after = scan(torch.cat([pad, x.flip(0)[:-1]]), 0).flip(0)
    return before, after


def leave_one_out_sum(x: Tensor) -> Tensor:
    """``sum_{j != k} x_j`` for each ``k`` along dim 0: exactly independent of ``x_k``."""
    before, after = exclusive_scans(x, torch.cumsum, 0.0)
    return before + after
