"""The ``samplegrad`` command: argparse sub-commands over the library's Python API.

Each sub-command is a thin layer: it parses and checks its options, calls one function of the
library, prints, and writes its files. Bad requests the library reports (``CompareError``) and
files that cannot be written become argparse errors: the usage line, the message, exit status
2, and no traceback.

Sub-commands:
    compare     gradient estimators against exact gradients and variances
                (:func:`samplegrad.compare.compare`).
    train vae   train a VAE on MNIST with a chosen latent and estimator
                (:func:`samplegrad.train.fit`).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence

from samplegrad.compare import (
    PROBLEMS,
    CompareError,
    compare,
    estimator_specs,
    format_table,
    write_json,
)
from samplegrad.data import Binarization, CorruptDataError, MNISTNotFoundError
from samplegrad.models import ESTIMATOR_NAMES
from samplegrad.train import ARCHS, TrainConfig, TrainError, fit


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samplegrad",
        description="Monte Carlo gradient estimators for PyTorch: command-line tools.",
    )
    commands = parser.add_subparsers(title="commands", dest="command", required=True)
    _add_compare(commands)
    _add_train(commands)
    return parser


def _add_compare(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "compare",
        help="compare gradient estimators against exact gradients and variances",
        description=(
            "Measure gradient estimators on a problem with a known gradient: per estimator and "
            "parameter, the mean and variance of R independent estimates of K samples each "
            "(one batched float64 call), the exact gradient, the exact variance where it is "
            "known in closed form, and the microseconds one estimate takes (forward and "
            "backward). Prints a table and writes the same data to DIR/compare.json."
        ),
        epilog="problems: "
        + "; ".join(
            f"{name}: {problem.formula} with "
            + ", ".join(f"{k}={v:g}" for k, v in problem.constants().items())
            for name, problem in PROBLEMS.items()
        ),
    )
    parser.add_argument(
        "--problem",
        required=True,
        choices=list(PROBLEMS),
        help="the expectation whose gradient is estimated (see below)",
    )
    parser.add_argument(
        "--estimators",
        type=_names,
        metavar="A,B,...",
        help=_estimators_help(),
    )
    parser.add_argument(
        "--num-samples",
        type=_at_least(1),
        default=2,
        metavar="K",
        help="samples per gradient estimate (default: %(default)s)",
    )
    parser.add_argument(
        "--repeats",
        type=_at_least(2),
        default=100_000,
        metavar="R",
        help="independent gradient estimates per estimator, for the mean and variance "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="seed of the random number generator; the same seed gives the same estimates "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        default="compare-out",
        metavar="DIR",
        help="directory for compare.json, created if missing (default: %(default)s)",
    )
    parser.set_defaults(run=_run_compare(parser))


def _estimators_help() -> str:
    specs = estimator_specs().values()
    variants = "; ".join(f"{spec.name}: {spec.summary}" for spec in specs if spec.summary)
    defaults = "; ".join(
        f"{name}: {','.join(problem.default_estimators)}" for name, problem in PROBLEMS.items()
    )
    return (
        f"comma-separated estimator names, from: {', '.join(spec.name for spec in specs)} "
        f"({variants}). Default: {defaults}"
    )


def _run_compare(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """The action of ``compare``: its errors become ``parser``'s usage errors (exit 2)."""

    def run(args: argparse.Namespace) -> int:
        try:
            result = compare(
                args.problem, args.estimators, args.num_samples, args.repeats, args.seed
            )
        except CompareError as error:
            parser.error(str(error))
        print(format_table(result))
        try:
            path = write_json(result, args.out)
        except OSError as error:
            parser.error(f"cannot write {args.out}/compare.json: {error}")
        print(f"wrote {path}")
        return 0

    return run


def _add_train(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train",
        help="train models on MNIST",
        description="Train models on MNIST; see `samplegrad train vae --help`.",
    )
    models = parser.add_subparsers(title="models", dest="model", required=True)
    _add_train_vae(models)


def _add_train_vae(models: argparse._SubParsersAction) -> None:
    defaults = TrainConfig(latent="gaussian")
    archs = "; ".join(f"{latent}: {', '.join(names)}" for latent, names in ARCHS.items())
    parser = models.add_parser(
        "vae",
        help="train a variational autoencoder with a Gaussian, Bernoulli or categorical latent",
        description=(
            "Train a VAE on binarized MNIST with Adam. Writes into DIR: metrics.csv (one row "
            "per epoch: epoch, step, train_elbo, valid_elbo, seconds), checkpoint.pt (every "
            "epoch, and on Ctrl-C or SIGTERM, which stop training after the current step), "
            "metrics.json (test ELBO and IWAE bound in nats per image, the settings, the torch "
            "version) and PNG plots. The same --seed gives the same run on the CPU, also when "
            "it is interrupted and resumed with --resume."
        ),
    )
    parser.add_argument(
        "--latent", required=True, choices=list(ARCHS), help="the latent variables' family"
    )
    parser.add_argument(
        "--arch",
        metavar="NAME",
        help=f"architecture, per latent (the first is the default): {archs}. gaussian "
        "'default' is 784-400-20; '2d' has a 2-D latent and plots its latent map",
    )
    parser.add_argument(
        "--estimator",
        metavar="NAME",
        help="gradient estimator for the discrete latents: "
        + ", ".join(ESTIMATOR_NAMES)
        + " (default: auto); the gaussian latent is trained pathwise (its only choice)",
    )
    parser.add_argument(
        "--num-samples",
        type=_at_least(1),
        default=defaults.num_samples,
        metavar="K",
        help="latent samples per image and step; even for arm and disarm (default: %(default)s)",
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument(
        "--epochs",
        type=_at_least(1),
        default=defaults.epochs,
        metavar="N",
        help="passes over the training split (default: %(default)s)",
    )
    length.add_argument(
        "--steps",
        type=_at_least(1),
        metavar="N",
        help="train for N optimiser steps instead of whole epochs; a metrics row is written "
        "at every epoch boundary and for the final, partial epoch",
    )
    parser.add_argument(
        "--batch-size",
        type=_at_least(1),
        default=defaults.batch_size,
        metavar="B",
        help="images per step (default: %(default)s)",
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=defaults.lr,
        metavar="LR",
        help="Adam learning rate (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=_at_least(0),
        default=defaults.seed,
        metavar="S",
        help="seeds initialisation, data order, binarization and sampling (default: %(default)s)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder with the four MNIST .gz files (default: $SAMPLEGRAD_DATA, then the "
        "per-user cache, then a download)",
    )
    parser.add_argument(
        "--binarize",
        choices=[b.value for b in Binarization],
        default=defaults.binarize,
        help="how grey levels become pixels; dynamic resamples them each time an image is "
        "drawn (default: %(default)s)",
    )
    parser.add_argument(
        "--device",
        default=defaults.device,
        metavar="DEVICE",
        help="cpu, cuda or cuda:N (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        default=defaults.out,
        metavar="DIR",
        help="output folder, created if missing (default: %(default)s)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run whose checkpoint.pt is in --out; give the same --latent, "
        "--arch, --estimator, --num-samples, --batch-size, --seed, --binarize and --device "
        "(--epochs, --steps and --lr may change)",
    )
    parser.add_argument(
        "--iwae-k",
        type=_at_least(1),
        default=defaults.iwae_k,
        metavar="K",
        help="importance samples per test image for the IWAE bound (default: %(default)s)",
    )
    parser.add_argument(
        "--validation-size",
        type=_at_least(0),
        default=defaults.validation_size,
        metavar="N",
        help="training images held out for the validation ELBO; 0 for none (default: %(default)s)",
    )
    parser.add_argument(
        "--eval-batch-size",
        type=_at_least(1),
        default=defaults.eval_batch_size,
        metavar="B",
        help="images per batch when evaluating (default: %(default)s)",
    )
    parser.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress bar (it is shown only on a terminal anyway)",
    )
    parser.set_defaults(run=_run_train_vae(parser))


def _run_train_vae(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """The action of ``train vae``: bad requests and unreadable data exit 2 with the message."""

    def run(args: argparse.Namespace) -> int:
        options = {
            field.name: getattr(args, field.name) for field in dataclasses.fields(TrainConfig)
        }
        try:
            result = fit(TrainConfig(**options))
        except (TrainError, MNISTNotFoundError, CorruptDataError) as error:
            parser.error(str(error))
        except OSError as error:
            parser.error(f"cannot write to {args.out}: {error}")
        if "interrupted" in result:
            return 128 + result["signal"]
        print(
            f"test ELBO {result['test_elbo']:.2f}, IWAE (k={result['iwae_k']}) "
            f"{result['test_iwae']:.2f} nats per image; wrote {args.out}/metrics.json"
        )
        return 0

    return run


def _names(text: str) -> list[str]:
    """``"a, b,c"`` as ``["a", "b", "c"]``; empty names are an error."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers ``>= minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse
