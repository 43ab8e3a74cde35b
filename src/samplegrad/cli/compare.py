"""``samplegrad compare``: gradient estimators against exact gradients and variances
(:func:`samplegrad.lab.compare.runner.compare`)."""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from samplegrad.cli._shared import add_threads_option, at_least, writing
from samplegrad.lab.compare.runner import (
    BUILT_IN,
    PROBLEM_NAMES,
    PROBLEMS,
    CompareError,
    IWAEGaussian,
    Problem,
    VAEEncoder,
    compare,
    estimator_specs,
    format_table,
    write_csv,
    write_json,
)
from samplegrad.lab.training.config import check_output_folder

DESCRIPTION = (
    "Measure gradient estimators on a problem with a known gradient: per estimator and "
    "parameter, R independent estimates of K samples each (one batched float64 call for the "
    "toy problems): their mean, bias, variance, signal-to-noise ratio, the microseconds of one "
    "estimate (forward and backward) and the work-normalised variance, next to the exact "
    "gradient and variance where known (closed forms, quadrature, enumeration). Sweep one "
    "constant with --k START:STOP:COUNT (or --mu, --sigma, --phi, --t) and several K with "
    "--num-samples 1,2,4. iwae-gaussian measures sg.iwae_bound's gradients (pathwise, dreg, stl, "
    "vimco) instead, and the log-log slope of their SNR against K. Prints a table and writes "
    "DIR/compare.json, DIR/compare.csv and PNG plots."
)

CONSTANTS = {
    "mu": "the Gaussian problems' mean",
    "sigma": "the Gaussian problems' standard deviation",
    "k": "the Gaussian problems' cost constant",
    "phi": "bernoulli-toy's logit",
    "t": "bernoulli-toy's target",
}
"""Problem constants settable from the command line."""


def add(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "compare",
        help="compare gradient estimators against exact gradients and variances",
        description=DESCRIPTION,
        epilog=_problems_help(),
    )
    parser.add_argument(
        "--problem",
        required=True,
        choices=PROBLEM_NAMES,
        help="the expectation whose gradient is estimated (see below)",
    )
    parser.add_argument("--estimators", type=_names, metavar="A,B,...", help=_estimators_help())
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
        metavar="K[,K...]",
        help="samples per gradient estimate; several (1,2,4,8) plot the variance against K "
        f"(default: 2), for {IWAEGaussian.name} the SNR against K (its default: "
        f"{','.join(map(str, IWAEGaussian.default_num_samples))})",
    )
    parser.add_argument(
        "--repeats",
        type=at_least(2),
        metavar="R",
        help="independent gradient estimates per estimator, for the mean and variance "
        f"(default: {PROBLEMS['gaussian-quadratic'].default_repeats} for the toy problems, "
        f"{IWAEGaussian.default_repeats} for {IWAEGaussian.name}, "
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
        type=at_least(1),
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
    add_threads_option(parser)
    parser.set_defaults(run=run, command_parser=parser)


def _problems_help() -> str:
    """The problems and their constants, for the help's epilog."""
    with_constants = [
        f"{name}: {problem.formula} with "
        + ", ".join(f"{k}={v:g}" for k, v in problem.constants().items())
        for name, problem in BUILT_IN.items()
        if problem.constants()
    ]
    fixed = [
        f"{name}: {problem.formula}"
        for name, problem in BUILT_IN.items()
        if not problem.constants()
    ]
    return (
        "problems: "
        + "; ".join([*with_constants, *fixed])
        + f"; vae-encoder: {VAEEncoder.formula} (needs --checkpoint)"
    )


def _estimators_help() -> str:
    specs = estimator_specs().values()
    variants = "; ".join(f"{spec.name}: {spec.summary}" for spec in specs if spec.summary)
    defaults = "; ".join(
        f"{name}: {','.join(problem.default_estimators)}" for name, problem in BUILT_IN.items()
    )
    bound = "; ".join(
        f"{name} takes sg.iwae_bound's gradients instead: {', '.join(problem.bound_gradients)}"
        for name, problem in BUILT_IN.items()
        if problem.bound_gradients
    )
    return (
        f"comma-separated estimator names, from: {', '.join(spec.name for spec in specs)} "
        f"({variants}); {bound}. Default: {defaults}"
    )


def _problem(args: argparse.Namespace) -> tuple[Problem, tuple[str, list[float]] | None]:
    """The problem with the constants of the command line set, and the sweep if any."""
    given = {name: getattr(args, name) for name in CONSTANTS if getattr(args, name) is not None}
    swept = [name for name, values in given.items() if len(values) > 1]
    if len(swept) > 1:
        raise CompareError(f"sweep one constant at a time, got {', '.join(swept)}")
    if args.problem != VAEEncoder.name:
        vae_only = [f"--{o.replace('_', '-')}" for o in ("checkpoint", "data_dir")
                    if getattr(args, o) is not None]  # fmt: skip
        if vae_only:
            raise CompareError(
                f"{' and '.join(vae_only)} {'apply' if len(vae_only) > 1 else 'applies'} to "
                f"--problem vae-encoder only; drop {'them' if len(vae_only) > 1 else 'it'} for "
                f"{args.problem}"
            )
    if args.problem == VAEEncoder.name:
        if given:
            raise CompareError(f"vae-encoder has no constants; drop --{', --'.join(given)}")
        if args.checkpoint is None:
            raise CompareError("vae-encoder needs --checkpoint PATH (from `samplegrad train vae`)")
        problem: Problem = VAEEncoder.from_checkpoint(
            args.checkpoint, args.data_dir, args.images, args.seed
        )
    else:
        problem = BUILT_IN[args.problem]
    for name, values in given.items():
        problem = problem.with_constant(name, values[0])
    return problem, None if not swept else (swept[0], given[swept[0]])


def run(args: argparse.Namespace) -> int:
    """Measure, print the table, write the files (the output folder is checked first)."""
    check_output_folder(args.out, "--out")
    problem, sweep = _problem(args)
    counts = args.num_samples or list(problem.default_num_samples)
    names = args.estimators or _default_names(problem, counts)
    result = compare(problem, names, counts, args.repeats, args.seed, sweep)
    print(format_table(result))
    with writing(args.out):
        paths = [write_json(result, args.out), write_csv(result, args.out)]
        if args.plots:
            # Imported here: the CLI must not import matplotlib until it plots.
            from samplegrad.lab.plots.compare import plot_result

            paths += plot_result(result, Path(args.out))
    print("wrote " + ", ".join(map(str, paths)))
    return 0


def _default_names(problem: Problem, counts: Sequence[int]) -> list[str]:
    """The problem's default estimators that take every one of ``counts`` samples; a note on
    stderr for each left out (``--num-samples 1`` and the leave-one-out baseline). A name the
    user gives is measured or refused, never left out."""
    names = []
    for name in problem.default_estimators:
        refusals = [reason for k in counts if (reason := problem.accepts(name, k))]
        if refusals:
            print(f"note: skipped {name}: {refusals[0]}", file=sys.stderr)
        else:
            names.append(name)
    if not names:
        raise CompareError(
            f"no default estimator of {problem.name} takes --num-samples "
            f"{','.join(map(str, counts))}; give more samples or name estimators with --estimators"
        )
    return names


def attach_negative_values(argv: Sequence[str]) -> list[str]:
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
    parse = at_least(1)
    return [parse(part.strip()) for part in text.split(",")]
