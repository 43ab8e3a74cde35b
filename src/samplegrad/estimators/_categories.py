"""Bernoulli, categorical and one-hot categorical variables seen alike: ``D`` independent
categorical variables of ``K`` classes each.

The estimators for discrete choices newer than the relaxations (ReinMax, Gumbel-Rao, IndeCateR,
categorical DisARM, unordered-set REINFORCE) work on class probabilities and class indices.
:func:`categories` turns a ``Bernoulli``, ``Categorical`` or ``OneHotCategorical`` (or an
``Independent`` product of them) with batch shape ``B`` into the normalised class
log-probabilities ``log_probs`` of shape ``(*B, D, K)``, where ``D`` counts the variables of
the product (1 without ``Independent``) and a Bernoulli is the two-class variable with
``log_probs = (log(1 - theta), log theta)``. :meth:`Categories.samples` and
:meth:`Categories.stand_in` turn class indices or soft one-hot vectors back into what the
family's ``f`` expects: 0/1 values for a Bernoulli, one-hot vectors for a
``OneHotCategorical``, indices for a ``Categorical`` (soft one-hot vectors where the sample
must carry a gradient, as :mod:`samplegrad.estimators.relaxed` does).

``log_probs`` is differentiable: ``log_softmax`` of the logits (``Categorical.logits`` already
is) or ``logsigmoid(+-logits)``, so gradients reach logits or probabilities, whichever built the
distribution. Every gradient with respect to ``log_probs`` that these estimators form sums to
zero over the classes, so it passes unchanged to the logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, OneHotCategorical
from torch.nn import functional as F

from samplegrad._internal.families import base_distribution, finite_masked_logits
from samplegrad._internal.sampling import Generator, categorical_indices


@dataclass(frozen=True)
class Categories:
    """A discrete-choice distribution as independent categorical variables (module docstring).

    Attributes:
        log_probs: normalised class log-probabilities, ``(*B, D, K)``, differentiable.
        batch_shape: ``B``, the distribution's batch shape.
        product_shape: the dimensions an ``Independent`` wrapper reinterprets (``D`` is their
            number of elements); ``()`` without one.
        family: ``"bernoulli"``, ``"categorical"`` or ``"one-hot"``.
    """

    log_probs: Tensor
    batch_shape: torch.Size
    product_shape: torch.Size
    family: str

    @property
    def num_variables(self) -> int:
        """``D``."""
        return self.log_probs.shape[-2]

    @property
    def num_classes(self) -> int:
        """``K``."""
        return self.log_probs.shape[-1]

    @property
    def support_size(self) -> int:
        """``K^D``, the number of points of the product's support."""
        return self.num_classes**self.num_variables

    def sample_indices(self, num_samples: int, generator: Generator | None) -> Tensor:
        """Class indices ``(num_samples, *B, D)`` drawn from the distribution, no gradient."""
        probs = self.log_probs.detach().exp()
        return categorical_indices(probs, (num_samples,), generator)

    def gather(self, indices: Tensor) -> Tensor:
        """``log q(z)`` of the joint configurations ``indices`` (``(N, *B, D)``), ``(N, *B)``,
        differentiable with respect to the parameters."""
        expanded = self.log_probs.expand(*indices.shape, self.num_classes)
        return expanded.gather(-1, indices.unsqueeze(-1)).squeeze(-1).sum(-1)

    def samples(self, indices: Tensor) -> Tensor:
        """The family's samples at class indices ``(N, *B, D)``: ``(N, *B, *E)`` values (0/1 for
        a Bernoulli, one-hot vectors of the parameters' dtype for a ``OneHotCategorical``,
        indices for a ``Categorical``)."""
        shape = (indices.shape[0], *self.batch_shape, *self.product_shape)
        if self.family == "categorical":
            return indices.reshape(shape)
        dtype = self.log_probs.dtype
        if self.family == "bernoulli":
            return indices.to(dtype).reshape(shape)
        return F.one_hot(indices, self.num_classes).to(dtype).reshape(*shape, self.num_classes)

    def stand_in(self, soft: Tensor) -> Tensor:
        """The family's samples for (soft) one-hot vectors ``(N, *B, D, K)`` that carry a
        gradient: class 1 of a Bernoulli's two, otherwise one-hot vectors ``(N, *B, *E, K)``
        (also for a ``Categorical``, whose indices cannot carry a gradient)."""
        shape = (soft.shape[0], *self.batch_shape, *self.product_shape)
        if self.family == "bernoulli":
            return soft[..., 1].reshape(shape)
        return soft.reshape(*shape, self.num_classes)


def categories(dist: Distribution) -> Categories:
    """``dist`` (a Bernoulli, Categorical or OneHotCategorical, possibly under ``Independent``
    wrappers) as :class:`Categories`."""
    base = base_distribution(dist)
    product_ndims = len(dist.event_shape) - len(base.event_shape)
    product_shape = dist.event_shape[:product_ndims]
    shape = (*dist.batch_shape, product_shape.numel())
    if isinstance(base, Bernoulli):
        logits = base.logits
        log_probs = torch.stack([F.logsigmoid(-logits), F.logsigmoid(logits)], -1)
        family = "bernoulli"
    else:
        # torch.distributions normalises them (log_softmax); masked classes (-inf) become
        # finite numbers of probability 0, so differences of log-probabilities stay finite
        log_probs = finite_masked_logits(base.logits)
        family = "one-hot" if isinstance(base, OneHotCategorical) else "categorical"
    log_probs = log_probs.reshape(*shape, log_probs.shape[-1])
    return Categories(log_probs, dist.batch_shape, product_shape, family)
