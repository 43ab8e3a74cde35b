"""Gradient SNR of the importance-weighted bound against K: pathwise (IWAE), DReG and STL.

Rainforth et al. (2018) found the pathwise IWAE gradient's signal-to-noise ratio falling like
``K^-1/2`` for the inference network while rising like ``K^1/2`` for the generative model;
DReG (Tucker et al. 2019) restores ``K^1/2`` for the inference network. This benchmark measures
it on their Gaussian model (``samplegrad.lab.compare.snr``: D = 20, one data point, parameters
perturbed from the optimum by N(0, 0.01^2)): ``R`` gradient estimates per K in one batched
call, the SNR of the encoder's ``(A, b)`` and the decoder's ``mu``, and the least-squares slope
of log SNR against log K over all K and over K >= 16. Writes ``iwae_snr.{json,md,png}`` into
``--out`` and, with ``--image``, a copy of the plot. Usage::

    python benchmarks/iwae_snr.py [--repeats 4000] [--image docs/images/iwae_snr.png]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import torch
from matplotlib.figure import Figure

from samplegrad.lab.compare.snr import (
    DECODER,
    ENCODER,
    Curve,
    GaussianModel,
    log_log_slope,
    snr_curves,
)

from _machine import cpu_model, source_revision

ESTIMATORS = ("pathwise", "dreg", "stl")
KS = (1, 4, 16, 64, 256)
TAIL = 16
"""The smallest K of the tail fit: the asymptotic rates hold for large K."""


def tail_slope(curve: Curve) -> float:
    kept = [(k, v) for k, v in zip(curve.ks, curve.snr, strict=True) if k >= TAIL]
    return log_log_slope([k for k, _ in kept], [v for _, v in kept])


def plot(curves: list[Curve], path: Path) -> None:
    figure = Figure(figsize=(9, 3.8), layout="constrained")
    for axes, group in zip(figure.subplots(1, 2), (ENCODER, DECODER), strict=True):
        for curve, marker in zip([c for c in curves if c.group == group], "osD", strict=True):
            axes.loglog(
                curve.ks,
                curve.snr,
                marker=marker,
                label=f"{curve.estimator} (slope {curve.slope:+.2f}, K>={TAIL}: "
                f"{tail_slope(curve):+.2f})",
            )
        axes.set_xlabel("importance samples K")
        axes.set_ylabel("gradient SNR")
        axes.set_title(f"{group} ({'A, b' if group == ENCODER else 'mu'})")
        axes.legend(fontsize=8)
    figure.savefig(path, dpi=120)


def table(curves: list[Curve]) -> list[str]:
    lines = [
        "| estimator | group | " + " | ".join(f"K={k}" for k in KS) + " | slope | slope K>=16 |",
        "|---|---|" + "---:|" * (len(KS) + 2),
    ]
    for curve in curves:
        values = " | ".join(f"{v:.3g}" for v in curve.snr)
        lines.append(
            f"| {curve.estimator} | {curve.group} | {values} | {curve.slope:+.3f} | "
            f"{tail_slope(curve):+.3f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--image", type=Path, help="also copy the plot here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = GaussianModel(seed=args.seed)
    start = time.perf_counter()
    curves = snr_curves(
        lambda estimator, k: model.gradients(
            estimator, k, args.repeats, torch.Generator().manual_seed(args.seed * 1000 + k)
        ),
        ESTIMATORS,
        KS,
    )
    seconds = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    command = f"python benchmarks/iwae_snr.py --repeats {args.repeats} --seed {args.seed}"
    result = {
        "command": command,
        "model": {"dim": model.dim, "perturbation": model.perturbation, "seed": model.seed},
        "repeats": args.repeats,
        "ks": list(KS),
        "curves": [
            {**curve.__dict__, "slope": curve.slope, "tail_slope": tail_slope(curve)}
            for curve in curves
        ],
        "seconds": seconds,
        "machine": {
            "cpu": cpu_model(),
            "threads": args.threads,
            "python": platform.python_version(),
        },
        "torch": torch.__version__,
        "source": source_revision(),
    }
    (args.out / "iwae_snr.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(curves, args.out / "iwae_snr.png")
    if args.image:
        shutil.copyfile(args.out / "iwae_snr.png", args.image)
    lines = [
        "# Gradient SNR of the IWAE bound against K",
        "",
        f"`{command}` (commit {result['source']}, {cpu_model()}, {args.threads} threads, "
        f"torch {torch.__version__}, {seconds:.0f} s). Rainforth et al.'s Gaussian model, "
        f"D = {model.dim}, perturbation {model.perturbation}; SNR = |E g| / sqrt(tr Cov g) "
        f"over {args.repeats} gradient estimates per K (|E g|^2 debiased); slopes of log SNR "
        "against log K. Expected (Rainforth et al. 2018; Tucker et al. 2019): pathwise encoder "
        "-1/2, DReG encoder +1/2, decoder +1/2 for all, asymptotically in K.",
        "",
        *table(curves),
        "",
        "![SNR against K](iwae_snr.png)",
        "",
    ]
    (args.out / "iwae_snr.md").write_text("\n".join(lines))
    print("\n".join(table(curves)))


if __name__ == "__main__":
    main()
