"""The ``samplegrad`` command: argparse sub-commands over the library's Python API.

Each sub-command is a thin layer: it parses and checks its options, calls one function of the
library, prints, and writes its files. Bad requests the library reports (``CompareError``) and
files that cannot be written become argparse errors: the usage line, the message, exit status
2, and no traceback.

Sub-commands:
    compare   gradient estimators against exact gradients and variances
              (:func:`samplegrad.compare.compare`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from samplegrad.compare import (
    PROBLEMS,
    CompareError,
    compare,
    estimator_specs,
    format_table,
    write_json,
)


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
