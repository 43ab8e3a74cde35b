"""``sg.iwae_bound``: the importance-weighted bound as a surrogate, pathwise or VIMCO.

With ``K`` samples ``z_k ~ q`` and log-weights ``l_k = log_weight(z_k)`` (in variational
inference ``log p(x, z_k) - log q(z_k)``), the importance-weighted bound of Burda, Grosse &
Salakhutdinov (2016, "Importance weighted autoencoders", ICLR) is::

    L_K = E_q[ log (1/K) sum_k exp(l_k) ]  <=  log E_q[exp(l)]      (= log p(x) in VI),

tighter as ``K`` grows; ``K = 1`` is the ELBO. The surrogate's value is the single-draw estimate
``L_hat = logmeanexp_k l_k`` and its gradient is one of two unbiased estimates of ``grad L_K``:

- ``"pathwise"``: ``z_k = g_phi(eps_k)`` by ``rsample``, so ``grad L_hat`` flows through the
  samples and through ``log_weight``'s own parameters (the IWAE paper's estimator). Needs
  ``dist.has_rsample``.
- ``"vimco"``: the multi-sample score function with leave-one-out signals
  (:class:`~samplegrad.estimators.vimco.VIMCO`, Mnih & Rezende 2016); any distribution,
  ``K >= 2``.
- ``"dreg"``: the doubly reparameterized gradient (Tucker, Lawson, Gu & Maddison 2019,
  "Doubly reparameterized gradient estimators for Monte Carlo objectives", ICLR). With
  ``l_k = log p(x, z_k) - log q_phi(z_k)`` and ``z_k = g_phi(eps_k)``, the pathwise gradient of
  the encoder's parameters ``phi`` holds a score term ``-sum_k w~_k d/dphi log q_phi(z)|_z``
  whose variance makes the encoder's signal-to-noise ratio *fall* like ``1/sqrt(K)``
  (Rainforth et al. 2018). Reparameterizing that term once more gives the same expectation
  without it::

      grad_phi L_K = E[ sum_k w~_k^2 (d l_k / d z_k) (d z_k / d phi) ],

  where ``d l_k / d z_k`` differentiates ``log p(x, z) - log q_{stop(phi)}(z)`` (the
  parameters of ``q`` held fixed); the other parameters (a decoder's, inside ``log p``) keep
  the IWAE gradient ``sum_k w~_k grad l_k``. samplegrad needs no split of ``log_weight``: it
  adds ``log q(z) - log q_{stop(phi)}(z)`` (value 0) to each log-weight, which removes the
  direct dependence on ``phi`` of the ``-dist.log_prob(z)`` inside ``log_weight``, and scales
  the gradient reaching ``z_k`` by ``w~_k``. Exact when ``log_weight``'s ``log q`` term is the
  density of ``dist`` (any family with ``rsample``: the parameters are detached generically);
  ``K = 1`` gives the sticking-the-landing ELBO gradient (Roeder, Wu & Duvenaud 2017).
- ``"stl"``: sticking the landing for the bound: the same removal of the direct score term,
  without the squared weights, ``sum_k w~_k (d l_k / d z_k) (d z_k / d phi)``. Unbiased for
  ``K = 1`` (the ELBO); for ``K > 1`` it is *biased* (Tucker et al. 2019, Sec. 4: the removed
  term no longer has mean zero under the normalised weights), which is why DReG exists; it is
  here for comparisons such as the signal-to-noise experiment of Rainforth et al. (2018).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.distributions import Distribution

from samplegrad._internal import validation as _validation
from samplegrad._internal.detach import detached
from samplegrad._internal.families import log_prob
from samplegrad._internal.sampling import draw
from samplegrad.estimators.base import Cost, Estimator, describe_base
from samplegrad.estimators.pathwise import Pathwise
from samplegrad.estimators.vimco import VIMCO, log_mean_exp

DREG, STL = "dreg", "stl"
"""The names of the doubly reparameterized and sticking-the-landing gradients, which need
``rsample`` as pathwise does."""

_named: dict[str, Pathwise | VIMCO] = {
    "pathwise": Pathwise(),
    DREG: Pathwise(),
    STL: Pathwise(),
    "vimco": VIMCO(),
}
"""The instances the names resolve to (all stateless); ``"dreg"`` and ``"stl"`` check their
arguments as pathwise does."""


def iwae_bound(
    log_weight: Callable[[Tensor], Tensor],
    dist: Distribution,
    num_samples: int,
    estimator: str | Estimator = "pathwise",
    generator: torch.Generator | None = None,
) -> Tensor:
    """A surrogate for the importance-weighted bound ``E_q[log (1/K) sum_k w_k]``.

    Args:
        log_weight: maps samples of shape ``(K, *B, *E)`` to log-weights ``log w`` of shape
            ``(K, *B)``; typically ``lambda z: log_joint(x, z) - dist.log_prob(z)``, closing
            over the proposal (both estimators handle that dependence on ``dist``'s
            parameters).
        dist: the proposal ``q``, a ``torch.distributions.Distribution`` with batch shape ``B``
            and event shape ``E``.
        num_samples: ``K``, the number of importance samples per batch element (``>= 2`` for
            VIMCO; ``K = 1`` with ``"pathwise"`` is the ELBO).
        estimator: ``"pathwise"`` (or an ``sg.Pathwise()`` instance; needs
            ``dist.has_rsample``), ``"dreg"`` (the doubly reparameterized gradient, lower
            variance for the proposal's parameters; needs ``dist.has_rsample`` and a
            ``log_weight`` whose ``log q`` term is ``dist.log_prob``), ``"stl"`` (the same
            without the squared weights: biased for ``K > 1``, for comparisons) or
            ``"vimco"`` (or an ``sg.VIMCO()`` instance; any distribution).
        generator: a ``torch.Generator``; the same state gives the same samples and surrogate.

    Returns:
        The surrogate, shape ``B``: its value is ``logmeanexp`` of the ``K`` log-weights and its
        gradient the chosen estimator's estimate of ``grad L_K``, so ``(-bound).mean()`` is a
        training loss.

    Raises:
        ValueError: an unknown ``estimator``, ``num_samples`` too small, log-weights of the
            wrong shape, or NaN/inf parameters in ``dist``.
        TypeError: ``dist`` is not a ``Distribution``, ``generator`` not a ``torch.Generator``,
            or ``"pathwise"`` for a distribution without ``rsample``.
    """
    resolved = _resolve(estimator)
    dist = _validation.check_distribution(dist)
    if not resolved.supports(dist):
        raise TypeError(
            f"iwae_bound's estimator 'pathwise' needs a reparameterizable distribution "
            f"(dist.has_rsample) and {type(dist).__name__}{describe_base(dist)} has none; use "
            "estimator='vimco', which handles any distribution"
        )
    num_samples = _validation.check_num_samples(
        num_samples, minimum=resolved.min_num_samples, why=f"for iwae_bound with {resolved.name!r}"
    )
    cost, generator = _validation.check_arguments(log_weight, dist, generator, name="log_weight")
    if isinstance(resolved, VIMCO):
        return resolved.bound(cost, dist, num_samples, generator)
    if estimator in (DREG, STL):
        return _without_score_bound(cost, dist, num_samples, generator, squared=estimator == DREG)
    return _pathwise_bound(cost, dist, num_samples, generator)


def _resolve(estimator: object) -> Pathwise | VIMCO:
    if isinstance(estimator, Pathwise | VIMCO):
        return estimator
    if isinstance(estimator, str) and estimator in _named:
        return _named[estimator]
    raise ValueError(
        "iwae_bound's estimator must be 'pathwise', 'dreg', 'stl' or 'vimco' (or an "
        f"sg.Pathwise() or sg.VIMCO() instance), got {estimator!r}; other estimators estimate "
        "E_q[f], see sg.expectation"
    )


def _pathwise_bound(
    log_weight: Cost, dist: Distribution, num_samples: int, generator: torch.Generator | None
) -> Tensor:
    """``logmeanexp_k log_weight(z_k)`` with ``z = rsample``: the gradient of that, exactly."""
    z = draw(dist, torch.Size((num_samples,)), generator, reparameterized=True)
    return log_mean_exp(log_weight(z))


def _without_score_bound(
    log_weight: Cost,
    dist: Distribution,
    num_samples: int,
    generator: torch.Generator | None,
    *,
    squared: bool,
) -> Tensor:
    """``logmeanexp_k l_k`` with ``l_k`` plus ``log q(z_k) - log q_{stop(phi)}(z_k)`` (value 0,
    no direct score of ``q``'s parameters): STL's gradient; with ``squared``, the gradient
    reaching ``z_k`` is also scaled by ``w~_k``, so the encoder's path terms carry ``w~_k^2``
    (DReG; module docstring)."""
    z = draw(dist, torch.Size((num_samples,)), generator, reparameterized=True)
    log_weights = log_weight(z) + (log_prob(dist, z) - log_prob(detached(dist), z))
    if squared and z.requires_grad:
        normalized = torch.softmax(log_weights.detach(), dim=0)
        factor = normalized.reshape(*normalized.shape, *(1,) * len(dist.event_shape))
        z.register_hook(lambda grad: grad * factor)
    return log_mean_exp(log_weights)
