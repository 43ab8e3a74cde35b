"""Biased estimators for discrete variables: Gumbel-Softmax / Concrete and straight-through.

**Concrete / Gumbel-Softmax** (Maddison, Mnih & Teh 2017; Jang, Gu & Poole 2017). A categorical
sample is ``onehot(argmax_k (logits_k + g_k))`` with ``g_k ~ Gumbel(0, 1)``; replacing the
argmax by ``softmax((logits + g) / tau)`` gives a continuous sample that tends to the one-hot
one as the temperature ``tau -> 0``, and the pathwise gradient of ``f`` at the relaxed sample.
For a Bernoulli the two-class case reduces to ``sigmoid((logits + L) / tau)`` with logistic
noise ``L = log u - log(1 - u)``. The gradient is that of the *relaxed* objective
``E_g[f(softmax((logits + g) / tau))]``, so it is biased for ``E_q[f(z)]`` unless ``f`` is
linear; ``f`` must accept relaxed samples. ``hard=True`` evaluates ``f`` at the exact discrete
sample and back-propagates through the relaxed one (straight-through Gumbel).

**Straight-through** (Bengio, Léonard & Courville 2013). Evaluate ``f`` at an exact sample ``b``
and pretend ``db/dprobs = I``: ``z = b + probs - stop_gradient(probs)``. Its mean gradient is
``E_q[grad_z f(z)|_{z=b} dprobs/dphi]``, biased unless ``f`` is linear.

Categorical variables are relaxed as one-hot vectors, so for ``Categorical`` (whose samples are
indices) these estimators pass ``f`` one-hot samples of shape ``(S, *B, *E, K)``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Distribution
from torch.nn import functional as F

from samplegrad._internal import validation as _validation
from samplegrad._internal.families import base_distribution
from samplegrad._internal.sampling import bernoulli, categorical_indices, open_uniform
from samplegrad.estimators.base import Cost, DiscreteChoiceEstimator
from samplegrad.estimators.catalog import register, register_variant


def gumbel_noise(shape: torch.Size, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard Gumbel noise ``-log(-log u)`` with ``u`` on the open interval, never ``log(0)``."""
    u = open_uniform(shape, like, generator)
    return -torch.log(-torch.log(u))


def logistic_noise(shape: torch.Size, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard logistic noise ``log u - log(1 - u)``: the difference of two Gumbels."""
    u = open_uniform(shape, like, generator)
    return torch.log(u) - torch.log1p(-u)


def straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    """The value of ``hard`` with the gradient of ``soft``."""
    return hard + (soft - soft.detach())


def hard_bernoulli(perturbed_logits: Tensor) -> Tensor:
    """The exact Bernoulli sample ``1[logits + L > 0]`` behind a binary Concrete sample."""
    return (perturbed_logits > 0).to(perturbed_logits.dtype)


def hard_one_hot(scores: Tensor) -> Tensor:
    """``onehot(argmax(scores))`` over the last dimension, in ``scores``' dtype."""
    return F.one_hot(scores.argmax(-1), scores.shape[-1]).to(scores.dtype)


def sample_gumbel_softmax(
    logits: Tensor,
    temperature: Tensor | float,
    *,
    hard: bool,
    binary: bool,
    sample_shape: tuple[int, ...] = (),
    generator: torch.Generator | None = None,
) -> Tensor:
    """A relaxed sample of shape ``(*sample_shape, *logits.shape)``.

    ``binary=True`` treats each logit as a Bernoulli; otherwise the last dimension holds the
    logits of one categorical variable. ``hard=True`` returns the exact sample with the relaxed
    sample's gradient.
    """
    shape = torch.Size((*sample_shape, *logits.shape))
    if binary:
        perturbed = logits + logistic_noise(shape, logits, generator).to(logits.dtype)
        soft = torch.sigmoid(perturbed / temperature)
        return straight_through(hard_bernoulli(perturbed), soft) if hard else soft
    perturbed = logits + gumbel_noise(shape, logits, generator).to(logits.dtype)
    soft = torch.softmax(perturbed / temperature, dim=-1)
    return straight_through(hard_one_hot(perturbed), soft) if hard else soft


def sample_straight_through(
    probs: Tensor,
    *,
    binary: bool,
    sample_shape: tuple[int, ...] = (),
    generator: torch.Generator | None = None,
) -> Tensor:
    """An exact sample of shape ``(*sample_shape, *probs.shape)`` with gradient ``I`` to ``probs``.

    ``binary=True``: independent Bernoulli(``probs``); otherwise one-hot categorical samples over
    the last dimension.
    """
    expanded = probs.expand((*sample_shape, *probs.shape))
    if binary:
        hard = bernoulli(probs, sample_shape, generator)
    else:
        indices = categorical_indices(probs.detach(), sample_shape, generator)
        hard = F.one_hot(indices, probs.shape[-1]).to(probs.dtype)
    return straight_through(hard, expanded)


class Tempered:
    """Mixin for modules with a temperature buffer, checked whenever it has changed.

    The buffer can be annealed in place (``module.temperature.fill_(0.5)``), replaced, or loaded
    from a state dict; its value is checked again only when the tensor or its version counter
    differs from the last one checked, so an unchanged temperature costs no host read (and no
    device synchronisation) per call.
    """

    temperature: Tensor
    _temperature_seen: tuple[Tensor, int]

    def _init_temperature(self, temperature: float) -> None:
        _validation.check_temperature(temperature)
        self.register_buffer("temperature", torch.tensor(float(temperature)))  # type: ignore[attr-defined]
        self._temperature_seen = (self.temperature, self.temperature._version)

    def checked_temperature(self) -> Tensor:
        """The temperature buffer, after checking it is > 0 if it changed since last time."""
        temperature = self.temperature
        seen, version = self._temperature_seen
        if _validation.values_are_checked() and (
            temperature is not seen or temperature._version != version
        ):
            _validation.check_temperature(temperature)
            self._temperature_seen = (temperature, temperature._version)
        return temperature


class DiscreteStandIn(DiscreteChoiceEstimator):
    """Evaluate ``f`` at a differentiable stand-in for a discrete sample; value: the mean cost.

    Subclasses say how to draw the stand-in from the base Bernoulli or categorical distribution.
    """

    def estimate(
        self, cost: Cost, dist: Distribution, num_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        base = base_distribution(dist)
        z = self.stand_in(base, isinstance(base, Bernoulli), (num_samples,), generator)
        return cost(z).mean(0)

    def stand_in(
        self,
        base: Distribution,
        binary: bool,
        sample_shape: tuple[int, ...],
        generator: torch.Generator | None,
    ) -> Tensor:
        """Samples of shape ``(*sample_shape, *B, *E[, K])`` that carry the surrogate gradient."""
        raise NotImplementedError


@register
class GumbelSoftmax(DiscreteStandIn, Tempered):
    """Concrete / Gumbel-Softmax relaxation (biased); ``hard=True`` is straight-through Gumbel.

    Args:
        temperature: ``tau > 0``, a buffer so a schedule can anneal it in place
            (``est.temperature.fill_(0.5)``).
        hard: evaluate ``f`` at the exact discrete sample, differentiate through the relaxed one.
    """

    name = "gumbel"
    unbiased = False

    def __init__(self, temperature: float = 1.0, hard: bool = False) -> None:
        super().__init__()
        self._init_temperature(temperature)
        self.hard = bool(hard)

    def stand_in(
        self,
        base: Distribution,
        binary: bool,
        sample_shape: tuple[int, ...],
        generator: torch.Generator | None,
    ) -> Tensor:
        return sample_gumbel_softmax(
            base.logits,
            self.checked_temperature(),
            hard=self.hard,
            binary=binary,
            sample_shape=sample_shape,
            generator=generator,
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature.item():g}, hard={self.hard}"


register_variant(
    "gumbel-hard", GumbelSoftmax, "straight-through Gumbel-softmax", lambda: {"hard": True}
)


@register
class StraightThrough(DiscreteStandIn):
    """Straight-through: ``f`` at an exact sample, gradient as if ``dz/dprobs = I`` (biased)."""

    name = "straight-through"
    unbiased = False

    def stand_in(
        self,
        base: Distribution,
        binary: bool,
        sample_shape: tuple[int, ...],
        generator: torch.Generator | None,
    ) -> Tensor:
        return sample_straight_through(
            base.probs, binary=binary, sample_shape=sample_shape, generator=generator
        )
