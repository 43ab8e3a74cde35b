"""The measure-valued gradient estimator (weak derivatives), for diagonal Gaussians.

The derivative of a density with respect to one parameter is a signed measure, which splits
into a constant times the difference of two probability densities (Pflug 1989; Heidergott &
Vázquez-Abad 2000; Mohamed et al. 2020, JMLR, Sec. 6)::

    d/dtheta q_theta(x) = c_theta (q+(x) - q-(x))
    =>  d/dtheta E_q[f(x)] = c_theta (E_{q+}[f(x)] - E_{q-}[f(x)]),

so the gradient is estimated from values of ``f`` alone (``f`` need not be differentiable).
For ``x ~ N(mu, sigma^2)``, ``x = mu + sigma * eps``:

- mean: ``d/dmu N(x; mu, sigma^2) = (x - mu) / sigma^2 N(x; mu, sigma^2)``; its positive part
  (``x > mu``) has mass ``c_mu = 1 / (sigma sqrt(2 pi))`` and, normalised, is ``mu + sigma W``
  with ``W ~ Weibull(scale sqrt 2, shape 2)`` (the Rayleigh density ``w exp(-w^2 / 2)``,
  sampled as ``sqrt(-2 log u)``); the negative part is its mirror image ``mu - sigma W``::

      d/dmu E[f] = (1 / (sigma sqrt(2 pi))) (E_W[f(mu + sigma W)] - E_W[f(mu - sigma W)]).

- scale: ``d/dsigma N = (1 / sigma) ((x - mu)^2 / sigma^2 - 1) N``; ``eps^2 phi(eps)`` is the
  double-sided Maxwell density (``M = sign * chi_3``, ``E M^2 = 3``), so::

      d/dsigma E[f] = (1 / sigma) (E_M[f(mu + sigma M)] - E_eps[f(mu + sigma eps)]).

**Coupling** (common random numbers; Mohamed et al. 2020, Sec. 7 on variance reduction): the
difference of two expectations has a smaller variance when its two terms are positively
correlated. With ``coupling=True`` the mean derivative uses the *same* ``W`` for
``mu + sigma W`` and ``mu - sigma W``, and the scale derivative draws ``M`` and sets
``eps = M U`` with ``U ~ U(0, 1)`` independent of ``M``. That ``eps`` is exactly ``N(0, 1)``:
for ``y > 0`` its density is ``int_y^inf (1/m) m^2 phi(m) dm = int_y^inf m phi(m) dm = phi(y)``
(and by symmetry for ``y < 0``), so each marginal is exact and the estimator stays unbiased. With
``coupling=False`` the two ``W`` and the pair ``(M, eps)`` are independent.

For ``f(x) = (x - k)^2``, one sample and ``a = mu - k`` (derivations in the tests): coupled
``Var d/dmu = (16/pi - 4) a^2`` and ``Var d/dsigma = 4 a^2 + 4 sigma^2``; uncoupled
``Var d/dmu = (8/pi - 2) a^2 + (4/pi) sigma^2`` and ``Var d/dsigma = 16 a^2 + 8 sigma^2``.
Coupling always helps the scale; it helps the mean only while ``a^2 <= 2 sigma^2 / (4 - pi)``,
because ``f(mu + sigma W) - f(mu - sigma W)`` doubles, rather than cancels, the part of ``f``
that is odd about ``mu``.

**Many dimensions.** For ``D = prod(event_shape)`` independent coordinates, coordinate ``d``
is perturbed alone while the others keep one shared Gaussian sample ``mu + sigma eps``; that
sample is independent of the perturbation, so each coordinate's estimate is unbiased. The
shared Gaussian point also serves as the scale derivative's negative part for every coordinate
(with coupling, ``eps = M U`` coordinate-wise), so each sample costs ``1 + 3 D`` evaluations
of ``f`` (the base point, ``D`` points ``mu_d + sigma_d W``, ``D`` points ``mu_d - sigma_d W'``,
``D`` points ``mu_d + sigma_d M_d``) instead of ``4 D``, all in one call of ``f`` on a batch of
shape ``((1 + 3 D) * num_samples, *B, *E)``, ordered in those four blocks of
``num_samples`` (base) and ``D * num_samples`` points. Memory grows as ``D^2``.

**Surrogate.** Its value is the mean of ``f`` over the ``num_samples`` Gaussian base points, an
unbiased estimate of ``E_q[f]`` (the perturbed points are drawn from other distributions and
enter only the gradient). Its gradient with respect to ``loc`` and ``scale`` is the
measure-valued estimate, attached by the zero-valued terms ``stop_gradient(g) * (loc -
stop_gradient(loc))`` summed over the event dimensions, so it flows on to whatever produced
``loc`` and ``scale``; with respect to parameters inside ``f`` it is the mean of ``grad f`` over
the base points (the perturbed costs are detached).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution, Normal

from samplegrad._internal.families import base_distribution
from samplegrad._internal.sampling import open_uniform, standard_normal
from samplegrad.estimators.base import Cost, Estimator
from samplegrad.estimators.catalog import register, register_variant

_SQRT_2PI = math.sqrt(2.0 * math.pi)


@register
class MeasureValued(Estimator):
    """Weak-derivative gradients for ``Normal`` and ``Independent(Normal)``.

    Each sample evaluates ``f`` at ``1 + 3 D`` points for ``D = prod(event_shape)``.

    Args:
        coupling: couple the positive and negative parts with common random numbers (the same
            Weibull sample for the mean; ``eps = M U`` for the scale), which lowers the variance
            for costs that are nearly even about the mean; ``False`` draws them independently.
    """

    name = "measure-valued"
    unbiased = True

    def __init__(self, coupling: bool = True) -> None:
        super().__init__()
        if not isinstance(coupling, bool):
            raise TypeError(f"coupling must be True or False, got {coupling!r}")
        self.coupling = coupling

    def extra_repr(self) -> str:
        return f"coupling={self.coupling}"

    @classmethod
    def supports(cls, dist: Distribution) -> bool:
        return type(base_distribution(dist)) is Normal

    def estimate(
        self, cost: Cost, dist: Distribution, num_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        normal = base_distribution(dist)
        batch_shape, event_shape = dist.batch_shape, dist.event_shape
        dim = event_shape.numel()
        loc = normal.loc.reshape(*batch_shape, dim)
        scale = normal.scale.reshape(*batch_shape, dim)
        mu, sigma = loc.detach(), scale.detach()

        weibull_plus, weibull_minus, maxwell, eps = self._noise(
            torch.Size((num_samples, *batch_shape, dim)), mu, generator
        )
        base = mu + sigma * eps  # (S, *B, D)
        perturbed = torch.stack(
            [mu + sigma * weibull_plus, mu - sigma * weibull_minus, mu + sigma * maxwell]
        )  # (3, S, *B, D)
        points = _perturb_each(base, perturbed)  # (1 + 3D, S, *B, D)
        costs = cost(points.reshape((1 + 3 * dim) * num_samples, *batch_shape, *event_shape))
        costs = costs.reshape(1 + 3 * dim, num_samples, *batch_shape)

        base_costs = costs[0].detach()
        plus_mu, minus_mu, plus_sigma = costs[1:].detach().reshape(3, dim, *base_costs.shape)
        grad_loc = (plus_mu - minus_mu).mean(1).movedim(0, -1) / (_SQRT_2PI * sigma)
        grad_scale = (plus_sigma - base_costs).mean(1).movedim(0, -1) / sigma
        attached = grad_loc * (loc - mu) + grad_scale * (scale - sigma)
        return costs[0].mean(0) + attached.sum(-1)

    def _noise(
        self, shape: torch.Size, like: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(W+, W-, M, eps)`` of ``shape`` in ``like``'s dtype: Weibull(sqrt 2, 2) for the mean,
        double-sided Maxwell and standard normal for the scale, coupled or independent."""
        weibull_plus = _weibull(shape, like, generator)
        weibull_minus = weibull_plus if self.coupling else _weibull(shape, like, generator)
        # A chi_3 radius with the independent sign of its first coordinate.
        normals = standard_normal(torch.Size((3, *shape)), like, generator)
        radius = normals.square().sum(0).sqrt()
        maxwell = torch.where(normals[0] < 0, -radius, radius)
        if self.coupling:
            eps = maxwell * open_uniform(shape, like, generator).to(like.dtype)
        else:
            eps = standard_normal(shape, like, generator)
        return weibull_plus, weibull_minus, maxwell, eps


def _weibull(shape: torch.Size, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Weibull(scale sqrt 2, shape 2), the Rayleigh distribution: ``sqrt(-2 log u)``."""
    return (-2.0 * open_uniform(shape, like, generator).log()).sqrt().to(like.dtype)


def _perturb_each(base: Tensor, perturbed: Tensor) -> Tensor:
    """``base`` (``(S, *B, D)``) followed by ``3 D`` copies of it, copy ``(group, d)`` with
    coordinate ``d`` set to ``perturbed[group, ..., d]``: shape ``(1 + 3 D, S, *B, D)``.

    One copy of ``base`` and one indexed write of the ``3 D`` changed coordinates.
    """
    dim = base.shape[-1]
    points = base.expand(1 + 3 * dim, *base.shape).clone()
    coordinate = torch.arange(dim, device=base.device)
    groups = points[1:].view(3, dim, *base.shape)
    groups[:, coordinate, ..., coordinate] = perturbed.movedim(-1, 0)
    return points


register_variant(
    "measure-valued-uncoupled",
    MeasureValued,
    "independent positive and negative parts",
    lambda: {"coupling": False},
)
