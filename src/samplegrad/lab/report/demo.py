"""``samplegrad demo``: which gradient estimator? The question answered with measurements.

The seed's claims ("the reparameterization trick reduces variance", "the naive score function
has very high variance", "Gumbel-Softmax and straight-through are the way for discrete
variables") are measured, not asserted, and written up as one self-contained HTML page,
``OUT/index.html``, with the plots and tables, and a paragraph per finding whose numbers come
from this run:

1. **Gaussian** ``x ~ N(mu, sigma^2)``: pathwise vs score function vs score function with a
   leave-one-out baseline vs measure-valued, on the three costs of Mohamed et al. (2020, JMLR,
   Figs. 2-3) as their constant ``k`` is swept, against exact curves (closed forms and
   quadrature); and the variance against the number of samples ``K``.
2. **Bernoulli** ``b ~ Bernoulli(sigmoid(phi))``: REINFORCE vs leave-one-out vs ARM vs DisARM vs
   RELAX on the toy ``(b - 0.499)^2`` as ``phi`` is swept, with exact curves.
3. **Bias of the relaxations**: Gumbel-Softmax (soft and hard) and straight-through against the
   unbiased estimators on docs/design.md's three-dimensional Bernoulli problem, whose exact gradient
   is known.
4. **A real model**: the seed's Gaussian VAE (784-400-20) trained briefly on MNIST, its
   reconstructions and samples, and the estimators measured on the gradient of its encoder.

Without MNIST (no ``--data-dir``, no ``$SAMPLEGRAD_DATA``, no cache and no network) part 4 uses
scikit-learn's bundled 8 x 8 digits instead (docs/design.md, "Data") and says so on the page.

Every part writes its raw results beside the page (``compare.json``, ``compare.csv``, PNGs).
``smoke=True`` runs the same code with tiny sizes, for the test suite.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from samplegrad.lab.compare.runner import (
    Bernoulli3D,
    BernoulliToy,
    GaussianCos,
    GaussianExp,
    GaussianQuadratic,
    Problem,
    Result,
    VAEEncoder,
    compare,
    write_csv,
    write_json,
)
from samplegrad.lab.data import MNIST, MNISTNotFoundError, load_digits_fallback, load_mnist
from samplegrad.lab.models import GaussianVAE
from samplegrad.lab.plots.compare import (
    plot_snr,
    plot_variance_sweep,
    plot_variance_vs_samples,
    plot_work_normalized_variance,
)
from samplegrad.lab.plots.vae import plot_elbo_curves, plot_prior_samples, plot_reconstructions
from samplegrad.lab.report.html import Report

__all__ = ["Budget", "DemoConfig", "run_demo"]


@dataclasses.dataclass(frozen=True)
class Budget:
    """How much each part measures; :data:`FULL` for the report, :data:`SMOKE` for tests."""

    sweep_points: int
    repeats: int
    sample_counts: tuple[int, ...]
    vae_steps: int
    encoder_repeats: int
    encoder_images: int
    timing_calls: int


FULL = Budget(
    sweep_points=25,
    repeats=20_000,
    sample_counts=(2, 4, 8, 16),
    vae_steps=1_000,
    encoder_repeats=100,
    encoder_images=100,
    timing_calls=40,
)
SMOKE = Budget(
    sweep_points=3,
    repeats=500,
    sample_counts=(2, 4),
    vae_steps=5,
    encoder_repeats=3,
    encoder_images=8,
    timing_calls=2,
)


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Options of ``samplegrad demo``.

    Attributes:
        out: the report's folder (``index.html`` and one subfolder per part).
        data_dir: the MNIST folder; ``None`` searches as :func:`samplegrad.lab.data.find_mnist`.
        seed: seeds every measurement and the VAE.
        smoke: tiny sizes (seconds), the same code path.
        progress: show a progress bar.
    """

    out: str = "report"
    data_dir: str | None = None
    seed: int = 0
    smoke: bool = False
    progress: bool = True

    @property
    def budget(self) -> Budget:
        return SMOKE if self.smoke else FULL


GAUSSIAN_ESTIMATORS = ("pathwise", "score", "score-loo", "measure-valued")
BERNOULLI_ESTIMATORS = ("score", "score-loo", "arm", "disarm", "relax")
BIAS_ESTIMATORS = ("arm", "disarm", "enumerate", "gumbel", "gumbel-hard", "straight-through")
ENCODER_ESTIMATORS = ("pathwise", "score", "score-loo", "measure-valued")

GAUSSIAN_SWEEPS: tuple[tuple[Problem, float, float], ...] = (
    (GaussianQuadratic(mu=1.0, sigma=1.0, k=0.0), -3.0, 3.0),
    (GaussianExp(mu=1.0, sigma=1.0, k=1.0), 0.0, 3.0),
    (GaussianCos(mu=1.0, sigma=1.0, k=1.0), -3.0, 3.0),
)
"""The costs of Mohamed et al. (2020), Fig. 2, at ``mu = sigma = 1``, and the range of ``k``
(``exp(-k x^2)`` has infinite estimator variances below ``k = -1/4``)."""


class _Progress:
    """A progress bar over the demo's measurements, with the current one as its postfix."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = tqdm(total=total, disable=not enabled, unit="step", desc="samplegrad demo")

    def __call__(self, what: str) -> None:
        self.bar.set_postfix_str(what, refresh=False)
        self.bar.update()

    def close(self) -> None:
        self.bar.close()


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - start


def run_demo(config: DemoConfig) -> Path:
    """Run every part, write ``config.out/index.html`` and return its path."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    budget = config.budget
    progress = _Progress(_measurement_count(budget), config.progress)
    report = Report("Which gradient estimator? Measured answers from samplegrad")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    try:
        _introduction(report, config)
        with _timed(timings, "Gaussian sweeps"):
            _gaussian_part(report, budget, config.seed, out / "gaussian", progress)
        with _timed(timings, "Bernoulli sweep"):
            _bernoulli_part(report, budget, config.seed, out / "bernoulli", progress)
        with _timed(timings, "relaxation bias"):
            _bias_part(report, budget, config.seed, out / "bias", progress)
        with _timed(timings, "VAE"):
            _vae_part(report, config, out / "vae", progress)
    finally:
        progress.close()
    _closing(report, timings, time.perf_counter() - start)
    return report.write(out)


def _measurement_count(budget: Budget) -> int:
    """Progress steps: one per estimator and point measured, and one per VAE stage."""
    counts = len(budget.sample_counts)
    gaussian = len(GAUSSIAN_SWEEPS) * budget.sweep_points * len(GAUSSIAN_ESTIMATORS)
    gaussian += counts * len(GAUSSIAN_ESTIMATORS)
    bernoulli = (budget.sweep_points + counts) * len(BERNOULLI_ESTIMATORS)
    return gaussian + bernoulli + len(BIAS_ESTIMATORS) + 2 + len(ENCODER_ESTIMATORS)


# ------------------------------------------------------------------------------ the parts


def _introduction(report: Report, config: DemoConfig) -> None:
    report.paragraph(
        "A sample has no derivative, so the gradient of an expectation E_q[f(z)] with "
        "respect to the parameters of q must be estimated. Estimators differ in bias, "
        "variance and cost, and which one wins depends on the problem. This page measures "
        "them: every number below comes from the run that wrote it, next to the exact value "
        "where one is known (closed forms, numerical quadrature, enumeration)."
    )
    report.paragraph(
        "How to read the numbers: 'variance' is the variance of one gradient estimate made "
        "from K samples, measured from R independent estimates; 's.e.' is a standard error; "
        "'SNR' is |mean| / standard deviation of one estimate (larger is better); "
        "'variance x us' multiplies the variance by the microseconds one estimate takes "
        "(forward and backward), the fair comparison when one estimator is cheaper and could "
        "afford more samples."
    )
    command = "samplegrad demo --out " + config.out
    if config.data_dir is not None:
        command += f" --data-dir {config.data_dir}"
    if config.smoke:
        command += " --smoke"
        report.note(
            "Smoke mode: tiny sample sizes, for testing that the demo runs. The numbers on "
            "this page are too noisy to conclude anything; run without --smoke."
        )
    report.paragraph("Reproduce this page with:")
    report.code(command)


def _measure(
    problem: Problem,
    estimators: Sequence[str],
    sample_counts: Sequence[int],
    repeats: int,
    seed: int,
    sweep: tuple[str, Sequence[float]] | None,
    directory: Path,
    progress: Callable[[str], None],
    timing_calls: int,
) -> Result:
    """Run ``compare`` and write its JSON and CSV into ``directory``."""
    result = compare(
        problem, estimators, list(sample_counts), repeats, seed, sweep, progress, timing_calls
    )
    write_json(result, directory)
    write_csv(result, directory)
    return result


def _rows(result: Result, **where: object) -> list[dict[str, Any]]:
    return [row for row in result["rows"] if all(row.get(k) == v for k, v in where.items())]


def _ratio(numerator: float, denominator: float) -> str:
    if denominator == 0:
        return "infinitely many" if numerator > 0 else "1"
    return f"{numerator / denominator:.3g}"


def _gaussian_part(
    report: Report, budget: Budget, seed: int, out: Path, progress: Callable[[str], None]
) -> None:
    report.heading("1. Gaussian: pathwise, score function, measure-valued")
    report.paragraph(
        "x ~ N(mu, sigma^2) with mu = sigma = 1; the gradient of E[f(x; k)] with respect to "
        "mu and sigma, for the three costs of Mohamed et al. (2020, Fig. 2) as k is swept. "
        f"K = {budget.sample_counts[0]} samples per estimate (the leave-one-out baseline "
        f"needs two), R = {budget.repeats} estimates per point. Dots: measured variances with "
        "+-2 standard errors; lines: exact variances (closed forms for the quadratic, "
        "quadrature for the others)."
    )
    for problem, low, high in GAUSSIAN_SWEEPS:
        values = np.linspace(low, high, budget.sweep_points).tolist()
        result = _measure(
            problem,
            GAUSSIAN_ESTIMATORS,
            budget.sample_counts[:1],
            budget.repeats,
            seed,
            ("k", values),
            out / problem.name,
            progress,
            budget.timing_calls,
        )
        report.heading(f"{problem.name}: {problem.formula}", level=3)
        report.image(
            plot_variance_sweep(result, out / problem.name / "variance_vs_k.png"),
            f"{problem.name}: variance of one estimate vs k",
        )
        for sentence in _winners(result, "k"):
            report.paragraph(sentence)
    cos = GaussianCos(mu=1.0, sigma=1.0, k=2.0)
    result = _measure(
        cos,
        GAUSSIAN_ESTIMATORS,
        budget.sample_counts,
        budget.repeats,
        seed,
        None,
        out / "samples",
        progress,
        budget.timing_calls,
    )
    report.heading("Variance against the number of samples", level=3)
    report.image(
        plot_variance_vs_samples(result, out / "samples" / "variance_vs_samples.png"),
        "gaussian-cos at k = 2: variance vs K",
    )
    report.paragraph(_one_over_k(result))
    report.table(
        _table(_rows(result, num_samples=budget.sample_counts[0])),
        caption=f"gaussian-cos at k = 2, K = {budget.sample_counts[0]}",
    )


def _winners(result: Result, swept: str) -> list[str]:
    """Per parameter: which estimator had the lowest measured variance at how many points,
    and how the score function compares with pathwise."""
    sentences = []
    values = result["sweep"]["values"]
    for parameter in dict.fromkeys(row["parameter"] for row in result["rows"]):
        best: dict[str, int] = {}
        ratios = []
        for value in values:
            rows = _rows(result, parameter=parameter, **{swept: value})
            winner = min(rows, key=lambda row: row["variance"])
            best[winner["estimator"]] = best.get(winner["estimator"], 0) + 1
            variance = {row["estimator"]: row["variance"] for row in rows}
            if variance.get("pathwise", 0) > 0 and "score" in variance:
                ratios.append(variance["score"] / variance["pathwise"])
        counts = ", ".join(
            f"{name} at {n}" for name, n in sorted(best.items(), key=lambda item: -item[1])
        )
        sentence = (
            f"Gradient w.r.t. {parameter}: the lowest measured variance was {counts} of the "
            f"{len(values)} values of {swept}."
        )
        if ratios:
            sentence += (
                f" The score function's variance was {min(ratios):.3g} to {max(ratios):.3g} "
                f"times the pathwise one (median {statistics.median(ratios):.3g})."
            )
        sentences.append(sentence)
    return sentences


def _one_over_k(result: Result) -> str:
    """How the measured variance scales with K, per estimator (a log-log slope)."""
    slopes = []
    for estimator in dict.fromkeys(row["estimator"] for row in result["rows"]):
        rows = _rows(result, estimator=estimator, parameter="mu")
        points = [(row["num_samples"], row["variance"]) for row in rows if row["variance"] > 0]
        if len(points) >= 2:
            ks, variances = zip(*points, strict=True)
            slope = np.polyfit(np.log(ks), np.log(variances), 1)[0]
            slopes.append(f"{estimator} {slope:.2f}")
    return (
        "Averaging K independent samples divides an estimator's variance by K: the slopes of "
        "log variance against log K for the gradient w.r.t. mu were "
        + ", ".join(slopes)
        + " (-1 expected; the leave-one-out baseline falls slightly faster, since its baseline "
        "improves with K too)."
    )


def _table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The columns a reader needs, with readable names."""
    return [
        {
            "estimator": row["estimator"],
            "parameter": row["parameter"],
            "mean": row["gradient_mean"],
            "s.e.": row["gradient_se"],
            "exact": row["exact_gradient"],
            "variance": row["variance"],
            "exact variance": row["exact_variance"],
            "SNR": row["snr"],
            "us": row["us_per_estimate"],
            "variance x us": row["work_normalized_variance"],
        }
        for row in rows
    ]


def _bernoulli_part(
    report: Report, budget: Budget, seed: int, out: Path, progress: Callable[[str], None]
) -> None:
    toy = BernoulliToy(phi=0.0, t=0.499)
    report.heading("2. Bernoulli: REINFORCE, leave-one-out, ARM, DisARM, RELAX")
    report.paragraph(
        "b ~ Bernoulli(sigmoid(phi)), f(b) = (b - 0.499)^2: the gradient is tiny "
        "(theta (1 - theta) 0.002) next to f itself, the classic hard case for REINFORCE "
        f"(Tucker et al. 2017). K = {budget.sample_counts[0]} evaluations per estimate "
        "(one antithetic pair for ARM and DisARM), phi swept from -3 to 3. RELAX is shown with "
        "its untrained initial control (training it is what makes it good)."
    )
    values = np.linspace(-3.0, 3.0, budget.sweep_points).tolist()
    sweep = _measure(
        toy,
        BERNOULLI_ESTIMATORS,
        budget.sample_counts[:1],
        budget.repeats,
        seed,
        ("phi", values),
        out / "sweep",
        progress,
        budget.timing_calls,
    )
    report.image(
        plot_variance_sweep(sweep, out / "sweep" / "variance_vs_phi.png"),
        "bernoulli-toy: variance of one estimate vs phi",
    )
    at_zero = _measure(
        toy,
        BERNOULLI_ESTIMATORS,
        budget.sample_counts,
        budget.repeats,
        seed,
        None,
        out / "phi0",
        progress,
        budget.timing_calls,
    )
    first = budget.sample_counts[0]
    report.image(
        plot_snr(at_zero, out / "phi0" / "snr.png", num_samples=first),
        f"signal-to-noise ratio at phi = 0, K = {first}",
    )
    rows = {row["estimator"]: row for row in _rows(at_zero, num_samples=first)}
    score, loo = rows["score"]["variance"], rows["score-loo"]["variance"]
    report.paragraph(
        f"At phi = 0 with K = {first}: REINFORCE's variance was {score:.3g} (exact "
        f"{rows['score']['exact_variance']:.3g}), so its SNR was {rows['score']['snr']:.2g}: "
        f"hundreds of estimates are needed to see the sign of the gradient. The leave-one-out "
        f"baseline cut the variance {_ratio(score, loo)}-fold to {loo:.3g}; ARM reached "
        f"{rows['arm']['variance']:.3g} and DisARM {rows['disarm']['variance']:.3g} (exact "
        f"{rows['disarm']['exact_variance']:.3g}: in one dimension at theta = 1/2 its pair "
        "always differs by the same amount). Away from phi = 0 (see the sweep) ARM and "
        "DisARM stay orders of magnitude below REINFORCE."
    )
    report.table(_table(rows.values()), caption=f"bernoulli-toy at phi = 0, K = {first}")


def _bias_part(
    report: Report, budget: Budget, seed: int, out: Path, progress: Callable[[str], None]
) -> None:
    problem = Bernoulli3D()
    report.heading("3. The price of a relaxation: bias")
    report.paragraph(
        "Gumbel-Softmax (Jang et al. 2017; Maddison et al. 2017) and straight-through "
        "(Bengio et al. 2013) differentiate a continuous stand-in for the discrete sample: "
        "low variance, but the gradient of a different objective. On docs/design.md's "
        "three-dimensional problem f(b) = sum_i (b_i - t_i)^2 the exact gradient is known, so "
        f"the bias shows: R = {budget.repeats * 5} estimates of K = "
        f"{budget.sample_counts[0]} samples each, bias = mean - exact, and its size in "
        "standard errors."
    )
    result = _measure(
        problem,
        BIAS_ESTIMATORS,
        budget.sample_counts[:1],
        budget.repeats * 5,
        seed,
        None,
        out,
        progress,
        budget.timing_calls,
    )
    rows = [
        {
            "estimator": row["estimator"],
            "parameter": row["parameter"],
            "mean": row["gradient_mean"],
            "exact": row["exact_gradient"],
            "bias": row["bias"],
            "s.e.": row["gradient_se"],
            "bias / s.e.": _in_standard_errors(row),
            "variance": row["variance"],
        }
        for row in result["rows"]
    ]
    report.table(rows, caption="bernoulli-3d: bias of each estimator")
    report.paragraph(_bias_sentence(rows))


def _in_standard_errors(row: dict[str, Any]) -> float | None:
    """The bias in standard errors; ``None`` for an exact estimator (no noise: its bias is
    rounding error, and so is its standard error)."""
    if row["gradient_se"] <= 1e-12 * abs(row["exact_gradient"]):
        return None
    return row["bias"] / row["gradient_se"]


def _bias_sentence(rows: Sequence[dict[str, Any]]) -> str:
    def worst(estimator: str) -> tuple[float, float]:
        mine = [r for r in rows if r["estimator"] == estimator]
        row = max(mine, key=lambda r: abs(r["bias"]))
        z = row["bias / s.e."]
        return row["bias"], math.inf if z is None else abs(z)

    parts = []
    for estimator in ("gumbel", "gumbel-hard", "straight-through", "arm", "disarm"):
        bias, z = worst(estimator)
        parts.append(f"{estimator} {bias:+.3g} ({z:.1f} s.e.)")
    return (
        "Largest bias over the three logits: "
        + "; ".join(parts)
        + ". The unbiased estimators (ARM, DisARM, exact enumeration) stay within a few "
        "standard errors of zero, as they should; a relaxation's bias does not shrink with "
        "more samples, only its noise does."
    )


def _load_images(data_dir: str | None) -> tuple[MNIST, MNIST, str | None]:
    """MNIST's train and test splits, or the digits fallback and a note saying why."""
    try:
        train = load_mnist(data_dir, split="train", validation_size=0)
        test = load_mnist(data_dir, split="test")
    except MNISTNotFoundError as error:
        reason = str(error).splitlines()[0]
        note = (
            f"MNIST was not found ({reason}). This part used scikit-learn's bundled 8 x 8 "
            "digits instead (1500 training images, 64 pixels): an offline stand-in, whose "
            "likelihoods say nothing about published MNIST numbers. Give --data-dir or set "
            "SAMPLEGRAD_DATA to use MNIST."
        )
        return load_digits_fallback(split="train"), load_digits_fallback(split="test"), note
    return train, test, None


def _train_vae(
    train: MNIST, test: MNIST, steps: int, seed: int, progress: Callable[[str], None]
) -> tuple[GaussianVAE, list[dict[str, Any]]]:
    """The seed's VAE, trained with Adam (lr 1e-3, batch 128, one pathwise sample) for
    ``steps`` steps; the history has the mean training ELBO of each tenth of the run and the
    test ELBO at its end."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GaussianVAE(latent_dim=20, hidden=400, data_dim=train.images.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    report_every = max(1, steps // 10)
    history: list[dict[str, Any]] = []
    per_epoch = math.ceil(len(train) / 128)
    step, elbo_sum = 0, 0.0
    while step < steps:
        for x, _ in train.batches(128, generator=generator):
            loss, elbo = model.loss(x, 1, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            elbo_sum += elbo.mean().item()
            if step % report_every == 0 or step == steps:
                done = step % report_every or report_every
                history.append(
                    {"epoch": step / per_epoch, "train_elbo": elbo_sum / done, "valid_elbo": None}
                )
                elbo_sum = 0.0
            if step == steps:
                break
    with torch.no_grad():
        x, _ = next(test.batches(len(test), shuffle=False, generator=generator))
        history[-1]["valid_elbo"] = model.elbo(x, 1, generator).mean().item()
    progress(f"trained the VAE for {steps} steps")
    return model, history


def _vae_part(
    report: Report, config: DemoConfig, out: Path, progress: Callable[[str], None]
) -> None:
    budget = config.budget
    out.mkdir(parents=True, exist_ok=True)
    report.heading("4. A real model: the Gaussian VAE")
    train, test, fallback = _load_images(config.data_dir)
    if fallback is not None:
        report.note(fallback)
    data = "MNIST" if fallback is None else "the 8 x 8 digits"
    model, history = _train_vae(train, test, budget.vae_steps, config.seed, progress)
    test_elbo = history[-1]["valid_elbo"]
    report.paragraph(
        f"The seed's VAE (encoder {model.data_dim}-400-20, Bernoulli decoder, analytic KL, the "
        f"pathwise sampling layer sg.nn.Sampling) trained with Adam for {budget.vae_steps} "
        f"steps of 128 dynamically binarized {data} images: test ELBO {test_elbo:.2f} nats "
        "per image (one sample per image; higher is better)."
    )
    generator = torch.Generator().manual_seed(config.seed)
    x, _ = next(test.batches(32, shuffle=False, generator=generator))
    report.image(plot_elbo_curves(history, out / "elbo.png"), "training ELBO")
    report.image(
        plot_reconstructions(model, x, out / "reconstructions.png", generator),
        "test images (odd rows) and their reconstructions (even rows)",
    )
    report.image(
        plot_prior_samples(model, out / "prior_samples.png", generator),
        "decoded samples from the prior",
    )
    progress("plotted the VAE")
    images = test.binarize(test.images[: budget.encoder_images], generator)
    problem = VAEEncoder(model, images, f"the VAE trained above on {data}")
    K = budget.sample_counts[0]
    result = _measure(
        problem,
        ENCODER_ESTIMATORS,
        [K],
        budget.encoder_repeats,
        config.seed,
        None,
        out / "encoder",
        progress,
        budget.timing_calls,
    )
    report.heading("Estimators on the encoder's gradient", level=3)
    report.paragraph(
        f"The gradient of the negative ELBO on {len(images)} test images with respect to the "
        f"encoder's three layers, R = {budget.encoder_repeats} estimates of K = {K} samples "
        "per image, per estimator. For a layer, 'variance' is the trace of the covariance "
        "(summed over its weights) and SNR = |mean| / sqrt(variance)."
    )
    report.image(
        plot_snr(result, out / "encoder" / "snr.png"), "encoder gradient: signal-to-noise ratio"
    )
    report.image(
        plot_work_normalized_variance(result, out / "encoder" / "work.png"),
        "encoder gradient: variance x microseconds",
    )
    report.table(_table(result["rows"]), caption="encoder gradient per layer")
    report.paragraph(_encoder_sentence(result))


def _encoder_sentence(result: Result) -> str:
    rows = {row["estimator"]: row for row in _rows(result) if row["parameter"] == "encoder.hidden"}
    path, score, loo = rows["pathwise"], rows["score"], rows["score-loo"]
    mv = rows["measure-valued"]
    return (
        f"On the first encoder layer the pathwise estimate had SNR {path['snr']:.3g}, the "
        f"score function {score['snr']:.3g} and with the leave-one-out baseline "
        f"{loo['snr']:.3g}; the score function's variance was "
        f"{_ratio(score['variance'], path['variance'])} times the pathwise one. The "
        f"measure-valued estimator reached SNR {mv['snr']:.3g} but evaluates the decoder "
        f"1 + 3 x 20 times per sample: {mv['us_per_estimate'] / path['us_per_estimate']:.3g} "
        "times the pathwise estimate's time. For a differentiable model with a "
        "reparameterizable latent, the reparameterization trick is the one to use."
    )


def _closing(report: Report, timings: dict[str, float], total: float) -> None:
    report.heading("Run")
    rows = [{"part": name, "seconds": seconds} for name, seconds in timings.items()]
    rows.append({"part": "total", "seconds": total})
    report.table(rows, caption="wall time of each part")
    report.paragraph(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, Python "
        f"{platform.python_version()} on {platform.machine()}; estimate times are of one "
        "estimate on one thread (toy problems) or of a full forward and backward pass (VAE)."
    )
