"""A distribution's copy with detached parameters: ``log q_{stop(phi)}(z)``.

The sticking-the-landing and doubly reparameterized estimators need ``log q(z)`` evaluated at a
sample ``z = g_phi(eps)`` that still carries its gradient, with the *parameters* of ``q`` held
fixed. ``torch.distributions`` has no ``Distribution.detach`` (the missing piece that stalled
Pyro's DReG loss), so :func:`detached` builds one generically: a shallow copy whose every
tensor attribute is detached, recursing into wrapped distributions (``Independent``,
``TransformedDistribution``, mixtures) and into transforms. It handles any family with
``rsample`` without special cases, including the lazily computed attributes a family caches in
its ``__dict__`` (``LowRankMultivariateNormal``'s capacitance factor, for instance).
"""

from __future__ import annotations

import copy
from typing import TypeVar

from torch import Tensor
from torch.distributions import Distribution
from torch.distributions.transforms import Transform

T = TypeVar("T")


def detached(dist: Distribution) -> Distribution:
    """A copy of ``dist`` whose parameters carry no gradient; ``dist`` is left unchanged."""
    return _detached(dist, {})


def _detached(item: T, memo: dict[int, object]) -> T:
    """``item`` with its tensors detached; ``memo`` maps the ids of objects already copied to
    their copies, so cycles (a transform and its cached inverse) are copied once."""
    if isinstance(item, Tensor):
        return item.detach()  # type: ignore[return-value]
    if id(item) in memo:
        return memo[id(item)]  # type: ignore[return-value]
    if isinstance(item, Distribution | Transform):
        clone = memo[id(item)] = copy.copy(item)
        for name, value in vars(item).items():
            if _holds_parameters(value):
                object.__setattr__(clone, name, _detached(value, memo))
        return clone
    if type(item) in (list, tuple) and _holds_parameters(item):  # transforms, mixture parts
        return type(item)(_detached(element, memo) for element in item)  # type: ignore[return-value]
    return item


def _holds_parameters(value: object) -> bool:
    if isinstance(value, Tensor | Distribution | Transform):
        return True
    return type(value) in (list, tuple) and any(map(_holds_parameters, value))  # type: ignore[arg-type]
