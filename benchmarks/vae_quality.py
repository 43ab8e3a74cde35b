"""Quality of the VAEs on MNIST: test ELBO and IWAE bound per estimator, at a fixed budget.

Two tables, written to ``benchmarks/results/vae_quality_{gaussian,discrete}.{json,md}``:

* the Gaussian VAE (784-400-20, dynamic binarization, batch 128, Adam 1e-3, trained on all
  60 000 training images like the reference loop: ``--validation-size 0``) after 1 and 3
  epochs, to compare with a hand-written PyTorch loop (issue 4: -126.4 and -109.1 test ELBO,
  IWAE k=100 -121.0 and -104.7);
* the linear Bernoulli VAE (200 latents) and the categorical VAE (30 x 10) trained for the same
  number of steps with every applicable estimator (2 samples per image and step, so that the
  leave-one-out baseline and the antithetic pairs apply), same seed.

Every run is ``samplegrad train vae`` (``samplegrad.lab.training.vae.fit``); the command line of
each is recorded. The two parts can run side by side (one thread each). Usage::

    python benchmarks/vae_quality.py --part {gaussian,discrete} [--data-dir DIR] [--steps N]
        [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import torch

from samplegrad.lab.training.vae import TrainConfig, fit

DISCRETE = {
    "bernoulli": [
        "score-ma",
        "score-loo",
        "arm",
        "disarm",
        "rebar",
        "relax",
        "gumbel",
        "straight-through",
    ],
    "categorical": ["score-ma", "score-loo", "rebar", "relax", "gumbel", "straight-through"],
}


def command(config: TrainConfig) -> str:
    """The ``samplegrad train vae`` command line of ``config`` (outputs to a scratch folder)."""
    parts = ["samplegrad train vae", f"--latent {config.latent}"]
    if config.arch:
        parts.append(f"--arch {config.arch}")
    if config.estimator:
        parts.append(f"--estimator {config.estimator}")
    parts.append(f"--num-samples {config.num_samples}")
    parts.append(f"--steps {config.steps}" if config.steps else f"--epochs {config.epochs}")
    parts += [
        f"--batch-size {config.batch_size}",
        f"--validation-size {config.validation_size}",
        f"--seed {config.seed}",
    ]
    return " ".join(parts)


def run(config: TrainConfig) -> dict[str, object]:
    summary = fit(config)
    return {
        "command": command(config),
        "latent": config.latent,
        "arch": config.arch,
        "estimator": config.estimator or "pathwise",
        "steps": summary["steps"],
        "test_elbo": summary["test_elbo"],
        "test_iwae": summary["test_iwae"],
        "train_seconds": sum(summary["epoch_seconds"]),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["gaussian", "discrete"], required=True)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--steps", type=int, default=2000, help="steps per discrete run")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:

        def config(**options) -> TrainConfig:
            out = os.path.join(scratch, str(len(rows)))
            return TrainConfig(data_dir=args.data_dir, out=out, progress=False, **options)

        for epochs in (1, 3) if args.part == "gaussian" else ():
            rows.append(run(config(latent="gaussian", epochs=epochs, validation_size=0)))
            print(rows[-1], flush=True)
        for latent, estimators in DISCRETE.items() if args.part == "discrete" else ():
            arch = "linear" if latent == "bernoulli" else None
            for estimator in estimators:
                rows.append(
                    run(
                        config(
                            latent=latent,
                            arch=arch,
                            estimator=estimator,
                            num_samples=2,
                            steps=args.steps,
                        )
                    )
                )
                print(rows[-1], flush=True)
    machine = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"vae_quality_{args.part}.json").write_text(
        json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n"
    )
    lines = [
        "# VAE quality on MNIST (test set, nats per image, IWAE k = 100)",
        "",
        f"torch {machine['torch']}, {machine['threads']} thread(s). Command: "
        f"`python benchmarks/vae_quality.py --part {args.part}`; each row's own command below.",
        "",
        "| latent | estimator | steps | test ELBO | test IWAE | train s | command |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['latent']} | {r['estimator']} | {r['steps']} | {r['test_elbo']:.2f} "
            f"| {r['test_iwae']:.2f} | {r['train_seconds']:.0f} | `{r['command']}` |"
        )
    (args.out / f"vae_quality_{args.part}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
