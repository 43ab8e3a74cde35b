"""Per-call overhead of samplegrad's estimators against the same estimators written by hand.

What is measured: the wall time of ONE gradient estimate, i.e. everything a training step does
for the estimator, starting from leaf parameter tensors:

1. build the distribution from the leaves (``Independent(Bernoulli(logits=...), 1)`` or
   ``Independent(Normal(loc, softplus(raw_scale)), 1)``),
2. compute the surrogate from 64 samples,
3. ``surrogate.backward()``, after the leaves' ``.grad`` was reset to ``None``.

Two small problems, chosen so that the tensor arithmetic is cheap and any fixed per-call cost
of a library (argument validation, wrappers, ``nn.Module.__call__``, tracing) shows:

* ``bernoulli``: 100 independent logits, ``f(b) = sum_d (b_d - 0.499)^2``, 64 samples
  (docs/design.md's Bernoulli toy, in 100 dimensions); for ARM and DisARM, 64 evaluations of
  ``f`` = 32 antithetic pairs;
* ``gaussian``: ``E[sum_d z_d^2]`` for ``z ~ N(loc, softplus(raw_scale))`` in 100 dimensions,
  64 samples; for the measure-valued estimator 8 samples, as each costs ``1 + 3 * 100``
  evaluations of ``f`` (2,408 per estimate; 64 samples would be 19,264).

Contenders, on the problems where they apply:

* ``samplegrad``: ``sg.expectation(f, dist, estimator=<instance>, num_samples=64)`` with
  ``sg.Pathwise()``, ``sg.ScoreFunction(baseline="loo")``, ``sg.GumbelSoftmax(0.5)``,
  ``sg.ARM()``, ``sg.DisARM()``, ``sg.MeasureValued(coupling=True)`` and, where this checkout
  has them, ``REBAR(temperature=0.5, eta=1.0)`` and ``RELAX(Control())`` (an MLP
  100 -> 32 -> 1 on ``sigmoid(z)``); the estimator's own parameters get their gradients in the
  same call; on the bernoulli problem also ``sg.StraightThrough()``,
  ``sg.GumbelSoftmax(0.5, hard=True)`` ("gumbel-hard") and ``sg.ReinMax()``, on the gaussian
  one ``sg.StickingTheLanding()`` ("stl") and ``sg.ScoreFunction(baseline=sg.MovingAverage(0.9))``
  ("score-ma"), each against a minimal hand-written version (its note says what it computes);
* ``samplegrad sg.nn``: the layer ``sg.nn.GumbelSoftmax(0.5, kind="bernoulli", num_samples=64)``
  on the logits tensor, the tensor API for a relaxation inside a network;
* ``hand``: the same estimator in plain PyTorch, the reference of every ratio (same formulas
  and noise as samplegrad's, which the same seed reproduces to rounding; ``f`` called once on
  the stacked points);
* ``hand+dist``: for the Bernoulli estimators that need only the logits (Gumbel, ARM, DisARM,
  REBAR, RELAX), the hand-written version fed the logits of ``Independent(Bernoulli(logits))``;
* ``torch.gumbel_softmax``: ``torch.nn.functional.gumbel_softmax`` on two-class logits
  ``[0, logit]`` (a Bernoulli), class-1 component;
* ``pyro``: ``Trace_ELBO`` (pathwise) and ``TraceGraph_ELBO`` with a decaying-average baseline
  (score function), 64 vectorized particles, if ``pyro-ppl`` is installed
  (``pip install -e '.[bench]'``); otherwise those rows are skipped with a note;
* ``storchastic``: Storchastic's ``ScoreFunction`` (batch-average, i.e. leave-one-out,
  baseline), ``ARM``, ``DisARM``, ``REBAR`` and ``RELAX`` (with the same MLP as its ``c_phi``)
  on the bernoulli problem, if ``storchastic`` is installed; see ``storch_contenders`` for how
  it is run, and ``TorchPatches`` for how its global monkey patches of PyTorch are kept away
  from the other rows. A row whose warm-up raises reports the exception instead of a time.

The hand-written Gumbel, ARM, DisARM, REBAR and RELAX work on the logits tensor directly, as a
PyTorch user would; samplegrad's API takes a distribution, so its rows also pay for building
``Independent(Bernoulli(logits))``. The ``hand+dist`` rows are the hand-written versions fed
from that distribution's logits, to tell that cost apart from samplegrad's own. Likewise the
hand-written measure-valued estimator takes ``loc`` and ``softplus(raw_scale)``.

Why: samplegrad's surrogate should cost little more than the code it replaces; the key number
is ``ratio_to_hand`` (target: samplegrad within 1.10x for the pathwise, score-function and
Gumbel estimators, 1.25x for ARM, DisARM, REBAR, RELAX and measure-valued). Every contender
runs twice: with the libraries' default settings (``torch.distributions`` argument validation
on, and with it samplegrad's NaN/inf check of the parameters), and with validation off
(``Distribution.set_default_validate_args(False)``), the setting for speed.

Timing: one thread (``torch.set_num_threads(1)``), a fixed seed, a warm-up, then many short
blocks of iterations per contender, interleaved (block 1 of every contender, then block 2,
...; the order rotates each block) so that drift and other processes' load affect every
contender alike. A block's time divided by its iterations is one per-estimate time; the
reported number is the median over blocks of the wall time (``time.perf_counter``). The
fastest block is reported too, with its own ratio: on a shared machine, other processes only
ever slow a block down, so the minimum is the steadier of the two.

Usage::

    python benchmarks/overhead.py [--out benchmarks/results] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal

import samplegrad as sg

from _machine import cpu_model, source_revision

SEED = 0
DIM = 100
NUM_SAMPLES = 64
TARGET = 0.499
TEMPERATURE = 0.5
BASELINE_DECAY = 0.9
PAIRS = NUM_SAMPLES // 2
"""ARM and DisARM: 64 evaluations of ``f`` are 32 antithetic pairs."""
MEASURE_VALUED_SAMPLES = 8
"""Measure-valued: each sample costs ``1 + 3 * DIM = 301`` evaluations of ``f``."""
CONTROL_HIDDEN = 32
"""RELAX's control: an MLP ``DIM -> CONTROL_HIDDEN -> 1`` (tanh) on the relaxed sample."""
REBAR_TEMPERATURE = 0.5
_SQRT_2PI = math.sqrt(2.0 * math.pi)

HAND = "hand"


@dataclass(frozen=True)
class Settings:
    """How many iterations to run."""

    warmup: int
    blocks: int
    iterations: int
    """Iterations per block."""


FULL = Settings(warmup=50, blocks=25, iterations=100)
QUICK = Settings(warmup=3, blocks=3, iterations=10)


@dataclass
class Contender:
    """One way of computing one gradient estimate; ``step`` runs it once, backward included."""

    problem: str
    contender: str
    estimator: str
    step: Callable[[], None]
    reference: str | None = None
    """The hand-written estimator this row is compared with (default: its own ``estimator``)."""
    note: str = ""
    validation: bool = True
    """``torch.distributions`` argument validation (and with it samplegrad's value checks)."""
    may_fail: bool = False
    """A peer library's row: an exception in the warm-up is recorded in ``error``, not raised."""
    error: str = ""
    """Why the row has no time (the exception its warm-up raised)."""
    block_us: list[float] = field(default_factory=list)

    @property
    def key(self) -> tuple[bool, str, str, str]:
        return (self.validation, self.problem, self.contender, self.estimator)

    def reference_key(self) -> tuple[bool, str, str, str]:
        return (self.validation, self.problem, HAND, self.reference or self.estimator)


# --------------------------------------------------------------------------------------------
# Problems


def bernoulli_cost(b: Tensor) -> Tensor:
    """``sum_d (b_d - t)^2``: samples ``(S, 100)`` to costs ``(S,)``."""
    return ((b - TARGET) ** 2).sum(-1)


def gaussian_cost(z: Tensor) -> Tensor:
    """``sum_d z_d^2``: samples ``(S, 100)`` to costs ``(S,)``."""
    return (z**2).sum(-1)


def bernoulli_dist(logits: Tensor) -> Distribution:
    return Independent(Bernoulli(logits=logits), 1)


def gaussian_dist(loc: Tensor, raw_scale: Tensor) -> Distribution:
    return Independent(Normal(loc, F.softplus(raw_scale)), 1)


def zero_grads(*leaves: Tensor) -> None:
    for leaf in leaves:
        leaf.grad = None


# --------------------------------------------------------------------------------------------
# Hand-written estimators (plain PyTorch): the references.


def hand_pathwise(dist: Distribution, f: Callable[[Tensor], Tensor]) -> Tensor:
    """``mean_s f(rsample_s)``."""
    return f(dist.rsample((NUM_SAMPLES,))).mean(0)


def hand_score_loo(dist: Distribution, f: Callable[[Tensor], Tensor]) -> Tensor:
    """REINFORCE with the leave-one-out baseline ``b_s = (sum_j f_j - f_s) / (S - 1)``."""
    z = dist.sample((NUM_SAMPLES,))
    costs = f(z)
    log_prob = dist.log_prob(z)
    baseline = (costs.sum(0) - costs) / (NUM_SAMPLES - 1)
    return (costs + (costs - baseline).detach() * (log_prob - log_prob.detach())).mean(0)


def hand_binary_concrete(logits: Tensor) -> Tensor:
    """Relaxed Bernoulli samples ``sigmoid((logits + log u - log(1 - u)) / tau)``, ``(S, D)``."""
    finfo = torch.finfo(logits.dtype)
    u = torch.rand((NUM_SAMPLES, *logits.shape), dtype=logits.dtype)
    u = u.clamp(finfo.tiny, 1.0 - finfo.eps)
    return torch.sigmoid((logits + torch.log(u) - torch.log1p(-u)) / TEMPERATURE)


def torch_gumbel_softmax(logits: Tensor) -> Tensor:
    """``F.gumbel_softmax`` over two classes ``[0, logit]``; the class-1 probability."""
    two_class = torch.stack([torch.zeros_like(logits), logits], dim=-1)
    expanded = two_class.expand(NUM_SAMPLES, *two_class.shape)
    return F.gumbel_softmax(expanded, tau=TEMPERATURE)[..., 1]


def open_uniform(shape: tuple[int, ...], like: Tensor) -> Tensor:
    """``U(0, 1)`` noise clamped to the open interval, so its logarithms are finite."""
    finfo = torch.finfo(like.dtype)
    return torch.rand(shape, dtype=like.dtype).clamp(finfo.tiny, 1.0 - finfo.eps)


def hand_antithetic(logits: Tensor, f: Callable[[Tensor], Tensor], *, disarm: bool) -> Tensor:
    """ARM or DisARM from ``PAIRS`` antithetic pairs ``b = 1[logit(u) < phi]``,
    ``b~ = 1[-logit(u) < phi]``, ``f`` called once on the stacked ``2 * PAIRS`` points; the pair
    estimate is ``g_d = 1/2 (f(b) - f(b~)) w_d`` with ``w = 1 - 2u`` (ARM) or
    ``w = (b - b~) sigmoid(|phi|)`` (DisARM), attached as ``sum_d g_d (phi_d - phi_d.detach())``.
    """
    phi = logits.detach()
    u = open_uniform((PAIRS, *logits.shape), logits)
    noise = torch.logit(u)
    b, b_anti = (noise < phi).to(phi.dtype), (-noise < phi).to(phi.dtype)
    costs = f(torch.cat([b, b_anti]))
    weight = (b - b_anti) * torch.sigmoid(phi.abs()) if disarm else 1 - 2 * u
    gradient = (0.5 * (costs[:PAIRS] - costs[PAIRS:]).unsqueeze(-1) * weight).mean(0)
    return costs.mean(0) + (gradient * (logits - phi)).sum(-1)


def hand_relaxed_control(
    logits: Tensor,
    f: Callable[[Tensor], Tensor],
    control: Callable[[Tensor], Tensor],
    params: list[Tensor],
) -> Tensor:
    """REBAR / RELAX (Grathwohl et al. 2018, eq. 5; conditional sample of Tucker et al. 2017) with
    ``control`` a function of the perturbed logits, evaluated once on ``[z; z~]`` stacked.

    ``g = sum_s [(f(b_s) - c(z~_s)) (b_s - theta) + grad c(z_s) - grad c(z~_s)] / S`` with
    ``z = phi + log u - log(1 - u)``, ``b = 1[z > 0]``, ``z~ = s (softplus(s phi + log v) -
    log(1 - v))``, ``s = 2b - 1``. The control's parameters ``params`` get
    ``grad sum_d g_d^2`` in ``.grad`` (the variance proxy, Grathwohl et al. 2018, Alg. 1); the
    returned surrogate (mean cost, gradient ``g``) passes ``g`` on to the logits.
    """
    u = open_uniform((NUM_SAMPLES, *logits.shape), logits)
    v = open_uniform((NUM_SAMPLES, *logits.shape), logits)
    z = logits + torch.log(u) - torch.log1p(-u)
    b = (z.detach() > 0).to(logits.dtype)
    costs = f(b)
    sign = 2 * b - 1
    z_tilde = sign * (F.softplus(sign * logits + torch.log(v)) - torch.log1p(-v))
    c_z, c_tilde = control(torch.cat([z, z_tilde])).split(NUM_SAMPLES)
    (pathwise,) = torch.autograd.grad((c_z - c_tilde).sum(), logits, create_graph=True)
    score = b - torch.sigmoid(logits.detach())
    gradient = (((costs - c_tilde).unsqueeze(-1) * score).sum(0) + pathwise) / NUM_SAMPLES
    variance_grads = torch.autograd.grad(gradient.pow(2).sum(), params)
    for param, grad in zip(params, variance_grads, strict=True):
        param.grad = grad
    return costs.mean(0) + (gradient.detach() * (logits - logits.detach())).sum(-1)


class Control(nn.Module):
    """RELAX's control: an MLP ``DIM -> CONTROL_HIDDEN -> 1`` on relaxed samples ``(S, DIM)``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(DIM, CONTROL_HIDDEN), nn.Tanh(), nn.Linear(CONTROL_HIDDEN, 1)
        )

    def forward(self, relaxed: Tensor) -> Tensor:
        return self.net(relaxed).squeeze(-1)


def hand_measure_valued(loc: Tensor, scale: Tensor, f: Callable[[Tensor], Tensor]) -> Tensor:
    """Coupled measure-valued gradients of ``E[f(z)]``, ``z ~ N(loc, scale)``, ``D`` dimensions,
    ``MEASURE_VALUED_SAMPLES`` samples; ``f`` called once on the ``(1 + 3D) S`` points.

    Noise: Weibull ``W = sqrt(-2 log u)`` (shared by the mean's two parts), double-sided Maxwell
    ``M`` (a chi_3 radius with the sign of its first normal) and ``eps = M U``. Points: the base
    ``mu + sigma eps`` and, per coordinate ``d``, the base with coordinate ``d`` set to
    ``mu_d + sigma_d W_d``, ``mu_d - sigma_d W_d`` or ``mu_d + sigma_d M_d``. Gradients:
    ``(f+ - f-) / (sigma sqrt(2 pi))`` for the mean, ``(f_M - f_base) / sigma`` for the scale.
    """
    samples, dim = MEASURE_VALUED_SAMPLES, loc.shape[-1]
    mu, sigma = loc.detach(), scale.detach()
    weibull = (-2.0 * open_uniform((samples, dim), mu).log()).sqrt()
    normals = torch.randn(3, samples, dim, dtype=mu.dtype)
    radius = normals.square().sum(0).sqrt()
    maxwell = torch.where(normals[0] < 0, -radius, radius)
    base = mu + sigma * maxwell * open_uniform((samples, dim), mu)
    values = torch.stack([mu + sigma * weibull, mu - sigma * weibull, mu + sigma * maxwell])
    points = base.expand(1 + 3 * dim, samples, dim).clone()
    coordinate = torch.arange(dim)
    points[1:].view(3, dim, samples, dim)[:, coordinate, :, coordinate] = values.permute(2, 0, 1)
    costs = f(points.view(-1, dim)).view(1 + 3 * dim, samples)
    plus, minus, plus_scale = costs[1:].view(3, dim, samples)
    grad_loc = (plus - minus).mean(-1) / (_SQRT_2PI * sigma)
    grad_scale = (plus_scale - costs[0]).mean(-1) / sigma
    attached = grad_loc * (loc - mu) + grad_scale * (scale - sigma)
    return costs[0].mean(0) + attached.sum(-1)


def hand_straight_through(logits: Tensor, f: Callable[[Tensor], Tensor], *, gumbel: bool) -> Tensor:
    """Straight-through: ``f`` at exact Bernoulli samples ``b`` with the gradient of a soft
    stand-in, ``z = b + soft - stop_gradient(soft)``. ``gumbel=False``: ``b ~ Bernoulli(theta)``,
    ``soft = theta = sigmoid(logits)`` (Bengio et al. 2013); ``gumbel=True`` (straight-through
    Gumbel): ``b = 1[logits + L > 0]``, ``soft = sigmoid((logits + L) / tau)``, logistic ``L``."""
    if gumbel:
        u = open_uniform((NUM_SAMPLES, *logits.shape), logits)
        perturbed = logits + torch.log(u) - torch.log1p(-u)
        soft = torch.sigmoid(perturbed / TEMPERATURE)
        hard = (perturbed > 0).to(logits.dtype)
    else:
        soft = torch.sigmoid(logits).expand(NUM_SAMPLES, *logits.shape)
        hard = torch.bernoulli(soft.detach())
    return f(hard + (soft - soft.detach())).mean(0)


def hand_reinmax(logits: Tensor, f: Callable[[Tensor], Tensor]) -> Tensor:
    """ReinMax (Liu et al. 2023, temperature 1) for Bernoulli logits as two-class variables
    ``log pi = (logsigmoid(-logits), logsigmoid(logits))``: one-hot samples ``D`` (drawn with
    ``torch.multinomial``, as samplegrad draws categorical indices) and the stand-in
    ``D + 2 (s_1 - stop(s_1)) - (pi - stop(pi)) / 2``, ``s_1 = softmax(log pi - stop(log pi) +
    log pi_1)``, ``pi_1 = (pi + D) / 2``; ``f`` gets class 1."""
    log_pi = torch.stack([F.logsigmoid(-logits), F.logsigmoid(logits)], -1)
    fixed = log_pi.detach()
    pi = fixed.exp()
    indices = torch.multinomial(pi.reshape(-1, 2), NUM_SAMPLES, True).T.reshape(-1, *logits.shape)
    one_hot = F.one_hot(indices, 2).to(logits.dtype)
    pi_1 = 0.5 * (pi + one_hot)
    second = torch.softmax(log_pi - fixed + pi_1.log(), -1)
    first = log_pi.exp()
    soft = one_hot + 2.0 * (second - second.detach()) - 0.5 * (first - first.detach())
    return f(soft[..., 1]).mean(0)


def hand_stl(dist: Distribution, f: Callable[[Tensor], Tensor]) -> Tensor:
    """Sticking the landing (Roeder et al. 2017) for ``Independent(Normal)``: ``mean_s f(z_s)``
    minus the zero-valued ``log q(z) - log q_{stop(loc, scale)}(z)`` at the samples."""
    z = dist.rsample((NUM_SAMPLES,))
    base = dist.base_dist
    fixed = Independent(Normal(base.loc.detach(), base.scale.detach()), 1)
    return (f(z) - (dist.log_prob(z) - fixed.log_prob(z))).mean(0)


class HandMovingAverage:
    """REINFORCE with the baseline ``b_t = average_{t-1} / (1 - d^{t-1})``, the bias-corrected
    exponential moving average (decay ``d = 0.9``) of the earlier calls' mean costs; 0 at first."""

    def __init__(self) -> None:
        self.average = torch.zeros(())
        self.steps = 0

    def __call__(self, dist: Distribution, f: Callable[[Tensor], Tensor]) -> Tensor:
        z = dist.sample((NUM_SAMPLES,))
        costs = f(z)
        log_prob = dist.log_prob(z)
        baseline = self.average / (1 - BASELINE_DECAY**self.steps) if self.steps else 0.0
        with torch.no_grad():
            self.average.mul_(BASELINE_DECAY).add_((1 - BASELINE_DECAY) * costs.mean())
        self.steps += 1
        return (costs + (costs - baseline).detach() * (log_prob - log_prob.detach())).mean(0)


# --------------------------------------------------------------------------------------------
# Contenders


def bernoulli_contenders() -> list[Contender]:
    """Score function (leave-one-out) and Gumbel-Softmax on the 100-logit Bernoulli toy."""
    problem = "bernoulli"
    logits = (0.1 * torch.randn(DIM)).requires_grad_()
    score = sg.ScoreFunction(baseline="loo")
    gumbel = sg.GumbelSoftmax(temperature=TEMPERATURE)
    gumbel_layer = sg.nn.GumbelSoftmax(TEMPERATURE, kind="bernoulli", num_samples=NUM_SAMPLES)

    def sg_score() -> None:
        zero_grads(logits)
        sg.expectation(
            bernoulli_cost, bernoulli_dist(logits), estimator=score, num_samples=NUM_SAMPLES
        ).backward()

    def hand_score() -> None:
        zero_grads(logits)
        hand_score_loo(bernoulli_dist(logits), bernoulli_cost).backward()

    def sg_gumbel() -> None:
        zero_grads(logits)
        sg.expectation(
            bernoulli_cost, bernoulli_dist(logits), estimator=gumbel, num_samples=NUM_SAMPLES
        ).backward()

    def sg_gumbel_layer() -> None:
        zero_grads(logits)
        bernoulli_cost(gumbel_layer(logits)).mean(0).backward()

    def hand_gumbel() -> None:
        zero_grads(logits)
        bernoulli_cost(hand_binary_concrete(logits)).mean(0).backward()

    def torch_gumbel() -> None:
        zero_grads(logits)
        bernoulli_cost(torch_gumbel_softmax(logits)).mean(0).backward()

    def hand_gumbel_from_dist() -> None:
        zero_grads(logits)
        relaxed = hand_binary_concrete(bernoulli_dist(logits).base_dist.logits)
        bernoulli_cost(relaxed).mean(0).backward()

    rows = [
        Contender(problem, HAND, "score-loo", hand_score),
        Contender(problem, "samplegrad", "score-loo", sg_score),
        Contender(problem, HAND, "gumbel", hand_gumbel),
        Contender(
            problem,
            "hand+dist",
            "gumbel",
            hand_gumbel_from_dist,
            note="hand, but the logits taken from Independent(Bernoulli(logits)), as samplegrad",
        ),
        Contender(problem, "samplegrad", "gumbel", sg_gumbel),
        Contender(
            problem,
            "samplegrad sg.nn",
            "gumbel",
            sg_gumbel_layer,
            note="the layer sg.nn.GumbelSoftmax on the logits tensor, no distribution",
        ),
        Contender(problem, "torch.gumbel_softmax", "gumbel", torch_gumbel),
    ]
    for name, estimator, disarm in (("arm", sg.ARM(), False), ("disarm", sg.DisARM(), True)):
        rows += with_hand_and_dist(
            problem,
            name,
            samplegrad=expectation_step(logits, estimator),
            hand=hand_step(logits, partial(hand_antithetic, f=bernoulli_cost, disarm=disarm)),
            note="32 antithetic pairs: 64 evaluations of f",
        )
    for name, estimator, surrogate in (
        ("straight-through", sg.StraightThrough(), partial(hand_straight_through, gumbel=False)),
        (
            "gumbel-hard",
            sg.GumbelSoftmax(TEMPERATURE, hard=True),
            partial(hand_straight_through, gumbel=True),
        ),
        ("reinmax", sg.ReinMax(), hand_reinmax),
    ):
        rows += with_hand_and_dist(
            problem,
            name,
            samplegrad=expectation_step(logits, estimator),
            hand=hand_step(logits, partial(surrogate, f=bernoulli_cost)),
            note=HAND_NOTES[name],
        )
    return rows + control_contenders(logits)


HAND_NOTES = {
    "straight-through": "f at b ~ Bernoulli(sigmoid(logits)), gradient of sigmoid(logits)",
    "gumbel-hard": "f at 1[logits + L > 0], gradient of sigmoid((logits + L) / 0.5)",
    "reinmax": "temperature 1; Bernoulli as two classes (logsigmoid(-logits), logsigmoid(logits))",
    "stl": "mean f(rsample) - (log q(z) - log q_detached(z)), q_detached built from detached "
    "loc and scale",
    "score-ma": "REINFORCE, baseline: bias-corrected moving average of past mean costs, decay 0.9",
}
"""What each hand-written version of the newer estimators computes (the rows' note)."""


def expectation_step(logits: Tensor, estimator: sg.Estimator) -> Callable[[], None]:
    """``sg.expectation`` with ``estimator`` on the bernoulli problem, backward included; the
    estimator's own parameters (REBAR, RELAX) are reset with the logits."""
    params = list(estimator.parameters())

    def step() -> None:
        zero_grads(logits, *params)
        sg.expectation(
            bernoulli_cost, bernoulli_dist(logits), estimator=estimator, num_samples=NUM_SAMPLES
        ).backward()

    return step


def hand_step(
    logits: Tensor, surrogate: Callable[[Tensor], Tensor], params: Iterable[Tensor] = ()
) -> tuple[Callable[[], None], Callable[[], None]]:
    """The hand-written estimator ``surrogate(logits)`` with backward: on the logits tensor, and
    (second) on the logits of ``Independent(Bernoulli(logits))``, as samplegrad is fed."""
    params = list(params)

    def on_logits() -> None:
        zero_grads(logits, *params)
        surrogate(logits).backward()

    def from_dist() -> None:
        zero_grads(logits, *params)
        surrogate(bernoulli_dist(logits).base_dist.logits).backward()

    return on_logits, from_dist


def with_hand_and_dist(
    problem: str,
    estimator: str,
    *,
    samplegrad: Callable[[], None],
    hand: tuple[Callable[[], None], Callable[[], None]],
    note: str = "",
) -> list[Contender]:
    """The rows ``hand``, ``hand+dist`` and ``samplegrad`` of one bernoulli estimator."""
    on_logits, from_dist = hand
    return [
        Contender(problem, HAND, estimator, on_logits, note=note),
        Contender(
            problem,
            "hand+dist",
            estimator,
            from_dist,
            note="hand, the logits taken from Independent(Bernoulli(logits))",
        ),
        Contender(problem, "samplegrad", estimator, samplegrad),
    ]


def control_contenders(logits: Tensor) -> list[Contender]:
    """REBAR and RELAX on the bernoulli problem.

    REBAR: control ``eta f(sigmoid(z / lambda))`` with learnable ``lambda = 0.5`` and ``eta = 1``;
    RELAX: control ``Control()`` (an MLP 100 -> 32 -> 1) on ``sigmoid(z)``. 64 samples; each
    estimate also computes the gradient of the variance proxy for the control's parameters.
    """
    problem = "bernoulli"
    rows: list[Contender] = []

    rebar = sg.REBAR(temperature=REBAR_TEMPERATURE, eta=1.0)
    log_temperature = torch.tensor(math.log(REBAR_TEMPERATURE), requires_grad=True)
    eta = torch.tensor(1.0, requires_grad=True)

    def rebar_control(z: Tensor) -> Tensor:
        return eta * bernoulli_cost(torch.sigmoid(z / log_temperature.exp()))

    rows += with_hand_and_dist(
        problem,
        "rebar",
        samplegrad=expectation_step(logits, rebar),
        hand=hand_step(
            logits,
            lambda lg: hand_relaxed_control(
                lg, bernoulli_cost, rebar_control, [log_temperature, eta]
            ),
            [log_temperature, eta],
        ),
        note="64 samples: f at b, sigmoid(z / lambda), sigmoid(z~ / lambda)",
    )

    control = Control()
    hand_control = copy.deepcopy(control)
    hand_params = list(hand_control.parameters())

    def relax_control(z: Tensor) -> Tensor:
        return hand_control(torch.sigmoid(z))

    rows += with_hand_and_dist(
        problem,
        "relax",
        samplegrad=expectation_step(logits, sg.RELAX(control)),
        hand=hand_step(
            logits,
            lambda lg: hand_relaxed_control(lg, bernoulli_cost, relax_control, hand_params),
            hand_params,
        ),
        note="64 samples; control: MLP 100-32-1 (tanh) on sigmoid(z)",
    )
    return rows


def gaussian_contenders() -> list[Contender]:
    """Pathwise, score function (leave-one-out, moving average), measure-valued and STL, each
    against its hand-written version, on ``E[sum z^2]`` in 100 dimensions."""
    problem = "gaussian"
    loc = torch.randn(DIM).requires_grad_()
    raw_scale = torch.zeros(DIM).requires_grad_()
    pathwise = sg.Pathwise()
    score = sg.ScoreFunction(baseline="loo")
    measure_valued = sg.MeasureValued(coupling=True)
    stl = sg.StickingTheLanding()
    score_ma = sg.ScoreFunction(baseline=sg.MovingAverage(BASELINE_DECAY))
    hand_ma = HandMovingAverage()

    def sg_step(estimator: sg.Estimator, num_samples: int = NUM_SAMPLES) -> Callable[[], None]:
        def step() -> None:
            zero_grads(loc, raw_scale)
            dist = gaussian_dist(loc, raw_scale)
            sg.expectation(
                gaussian_cost, dist, estimator=estimator, num_samples=num_samples
            ).backward()

        return step

    def hand_on_dist(surrogate: Callable[..., Tensor]) -> Callable[[], None]:
        def step() -> None:
            zero_grads(loc, raw_scale)
            surrogate(gaussian_dist(loc, raw_scale), gaussian_cost).backward()

        return step

    def hand_mv() -> None:
        zero_grads(loc, raw_scale)
        hand_measure_valued(loc, F.softplus(raw_scale), gaussian_cost).backward()

    mv_note = (
        f"{MEASURE_VALUED_SAMPLES} samples, not {NUM_SAMPLES}: "
        f"{(1 + 3 * DIM) * MEASURE_VALUED_SAMPLES} evaluations of f"
    )
    return [
        Contender(problem, HAND, "pathwise", hand_on_dist(hand_pathwise)),
        Contender(problem, "samplegrad", "pathwise", sg_step(pathwise)),
        Contender(problem, HAND, "score-loo", hand_on_dist(hand_score_loo)),
        Contender(problem, "samplegrad", "score-loo", sg_step(score)),
        Contender(problem, HAND, "measure-valued", hand_mv, note=mv_note),
        Contender(
            problem, "samplegrad", "measure-valued", sg_step(measure_valued, MEASURE_VALUED_SAMPLES)
        ),
        Contender(problem, HAND, "stl", hand_on_dist(hand_stl), note=HAND_NOTES["stl"]),
        Contender(problem, "samplegrad", "stl", sg_step(stl)),
        Contender(problem, HAND, "score-ma", hand_on_dist(hand_ma), note=HAND_NOTES["score-ma"]),
        Contender(problem, "samplegrad", "score-ma", sg_step(score_ma)),
    ]


def pyro_contenders() -> tuple[list[Contender], str]:
    """Pyro's ``Trace_ELBO`` (pathwise) and ``TraceGraph_ELBO`` (score function), if installed.

    Both express ``E_q[f(z)]`` as a negative ELBO whose other terms carry no gradient:

    * gaussian: the model has a flat prior (``ImproperUniform``, log density 0) and
      ``pyro.factor("cost", -f(z))``; the guide's site is ``mask(False)``, so ``log q`` drops
      out and ``-ELBO = E_q[f(z)]`` with the reparameterized gradient.
    * bernoulli: the model's prior is the guide's distribution with *detached* logits, so
      ``log p(b) - log q(b) = 0`` in value and the direct term ``grad log p`` is 0; the score
      term is ``grad log q(b) * (f(b) - baseline)`` with the decaying-average baseline.

    ``TraceGraph_ELBO`` has no ``differentiable_loss``; ``loss_and_grads`` (surrogate plus
    ``backward``, and one ``.item()`` for the returned loss) is its one-estimate call.
    """
    try:
        import pyro
        import pyro.distributions as pdist
        from pyro.distributions import constraints
        from pyro.infer import Trace_ELBO, TraceGraph_ELBO
    except ImportError:
        return [], "pyro-ppl is not installed: Pyro rows skipped (pip install -e '.[bench]')"

    pyro.clear_param_store()
    logits = (0.1 * torch.randn(DIM)).requires_grad_()
    loc = torch.randn(DIM).requires_grad_()
    raw_scale = torch.zeros(DIM).requires_grad_()

    def gaussian_model() -> None:
        z = pyro.sample("z", pdist.ImproperUniform(constraints.real, (), (DIM,)))
        pyro.factor("cost", -gaussian_cost(z))

    def gaussian_guide() -> None:
        q = pdist.Normal(loc, F.softplus(raw_scale)).to_event(1).mask(False)
        pyro.sample("z", q)

    def bernoulli_model() -> None:
        b = pyro.sample("b", pdist.Bernoulli(logits=logits.detach()).to_event(1))
        pyro.factor("cost", -bernoulli_cost(b))

    baseline = {"use_decaying_avg_baseline": True, "baseline_beta": BASELINE_DECAY}

    def bernoulli_guide() -> None:
        q = pdist.Bernoulli(logits=logits).to_event(1)
        pyro.sample("b", q, infer={"baseline": baseline})

    particles = {"num_particles": NUM_SAMPLES, "vectorize_particles": True, "max_plate_nesting": 0}
    trace_elbo = Trace_ELBO(**particles)
    tracegraph_elbo = TraceGraph_ELBO(**particles)

    def pyro_pathwise() -> None:
        zero_grads(loc, raw_scale)
        trace_elbo.differentiable_loss(gaussian_model, gaussian_guide).backward()

    def pyro_score() -> None:
        zero_grads(logits)
        tracegraph_elbo.loss_and_grads(bernoulli_model, bernoulli_guide)

    version = f"pyro-ppl {pyro.__version__}"
    return [
        Contender("gaussian", "pyro", "pathwise", pyro_pathwise, note="Trace_ELBO"),
        Contender(
            "bernoulli",
            "pyro",
            "score-avg",
            pyro_score,
            reference="score-loo",
            note="TraceGraph_ELBO, decaying-average baseline; ratio against hand score-loo",
        ),
    ], version


class TorchPatches:
    """The attributes of ``torch`` that Storchastic replaces when it is imported.

    ``import storch`` monkey-patches PyTorch for every later caller: ``torch.is_tensor`` and the
    methods ``Tensor.to``, ``Tensor.le`` and ``Tensor.gt`` are wrapped in its
    ``storch.deterministic``, and argument validation is turned off. So that the other rows run
    on unpatched PyTorch, the import is followed by :meth:`restore`, and every Storchastic step
    runs between :meth:`apply` and :meth:`restore` (a few attribute assignments, charged to the
    Storchastic rows); validation is set per row by ``run``.
    """

    TARGETS = (
        (torch, "is_tensor"),
        (torch.Tensor, "to"),
        (torch.Tensor, "le"),
        (torch.Tensor, "gt"),
    )

    def __init__(self) -> None:
        self.original = [vars(owner).get(name) for owner, name in self.TARGETS]
        self.patched: list[object] = []

    def record(self) -> None:
        """Remember the attributes as Storchastic left them, then restore PyTorch's."""
        self.patched = [getattr(owner, name) for owner, name in self.TARGETS]
        self.restore()

    def apply(self) -> None:
        for (owner, name), value in zip(self.TARGETS, self.patched, strict=True):
            setattr(owner, name, value)

    def restore(self) -> None:
        for (owner, name), value in zip(self.TARGETS, self.original, strict=True):
            if value is None:  # inherited (Tensor's methods come from torch._C.TensorBase)
                if name in vars(owner):
                    delattr(owner, name)
            else:
                setattr(owner, name, value)


_STORCH: dict[str, object] = {}


def import_storch() -> tuple[object, TorchPatches]:
    """``storch`` (PyPI ``storchastic``) and its patches, imported once; raises ImportError."""
    if "module" not in _STORCH:
        patches = TorchPatches()
        validate = Distribution._validate_args
        try:
            import storch
        finally:
            Distribution.set_default_validate_args(validate)
        patches.record()
        # Storchastic's RELAX and REBAR call backward(create_graph=True), which warns each time.
        warnings.filterwarnings(
            "ignore", message=r"Using backward\(\) with create_graph=True", category=UserWarning
        )
        _STORCH.update(module=storch, patches=patches)
    return _STORCH["module"], _STORCH["patches"]  # type: ignore[return-value]


def storch_contenders() -> tuple[list[Contender], str]:
    """Storchastic's score function, ARM, DisARM, REBAR and RELAX on the bernoulli problem, if
    ``storchastic`` is installed.

    One estimate: ``method(distribution)`` samples (the method's plate), ``storch.add_cost``
    on ``f`` of the samples, ``storch.backward()``. Its ARM, DisARM, REBAR and RELAX accept
    only a plain ``Bernoulli(logits)`` (the same 100 independent variables, ``f`` sums over the
    last dimension); its score function takes ``Independent(Bernoulli(logits), 1)``, as the hand
    row. Sample counts as the hand rows: ``n_samples=32`` for ARM / DisARM (each draws the pair),
    64 otherwise (REBAR's plate holds the 3 x 64 points ``b``, ``z``, ``z~``). Storchastic passes
    its ``storch.Tensor`` to ``log_prob``, which argument validation rejects, so the
    validation-on rows are expected to fail.
    """
    try:
        storch, patches = import_storch()
        from storch.method import ARM, REBAR, RELAX, DisARM, ScoreFunction
    except ImportError:
        return [], (
            "storchastic is not installed: Storchastic rows skipped "
            "(pip install -e '.[bench]', see benchmarks/README.md)"
        )
    from importlib.metadata import version

    problem = "bernoulli"
    logits = (0.1 * torch.randn(DIM)).requires_grad_()

    def step(
        method: Callable[[Distribution], Tensor],
        independent: bool = False,
        cast: bool = False,
    ) -> Callable[[], None]:
        def run_once() -> None:
            patches.apply()
            try:
                zero_grads(logits)
                dist = bernoulli_dist(logits) if independent else Bernoulli(logits=logits)
                sample = method(dist)
                storch.add_cost(bernoulli_cost(sample.float() if cast else sample), "cost")
                storch.backward()
            except Exception:
                storch.reset()
                raise
            finally:
                patches.restore()

        return run_once

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its constructors warn on PyTorch 2's deprecations
        methods = {
            "score": ScoreFunction("b", n_samples=NUM_SAMPLES, baseline_factory="batch_average"),
            "arm": ARM("b", n_samples=PAIRS),
            "disarm": DisARM("b", n_samples=PAIRS),
            "rebar": REBAR("b", n_samples=NUM_SAMPLES),
            "relax": RELAX("b", n_samples=NUM_SAMPLES, c_phi=Control()),
        }

    def row(estimator: str, run_once: Callable[[], None], note: str, **kwargs: str) -> Contender:
        return Contender(
            problem, "storchastic", estimator, run_once, note=note, may_fail=True, **kwargs
        )

    return [
        row(
            "score-loo",
            step(methods["score"], independent=True),
            'ScoreFunction, baseline_factory="batch_average" (leave-one-out)',
        ),
        row("arm", step(methods["arm"]), "ARM, n_samples=32 (pairs); Bernoulli(logits)"),
        row(
            "disarm",
            step(methods["disarm"], cast=True),
            "DisARM, n_samples=32 (pairs); Bernoulli(logits); its samples are bool: f(b.float())",
        ),
        row("rebar", step(methods["rebar"]), "REBAR, n_samples=64; Bernoulli(logits)"),
        row(
            "relax",
            step(methods["relax"]),
            "RELAX, n_samples=64, c_phi=MLP 100-32-1 (tanh); Bernoulli(logits)",
        ),
    ], f"storchastic {version('storchastic')}"


# --------------------------------------------------------------------------------------------
# Timing


def time_block(step: Callable[[], None], iterations: int) -> float:
    """Microseconds per call of ``step``, averaged over one block of ``iterations`` calls."""
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    return (time.perf_counter() - start) / iterations * 1e6


def run(contenders: list[Contender], settings: Settings) -> None:
    """Warm every contender up, then time interleaved blocks into ``block_us``."""
    for contender in contenders:
        Distribution.set_default_validate_args(contender.validation)
        try:
            for _ in range(settings.warmup):
                contender.step()
        except Exception as error:
            if not contender.may_fail:
                raise
            contender.error = f"{type(error).__name__}: {error}".splitlines()[0]
    timed = [c for c in contenders if not c.error]
    for block in range(settings.blocks):
        shift = block % len(timed)
        for contender in timed[shift:] + timed[:shift]:
            Distribution.set_default_validate_args(contender.validation)
            contender.block_us.append(time_block(contender.step, settings.iterations))
    Distribution.set_default_validate_args(True)


def results(contenders: list[Contender], settings: Settings) -> list[dict[str, object]]:
    """One row per contender; ratios against the hand-written row of the same estimator."""
    median = {c.key: statistics.median(c.block_us) for c in contenders if c.block_us}
    best = {c.key: min(c.block_us) for c in contenders if c.block_us}
    rows: list[dict[str, object]] = []
    for c in contenders:
        key, hand_key = c.key, c.reference_key()
        if not c.block_us:
            rows.append(
                {
                    "validation": "on" if c.validation else "off",
                    "problem": c.problem,
                    "contender": c.contender,
                    "estimator": c.estimator,
                    "us_per_estimate": None,
                    "ratio_to_hand": None,
                    "best_us_per_estimate": None,
                    "best_ratio_to_hand": None,
                    "block_us_max": None,
                    "iterations": 0,
                    "note": f"failed: {c.error}; {c.note}",
                }
            )
            continue
        hand, hand_best = median.get(hand_key), best.get(hand_key)
        rows.append(
            {
                "validation": "on" if c.validation else "off",
                "problem": c.problem,
                "contender": c.contender,
                "estimator": c.estimator,
                "us_per_estimate": round(median[key], 2),
                "ratio_to_hand": round(median[key] / hand, 3) if hand else None,
                "best_us_per_estimate": round(best[key], 2),
                "best_ratio_to_hand": round(best[key] / hand_best, 3) if hand_best else None,
                "block_us_max": round(max(c.block_us), 2),
                "iterations": settings.blocks * settings.iterations,
                "note": c.note,
            }
        )
    return rows


def _ratio(value: object) -> str:
    return f"{value:.2f}x" if isinstance(value, float) else "—"


def _us(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, float) else "—"


def markdown(
    report: dict[str, object],
    machine: dict[str, object],
    rows: list[dict[str, object]],
    notes: list[str],
) -> str:
    """The report as a markdown table."""
    lines = [
        "# samplegrad overhead: one gradient estimate (forward + backward)",
        "",
        f"Command: `{report['command']}`",
        "",
        f"samplegrad {machine['samplegrad']}, torch {machine['torch']}, "
        f"Python {machine['python']}, {machine['cpu']}, "
        f"{machine['threads']} thread, {machine['platform']}; {report['date']}.",
        f"{report['settings']}; 64 samples (measure-valued: {MEASURE_VALUED_SAMPLES}), "
        "100 dimensions. "
        "µs / estimate: wall time, median over blocks; best: the fastest block.",
        "",
        "| validation | problem | estimator | contender | µs / estimate | ratio to hand "
        "| best µs | best ratio | note |",
        "|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['validation']} | {r['problem']} | {r['estimator']} | {r['contender']} | "
            f"{_us(r['us_per_estimate'])} | {_ratio(r['ratio_to_hand'])} | "
            f"{_us(r['best_us_per_estimate'])} | {_ratio(r['best_ratio_to_hand'])} | "
            f"{str(r['note']).replace('|', '/')} |"
        )
    for note in notes:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("benchmarks/results"),
        help="folder for overhead.json and overhead.md",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few iterations only: a smoke test, not a measurement",
    )
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    contenders: list[Contender] = []
    for validation in (True, False):
        pyro_rows, pyro_note = pyro_contenders()
        storch_rows, storch_note = storch_contenders()
        rows = bernoulli_contenders() + gaussian_contenders() + pyro_rows + storch_rows
        for contender in rows:
            contender.validation = validation
            contenders.append(contender)
    # Group each hand-written reference with the rows compared against it, reference first.
    contenders.sort(
        key=lambda c: (
            not c.validation,
            c.problem,
            c.reference or c.estimator,
            c.contender != HAND,
        )
    )

    run(contenders, settings)
    rows = results(contenders, settings)

    command = "python benchmarks/overhead.py" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:])
    )
    machine: dict[str, object] = {
        "torch": torch.__version__,
        "samplegrad": f"{sg.__version__} ({source_revision()})",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
    }
    notes = [
        f"Pyro: {pyro_note}." if pyro_rows else f"Note: {pyro_note}.",
        f"Storchastic: {storch_note}; a row that raised reports the exception instead of a time."
        if storch_rows
        else f"Note: {storch_note}.",
        "Ratios compare with the hand-written PyTorch version of the same estimator on the "
        "same problem (Pyro's score-avg: against hand score-loo). The hand-written Gumbel, "
        "ARM, DisARM, REBAR and RELAX work on the logits tensor and the hand-written "
        "measure-valued on loc and softplus(raw_scale); samplegrad's rows also build the "
        "distribution, as do the hand+dist rows.",
        "ARM / DisARM: 64 evaluations of f = 32 antithetic pairs. Measure-valued (coupled): "
        f"{MEASURE_VALUED_SAMPLES} samples, each 1 + 3 x 100 evaluations of f. REBAR / RELAX: "
        "64 samples; each estimate also computes the gradient of the variance proxy for the "
        "control's parameters (Storchastic: in storch.backward).",
        "validation on: the libraries' defaults (torch.distributions checks its arguments, "
        "samplegrad its parameters for NaN/inf); off: Distribution.set_default_validate_args"
        "(False), which turns both off, the setting for speed.",
    ]
    report: dict[str, object] = {
        "command": command,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": (
            f"warm-up {settings.warmup}, {settings.blocks} blocks x "
            f"{settings.iterations} iterations per contender"
        ),
        "seed": SEED,
        "notes": notes,
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "overhead.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report, machine, rows, notes)
    (args.out / "overhead.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
