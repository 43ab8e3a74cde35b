"""Gradient signal-to-noise ratio of the importance-weighted bound against ``K``.

Rainforth et al. (2018, "Tighter variational bounds are not necessarily better", ICML) showed
that as the number of importance samples ``K`` grows, the pathwise (IWAE) gradient's
signal-to-noise ratio ``SNR = |E g| / sd(g)`` *falls* like ``1/sqrt(K)`` for the inference
network's parameters while it rises like ``sqrt(K)`` for the generative model's; DReG (Tucker
et al. 2019) makes the inference network's rise too. This module measures it on their Gaussian
model, where every quantity is cheap and the repeats are one batched call:

- generative model ``p(z) = N(mu, I_D)``, ``p(x | z) = N(x; z, I_D)``, so
  ``p(z | x) = N((x + mu) / 2, I / 2)``; one data point ``x ~ p(x) = N(mu*, 2 I)``;
- inference network ``q(z | x) = N(A x + b, (2/3) I_D)``, with ``A`` and ``b`` the optimum
  ``A* = I / 2``, ``b* = mu / 2`` perturbed by ``N(0, perturbation^2)`` noise, and ``mu`` the
  true ``mu*`` perturbed likewise (the paper's setup: near, not at, the optimum).

Every parameter is repeated ``R`` times (one leaf of shape ``(R, ...)``), so one
``sg.iwae_bound(...).sum().backward()`` gives ``R`` independent gradient estimates ``g_r`` of a
parameter group's gradient vector. Its SNR is ``|E g| / sqrt(tr Cov g)`` (the norm of the mean
over the root of the total variance), with ``|E g|^2`` estimated without bias as
``|mean_r g_r|^2 - tr Cov / R``: the plain ``|mean|`` has a floor of about ``sqrt(tr Cov / R)``
that would hide an SNR falling towards zero.

**The exact gradient.** Write ``p = (x + mu) / 2`` (the posterior's mean), ``m = A x + b`` (the
proposal's), ``d = m - p``, ``r = |d|`` and ``z = m + s eps`` with ``s^2 = 2/3``. The
log-weight is then ``log p(x) - r^2 - 2 s r u - (u^2 + c) / 6`` up to a constant, with
``u = d . eps / r ~ N(0, 1)`` and ``c = |eps|^2 - u^2 ~ chi^2_{D-1}`` independent, so the bound
is ``L_K = log p(x) - r^2 + h_K(r) + const``, ``h_K(r) = E[log (1/K) sum_k exp(-2 s r u_k -
(u_k^2 + c_k) / 6)]``, and its gradient is closed-form but for one number, ``g = dL_K/dr``::

    grad_A L_K = g (d / r) x^T,   grad_b L_K = g d / r,   grad_mu L_K = (x - mu) / 2 - g d / (2 r),

    g = -2 r + h_K'(r),   h_K'(r) = -2 s K E[w~_1 u_1] = -2 s K int_0^inf psi(t) phi(t)^(K-1) dt,

with ``w = exp(-2 s r u - (u^2 + c) / 6)``, ``phi(t) = E[exp(-t w)]`` and
``psi(t) = E[w u exp(-t w)]`` (``w~_1 = w_1 / (w_1 + S)`` and ``1 / y = int_0^inf exp(-t y) dt``,
the ``K - 1`` other weights independent). ``K = 1`` is the ELBO: ``h_1' = 0``. For ``K > 1``
:func:`bound_radial_derivative` integrates by Gauss-Hermite (``u``) and Gauss-Laguerre (``c``)
rules and the trapezoid rule in ``log t``, to about 1e-12. As ``K`` grows, ``g -> 0``: the
encoder's exact gradient vanishes (``L_K -> log p(x)``), which is why its SNR can fall.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.polynomial.hermite_e import hermegauss
from numpy.polynomial.laguerre import laggauss
from torch import Tensor, nn
from torch.distributions import Independent, Normal

import samplegrad as sg

ENCODER, DECODER = "encoder", "decoder"
"""The parameter groups: the inference network's ``(A, b)`` and the model's ``mu``."""


@dataclass(frozen=True)
class GaussianModel:
    """The model and the perturbed parameters (module docstring), drawn from ``seed``."""

    dim: int = 20
    perturbation: float = 0.01
    seed: int = 0

    def parameters(self) -> dict[str, Tensor]:
        """``x`` and the perturbed ``mu``, ``A``, ``b`` (float64)."""
        generator = torch.Generator().manual_seed(self.seed)

        def normal(*shape: int) -> Tensor:
            return torch.randn(shape, generator=generator, dtype=torch.float64)

        mu_true = normal(self.dim)
        x = mu_true + math.sqrt(2.0) * normal(self.dim)
        noise = self.perturbation
        return {
            "x": x,
            "mu": mu_true + noise * normal(self.dim),
            "A": 0.5 * torch.eye(self.dim, dtype=torch.float64)
            + noise * normal(self.dim, self.dim),
            "b": 0.5 * mu_true + noise * normal(self.dim),
        }

    def exact_gradients(self, num_samples: int) -> dict[str, Tensor]:
        """The exact gradient of ``L_K``, ``K = num_samples``, per group, as :meth:`gradients`
        orders it (module docstring)."""
        values = self.parameters()
        x, mu = values["x"], values["mu"]
        offset = values["A"] @ x + values["b"] - (x + mu) / 2
        radius = offset.norm()
        slope = -2 * radius + bound_radial_derivative(float(radius), num_samples, self.dim)
        direction = offset / radius
        return {
            ENCODER: torch.cat([(slope * torch.outer(direction, x)).flatten(), slope * direction]),
            DECODER: (x - mu) / 2 - slope * direction / 2,
        }

    def gradients(
        self, estimator: str, num_samples: int, repeats: int, generator: torch.Generator
    ) -> dict[str, Tensor]:
        """``repeats`` gradient estimates of the bound per group, ``(repeats, elements)``."""
        values = self.parameters()
        x = values["x"]
        leaves = {
            name: values[name].expand(repeats, *values[name].shape).clone().requires_grad_(True)
            for name in ("mu", "A", "b")
        }
        mu, weights, bias = leaves["mu"], leaves["A"], leaves["b"]
        q = Independent(Normal(weights @ x + bias, math.sqrt(2.0 / 3.0)), 1)

        def log_weight(z: Tensor) -> Tensor:
            log_prior = Normal(mu, 1.0).log_prob(z).sum(-1)
            log_likelihood = Normal(z, 1.0).log_prob(x).sum(-1)
            return log_prior + log_likelihood - q.log_prob(z)

        bound = sg.iwae_bound(log_weight, q, num_samples, estimator, generator)
        bound.sum().backward()
        return {
            ENCODER: torch.cat([weights.grad.flatten(1), bias.grad], 1),
            DECODER: mu.grad,
        }


@functools.lru_cache(maxsize=64)
def bound_radial_derivative(radius: float, num_samples: int, dim: int) -> float:
    """``h_K'(r)`` of the module docstring, by quadrature; 0 for ``K = 1``. Cached: every
    estimator measured at one ``K`` needs the same value."""
    if num_samples == 1:
        return 0.0
    u, u_weights = hermegauss(_NODES)
    u_weights = u_weights / math.sqrt(2 * math.pi)
    shape = (dim - 1) / 2  # c = 2 y, y ~ Gamma(shape, 1)
    y, y_weights = laggauss(_NODES)
    y_weights = y_weights * np.exp((shape - 1) * np.log(y) - math.lgamma(shape))
    s = math.sqrt(2 / 3)
    # log w, shifted by a constant (the normalised weights do not change) to centre it near 0
    log_w = (-2 * s * radius * u - u**2 / 6)[:, None] - (2 * y[None, :] - (dim - 1)) / 6
    w, weights = np.exp(log_w), u_weights[:, None] * y_weights[None, :]
    log_t = np.arange(*_LOG_T_RANGE, _LOG_T_STEP)
    integral = 0.0
    for chunk in np.array_split(np.exp(log_t), 40):
        decay = np.exp(-chunk[:, None, None] * w)
        phi = (weights * decay).sum((1, 2))
        psi = (weights * w * u[:, None] * decay).sum((1, 2))
        integral += float((chunk * psi * phi ** (num_samples - 1)).sum()) * _LOG_T_STEP
    return -2 * s * num_samples * integral


_NODES = 80
"""Quadrature nodes in ``u`` and in ``c``: 60 and 120 agree to 1e-12 for K = 2 to 256."""
_LOG_T_RANGE, _LOG_T_STEP = (-40.0, 60.0), 0.05
"""The trapezoid rule's range and step in ``log t`` (the integrand decays exponentially at
both ends)."""


def debiased_snr(mean_norm: float, total_variance: float, repeats: int) -> float:
    """``|E g| / sqrt(tr Cov g)`` from the norm of the mean of ``repeats`` estimates and the
    unbiased trace of their covariance, with ``|E g|^2`` estimated as ``|mean|^2 - tr Cov / R``
    (module docstring); 0 where that is <= 0, ``inf`` for a zero variance."""
    if total_variance <= 0:
        return math.inf
    signal = max(mean_norm**2 - total_variance / repeats, 0.0)
    return math.sqrt(signal / total_variance)


def signal_to_noise(gradients: Tensor) -> float:
    """:func:`debiased_snr` of the rows of ``gradients`` (the repeats)."""
    return debiased_snr(
        float(gradients.mean(0).norm()), float(gradients.var(0).sum()), gradients.shape[0]
    )


TAIL = 16
"""The smallest ``K`` of the tail fit (:func:`tail_slope`): the asymptotic rates hold for
large ``K``."""


def log_log_slope(ks: Sequence[int], values: Sequence[float]) -> float | None:
    """The least-squares slope of ``log value`` against ``log K``; ``None`` with fewer than two
    points or a value <= 0 (an SNR lost in the noise) or infinite."""
    if len(ks) < 2 or not all(0 < v < math.inf for v in values):
        return None
    slope, _ = np.polyfit(np.log(np.asarray(ks, float)), np.log(np.asarray(values, float)), 1)
    return float(slope)


def tail_slope(ks: Sequence[int], values: Sequence[float]) -> float | None:
    """:func:`log_log_slope` over the ``K >= TAIL``."""
    kept = [(k, v) for k, v in zip(ks, values, strict=True) if k >= TAIL]
    return log_log_slope([k for k, _ in kept], [v for _, v in kept])


@dataclass(frozen=True)
class Curve:
    """SNR against ``K`` for one estimator and parameter group, with its log-log slope."""

    estimator: str
    group: str
    ks: list[int]
    snr: list[float]

    @property
    def slope(self) -> float | None:
        return log_log_slope(self.ks, self.snr)

    @property
    def tail_slope(self) -> float | None:
        return tail_slope(self.ks, self.snr)

    def as_row(self) -> dict[str, object]:
        """The curve as JSON-ready values, in ``samplegrad compare``'s ``snr_curves`` form."""
        return {
            "estimator": self.estimator,
            "parameter": self.group,
            "num_samples": self.ks,
            "snr": [v if math.isfinite(v) else None for v in self.snr],
            "slope": self.slope,
            "tail_slope": self.tail_slope,
        }


def snr_curves(
    gradients: Callable[[str, int], dict[str, Tensor]],
    estimators: Sequence[str],
    ks: Sequence[int],
) -> list[Curve]:
    """One :class:`Curve` per estimator and group, from ``gradients(estimator, K)``."""
    snr: dict[tuple[str, str], list[float]] = {}
    for estimator in estimators:
        for k in ks:
            for group, estimates in gradients(estimator, k).items():
                snr.setdefault((estimator, group), []).append(signal_to_noise(estimates))
    return [Curve(estimator, group, list(ks), values) for (estimator, group), values in snr.items()]


def vae_gradients(
    model: nn.Module,
    x: Tensor,
    estimator: str,
    num_samples: int,
    repeats: int,
    generator: torch.Generator,
) -> dict[str, Tensor]:
    """``repeats`` gradient estimates of a VAE's mean IWAE bound on the images ``x`` (``K =
    num_samples``, :meth:`samplegrad.lab.models.GaussianVAE.bound_loss`), per group: the
    decoder's parameters (those under ``decoder``) and the encoder's (all others), each
    ``(repeats, parameters)``. One backward pass per repeat: the network's parameters cannot be
    repeated as a batch the way the Gaussian model's are."""
    groups: dict[str, list[Tensor]] = {ENCODER: [], DECODER: []}
    named = list(model.named_parameters())
    for _ in range(repeats):
        model.zero_grad(set_to_none=True)
        model.bound_loss(x, estimator, num_samples, generator).loss.backward()
        for group in groups:
            groups[group].append(
                torch.cat(
                    [
                        p.grad.flatten()
                        for name, p in named
                        if (name.split(".")[0] == "decoder") == (group == DECODER)
                    ]
                )
            )
    model.zero_grad(set_to_none=True)
    return {group: torch.stack(rows) for group, rows in groups.items()}
