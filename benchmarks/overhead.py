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
  (the toy of DESIGN.md section 4, in 100 dimensions);
* ``gaussian``: ``E[sum_d z_d^2]`` for ``z ~ N(loc, softplus(raw_scale))`` in 100 dimensions,
  64 samples.

Contenders, on the problems where they apply:

* ``samplegrad``: ``sg.expectation(f, dist, estimator=<instance>, num_samples=64)`` with
  ``sg.Pathwise()``, ``sg.ScoreFunction(baseline="loo")`` and ``sg.GumbelSoftmax(0.5)``;
* ``samplegrad sg.nn``: the layer ``sg.nn.GumbelSoftmax(0.5, kind="bernoulli", num_samples=64)``
  on the logits tensor, the tensor API for a relaxation inside a network;
* ``hand``: the same estimator in plain PyTorch, the reference of every ratio;
* ``torch.gumbel_softmax``: ``torch.nn.functional.gumbel_softmax`` on two-class logits
  ``[0, logit]`` (a Bernoulli), class-1 component;
* ``pyro``: ``Trace_ELBO`` (pathwise) and ``TraceGraph_ELBO`` with a decaying-average baseline
  (score function), 64 vectorized particles, if ``pyro-ppl`` is installed
  (``pip install -e '.[bench]'``); otherwise those rows are skipped with a note.

The hand-written Gumbel reference works on the logits tensor directly, as a PyTorch user would;
samplegrad's API takes a distribution, so its gumbel row also pays for building
``Independent(Bernoulli(logits))``. The ``hand+dist`` row is the hand-written relaxation fed
from that distribution's logits, to tell that cost apart from samplegrad's own.

Why: samplegrad's surrogate should cost little more than the code it replaces; the key number
is ``ratio_to_hand`` (target: samplegrad within 1.10x). Every contender runs twice: with the
libraries' default settings (``torch.distributions`` argument validation on, and with it
samplegrad's NaN/inf check of the parameters), and with validation off
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
import datetime
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, Independent, Normal

import samplegrad as sg

SEED = 0
DIM = 100
NUM_SAMPLES = 64
TARGET = 0.499
TEMPERATURE = 0.5
BASELINE_DECAY = 0.9

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

    return [
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


def gaussian_contenders() -> list[Contender]:
    """Pathwise and score function (leave-one-out) on ``E[sum z^2]`` in 100 dimensions."""
    problem = "gaussian"
    loc = torch.randn(DIM).requires_grad_()
    raw_scale = torch.zeros(DIM).requires_grad_()
    pathwise = sg.Pathwise()
    score = sg.ScoreFunction(baseline="loo")

    def sg_pathwise() -> None:
        zero_grads(loc, raw_scale)
        dist = gaussian_dist(loc, raw_scale)
        sg.expectation(gaussian_cost, dist, estimator=pathwise, num_samples=NUM_SAMPLES).backward()

    def hand_path() -> None:
        zero_grads(loc, raw_scale)
        hand_pathwise(gaussian_dist(loc, raw_scale), gaussian_cost).backward()

    def sg_score() -> None:
        zero_grads(loc, raw_scale)
        dist = gaussian_dist(loc, raw_scale)
        sg.expectation(gaussian_cost, dist, estimator=score, num_samples=NUM_SAMPLES).backward()

    def hand_score() -> None:
        zero_grads(loc, raw_scale)
        hand_score_loo(gaussian_dist(loc, raw_scale), gaussian_cost).backward()

    return [
        Contender(problem, HAND, "pathwise", hand_path),
        Contender(problem, "samplegrad", "pathwise", sg_pathwise),
        Contender(problem, HAND, "score-loo", hand_score),
        Contender(problem, "samplegrad", "score-loo", sg_score),
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
        for _ in range(settings.warmup):
            contender.step()
    for block in range(settings.blocks):
        shift = block % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            Distribution.set_default_validate_args(contender.validation)
            contender.block_us.append(time_block(contender.step, settings.iterations))
    Distribution.set_default_validate_args(True)


def source_revision() -> str:
    """The git commit of the measured source, with ``-dirty`` if ``src/`` has local changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "status", "--porcelain", "src"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{commit}-dirty" if commit and changes else commit or "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def results(contenders: list[Contender], settings: Settings) -> list[dict[str, object]]:
    """One row per contender; ratios against the hand-written row of the same estimator."""
    median = {c.key: statistics.median(c.block_us) for c in contenders}
    best = {c.key: min(c.block_us) for c in contenders}
    rows: list[dict[str, object]] = []
    for c in contenders:
        key, hand_key = c.key, c.reference_key()
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
        f"{report['settings']}; 64 samples, 100 dimensions. "
        "µs / estimate: wall time, median over blocks; best: the fastest block.",
        "",
        "| validation | problem | estimator | contender | µs / estimate | ratio to hand "
        "| best µs | best ratio | note |",
        "|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['validation']} | {r['problem']} | {r['estimator']} | {r['contender']} | "
            f"{r['us_per_estimate']:.1f} | {_ratio(r['ratio_to_hand'])} | "
            f"{r['best_us_per_estimate']:.1f} | {_ratio(r['best_ratio_to_hand'])} | "
            f"{r['note']} |"
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
        for contender in bernoulli_contenders() + gaussian_contenders() + pyro_rows:
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
        "Ratios compare with the hand-written PyTorch version of the same estimator on the "
        "same problem (Pyro's score-avg: against hand score-loo). The hand-written Gumbel "
        "works on the logits tensor; samplegrad's gumbel row also builds "
        "Independent(Bernoulli(logits)), as does the hand+dist row.",
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
