"""The discrete-latent leaderboard (issue 13): every estimator on the DisARM paper's VAEs.

Reruns the comparison of Dong, Mnih & Tucker (2020, "DisARM: an antithetic gradient estimator
for binary latent variables", NeurIPS, Sec. 6; their code: google-research/disarm,
``binary/experiment_launcher_singlelayer.py`` and ``binary/networks.py``) at a budget that fits
a small CPU, with several seeds per estimator:

- **bernoulli-linear**, **bernoulli-nonlinear**: 200 Bernoulli latents, linear (784-200,
  200-784) or two hidden layers of 200 LeakyReLU units each way; dynamically binarized MNIST,
  the first 50 000 training images; Adam, learning rate 1e-4, batch 50; the encoder's input
  centred by the training images' mean, the decoder's input ``2 z - 1``, its output bias the
  logit of the mean clipped to [0.001, 0.999] (the code's ``--demean_input
  --initialize_with_bias``); estimators at 2 evaluations of the decoder per image where they
  allow it (score-loo: 2 samples, DisARM/ARM: 1 antithetic pair, the relaxations: 2 samples;
  REBAR: 1 sample = 3 evaluations, RELAX: 1 sample + its control at 2 relaxed points,
  IndeCateR: D K = 400 evaluations);
- **categorical**: 20 latents of 10 categories (encoder 784-512-256-200, decoder mirrored,
  ReLU; uniform prior), the same data, optimiser and batch; the categorical estimators.

Per model and estimator: the train ELBO (mean one-sample ELBO of the training batches over the
last 10 % of the steps) and the test 100-sample importance-weighted bound on a fixed subset of
the test images (``--test-images``, binarized once), mean +- standard error over seeds; the
per-element variance of the gradient w.r.t. the encoder logits at ``--checkpoints`` steps
(step 0 included), from ``--variance-copies`` estimates on a fixed batch of 50 training images,
averaged over images, latents and seeds; seconds per step (training steps only, all seeds
together, and per seed). Stateless estimators train their seeds as replicas in one batched
step; REBAR and RELAX (stateful) train seed after seed. Entries run in ``--workers``
processes of ``--threads`` threads each.

Writes ``leaderboard.{md,json}`` and ``leaderboard_{model}.png`` into ``--out``::

    python benchmarks/leaderboard.py [--steps N] [--seeds 3] [--models ...] [--estimators ...]
        [--data-dir DIR] [--out benchmarks/results] [--workers 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from _leaderboard import (
    ESTIMATORS,
    IWAE_K,
    MODELS,
    Job,
    evaluations,
    family,
    run,
)

from _machine import cpu_model, machine, source_revision

DEFAULT_STEPS = 800
"""The default budget (steps per entry); see the README for the measured cost."""

DEVIATIONS = (
    "Budget: the paper trains 10^6 steps; this run trains the steps stated above, so every "
    "number is early in training and the ranking may differ from the paper's.",
    "Prior: fixed Bernoulli(0.5) (uniform for the categorical VAE); the DisARM code learns a "
    "prior logit per latent with SGD at learning rate 1e-2 (a parameter outside nn.Linear "
    "cannot be replicated over seeds).",
    "One Adam (lr 1e-4, default betas) for encoder, decoder and the estimator's own "
    "parameters; the code has separate Adams for encoder and decoder (same rate) and trains "
    "RELAX's control with Adam(1e-4, beta1 = 0.999).",
    "RELAX's control is samplegrad's LatentControl (one tanh layer of 64 units on the relaxed "
    "latent, temperature 1), not the code's scaled relaxed ELBO plus a 137-unit LeakyReLU "
    "network on (x, z) with a learned temperature; REBAR uses samplegrad's REBAR (temperature "
    "0.5 and eta learned).",
    "Estimator gradients: samplegrad's KL-free surrogate (the lab's DiscreteVAE.loss) also "
    "passes the mean-zero pathwise derivative of log q(z|x) to the logits, z - sigmoid(l) per "
    "Bernoulli logit (variance sigmoid(l) sigmoid(-l) <= 1/4; one-hot z - softmax(l) for the "
    "categorical), in the gradient that trains and in the measured variance; the code uses "
    "the estimator's term alone. For the low-variance estimators (IndeCateR, Gumbel-Rao) "
    "this term is most of the measured variance at initialisation (IndeCateR: 0.25).",
    "The encoder's centring uses the mean grey level of the 50 000 training images; the code "
    "averages one pass of dynamically binarized batches (the same in expectation).",
    "Test bound: 100-sample importance-weighted bound on a fixed subset of the test images "
    "(see above), binarized once; the code evaluates all 10 000 with fresh binarizations.",
    "Gradient variance: the per-element variance of the logit gradient over independent "
    "estimates on a fixed batch, at checkpoints; the code tracks an exponential moving "
    "variance (decay 0.999) of the encoder-parameter gradients during training.",
    "Not in the paper: Gumbel-Softmax (temperature 1, 2 samples), straight-through, ReinMax "
    "(temperature 1), Gumbel-Rao (temperature 1, 10 draws), IndeCateR, and the categorical "
    "VAE (20 x 10, our choice, not the ReinMax paper's setting; plain inputs and PyTorch's "
    "default initialisation, so it starts far below the Bernoulli VAEs).",
)


def checkpoints(steps: int, count: int) -> tuple[int, ...]:
    """``count`` steps from 0 to ``steps``, evenly spaced (rounded)."""
    if count < 2:
        return (0,)
    return tuple(sorted({round(i * steps / (count - 1)) for i in range(count)}))


def mean_and_error(values: list[float]) -> tuple[float, float]:
    """The mean and its standard error (``nan`` for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


def seed_mean(rows: list[list[float]]) -> list[float]:
    return [sum(row) / len(row) for row in rows]


def _pm(values: list[float]) -> str:
    mean, error = mean_and_error(values)
    return f"{mean:.2f}" if math.isnan(error) else f"{mean:.2f} ± {error:.2f}"


def table(rows: list[dict[str, Any]]) -> list[str]:
    """The markdown table of one model's entries, best test bound first."""
    ranked = sorted(rows, key=lambda r: -mean_and_error(r["test_iwae"])[0])
    last = rows[0]["checkpoints"][-1]
    lines = [
        "| rank | estimator | f evals / image | seeds | train ELBO | test IWAE-100 | "
        f"grad var step 0 | grad var step {last} | s / step (all seeds) | s / step / seed |",
        "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for rank, r in enumerate(ranked, 1):
        variance = seed_mean(r["variance"])
        mode = "batched" if r["batched"] else "one after another"
        lines.append(
            f"| {rank} | {r['estimator']} | {r['evaluations']} | {len(r['seeds'])}, {mode} | "
            f"{_pm(r['train_elbo'])} | {_pm(r['test_iwae'])} | {variance[0]:.3g} | "
            f"{variance[-1]:.3g} | {r['seconds_per_step']:.4f} | "
            f"{r['seconds_per_step_per_seed']:.4f} |"
        )
    return lines


def plot(model: str, rows: list[dict[str, Any]], path: Path) -> None:
    """ELBO against steps (mean over seeds, min-max band over seeds) and gradient variance
    against steps (log axis)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 4.5), layout="constrained")
    elbo_axes, variance_axes = figure.subplots(1, 2)
    for r in rows:
        # Each point is one batch's ELBO: a running mean over 5 % of the points smooths it.
        window = max(1, len(r["curve_steps"]) // 20)
        curve = torch.tensor(r["curve"]).unfold(0, window, 1).mean(-1)  # (points, seeds)
        steps = r["curve_steps"][window - 1 :]
        (line,) = elbo_axes.plot(steps, curve.mean(1), label=r["estimator"], lw=1)
        elbo_axes.fill_between(
            steps, curve.min(1).values, curve.max(1).values, alpha=0.15,
            color=line.get_color(), lw=0,
        )  # fmt: skip
        variance_axes.semilogy(
            r["checkpoints"], seed_mean(r["variance"]), marker="o", color=line.get_color(),
            label=r["estimator"],
        )  # fmt: skip
    elbo_axes.set_xlabel("step")
    elbo_axes.set_ylabel("train ELBO (one sample per image, running mean of batches)")
    elbo_axes.set_title(f"{model}: ELBO (mean over seeds, min-max band)")
    variance_axes.set_xlabel("step")
    variance_axes.set_ylabel("variance of d loss / d logits, per element")
    variance_axes.set_title(f"{model}: gradient variance")
    variance_axes.legend(fontsize=7, ncol=2)
    figure.savefig(path, dpi=110)


def command_line(args: argparse.Namespace) -> str:
    parts = [
        "python benchmarks/leaderboard.py",
        f"--steps {args.steps}",
        f"--seeds {args.seeds}",
        f"--models {' '.join(args.models)}",
    ]
    if args.estimators:
        parts.append(f"--estimators {' '.join(args.estimators)}")
    parts += [
        f"--checkpoints {args.checkpoints}",
        f"--test-images {args.test_images}",
        f"--variance-copies {args.variance_copies}",
        f"--workers {args.workers}",
        f"--threads {args.threads}",
    ]
    return " ".join(parts)


def jobs(args: argparse.Namespace) -> list[Job]:
    """The entries, the most expensive first (so that the workers finish together)."""
    made = [
        Job(
            model=model,
            estimator=estimator,
            seeds=tuple(range(args.seeds)),
            steps=args.steps,
            checkpoints=checkpoints(args.steps, args.checkpoints),
            data_dir=args.data_dir,
            threads=args.threads,
            test_images=args.test_images,
            variance_copies=args.variance_copies,
        )
        for model in args.models
        for estimator in ESTIMATORS[family(model)]
        if not args.estimators or estimator in args.estimators
    ]
    if not made:
        raise SystemExit(f"no estimator of {args.estimators} applies to the models {args.models}")
    return sorted(made, key=lambda job: -evaluations(job.model, job.estimator))


def run_all(todo: list[Job], workers: int) -> list[dict[str, Any]]:
    if workers == 1:
        return [_announce(run(job)) for job in todo]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        return [_announce(result) for result in pool.map(run, todo)]


def _announce(result: dict[str, Any]) -> dict[str, Any]:
    print(
        f"{result['model']} {result['estimator']}: test IWAE {_pm(result['test_iwae'])}, "
        f"{result['seconds_per_step']:.4f} s/step, {result['wall_seconds']:.0f} s",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="training steps")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 per estimator")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--estimators", nargs="+", help="a subset of the estimators")
    parser.add_argument("--checkpoints", type=int, default=5, help="variance checkpoints")
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--variance-copies", type=int, default=20)
    parser.add_argument("--data-dir", help="the MNIST folder (default: $SAMPLEGRAD_DATA, ...)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.seeds < 1:
        parser.error("--steps and --seeds must be >= 1")
    started = time.perf_counter()
    results = run_all(jobs(args), args.workers)
    seconds = time.perf_counter() - started
    command = command_line(args)
    report = {
        "command": command,
        "steps": args.steps,
        "seeds": args.seeds,
        "test_images": args.test_images,
        "iwae_k": IWAE_K,
        "machine": machine(args.threads),
        "workers": args.workers,
        "torch": torch.__version__,
        "source": source_revision(),
        "seconds": seconds,
        "deviations": list(DEVIATIONS),
        "rows": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "leaderboard.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Discrete-latent leaderboard (DisARM protocol)",
        "",
        f"`{command}`: **{args.steps} steps** of batch 50 per entry (the paper: 10^6), "
        f"{args.seeds} seed(s); commit {report['source']}, {cpu_model()}, {args.workers} "
        f"process(es) x {args.threads} thread(s), torch {torch.__version__}, {seconds:.0f} s in "
        "all. Train ELBO: mean one-sample ELBO of the training batches over the last 10 % of "
        f"the steps; test IWAE-100: the {IWAE_K}-sample bound on the first {args.test_images} "
        "test images (binarized once); mean ± standard error over seeds, nats per image, "
        "ranked by the test bound. Gradient variance: per element of the encoder logits, "
        f"over {args.variance_copies} estimates on a fixed batch of 50 training images, mean "
        "over seeds. s / step: training steps only (no evaluation), all seeds together "
        "(batched replicas, or the seeds one after another for REBAR and RELAX, which are "
        "stateful), and per seed. "
        "f evals / image: decoder evaluations per image and step.",
        "",
    ]
    for model in args.models:
        rows = [r for r in results if r["model"] == model]
        if rows:
            lines += [f"## {model}", "", *table(rows), "", f"![{model}](leaderboard_{model}.png)"]
            lines.append("")
            plot(model, rows, args.out / f"leaderboard_{model}.png")
    lines += ["## Deviations from the paper's protocol", ""]
    lines += [f"- {deviation}" for deviation in DEVIATIONS]
    (args.out / "leaderboard.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
