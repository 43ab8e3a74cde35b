"""The ``samplegrad`` command: argparse sub-commands over the library's Python API.

Each sub-command is a thin layer: it parses and checks its options, calls one function of the
library, prints, and writes its files. Bad requests the library reports (``CompareError``) and
files that cannot be written become argparse errors: the usage line, the message, exit status
2, and no traceback.

Sub-commands:
    compare     gradient estimators against exact gradients and variances
                (:func:`samplegrad.lab.compare.runner.compare`).
    train vae   train a VAE on MNIST with a chosen latent and estimator
                (:func:`samplegrad.lab.training.vae.fit`).
    train policy
                REINFORCE on the MNIST contextual bandit or CartPole-v1
                (:func:`samplegrad.lab.training.policy.fit_policy`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from samplegrad.lab.compare.runner import (
    PROBLEMS,
    CompareError,
    Problem,
    VAEEncoder,
    compare,
    estimator_specs,
    format_table,
    write_csv,
    write_json,
)
from samplegrad.lab.data import Binarization, CorruptDataError, MNISTNotFoundError
from samplegrad.lab.models import ESTIMATOR_NAMES
from samplegrad.lab.plots.compare import plot_result
from samplegrad.lab.report.demo import DemoConfig, run_demo
from samplegrad.lab.rl.cartpole import GymnasiumMissingError
from samplegrad.lab.rl.reinforce import BaselineKind
from samplegrad.lab.training import distributed as distributed
from samplegrad.lab.training.bnn import ARCHS as BNN_ARCHS
from samplegrad.lab.training.bnn import BNNConfig, fit_bnn
from samplegrad.lab.training.policy import DEFAULTS, ENVS, PolicyConfig, fit_policy
from samplegrad.lab.training.vae import ARCHS, TrainConfig, TrainError, fit


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(_attach_negative_values(sys.argv[1:] if argv is None else argv))
    return args.run(args)


def _attach_negative_values(argv: Sequence[str]) -> list[str]:
    """``--k -3:3:25`` as ``--k=-3:3:25``: argparse takes a value starting with ``-`` that is
    not a plain negative number for an option, so sweeps from a negative start need this."""
    tokens = list(argv)
    options = {f"--{name}" for name in CONSTANTS}
    joined: list[str] = []
    i = 0
    while i < len(tokens):
        if tokens[i] in options and i + 1 < len(tokens) and _NEGATIVE.match(tokens[i + 1]):
            joined.append(f"{tokens[i]}={tokens[i + 1]}")
            i += 2
        else:
            joined.append(tokens[i])
            i += 1
    return joined


_NEGATIVE = re.compile(r"^-[0-9.]")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samplegrad",
        description="Monte Carlo gradient estimators for PyTorch: command-line tools.",
    )
    commands = parser.add_subparsers(title="commands", dest="command", required=True)
    _add_compare(commands)
    _add_demo(commands)
    _add_train(commands)
    return parser


def _add_compare(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "compare",
        help="compare gradient estimators against exact gradients and variances",
        description=(
            "Measure gradient estimators on a problem with a known gradient: per estimator and "
            "parameter, R independent estimates of K samples each (one batched float64 call "
            "for the toy problems): their mean, bias, variance, signal-to-noise ratio, the "
            "microseconds of one estimate (forward and backward) and the work-normalised "
            "variance, next to the exact gradient and variance where known (closed forms, "
            "quadrature, enumeration). Sweep one constant with --k START:STOP:COUNT (or --mu, "
            "--sigma, --phi, --t) and several K with --num-samples 1,2,4. Prints a table and "
            "writes DIR/compare.json, DIR/compare.csv and PNG plots."
        ),
        epilog="problems: "
        + "; ".join(
            f"{name}: {problem.formula} with "
            + ", ".join(f"{k}={v:g}" for k, v in problem.constants().items())
            for name, problem in PROBLEMS.items()
            if problem.constants()
        )
        + f"; bernoulli-3d: {PROBLEMS['bernoulli-3d'].formula}; vae-encoder: "
        + VAEEncoder.formula
        + " (needs --checkpoint)",
    )
    parser.add_argument(
        "--problem",
        required=True,
        choices=[*PROBLEMS, VAEEncoder.name],
        help="the expectation whose gradient is estimated (see below)",
    )
    parser.add_argument(
        "--estimators",
        type=_names,
        metavar="A,B,...",
        help=_estimators_help(),
    )
    for name, meaning in CONSTANTS.items():
        parser.add_argument(
            f"--{name}",
            type=_values,
            metavar="X|START:STOP:COUNT",
            help=f"{meaning}: a number, or COUNT evenly spaced values to sweep (one constant "
            "at a time)",
        )
    parser.add_argument(
        "--num-samples",
        type=_counts,
        default=[2],
        metavar="K[,K...]",
        help="samples per gradient estimate; several (1,2,4,8) plot the variance against K "
        "(default: 2)",
    )
    parser.add_argument(
        "--repeats",
        type=_at_least(2),
        metavar="R",
        help="independent gradient estimates per estimator, for the mean and variance "
        f"(default: {PROBLEMS['gaussian-quadratic'].default_repeats} for the toy problems, "
        f"{VAEEncoder.default_repeats} for vae-encoder)",
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
        "--checkpoint",
        metavar="PATH",
        help="vae-encoder: a checkpoint.pt written by `samplegrad train vae`",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="vae-encoder: folder with the MNIST files (default: the checkpoint's, then "
        "$SAMPLEGRAD_DATA, the per-user cache, a download)",
    )
    parser.add_argument(
        "--images",
        type=_at_least(1),
        default=100,
        metavar="N",
        help="vae-encoder: test images in the fixed batch (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        default="compare-out",
        metavar="DIR",
        help="directory for compare.json, compare.csv and the plots, created if missing "
        "(default: %(default)s)",
    )
    parser.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNGs")
    parser.set_defaults(run=_run_compare(parser))


CONSTANTS = {
    "mu": "the Gaussian problems' mean",
    "sigma": "the Gaussian problems' standard deviation",
    "k": "the Gaussian problems' cost constant",
    "phi": "bernoulli-toy's logit",
    "t": "bernoulli-toy's target",
}
"""Problem constants settable from the command line."""


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


def _problem(args: argparse.Namespace) -> tuple[Problem, tuple[str, list[float]] | None]:
    """The problem with the constants of the command line set, and the sweep if any."""
    given = {name: getattr(args, name) for name in CONSTANTS if getattr(args, name) is not None}
    swept = [name for name, values in given.items() if len(values) > 1]
    if len(swept) > 1:
        raise CompareError(f"sweep one constant at a time, got {', '.join(swept)}")
    if args.problem == VAEEncoder.name:
        if given:
            raise CompareError(f"vae-encoder has no constants; drop --{', --'.join(given)}")
        if args.checkpoint is None:
            raise CompareError("vae-encoder needs --checkpoint PATH (from `samplegrad train vae`)")
        problem: Problem = VAEEncoder.from_checkpoint(
            args.checkpoint, args.data_dir, args.images, args.seed
        )
    else:
        problem = PROBLEMS[args.problem]
    for name, values in given.items():
        problem = problem.with_constant(name, values[0])
    return problem, None if not swept else (swept[0], given[swept[0]])


def _run_compare(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """The action of ``compare``: its errors become ``parser``'s usage errors (exit 2)."""

    def run(args: argparse.Namespace) -> int:
        try:
            problem, sweep = _problem(args)
            result = compare(
                problem, args.estimators, args.num_samples, args.repeats, args.seed, sweep
            )
        except CompareError as error:
            parser.error(str(error))
        except (MNISTNotFoundError, CorruptDataError) as error:
            parser.error(str(error))
        print(format_table(result))
        try:
            paths = [write_json(result, args.out), write_csv(result, args.out)]
            if args.plots:
                paths += plot_result(result, Path(args.out))
        except OSError as error:
            parser.error(f"cannot write to {args.out}: {error}")
        print("wrote " + ", ".join(map(str, paths)))
        return 0

    return run


def _add_demo(commands: argparse._SubParsersAction) -> None:
    defaults = DemoConfig()
    parser = commands.add_parser(
        "demo",
        help="measure the estimators and write an HTML report (what `make demo` runs)",
        description=(
            "Answer 'which gradient estimator?' with measurements: pathwise vs score function "
            "vs measure-valued on Gaussian costs swept over k, REINFORCE vs leave-one-out vs "
            "ARM vs DisARM vs RELAX on a Bernoulli toy, the bias of Gumbel-Softmax and "
            "straight-through, and a Gaussian VAE trained briefly on MNIST with the estimators "
            "measured on its encoder. Writes DIR/index.html (self-contained) and the raw "
            "results beside it. A few minutes on two CPU cores."
        ),
    )
    parser.add_argument(
        "--out",
        default=defaults.out,
        metavar="DIR",
        help="folder for index.html and the results, created if missing (default: %(default)s)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder with the four MNIST .gz files (default: $SAMPLEGRAD_DATA, then the "
        "per-user cache, then a download; without any, scikit-learn's 8 x 8 digits, said so "
        "on the page)",
    )
    parser.add_argument(
        "--seed",
        type=_at_least(0),
        default=defaults.seed,
        metavar="S",
        help="seeds every measurement and the VAE (default: %(default)s)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, seconds instead of minutes: checks that everything runs",
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no bar")
    parser.set_defaults(run=_run_demo(parser))


def _run_demo(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        config = DemoConfig(args.out, args.data_dir, args.seed, args.smoke, args.progress)
        try:
            path = run_demo(config)
        except CorruptDataError as error:
            parser.error(str(error))
        except OSError as error:
            parser.error(f"cannot write to {args.out}: {error}")
        print(f"report: {path.resolve()}")
        return 0

    return run


def _add_train(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train",
        help="train models on MNIST",
        description="Train models; see `samplegrad train vae --help` and "
        "`samplegrad train policy --help`.",
    )
    models = parser.add_subparsers(title="models", dest="model", required=True)
    _add_train_vae(models)
    _add_train_policy(models)
    _add_train_bnn(models)


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
            "it is interrupted and resumed with --resume. Under `torchrun --nproc-per-node N "
            "-m samplegrad train vae ...` the N processes train one model with "
            "DistributedDataParallel: --batch-size is the global batch (a multiple of N), each "
            "process trains on its share, and rank 0 evaluates and writes the files."
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
        "--seeds",
        type=_at_least(1),
        default=defaults.seeds,
        metavar="N",
        help="train N independent replicas with the seeds S, S+1, ..., S+N-1 together, one "
        "batched step for all; metrics.json then lists every per-run number per seed and "
        "metrics.csv has a row per epoch and seed. Not for the estimators with state "
        "(score-ma, rebar, relax, enumerate) (default: %(default)s)",
    )
    parser.add_argument(
        "--binarize",
        choices=[b.value for b in Binarization],
        default=defaults.binarize,
        help="how grey levels become pixels; dynamic resamples them each time an image is "
        "drawn (default: %(default)s)",
    )
    _add_run_options(
        parser,
        out=defaults.out,
        device=defaults.device,
        same_on_resume="--latent, --arch, --estimator, --num-samples, --batch-size, --seed, "
        "--seeds, --binarize and --device (--epochs, --steps and --lr may change)",
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
        "--compile",
        action="store_true",
        help="compile the training step (loss, backward, Adam) with torch.compile; on CUDA "
        "also capture it as a CUDA graph. The first steps take tens of seconds",
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
        if distributed.is_main():  # under torchrun, every process returns the same summary
            print(
                f"test ELBO {_nats(result['test_elbo'])}, IWAE (k={result['iwae_k']}) "
                f"{_nats(result['test_iwae'])} nats per image; wrote {args.out}/metrics.json"
            )
        return 0

    return run


def _nats(value: float | list[float]) -> str:
    """A number of nats, or one per seed (``--seeds``) with their mean."""
    if isinstance(value, float):
        return f"{value:.2f}"
    listed = ", ".join(f"{v:.2f}" for v in value)
    return f"{sum(value) / len(value):.2f} (mean of {len(value)} seeds: {listed})"


def _add_train_policy(models: argparse._SubParsersAction) -> None:
    bandit, cartpole = DEFAULTS["mnist-bandit"], DEFAULTS["cartpole"]

    def default(name: str) -> str:
        return f"default: {bandit[name]} for mnist-bandit, {cartpole[name]} for cartpole"

    parser = models.add_parser(
        "policy",
        help="train a policy with REINFORCE: the MNIST contextual bandit or CartPole-v1",
        description=(
            "Train a policy with REINFORCE (reward-to-go, leave-one-out, learned or no "
            "baseline) built on samplegrad.Graph, with Adam. mnist-bandit: guess each image's "
            "digit, reward 1 if right (no extra package). cartpole: CartPole-v1 from Gymnasium "
            "(pip install 'samplegrad[rl]'). Writes into DIR: metrics.csv (one row per step: "
            "step, env_steps, train_return, eval_return every --eval-every steps, seconds), "
            "checkpoint.pt (at every evaluation, and on Ctrl-C or SIGTERM), metrics.json "
            "(env, steps, env_steps, eval_return: the greedy policy's mean reward on the test "
            "images or mean return over --eval-episodes episodes, eval_episodes, the settings) "
            "and PNG plots. The same --seed gives the same run on the CPU, also when it is "
            "interrupted and resumed with --resume."
        ),
    )
    parser.add_argument("--env", required=True, choices=ENVS, help="the task")
    parser.add_argument(
        "--steps",
        type=_at_least(1),
        metavar="N",
        help=f"optimiser steps, at most ({default('steps')})",
    )
    parser.add_argument(
        "--env-steps",
        type=_at_least(1),
        metavar="N",
        help="stop once N environment steps (bandit: guesses) have been taken",
    )
    parser.add_argument(
        "--baseline",
        choices=[kind.value for kind in BaselineKind],
        default="loo",
        help="score-function baseline: leave-one-out over the samples, a learned value "
        "network, or none (default: %(default)s)",
    )
    parser.add_argument(
        "--num-samples",
        type=_at_least(1),
        metavar="K",
        help=f"guesses per image, or episodes per step; >= 2 for loo ({default('num_samples')})",
    )
    parser.add_argument(
        "--batch-size",
        type=_at_least(1),
        metavar="B",
        help=f"images per step, mnist-bandit only (default: {bandit['batch_size']})",
    )
    parser.add_argument(
        "--hidden", type=_at_least(1), metavar="H", help=f"hidden units ({default('hidden')})"
    )
    parser.add_argument(
        "--lr", type=float, metavar="LR", help=f"Adam learning rate ({default('lr')})"
    )
    parser.add_argument(
        "--seed",
        type=_at_least(0),
        default=0,
        metavar="S",
        help="seeds the networks, the images or episodes and the actions (default: %(default)s)",
    )
    parser.add_argument(
        "--validation-size",
        type=_at_least(1),
        default=10_000,
        metavar="N",
        help="mnist-bandit: training images held out for validation (default: %(default)s)",
    )
    parser.add_argument(
        "--eval-episodes",
        type=_at_least(1),
        metavar="N",
        help="greedy evaluation episodes (cartpole, fixed seeds) or test images "
        f"(mnist-bandit, each a one-step episode) ({default('eval_episodes')})",
    )
    parser.add_argument(
        "--eval-every",
        type=_at_least(1),
        metavar="N",
        help=f"steps between validations and checkpoints ({default('eval_every')})",
    )
    parser.add_argument(
        "--target-return",
        type=float,
        metavar="R",
        help="stop once a validation score reaches R (e.g. 475 for cartpole)",
    )
    _add_run_options(
        parser,
        out="policy-out",
        device="cpu",
        same_on_resume="--env, --num-samples, --batch-size, --hidden, --baseline, --seed and "
        "--device",
        data="mnist-bandit: ",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the step: for mnist-bandit the whole surrogate and the Adam step; "
        "for cartpole (whose rollout steps the environment on the host) the networks and Adam",
    )
    parser.set_defaults(run=_run_train_policy(parser))


def _run_train_policy(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """The action of ``train policy``: bad requests, missing Gymnasium and unreadable data
    exit 2 with the message."""

    def run(args: argparse.Namespace) -> int:
        options = {
            field.name: getattr(args, field.name) for field in dataclasses.fields(PolicyConfig)
        }
        try:
            result = fit_policy(PolicyConfig(**options))
        except (TrainError, GymnasiumMissingError, MNISTNotFoundError, CorruptDataError) as error:
            parser.error(str(error))
        except OSError as error:
            parser.error(f"cannot write to {args.out}: {error}")
        if "interrupted" in result:
            return 128 + result["signal"]
        what = (
            "mean reward (greedy) on" if args.env == "mnist-bandit" else "mean greedy return over"
        )
        noun = "test images" if args.env == "mnist-bandit" else "episodes"
        print(
            f"{what} {result['eval_episodes']} {noun}: {result['eval_return']:.4g} after "
            f"{result['steps']} steps ({result['env_steps']} environment steps); "
            f"wrote {args.out}/metrics.json"
        )
        return 0

    return run


def _add_train_bnn(models: argparse._SubParsersAction) -> None:
    defaults = BNNConfig()
    parser = models.add_parser(
        "bnn",
        help="train a Bayesian neural network (Flipout, local reparameterization or naive) "
        "to classify MNIST",
        description=(
            "Train a Bayesian MLP (784-400-400-10) or small CNN on MNIST grey levels with Adam "
            "on the ELBO per training example: mean NLL of the batch under one weight draw + "
            "KL(q || p) / N_train, where N_train is the number of training images (60000 - "
            "--validation-size), so the KL counts once per pass over the data. Evaluates "
            "with K posterior draws (the predictive is the mean of the K softmaxes): test "
            "accuracy, NLL (nats per image), expected calibration error (15 equal-width "
            "confidence bins), predictive entropy on MNIST and on noise images. Writes into "
            "DIR: metrics.csv (a row per epoch), checkpoint.pt (every epoch, and on Ctrl-C or "
            "SIGTERM), metrics.json and PNG plots (calibration.png, entropy.png, curves.png)."
        ),
    )
    parser.add_argument(
        "--arch",
        choices=list(BNN_ARCHS),
        default=defaults.arch,
        help="mlp: 784-400-400-10; cnn: two 5x5 convolutions (16 and 32 channels, 2x2 max "
        "pooling) and 1568-128-10 (default: %(default)s)",
    )
    parser.add_argument(
        "--layer",
        choices=["flipout", "local-reparam", "naive"],
        default=defaults.layer,
        help="how weights are sampled: Flipout (pseudo-independent per example), local "
        "reparameterization (pre-activations per example) or naive (one draw per batch) "
        "(default: %(default)s)",
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
        "--steps", type=_at_least(1), metavar="N", help="train for N optimiser steps instead"
    )
    parser.add_argument(
        "--batch-size",
        type=_at_least(1),
        default=defaults.batch_size,
        metavar="B",
        help="images per step (default: %(default)s)",
    )
    parser.add_argument(
        "--lr", type=float, default=defaults.lr, metavar="LR", help="Adam (default: %(default)s)"
    )
    parser.add_argument(
        "--prior-scale",
        type=float,
        default=defaults.prior_scale,
        metavar="S",
        help="standard deviation of every weight's N(0, S^2) prior (default: %(default)s)",
    )
    parser.add_argument(
        "--init-scale",
        type=float,
        default=defaults.init_scale,
        metavar="S",
        help="every posterior standard deviation at initialisation (default: %(default)s)",
    )
    parser.add_argument(
        "--eval-samples",
        type=_at_least(1),
        default=defaults.eval_samples,
        metavar="K",
        help="posterior draws averaged by the predictive when evaluating (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=_at_least(0),
        default=defaults.seed,
        metavar="S",
        help="seeds initialisation, data order and weight noise (default: %(default)s)",
    )
    parser.add_argument(
        "--validation-size",
        type=_at_least(0),
        default=defaults.validation_size,
        metavar="N",
        help="training images held out for validation; 0 trains on all 60000 "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--eval-batch-size",
        type=_at_least(1),
        default=defaults.eval_batch_size,
        metavar="B",
        help="images per batch when evaluating (default: %(default)s)",
    )
    _add_run_options(
        parser,
        out=defaults.out,
        device=defaults.device,
        same_on_resume="--arch, --layer, --batch-size, --prior-scale, --init-scale, --seed, "
        "--validation-size and --device",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="compile the loss and the Adam step with torch.compile (on CUDA also a CUDA "
        "graph); the first steps take tens of seconds",
    )
    parser.set_defaults(run=_run_train_bnn(parser))


def _run_train_bnn(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """The action of ``train bnn``: bad requests and unreadable data exit 2 with the message."""

    def run(args: argparse.Namespace) -> int:
        options = {field.name: getattr(args, field.name) for field in dataclasses.fields(BNNConfig)}
        try:
            result = fit_bnn(BNNConfig(**options))
        except (TrainError, MNISTNotFoundError, CorruptDataError) as error:
            parser.error(str(error))
        except OSError as error:
            parser.error(f"cannot write to {args.out}: {error}")
        if "interrupted" in result:
            return 128 + result["signal"]
        print(
            f"test accuracy {result['test_accuracy']:.4f}, NLL {result['test_nll']:.4f}, "
            f"ECE {result['test_ece']:.4f} (K={result['eval_samples']}); "
            f"wrote {args.out}/metrics.json"
        )
        return 0

    return run


def _add_run_options(
    parser: argparse.ArgumentParser, *, out: str, device: str, same_on_resume: str, data: str = ""
) -> None:
    """The options every ``train`` command shares: data, device, output, resume, progress.

    ``same_on_resume`` lists the options a resumed run must repeat; ``data`` prefixes the
    ``--data-dir`` help (e.g. the environment that uses it).
    """
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help=f"{data}folder with the four MNIST .gz files (default: $SAMPLEGRAD_DATA, then the "
        "per-user cache, then a download)",
    )
    parser.add_argument(
        "--device",
        default=device,
        metavar="DEVICE",
        help="cpu, cuda or cuda:N (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        default=out,
        metavar="DIR",
        help="output folder, created if missing (default: %(default)s)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help=f"continue the run whose checkpoint.pt is in --out; give the same {same_on_resume}",
    )
    parser.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress bar (it is shown only on a terminal anyway)",
    )


def _names(text: str) -> list[str]:
    """``"a, b,c"`` as ``["a", "b", "c"]``; empty names are an error."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _values(text: str) -> list[float]:
    """``"0.5"`` as ``[0.5]``; ``"-3:3:25"`` as 25 evenly spaced values from -3 to 3."""
    parts = text.split(":")
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number or START:STOP:COUNT, got {text!r}"
        ) from None
    if not all(math.isfinite(x) for x in numbers):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    if len(numbers) == 1:
        return numbers
    if len(numbers) != 3 or not numbers[2].is_integer() or numbers[2] < 2:
        raise argparse.ArgumentTypeError(
            f"a sweep is START:STOP:COUNT with an integer COUNT >= 2, got {text!r}"
        )
    start, stop, count = numbers[0], numbers[1], int(numbers[2])
    return [start + (stop - start) * i / (count - 1) for i in range(count)]


def _counts(text: str) -> list[int]:
    """``"1,2,4"`` as ``[1, 2, 4]``, each an integer >= 1."""
    parse = _at_least(1)
    return [parse(part.strip()) for part in text.split(",")]


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
