"""The estimator interface: a distribution and a cost in, a surrogate tensor out.

Every estimator answers one question. Given ``q_phi`` (``dist``) and a cost ``f``, return a
**surrogate** ``L`` of shape ``dist.batch_shape`` whose value is a Monte Carlo estimate of
``E_q[f(z)]`` and whose gradient, with respect to ``phi`` and to any parameter inside ``f``, is
the estimator's gradient estimate::

    surrogate = estimator(f, dist, num_samples=8)
    surrogate.mean().backward()       # one gradient estimate; samplegrad never calls backward

Shapes: ``z`` has shape ``(S, *B, *E)`` for batch shape ``B`` and event shape ``E``; ``f(z)``
returns ``(S, *B)``. ``S`` is usually ``num_samples``, but estimators may evaluate ``f`` on
other leading sizes (enumeration evaluates it on the whole support), so ``f`` must not assume it.

Subclasses implement :meth:`Estimator.estimate` and :meth:`Estimator.supports`; the public
``forward`` validates the arguments once, for all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from samplegrad._internal import replicas
from samplegrad._internal import validation as _validation
from samplegrad._internal.families import base_distribution, is_discrete_choice
from samplegrad.estimators import catalog

Cost = Callable[[Tensor], Tensor]


class Estimator(nn.Module):
    """Base class of the gradient estimators (an ``nn.Module``, so state lives in buffers)."""

    name: ClassVar[str]
    """The string that names this estimator in ``sg.expectation(..., estimator=name)``."""

    unbiased: ClassVar[bool]
    """Whether the gradient estimate's expectation is the exact gradient of ``E[f]``."""

    stateful: ClassVar[bool] = False
    """Whether every instance holds buffers or parameters that must persist between calls
    (REBAR's temperature). A configured instance of a stateless class can still hold state (a
    moving-average baseline): :attr:`has_state` says so for an instance."""

    min_num_samples: ClassVar[int] = 1
    """The fewest samples any configuration accepts; :meth:`check_num_samples` adds the
    configuration's own rules."""

    even_num_samples: ClassVar[bool] = False
    """Whether ``num_samples`` counts evaluations of ``f`` in antithetic pairs, so is even."""

    required_options: ClassVar[tuple[str, ...]] = ()
    """Constructor arguments without a default, which a caller must build for its problem
    (RELAX's ``control``)."""

    @property
    def has_state(self) -> bool:
        """Whether this instance holds state that must persist between calls: its class's
        (:attr:`stateful`), or the buffers and parameters of the modules among its options (a
        moving-average baseline, a learned control). A buffer of the estimator's own that only
        configures it (the Gumbel-softmax temperature) is not state."""
        return self.stateful or any(
            True for child in self.children() for _ in (*child.parameters(), *child.buffers())
        )

    @property
    def pools_across_batch(self) -> bool:
        """Whether the estimate for one batch element depends on the samples of the others
        (the score function's ``coefficient="optimal"``, estimated from the whole batch), so
        that the elements of one call are not independent estimates. A baseline from earlier
        calls (a moving average) does not pool: within a call it is a constant."""
        return False

    def handles(self, dist: Distribution) -> bool:
        """Whether this instance, as configured, can handle ``dist``: :meth:`supports`, narrowed
        by options that need more of the family (the score function's delta control variate)."""
        return self.supports(dist)

    def check_num_samples(self, num_samples: object) -> int:
        """``num_samples`` as an ``int`` this estimator, as configured, accepts; else a
        ``ValueError`` naming the rule. Subclasses add their rules (antithetic pairs are even)."""
        num_samples = _validation.check_num_samples(
            num_samples, minimum=self.min_num_samples, why=f"for estimator {self.name!r}"
        )
        if self.even_num_samples and num_samples % 2:
            raise ValueError(
                f"num_samples must be even for estimator {self.name!r} (antithetic pairs: it "
                f"counts evaluations of f), got {num_samples}"
            )
        return num_samples

    @classmethod
    def supports(cls, dist: Distribution) -> bool:
        """Whether this estimator can handle ``dist``'s family."""
        raise NotImplementedError

    def forward(
        self,
        f: Cost,
        dist: Distribution,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The surrogate of ``E_dist[f(z)]``, of shape ``dist.batch_shape``."""
        dist = _validation.check_distribution(dist)
        if not self.supports(dist):
            raise TypeError(unsupported_message(self.name, dist))
        num_samples = self.check_num_samples(num_samples)
        cost, generator = _validation.check_arguments(f, dist, generator, estimator=self)
        replicas.check_estimator(self)
        try:
            return self.estimate(cost, dist, num_samples, generator)
        except RuntimeError as error:  # torch's raw words for invalid parameter values
            _validation.raise_explained(error, dist)
            raise

    def estimate(
        self, cost: Cost, dist: Distribution, num_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        """The surrogate, for arguments already validated."""
        raise NotImplementedError


class DiscreteChoiceEstimator(Estimator):
    """Base of the estimators for discrete choices: Bernoulli, Categorical and
    OneHotCategorical variables, and ``Independent`` products of them."""

    @classmethod
    def supports(cls, dist: Distribution) -> bool:
        return is_discrete_choice(dist)


def estimators_supporting(dist: Distribution) -> list[str]:
    """Names of the registered estimator classes that can handle ``dist``, sorted (the
    catalog's variants of them too with :func:`samplegrad.estimators.catalog.names_supporting`)."""
    return sorted(catalog.names_supporting(dist, variants=False))


def unsupported_message(name: str, dist: Distribution) -> str:
    capable = ", ".join(repr(n) for n in estimators_supporting(dist)) or "none"
    return (
        f"estimator {name!r} cannot handle {type(dist).__name__}"
        f"{describe_base(dist)}; estimators that can: {capable}"
    )


def describe_base(dist: Distribution) -> str:
    base = base_distribution(dist)
    return f" of {type(base).__name__}" if base is not dist else ""


def zero_with_gradient_of(log_prob: Tensor) -> Tensor:
    """``log_prob - stop_gradient(log_prob)``: value 0, gradient ``grad log_prob``.

    Multiplying it by a detached weight ``w`` adds ``w * grad log q`` to a surrogate's gradient
    and nothing to its value (the "magic box" of DiCE, Foerster et al. 2018, to first order).
    """
    return log_prob - log_prob.detach()
