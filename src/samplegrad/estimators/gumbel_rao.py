"""Gumbel-Rao Monte Carlo (Paulus, Maddison & Krause 2021, "Rao-Blackwellizing the
straight-through Gumbel-softmax gradient estimator", ICLR).

Straight-through Gumbel-softmax draws Gumbel noise ``G``, takes the one-hot sample
``D = onehot(argmax(theta + G))``, evaluates ``f(D)`` and back-propagates through the relaxed
sample ``softmax((theta + G) / tau)``::

    g_ST(G) = J_theta softmax((theta + G) / tau)^T grad_D f(D)

``f(D)`` depends on ``G`` only through ``D``, so conditioning on ``D`` (Rao-Blackwellisation)
keeps the mean and lowers the variance::

    g_GR = E[g_ST(G) | D] ~= (1/M) sum_m g_ST(G_m),   G_m ~ p(G | argmax(theta + G) = D)

with ``M = num_draws`` conditional draws, exactly the Jacobian of the averaged relaxed sample
``(1/M) sum_m softmax((theta + G_m) / tau)`` taken with ``G_m`` held fixed. The conditional
draws are those of REBAR's conditional relaxation (Maddison et al. 2014; Tucker et al. 2017):
for normalised log-probabilities ``theta`` and ``E_k ~ Exp(1)``, the maximum
``theta_D + G_D = -log E_D`` is a standard Gumbel independent of the argmax, and the others are
Gumbels truncated below it, ``theta_k + G_k = -log(E_k exp(-theta_k) + E_D)``.

The mean gradient is straight-through Gumbel-softmax's (``"gumbel-hard"``) at the same
temperature, so it is biased like it; its variance falls with ``M`` towards that of the
conditional expectation (``M = 1`` is straight-through Gumbel-softmax in distribution). One
evaluation of ``f`` per sample whatever ``M``; the ``M`` softmaxes are cheap. A Bernoulli is the
two-class case (``f`` gets the class-1 component, the usual 0/1 value) and then has the same
mean as ``"gumbel-hard"`` on its logistic form; a ``Categorical`` gets one-hot vectors.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution
from torch.nn import functional as F

from samplegrad._internal.sampling import open_uniform
from samplegrad.estimators._categories import categories
from samplegrad.estimators.base import Cost, DiscreteChoiceEstimator
from samplegrad.estimators.catalog import register
from samplegrad.estimators.relaxed import Tempered


def conditional_perturbations(
    log_probs: Tensor, one_hot: Tensor, num_draws: int, generator: torch.Generator | None
) -> Tensor:
    """``theta + G`` for ``num_draws`` draws of Gumbels ``G`` conditioned on
    ``argmax(theta + G) = D`` (module docstring): shape ``(num_draws, *one_hot.shape)``, for
    normalised ``log_probs`` ``theta`` (``(..., K)``, broadcast against ``one_hot``), no
    gradient."""
    shape = torch.Size((num_draws, *one_hot.shape))
    # The noise follows the parameters' batch (not the samples'), so that per-replica and
    # sharded draws split the batch axis.
    like = log_probs.detach().expand(one_hot.shape[1:])
    exponential = -open_uniform(shape, like, generator).log().to(one_hot.dtype)
    top = (exponential * one_hot).sum(-1, keepdim=True)  # E_D
    others = -torch.log(exponential * torch.exp(-log_probs.detach()) + top)
    return torch.where(one_hot.bool(), -top.log(), others)


@register
class GumbelRao(DiscreteChoiceEstimator, Tempered):
    """Gumbel-Rao Monte Carlo (Paulus et al. 2021): straight-through Gumbel-softmax averaged
    over ``num_draws`` conditional Gumbel draws; biased like it, with lower variance. Bernoulli,
    Categorical, OneHotCategorical (and ``Independent`` of them).

    Args:
        temperature: ``tau > 0`` of the relaxation, a buffer as for ``sg.GumbelSoftmax``.
        num_draws: ``M >= 1`` conditional draws per sample.
    """

    name = "gumbel-rao"
    unbiased = False

    def __init__(self, temperature: float = 1.0, num_draws: int = 10) -> None:
        super().__init__()
        self._init_temperature(temperature)
        if isinstance(num_draws, bool) or not isinstance(num_draws, int) or num_draws < 1:
            raise ValueError(
                f"num_draws must be an int >= 1, got {num_draws!r}; 10 to 100 conditional "
                "draws are typical (Paulus et al. 2021)"
            )
        self.num_draws = num_draws

    def estimate(
        self, cost: Cost, dist: Distribution, num_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        view = categories(dist)
        log_probs = view.log_probs
        indices = view.sample_indices(num_samples, generator)
        one_hot = F.one_hot(indices, view.num_classes).to(log_probs.dtype)
        perturbed = conditional_perturbations(log_probs, one_hot, self.num_draws, generator)
        noise = perturbed - log_probs.detach()  # G_m, held fixed
        relaxed = torch.softmax((log_probs + noise) / self.checked_temperature(), -1).mean(0)
        soft = one_hot + (relaxed - relaxed.detach())
        return cost(view.stand_in(soft)).mean(0)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature.item():g}, num_draws={self.num_draws}"
