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
from torch.distributions.utils import lazy_property

from samplegrad._internal.autograd import gradient as derivative
from samplegrad._internal.families import base_distribution, log_prob
from samplegrad._internal.scans import leave_one_out_sum
from samplegrad._internal.shapes import sum_after, sum_rightmost
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
        if not values.requires_grad:
            raise ValueError(
                "control_variate='delta' needs f to be twice differentiable in z, but f's output "
                "does not depend differentiably on its input (a step function, or values "
                "computed outside torch); use a baseline instead"
            )
        # A zero or absent second derivative (f linear or piecewise linear in z) is zero.
        gradient = _differentiated(values, points, create_graph=True)
        hessian_directions = _differentiated(gradient * directions, points)
    value_at_centre = values[0].detach()
    gradient = gradient[0].detach()
    hessian_diagonal = (hessian_directions[:num_coordinates] * axes).sum(0)
    linear = sum_rightmost(gradient * offsets, event_ndims)
    quadratic = 0.5 * sum_rightmost(offsets * hessian_directions[num_coordinates:], event_ndims)
    h = value_at_centre + linear + quadratic
    expectation_term = sum_rightmost(gradient * (mean - centre), event_ndims) + 0.5 * sum_rightmost(
        hessian_diagonal * (variance - variance.detach()), event_ndims
    )
    slopes = gradient + hessian_directions[num_coordinates:]
    return DeltaControl(h, slopes, expectation_term)


def _differentiated(output: Tensor, points: Tensor, *, create_graph: bool = False) -> Tensor:
    """``d output.sum() / d points`` (zeros where it does not depend on them); autograd's
    failure (an operation without a second derivative) as a ``ValueError``."""
    try:
        return derivative(output, points, create_graph=create_graph)
    except RuntimeError as error:
        raise ValueError(
            "control_variate='delta' needs f to be twice differentiable in z (differentiating "
            f"f failed: {error}); use a baseline instead"
        ) from error


def optimal_coefficient(
    costs: Tensor, controls: Tensor, z: Tensor, expectation_term: Tensor, dist: Distribution
) -> Tensor:
    """The variance-minimising ``beta`` for sample ``s``, from the other samples; ``(S, *B)``.

    With ``S_j`` the score of sample ``j`` w.r.t. the distribution's parameter tensors and
    ``c = grad E[h]``, the estimate from sample ``j`` is ``f_j S_j - beta (h_j S_j - c)``; its
    mean does not depend on ``beta``, so its variance is smallest at
    ``beta* = E[f S . (h S - c)] / E[|h S - c|^2]``. Both expectations are estimated from the
    samples ``j != s`` of every batch element (leave-one-out, pooled over the batch: a ratio of
    a few heavy-tailed samples is too noisy to help), so ``beta_s`` is independent of ``z_s``.

    Time and memory are linear in the samples: one backward pass gives every sample's score
    (:func:`_per_sample_scores`), and the leave-one-out sums are exclusive prefix and suffix
    sums, which never subtract ``z_s``'s own term (its rounding error would depend on ``z_s``).
    The coefficient only weights zero-valued terms, so without gradients it is not needed (0).
    """
    named = [(name, value) for name, value in parameter_tensors(dist) if value.requires_grad]
    if not named or not torch.is_grad_enabled():
        return torch.zeros_like(costs)
    batch_ndims = len(dist.batch_shape)
    scores = _per_sample_scores(dist, z, [name for name, _ in named])
    expectation_gradients = torch.autograd.grad(
        expectation_term.sum(), [value for _, value in named], retain_graph=True, allow_unused=True
    )
    score_norms = sum(sum_after(score**2, 1 + batch_ndims) for score in scores)
    score_dots = sum(
        sum_after(score * gradient, 1 + batch_ndims)
        for score, gradient in zip(scores, expectation_gradients, strict=True)
        if gradient is not None
    )
    gradient_norm = sum(
        sum_after(gradient[None] ** 2, 1 + batch_ndims)
        for gradient in expectation_gradients
        if gradient is not None
    )
    numerators = costs * controls * score_norms - costs * score_dots
    denominators = controls**2 * score_norms - 2 * controls * score_dots + gradient_norm
    numerator = leave_one_out_sum(sum_after(numerators, 1))
    denominator = leave_one_out_sum(sum_after(denominators, 1))
    positive = denominator > 0
    beta = torch.where(positive, numerator / torch.where(positive, denominator, 1.0), 0.0)
    return beta.reshape(-1, *([1] * (costs.dim() - 1))).expand_as(costs)


def _per_sample_scores(dist: Distribution, z: Tensor, names: list[str]) -> list[Tensor]:
    """``grad log q(z_s)`` w.r.t. the parameter tensors called ``names``, for every sample ``s``:
    each of shape ``(S, *parameter shape)``, from one backward pass.

    ``dist.expand((S, *B))`` holds each parameter expanded along the samples, a view of the
    original: a sample's log-probability depends only on its own slice of it (the coordinates
    are independent), so the gradient with respect to the view is every sample's score at
    once, in memory linear in ``S``. Values the family derives lazily from its parameters (a
    ``Bernoulli``'s ``logits`` from its ``probs``) are dropped from the copy, so they are
    derived again from the expanded parameters.
    """
    try:
        expanded = dist.expand(torch.Size((z.shape[0], *dist.batch_shape)))
    except NotImplementedError as error:
        raise TypeError(
            f"coefficient='optimal' needs {type(dist).__name__}.expand for the samples' scores; "
            "use a fixed coefficient"
        ) from error
    given = {name.rsplit(".", 1)[-1] for name in names}
    inner = base_distribution(expanded)
    for name in type(inner).arg_constraints:
        if name not in given and isinstance(getattr(type(inner), name, None), lazy_property):
            inner.__dict__.pop(name, None)
    views = [inner.__dict__[name.rsplit(".", 1)[-1]] for name in names]
    return list(
        torch.autograd.grad(
            log_prob(expanded, z).sum(), views, retain_graph=True, materialize_grads=True
        )
    )
