"""Where a batch must hold independent replicas: :func:`samplegrad.diagnostics.measure_batched`.

That function reads the ``R`` elements of one call's batch as ``R`` independent gradient
estimates. An estimator that pools its samples across the batch (the score function's
``coefficient="optimal"``, estimated from every element's samples) correlates them, and the
standard errors computed from them would be too small; inside :func:`independent_elements`,
such an estimator refuses to run (:func:`check_estimator`).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from samplegrad.estimators.base import Estimator

_REQUIRED: contextvars.ContextVar[bool] = contextvars.ContextVar("independent", default=False)


@contextlib.contextmanager
def independent_elements() -> Iterator[None]:
    """Within the context, every estimator must keep its batch elements independent."""
    token = _REQUIRED.set(True)
    try:
        yield
    finally:
        _REQUIRED.reset(token)


def check_estimator(estimator: Estimator) -> None:
    """Raise ``ValueError`` if ``estimator`` pools across the batch where that is not allowed
    (never while ``torch.compile`` traces: measuring is eager)."""
    if torch.compiler.is_compiling():
        return
    if _REQUIRED.get() and estimator.pools_across_batch:
        raise ValueError(
            f"the {type(estimator).__name__} estimator, as configured, pools its samples across "
            "the batch, so the elements of one call are not independent estimates and "
            "measure_batched would understate the "
            "standard errors; measure it with sg.diagnostics.measure(lambda: ..., parameters, "
            "repeats), which draws every estimate from a call of its own"
        )
