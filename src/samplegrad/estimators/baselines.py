"""Baselines for the score-function estimator.

A baseline ``b`` that does not depend on the sample ``z_s`` it is paired with keeps the score
function unbiased, ``E[(f(z) - b) grad log q(z)] = E[f(z) grad log q(z)]``, because
``E[grad log q(z)] = 0``; a good one removes most of its variance (Williams 1992; Greensmith,
Bartlett & Baxter 2004). Each baseline maps the costs ``f(z_s)`` of shape ``(S, *B)`` to the
values to subtract, broadcastable to that shape.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from samplegrad._internal.validation import check_num_samples


class Baseline(nn.Module):
    """Maps costs ``(S, *B)`` to baseline values; may carry gradient to its own parameters."""

    min_num_samples: int = 1

    def forward(self, costs: Tensor) -> Tensor:
        raise NotImplementedError


class LeaveOneOut(Baseline):
    """``b_s = mean_{j != s} f(z_j)``: the other samples' mean cost (Kool et al. 2019).

    Independent of ``z_s``, so the estimator stays unbiased, unlike the plain sample mean; the
    resulting gradient is ``1/(S-1) sum_s (f(z_s) - fbar) grad log q(z_s)``. Needs ``S >= 2``.
    """

    min_num_samples = 2

    def forward(self, costs: Tensor) -> Tensor:
        num_samples = costs.shape[0]
        return (costs.sum(0, keepdim=True) - costs) / (num_samples - 1)


class MovingAverage(Baseline):
    """An exponential moving average of past mean costs, ``b_t = d b_{t-1} + (1-d) fbar_t``.

    The baseline used at step ``t`` is built from steps ``< t`` only, so it is independent of
    the current samples and the estimator stays unbiased. The average starts at zero and is
    bias-corrected, ``b_t / (1 - d^t)``, as in Adam (Kingma & Ba 2015), so early steps are not
    pulled towards zero. It is one scalar shared by the batch: batch positions in a training
    loop hold different data points at every step.

    Args:
        decay: ``d`` in ``[0, 1)``; the average covers roughly the last ``1 / (1 - d)`` steps.
    """

    average: Tensor
    steps: Tensor

    def __init__(self, decay: float = 0.9) -> None:
        super().__init__()
        if not (isinstance(decay, int | float) and 0.0 <= decay < 1.0):
            raise ValueError(f"decay must be a number in [0, 1), got {decay!r}; 0.9 is typical")
        self.decay = float(decay)
        self.register_buffer("average", torch.zeros((), dtype=torch.float32))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def forward(self, costs: Tensor) -> Tensor:
        if self.average.device != costs.device:  # follow the costs, like the other baselines
            self.average, self.steps = self.average.to(costs.device), self.steps.to(costs.device)
        correction = 1.0 - self.decay ** self.steps.to(self.average.dtype)
        # steps == 0: average and correction are both 0; the baseline is 0.
        baseline = torch.where(self.steps > 0, self.average / correction.clamp_min(1e-30), 0.0)
        with torch.no_grad():
            current = costs.detach().mean().to(self.average.dtype)
            self.average.mul_(self.decay).add_((1.0 - self.decay) * current)
            self.steps.add_(1)
        return baseline.to(costs.dtype)

    def extra_repr(self) -> str:
        return f"decay={self.decay}"


class Learned(Baseline):
    """A baseline computed by a user's callable or ``nn.Module``, called with no arguments.

    It returns values broadcastable to the batch shape (an input-dependent baseline closes over
    its input, e.g. ``lambda: net(x)``; a constant one is an ``nn.Parameter``). The score
    estimator adds the zero-valued term ``mse - stop_gradient(mse)``, with
    ``mse = mean_s (f(z_s) - b)^2``, to the surrogate, so the same ``backward`` trains it to
    minimise the squared error (Mnih & Gregor 2014, NVIL). It must not depend on the
    distribution's parameters, or that term would push on them too.
    """

    def __init__(self, function: Callable[[], Tensor]) -> None:
        super().__init__()
        self.function = function

    def forward(self, costs: Tensor) -> Tensor:
        return self.function()


def as_baseline(spec: object) -> Baseline | None:
    """The baseline named by ``spec``: ``None``, ``"loo"``, a ``Baseline``, or a callable."""
    if spec is None or isinstance(spec, Baseline):
        return spec
    if spec == "loo":
        return LeaveOneOut()
    if callable(spec):
        return Learned(spec)
    raise ValueError(
        f"baseline must be None, 'loo', sg.MovingAverage(decay), or a callable/nn.Module "
        f"returning baseline values, got {spec!r}"
    )


def check_baseline_samples(baseline: Baseline | None, num_samples: int) -> None:
    if baseline is not None and num_samples < baseline.min_num_samples:
        check_num_samples(
            num_samples,
            minimum=baseline.min_num_samples,
            why=f"for the {type(baseline).__name__} baseline",
        )
