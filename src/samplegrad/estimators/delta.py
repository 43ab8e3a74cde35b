"""The delta-method control variate for the score function and the pathwise estimator.

A control variate ``h`` with a known expectation keeps the score function unbiased,

    g = (f(z) - beta h(z)) grad log q(z) + beta grad E_q[h],

because ``E_q[h(z) grad log q(z)] = grad E_q[h]``; it removes variance to the extent that ``h``
tracks ``f`` (Mohamed et al. 2020, JMLR, Sec. 7). The *delta method* builds ``h`` from ``f``
itself: its second-order Taylor expansion around the mean ``m`` of ``q`` (Paisley, Blei &
Jordan 2012; Mohamed et al. 2020, Sec. 7.4),

    h(z) = f(m) + G^T (z - m) + 1/2 (z - m)^T H (z - m),   G = grad f(m),  H = hess f(m).

The expansion point ``m`` is held fixed (a constant, not a function of the parameters), so for
a distribution whose coordinates are independent, with mean ``mu_theta = m`` and variances
``v_theta``,

    E_q[h] = f(m) + G^T (mu - m) + 1/2 (mu - m)^T H (mu - m) + 1/2 sum_d H_dd v_d,
    grad_theta E_q[h] = G^T d mu / d theta + 1/2 sum_d H_dd d v_d / d theta     (at mu = m).

For a quadratic ``f`` the expansion is exact, ``f = h``, and with ``beta = 1`` the estimate is
``grad E_q[h]`` itself: zero variance. ``f`` must be twice differentiable in ``z`` and accept
real-valued points (for a Bernoulli, the mean lies between 0 and 1). Cost: ``f``, its gradient
and one Hessian-vector product on ``D + S`` points, for ``D`` event coordinates and ``S``
samples.

With the pathwise estimator (Mohamed et al. 2020, Sec. 7.4; ``control_delta_method`` in
deepmind/mc_gradients) the control variate enters through its own pathwise gradient,

    g = grad_theta f(z(theta)) - beta (grad_theta h(z(theta)) - grad_theta E_q[h]),

unbiased because the pathwise gradient of ``h`` is an unbiased estimate of ``grad E_q[h]``;
``grad_theta h(z) = (G + H (z - m)) . dz/dtheta``, so it needs only the slopes of ``h`` at the
samples.

The coefficient ``beta`` is 1, a fixed number, or ``"optimal"``: the ``beta`` that minimises the
variance of the gradient estimate (Mohamed et al. 2020, Sec. 7.1; see
:func:`optimal_coefficient`), estimated from the samples' scores. Estimated from the same
samples it would correlate with them and bias the gradient; each sample ``s`` therefore uses
the coefficient estimated from the *other* samples (leave-one-out), which is independent of
``z_s`` and keeps the estimate unbiased. That needs ``num_samples >= 3``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
from torch import Tensor
from torch.distributions import Categorical, Distribution

from samplegrad._internal.families import base_distribution
from samplegrad._internal.validation import parameter_tensors

Coefficient = float | Literal["optimal"]


def has_independent_numeric_coordinates(dist: Distribution) -> bool:
    """Whether ``dist``'s event coordinates are independent numbers: a univariate base
    distribution, other than ``Categorical`` (whose values are labels)."""
    base = base_distribution(dist)
    return base.event_shape == torch.Size() and not isinstance(base, Categorical)


class DeltaControl(NamedTuple):
    """The delta-method control variate ``h`` at the samples ``z_s``."""

    values: Tensor
    """``h(z_s)``, shape ``(S, *B)``, no gradient (for the score function)."""
    slopes: Tensor
    """``grad_z h(z_s) = G + H (z_s - m)``, shape ``(S, *B, *E)``, no gradient (for the pathwise
    estimator: ``grad_theta h(z_s(theta)) = slopes . d z_s / d theta``)."""
    expectation_term: Tensor
    """Zero-valued, shape ``B``, with gradient ``grad_theta E_q[h]``."""


def delta_control_variate(
    f: Callable[[Tensor], Tensor], dist: Distribution, z: Tensor
) -> DeltaControl:
    """The second-order Taylor control variate of ``f`` around ``dist.mean``, at ``z``."""
    if not has_independent_numeric_coordinates(dist):
        raise TypeError(
            f"control_variate='delta' needs a distribution with independent numeric "
            f"coordinates (a univariate family such as Normal or Bernoulli, or Independent of "
            f"one), got {type(dist).__name__}; use a baseline instead"
        )
    mean, variance = dist.mean, dist.variance
    event_ndims = len(dist.event_shape)
    centre = mean.detach()
    num_coordinates = dist.event_shape.numel()
    num_samples = z.shape[0]
    # Directions: the D coordinate axes (their Hessian-vector products give diag H), then
    # the samples' offsets from the centre.
    axes = torch.eye(num_coordinates, dtype=centre.dtype, device=centre.device)
    axes = axes.reshape(num_coordinates, *([1] * len(dist.batch_shape)), *dist.event_shape)
    offsets = z.detach().to(centre.dtype) - centre
    directions = torch.cat([axes.expand(num_coordinates, *centre.shape), offsets])
    points = centre.expand(num_coordinates + num_samples, *centre.shape).clone()
    points.requires_grad_(True)
    with torch.enable_grad():
        values = f(points)
        (gradient,) = _grad(values.sum(), points, create_graph=True)
        (hessian_directions,) = _grad((gradient * directions).sum(), points)
    value_at_centre = values[0].detach()
    gradient = gradient[0].detach()
    hessian_diagonal = (hessian_directions[:num_coordinates] * axes).sum(0)
    linear = sum_event(gradient * offsets, event_ndims)
    quadratic = 0.5 * sum_event(offsets * hessian_directions[num_coordinates:], event_ndims)
    h = value_at_centre + linear + quadratic
    expectation_term = sum_event(gradient * (mean - centre), event_ndims) + 0.5 * sum_event(
        hessian_diagonal * (variance - variance.detach()), event_ndims
    )
    slopes = gradient + hessian_directions[num_coordinates:]
    return DeltaControl(h, slopes, expectation_term)


def sum_event(x: Tensor, event_ndims: int) -> Tensor:
    """Sum over the trailing event dimensions (``x.sum(())`` would sum over all of them)."""
    return x.sum(tuple(range(-event_ndims, 0))) if event_ndims else x


def _grad(output: Tensor, point: Tensor, *, create_graph: bool = False) -> tuple[Tensor, ...]:
    try:
        return torch.autograd.grad(output, point, create_graph=create_graph)
    except RuntimeError as error:
        raise ValueError(
            "control_variate='delta' needs f to be twice differentiable in z (f's output does "
            f"not depend differentiably on its input: {error}); use a baseline instead"
        ) from error


def optimal_coefficient(
    costs: Tensor,
    controls: Tensor,
    log_prob: Tensor,
    expectation_term: Tensor,
    dist: Distribution,
) -> Tensor:
    """The variance-minimising ``beta`` for sample ``s``, from the other samples; ``(S, *B)``.

    With ``S_j`` the score of sample ``j`` w.r.t. the distribution's parameter tensors and
    ``c = grad E[h]``, the estimate from sample ``j`` is ``f_j S_j - beta (h_j S_j - c)``; its
    mean does not depend on ``beta``, so its variance is smallest at
    ``beta* = E[f S . (h S - c)] / E[|h S - c|^2]``. Both expectations are estimated from the
    samples ``j != s`` of every batch element (leave-one-out, pooled over the batch: a ratio of
    a few heavy-tailed samples is too noisy to help), so ``beta_s`` is independent of ``z_s``.
    """
    parameters = [value for _, value in parameter_tensors(dist) if value.requires_grad]
    if not parameters:
        return torch.zeros_like(costs)
    num_samples, batch_ndims = costs.shape[0], len(dist.batch_shape)
    one_hot = torch.eye(num_samples, dtype=log_prob.dtype, device=log_prob.device)
    one_hot = one_hot.reshape(num_samples, num_samples, *([1] * batch_ndims))
    scores = torch.autograd.grad(
        log_prob,
        parameters,
        grad_outputs=one_hot.expand(num_samples, *log_prob.shape),
        is_grads_batched=True,
        retain_graph=True,
    )
    expectation_gradients = torch.autograd.grad(
        expectation_term.sum(), parameters, retain_graph=True, allow_unused=True
    )
    score_norms = sum(_per_batch(score**2, batch_ndims) for score in scores)
    score_dots = sum(
        _per_batch(score * gradient, batch_ndims)
        for score, gradient in zip(scores, expectation_gradients, strict=True)
        if gradient is not None
    )
    gradient_norm = sum(
        _per_batch(gradient[None] ** 2, batch_ndims)
        for gradient in expectation_gradients
        if gradient is not None
    )
    numerators = costs * controls * score_norms - costs * score_dots
    denominators = controls**2 * score_norms - 2 * controls * score_dots + gradient_norm
    pooled = tuple(range(1, costs.dim()))
    numerator = _leave_one_out_sum(numerators.sum(pooled))
    denominator = _leave_one_out_sum(denominators.sum(pooled))
    positive = denominator > 0
    beta = torch.where(positive, numerator / torch.where(positive, denominator, 1.0), 0.0)
    return beta.reshape(-1, *([1] * (costs.dim() - 1))).expand_as(costs)


def _per_batch(x: Tensor, batch_ndims: int) -> Tensor:
    """Sum ``(S, *B, *rest)`` over ``rest``: one number per sample and batch element."""
    return x.sum(tuple(range(1 + batch_ndims, x.dim()))) if x.dim() > 1 + batch_ndims else x


def _leave_one_out_sum(values: Tensor) -> Tensor:
    """``sum_{j != s} values_j`` for each ``s``, with an explicit mask rather than by subtracting
    ``values_s`` from the total: the subtraction's rounding error would depend on sample ``s``
    and, where the other terms vanish, leave a ratio of rounding errors that is not independent
    of ``z_s``, which biases the estimate."""
    num_samples = values.shape[0]
    others = 1.0 - torch.eye(num_samples, dtype=values.dtype, device=values.device)
    others = others.reshape(num_samples, num_samples, *([1] * (values.dim() - 1)))
    return (others * values).sum(1)
