"""Unbiased control variates from continuous relaxations: REBAR and RELAX.

A Bernoulli or categorical sample is a deterministic function of continuous noise:
``b = H(z)`` with ``z = logits + L`` (logistic ``L``; ``H(z) = 1[z > 0]``) or
``z = log_softmax(logits) + G`` (independent Gumbels ``G``; ``H(z) = onehot(argmax z)``). Any
differentiable function ``c`` of ``z`` -- the *control* -- then gives an unbiased estimator of
``grad_phi E_q[f(b)]`` (Grathwohl et al. 2018, eq. 5; Tucker et al. 2017 for REBAR)::

    g = [f(b) - c(z~)] grad_phi log q(b) + grad_phi c(z) - grad_phi c(z~)

where ``z~ ~ p(z | b)`` is a second relaxed sample *conditioned on the discrete one*, drawn by
reparameterization from fresh noise ``v`` so that ``grad_phi c(z~)`` is a pathwise derivative.
Unbiasedness: ``E[grad c(z)] = grad E[c(z)] = grad E_b[E_{z~|b} c(z~)]
= E_b[c(z~) grad log q(b)] + E_b[grad E_{z~|b} c(z~)]``, so the control terms cancel in
expectation for *every* ``c``; a good ``c`` (close to ``f`` and correlated with it through
``z``) removes most of the score function's variance.

**Conditional samples** ``z~ | b`` (Tucker et al. 2017, Appendix; ``v`` uniform, ``s = 2b - 1``):

- Bernoulli: inverting the logistic CDF restricted to the side of 0 that ``b`` selects,
  ``z~ = s * (softplus(s * logits + log v) - log(1 - v))``, i.e. ``log(v/(1-v) / (1-theta) + 1)``
  for ``b = 1`` and the mirror image for ``b = 0``.
- Categorical with probabilities ``theta`` and ``E_k = -log v_k``: the maximum of Gumbels with
  locations ``log theta_k`` is a standard Gumbel independent of the argmax, and the others are
  Gumbels truncated below it: ``z~_b = -log E_b`` and
  ``z~_k = -log(E_k / theta_k + E_b)`` for ``k != b``.

**REBAR** (Tucker et al. 2017) takes the control ``c(z) = eta * f(sigma_lambda(z))`` with the
Concrete relaxation ``sigma_lambda(z) = sigmoid(z / lambda)`` (``softmax(z / lambda)`` for a
categorical), a learnable temperature ``lambda > 0`` and scale ``eta``. **RELAX** (Grathwohl et
al. 2018) takes any ``nn.Module`` as the control, evaluated at the temperature-1 relaxation
``sigmoid(z)`` / ``softmax(z)`` (a bijection of ``z`` up to the categorical's irrelevant
shift), e.g. a small network, or ``eta f(sigma_lambda(.)) + r_rho(.)`` as in the paper.

**Training the control by the same surrogate.** ``E[g]`` does not depend on the control's
parameters ``rho``, so minimising the variance means minimising ``E[g^2]`` (Grathwohl et al.
2018, Alg. 1; here ``g`` is the average over the ``S`` samples, the estimate the model
receives). The estimator computes ``g`` with autograd against a *detached copy* of the
logits (``torch.autograd.grad(..., create_graph=True)``), so ``g`` is a differentiable function
of ``rho``, and adds to the surrogate two terms of value zero:

- ``sum(logits * stop_gradient(g)) - stop_gradient(...)``: the model (everything upstream of
  the logits) receives exactly ``g``;
- ``sum_rho(rho * stop_gradient(grad_rho V)) - stop_gradient(...)`` with the variance proxy
  ``V = sum over logits of g^2``, summed over the batch (and spread evenly over the batch
  elements, so ``surrogate.sum()`` trains on ``sum V`` and ``surrogate.mean()`` on its mean):
  only the estimator's own parameters (``estimator.parameters()``) receive ``grad_rho V``.

Parameters inside ``f`` receive exactly ``mean_s grad f(b_s)``, the pathwise part, because the
control terms and ``V`` enter the surrogate only through those two injections; this matters for
REBAR, whose control evaluates ``f``. One ``.backward()`` therefore trains the model with an
unbiased gradient and the control towards lower variance; pass ``estimator.parameters()`` to an
optimizer. The model's gradient is first-order only: ``g`` enters as a constant, so the
surrogate's gradient cannot itself be differentiated with respect to the logits.

**Cost.** Per call: ``f`` at the ``S`` discrete samples, the control once at ``z`` and ``z~``
stacked (for REBAR, ``f`` at the ``2 S`` relaxed samples), a backward pass through the control
with ``create_graph=True`` and a double-backward for ``grad_rho V``, all while the surrogate is
built (under ``torch.no_grad()`` only ``f(b)`` is evaluated). Measured on a CPU with 256 x 32
Bernoulli logits, surrogate plus ``backward()``: with a cheap ``f`` REBAR takes about 3x and
RELAX (an MLP control) 4-6x the score function's time, mostly per-call overhead; when ``f`` is
expensive (a 32-256-784 decoder) RELAX costs 1-1.6x, REBAR 4-5x, as it evaluates ``f`` on
``3 S`` points and differentiates through ``2 S`` of them twice. (Measured before the two
control calls were stacked into one.)

For ``Categorical``, whose samples are indices, ``f`` receives one-hot samples of shape
``(S, *B, *E, K)``, as with samplegrad's other relaxation-based estimators.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution
from torch.nn import functional as F

from samplegrad._internal import validation as _validation
from samplegrad._internal.autograd import gradient as gradient_of
from samplegrad._internal.families import base_distribution, finite_masked_logits
from samplegrad._internal.sampling import open_uniform
from samplegrad._internal.shapes import sum_after
from samplegrad.estimators.base import Cost, DiscreteChoiceEstimator
from samplegrad.estimators.catalog import register
from samplegrad.estimators.relaxed import hard_bernoulli, hard_one_hot


def perturbed_logits(logits: Tensor, uniform: Tensor, *, binary: bool) -> Tensor:
    """``z`` with ``H(z) ~ q``, from uniform noise of shape ``(S, *logits.shape)``.

    Binary: ``logits + log u - log(1 - u)``; categorical (last dimension):
    ``log_softmax(logits) - log(-log u)``.
    """
    if binary:
        return logits + (torch.log(uniform) - torch.log1p(-uniform)).to(logits.dtype)
    return logits.log_softmax(-1) - torch.log(-torch.log(uniform)).to(logits.dtype)


def hard_sample(z: Tensor, *, binary: bool) -> Tensor:
    """``H(z)``: ``1[z > 0]``, or ``onehot(argmax z)`` over the last dimension (no gradient)."""
    return hard_bernoulli(z.detach()) if binary else hard_one_hot(z.detach())


def conditional_perturbed_logits(
    logits: Tensor, hard: Tensor, uniform: Tensor, *, binary: bool
) -> Tensor:
    """``z~ ~ p(z | H(z) = hard)``, reparameterized by fresh uniform noise ``v`` (module doc).

    Differentiable with respect to ``logits``; ``hard`` (0/1, or one-hot) and ``uniform`` have
    the shape ``(S, *logits.shape)``.
    """
    if binary:
        sign = 2 * hard - 1
        log_v = torch.log(uniform).to(logits.dtype)
        log_1mv = torch.log1p(-uniform).to(logits.dtype)
        return sign * (F.softplus(sign * logits + log_v) - log_1mv)
    log_exponential = torch.log(-torch.log(uniform)).to(logits.dtype)  # log E_k
    log_top = (hard * log_exponential).sum(-1, keepdim=True)  # log E_b
    others = -torch.logaddexp(log_exponential - logits.log_softmax(-1), log_top)
    return torch.where(hard.bool(), -log_top, others)


def relax(z: Tensor, temperature: Tensor | float, *, binary: bool) -> Tensor:
    """The Concrete relaxation ``sigmoid(z / temperature)`` or ``softmax(z / temperature)``."""
    return torch.sigmoid(z / temperature) if binary else torch.softmax(z / temperature, -1)


class RelaxedControlVariate(DiscreteChoiceEstimator):
    """The estimator ``g`` of the module docstring, for a control given by a subclass.

    Subclasses implement :meth:`control_variate`, the control ``c`` as a function of the
    perturbed logits ``z``; their trainable parameters are trained to minimise the variance.
    """

    def control_variate(
        self, cost: Cost, z: Tensor, *, binary: bool, batch_shape: torch.Size, dtype: torch.dtype
    ) -> Tensor:
        """``c(z)`` of shape ``(S, *batch_shape)`` for perturbed logits ``z``; relaxed samples
        reach ``f`` or the control in the distribution's ``dtype``."""
        raise NotImplementedError

    def estimate(
        self, cost: Cost, dist: Distribution, num_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        binary = isinstance(base_distribution(dist), Bernoulli)
        logits = base_distribution(dist).logits  # (*B, *E) or (*B, *E, K)
        if not binary:
            logits = finite_masked_logits(logits)
        noise_shape = torch.Size((num_samples, *logits.shape))
        u = open_uniform(noise_shape, logits, generator)
        v = open_uniform(noise_shape, logits, generator)
        # A fresh leaf: g is computed against it, so no term below reaches the model directly.
        # Low precision computes g in float32 (open_uniform's dtype): z / temperature and its
        # derivatives overflow float16 for logits of a few thousand.
        leaf = logits.detach().to(u.dtype).requires_grad_(torch.is_grad_enabled())
        z = perturbed_logits(leaf, u, binary=binary)
        hard = hard_sample(z, binary=binary)
        costs = cost(hard.to(logits.dtype))
        if not leaf.requires_grad:  # under no_grad or inference_mode: the value only
            return costs.mean(0)

        trainable = [p for p in self.parameters() if p.requires_grad]
        z_tilde = conditional_perturbed_logits(leaf, hard, v, binary=binary)
        # One call of the control on z and z~ stacked (f accepts any leading size).
        c_z, c_tilde = self.control_variate(
            cost,
            torch.cat([z, z_tilde]),
            binary=binary,
            batch_shape=dist.batch_shape,
            dtype=logits.dtype,
        ).split(num_samples)
        # sum_s [grad c(z_s) - grad c(z~_s)], differentiable w.r.t. the control's parameters.
        pathwise = gradient_of(c_z - c_tilde, leaf, create_graph=bool(trainable))
        event_dims = logits.dim() - len(dist.batch_shape)
        weight = (costs.detach() - c_tilde).reshape(*costs.shape, *(1,) * event_dims)
        score = hard - (torch.sigmoid(leaf) if binary else torch.softmax(leaf, -1)).detach()
        gradient = ((weight * score).sum(0) + pathwise) / num_samples  # g, shape of logits

        batch_ndims = len(dist.batch_shape)
        injected = sum_after(logits * gradient.detach().to(logits.dtype), batch_ndims)
        surrogate = costs.mean(0) + (injected - injected.detach())
        variance = sum_after(gradient.pow(2), batch_ndims)  # V per batch element
        if trainable and variance.requires_grad:
            grads = torch.autograd.grad(variance.sum(), trainable, materialize_grads=True)
            pull = sum((p * g).sum() for p, g in zip(trainable, grads, strict=True))
            spread = (pull - pull.detach()) / max(surrogate.numel(), 1)
            surrogate = surrogate + spread.to(surrogate.dtype)
        return surrogate


@register
class REBAR(RelaxedControlVariate):
    """REBAR (Tucker et al. 2017): RELAX with the control ``eta * f(sigma_lambda(z))``.

    Unbiased for every temperature and ``eta``; both are ``nn.Parameter`` s trained by the
    surrogate to minimise the variance (the temperature through its logarithm, so it stays
    positive). ``eta = 0`` is the score function without a baseline.

    Args:
        temperature: initial ``lambda > 0`` of the Concrete relaxation.
        eta: initial scale of the control variate.
    """

    name = "rebar"
    unbiased = True
    stateful = True

    def __init__(self, temperature: float = 0.5, eta: float = 1.0) -> None:
        super().__init__()
        _validation.check_temperature(temperature)
        if not (isinstance(eta, int | float) and math.isfinite(eta)):
            raise ValueError(f"eta must be a finite number, got {eta!r}; 1.0 is the usual start")
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))
        self.eta = nn.Parameter(torch.tensor(float(eta)))

    @property
    def temperature(self) -> Tensor:
        """``lambda = exp(log_temperature)``."""
        return self.log_temperature.exp()

    def control_variate(
        self, cost: Cost, z: Tensor, *, binary: bool, batch_shape: torch.Size, dtype: torch.dtype
    ) -> Tensor:
        return self.eta * cost(relax(z, self.temperature, binary=binary).to(dtype))

    def extra_repr(self) -> str:
        return f"temperature={self.temperature.item():g}, eta={self.eta.item():g}"


@register
class RELAX(RelaxedControlVariate):
    """RELAX (Grathwohl et al. 2018) with a learned control ``c = control(relaxed sample)``.

    Unbiased for any control; its parameters are trained by the surrogate to minimise the
    variance, so register them with the optimizer (``estimator.parameters()`` includes them).

    Args:
        control: an ``nn.Module`` mapping a relaxed sample ``sigmoid(z)`` (Bernoulli) or
            ``softmax(z)`` (categorical, one-hot-like vectors of size ``K``) of shape
            ``(S, *B, *E)`` (categorical: ``(S, *B, *E, K)``) to values of shape ``(S, *B)``.
            It must be differentiable in its input; for a sharper relaxation, divide
            ``logit(y)`` (or ``log y``) by a temperature inside it.
    """

    name = "relax"
    unbiased = True
    stateful = True
    required_options = ("control",)

    def __init__(self, control: nn.Module) -> None:
        super().__init__()
        if not isinstance(control, nn.Module):
            raise TypeError(
                f"control must be an nn.Module mapping relaxed samples (S, *B, *E) to (S, *B), "
                f"got {type(control).__name__}; wrap a function in an nn.Module so its "
                "parameters can be trained (sg.REBAR() needs no control)"
            )
        self.control = control

    def control_variate(
        self, cost: Cost, z: Tensor, *, binary: bool, batch_shape: torch.Size, dtype: torch.dtype
    ) -> Tensor:
        control = _validation.checked_cost(self.control, batch_shape, name="control")
        return control(relax(z, 1.0, binary=binary).to(dtype))
