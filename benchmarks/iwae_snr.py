"""Gradient SNR of the importance-weighted bound against K: pathwise (IWAE), DReG and STL.

Rainforth et al. (2018) found the pathwise IWAE gradient's signal-to-noise ratio falling like
``K^-1/2`` for the inference network while rising like ``K^1/2`` for the generative model;
DReG (Tucker et al. 2019) restores ``K^1/2`` for the inference network. This benchmark measures
it twice (``samplegrad.lab.compare.snr``), with the least-squares slope of log SNR against
log K over all K and over K >= 16:

- on their Gaussian model (D = 20, one data point, parameters perturbed from the optimum by
  N(0, 0.01^2)): ``--repeats`` gradient estimates per K in one batched call, the SNR of the
  encoder's ``(A, b)`` and the decoder's ``mu``, measured by ``samplegrad compare --problem
  iwae-gaussian`` (which also gives each row's bias against the exact gradient);
- on the MNIST Gaussian VAE (784-400-20) after ``--vae-epochs`` epochs of ``samplegrad train
  vae`` (ELBO, seed 0): ``--vae-repeats`` estimates of the gradient of the mean bound over
  ``--vae-images`` test images, the SNR of all encoder and all decoder parameters.

Writes ``iwae_snr.{json,md,png}`` into ``--out`` and, with ``--image``, a copy of the plot::

    python benchmarks/iwae_snr.py [--data-dir DIR] [--image docs/images/iwae_snr.png]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from samplegrad.lab.compare.runner import compare
from samplegrad.lab.compare.snr import snr_curves, vae_gradients
from samplegrad.lab.data import load_mnist
from samplegrad.lab.plots.compare import plot_snr_curves
from samplegrad.lab.training.vae import TrainConfig, fit, load_model

from _machine import cpu_model, machine, source_revision

ESTIMATORS = ("pathwise", "dreg", "stl")
KS = (1, 4, 16, 64, 256)

Curve = dict[str, object]
"""``samplegrad compare``'s ``snr_curves`` form (``samplegrad.lab.compare.snr.Curve.as_row``)."""


def signed(slope: float | None) -> str:
    """A slope, ``-`` where none was fitted (an SNR of 0 or infinite)."""
    return "-" if slope is None else f"{slope:+.3f}"


def table(curves: list[Curve]) -> list[str]:
    lines = [
        "| estimator | group | " + " | ".join(f"K={k}" for k in KS) + " | slope | slope K>=16 |",
        "|---|---|" + "---:|" * (len(KS) + 2),
    ]
    for curve in curves:
        values = " | ".join("-" if v is None else f"{v:.3g}" for v in curve["snr"])
        lines.append(
            f"| {curve['estimator']} | {curve['parameter']} | {values} | "
            f"{signed(curve['slope'])} | {signed(curve['tail_slope'])} |"
        )
    return lines


def gaussian_model_curves(repeats: int, seed: int) -> list[Curve]:
    """``samplegrad compare --problem iwae-gaussian`` (all repeats per K in one batched call)."""
    return compare("iwae-gaussian", ESTIMATORS, KS, repeats, seed)["snr_curves"]


def vae_curves(data_dir: str | None, epochs: int, images: int, repeats: int) -> list[Curve]:
    """Train the Gaussian VAE (ELBO, seed 0) for ``epochs``, then measure on test images."""
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(
            latent="gaussian", epochs=epochs, data_dir=data_dir, out=out, progress=False
        )
        fit(config)
        model, _ = load_model(Path(out) / "checkpoint.pt")
    test = load_mnist(data_dir, split="test", binarize="threshold")
    x = next(iter(test.batches(images, shuffle=False)))[0]
    curves = snr_curves(
        lambda estimator, k: vae_gradients(
            model, x, estimator, k, repeats, torch.Generator().manual_seed(k)
        ),
        ESTIMATORS,
        KS,
    )
    return [curve.as_row() for curve in curves]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", help="the MNIST folder (default: $SAMPLEGRAD_DATA, ...)")
    parser.add_argument("--vae-epochs", type=int, default=1)
    parser.add_argument("--vae-images", type=int, default=20)
    parser.add_argument("--vae-repeats", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--image", type=Path, help="also copy the plot here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    parts = {"Gaussian model": gaussian_model_curves(args.repeats, args.seed)}
    parts["MNIST VAE"] = vae_curves(
        args.data_dir, args.vae_epochs, args.vae_images, args.vae_repeats
    )
    seconds = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    command = (
        f"python benchmarks/iwae_snr.py --repeats {args.repeats} --seed {args.seed} "
        f"--vae-epochs {args.vae_epochs} --vae-images {args.vae_images} "
        f"--vae-repeats {args.vae_repeats} --threads {args.threads}"
    )
    result = {
        "command": command,
        "gaussian_model": {"dim": 20, "perturbation": 0.01, "seed": args.seed},
        "repeats": args.repeats,
        "vae": {"epochs": args.vae_epochs, "images": args.vae_images, "repeats": args.vae_repeats},
        "ks": list(KS),
        "curves": parts,
        "seconds": seconds,
        "machine": machine(args.threads),
        "torch": torch.__version__,
        "source": source_revision(),
    }
    (args.out / "iwae_snr.json").write_text(json.dumps(result, indent=2) + "\n")
    plot_snr_curves(parts, args.out / "iwae_snr.png")
    if args.image:
        shutil.copyfile(args.out / "iwae_snr.png", args.image)
    lines = [
        "# Gradient SNR of the IWAE bound against K",
        "",
        f"`{command}` (commit {result['source']}, {cpu_model()}, {args.threads} threads, "
        f"torch {torch.__version__}, {seconds:.0f} s). SNR = |E g| / sqrt(tr Cov g) of a "
        "parameter group's gradient (|E g|^2 debiased); slopes of log SNR against log K. "
        "Expected (Rainforth et al. 2018; Tucker et al. 2019): pathwise encoder -1/2, DReG "
        "encoder +1/2, decoder +1/2 for all, asymptotically in K. STL is biased for K > 1: its "
        "SNR measures the noise around its own mean.",
        "",
    ]
    for title, curves in parts.items():
        setting = (
            f"D = 20, perturbation 0.01, {args.repeats} estimates per K in one batched call"
            if title == "Gaussian model"
            else f"784-400-20 after {args.vae_epochs} epoch(s) of ELBO training, the mean bound "
            f"over {args.vae_images} test images (thresholded), {args.vae_repeats} estimates "
            "per K"
        )
        lines += [f"## {title}", "", setting, "", *table(curves), ""]
    (args.out / "iwae_snr.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
