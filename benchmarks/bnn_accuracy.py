"""Accuracy and calibration of the Bayesian MLP on MNIST at a fixed budget, per layer kind.

The issue's target: at least 97 % test accuracy. Every run is ``samplegrad train bnn``
(``samplegrad.lab.training.bnn.fit_bnn``): the 784-400-400-10 MLP, Adam 1e-3, batch 128, the ELBO
with the KL divided by the 60 000 training images (``--validation-size 0``), prior N(0, 1), initial
posterior scale 1e-3, seed 0; the test metrics use K = 10 posterior draws and 15 ECE bins.
Writes ``benchmarks/results/bnn_accuracy.{json,md}`` with each run's command, the budget
(epochs, steps, training seconds) and the machine. Usage::

    python benchmarks/bnn_accuracy.py [--data-dir DIR] [--epochs 3] [--layers flipout,...]
        [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch

from samplegrad.lab.training.bnn import BNNConfig, fit_bnn

from _machine import cpu_model, source_revision

TARGET = 0.97


def command(config: BNNConfig) -> str:
    """The ``samplegrad train bnn`` command line of ``config`` (outputs to a scratch folder)."""
    return (
        f"samplegrad train bnn --arch {config.arch} --layer {config.layer} "
        f"--epochs {config.epochs} --validation-size {config.validation_size} "
        f"--seed {config.seed}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--layers", default="flipout,local-reparam,naive")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for index, layer in enumerate(args.layers.split(",")):
            config = BNNConfig(
                layer=layer,
                epochs=args.epochs,
                validation_size=0,
                data_dir=args.data_dir,
                out=f"{scratch}/{index}",
                progress=False,
            )
            summary = fit_bnn(config)
            rows.append(
                {
                    "command": command(config),
                    "layer": layer,
                    **{
                        key: summary[key]
                        for key in (
                            "epochs",
                            "steps",
                            "epoch_seconds",
                            "test_accuracy",
                            "test_nll",
                            "test_ece",
                            "entropy_test",
                            "entropy_noise",
                            "eval_samples",
                        )
                    },
                    "train_seconds": sum(summary["epoch_seconds"]),
                    "reaches_target": summary["test_accuracy"] >= TARGET,
                }
            )
            print(rows[-1], flush=True)
    machine = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "source": source_revision(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bnn_accuracy.json").write_text(
        json.dumps({"machine": machine, "target": TARGET, "rows": rows}, indent=2) + "\n"
    )
    lines = [
        "# Bayesian MLP on MNIST: test accuracy, NLL and ECE at a fixed budget",
        "",
        f"784-400-400-10, Adam 1e-3, batch 128, 60 000 training images, K = 10 posterior draws, "
        f"15 ECE bins. torch {machine['torch']}, {machine['threads']} thread(s), "
        f"{machine['cpu']}, source {machine['source']}. Command: "
        f"`python benchmarks/bnn_accuracy.py --epochs {args.epochs}`; each row's own below.",
        "",
        "| layer | epochs | train s | accuracy | NLL | ECE | entropy MNIST / noise | command |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['layer']} | {r['epochs']} | {r['train_seconds']:.0f} "
            f"| {r['test_accuracy']:.4f} | {r['test_nll']:.4f} | {r['test_ece']:.4f} "
            f"| {r['entropy_test']:.3f} / {r['entropy_noise']:.3f} | `{r['command']}` |"
        )
    (args.out / "bnn_accuracy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
