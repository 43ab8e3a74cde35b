"""The ``samplegrad`` command: argparse sub-commands over the lab's Python API.

One module per command, each a thin layer that parses its options, calls one function of the
lab, prints, and writes its files:

    compare         :mod:`samplegrad.cli.compare` (gradient estimators against exact values)
    demo            :mod:`samplegrad.cli.demo` (the HTML report of ``make demo``)
    train vae       :mod:`samplegrad.cli.train.vae`
    train bnn       :mod:`samplegrad.cli.train.bnn`
    train policy    :mod:`samplegrad.cli.train.policy`

:func:`main` owns what every command shares. A user's mistake (a
:class:`~samplegrad.cli._shared.UsageError` or one of the lab's errors that mean the same)
ends the command with its usage line and one line ``samplegrad <command>: error: ...``, exit
status 2, never a traceback. The command line needs the ``lab`` extra (matplotlib, tqdm,
scikit-learn); without it, any command says in one line how to install it (exit status 2).
``--threads N`` (training and ``compare``) sets torch's threads for the command. Nothing here
imports matplotlib until a command plots.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from typing import NoReturn

import samplegrad

LAB_MODULES = {"matplotlib": "matplotlib", "tqdm": "tqdm", "sklearn": "scikit-learn"}
"""The modules of the ``lab`` extra that the command line needs, and their packages."""

LAB_INSTALL = "pip install 'samplegrad[lab]'"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status (a
    usage error exits with status 2 through ``SystemExit``, as argparse does)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        missing = [name for name in LAB_MODULES if importlib.util.find_spec(name) is None]
        if missing:
            _lab_missing(missing[0])
        return _run(argv)
    except ModuleNotFoundError as error:
        module = (error.name or "").partition(".")[0]
        if module not in LAB_MODULES:
            raise
        _lab_missing(module)


def _lab_missing(module: str) -> NoReturn:
    print(
        f"samplegrad: error: the command line needs the lab extra ({LAB_MODULES[module]} is "
        f"not installed): {LAB_INSTALL}",
        file=sys.stderr,
    )
    raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The ``samplegrad`` parser with every command (which imports the lab)."""
    from samplegrad.cli import compare, demo, train

    parser = argparse.ArgumentParser(
        prog="samplegrad",
        description="Monte Carlo gradient estimators for PyTorch: command-line tools.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {samplegrad.__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", required=True)
    for command in (compare, demo, train):
        command.add(commands)
    return parser


def _run(argv: Sequence[str]) -> int:
    from samplegrad.cli._shared import LAB_USAGE_ERRORS, UsageError, threads
    from samplegrad.cli.compare import attach_negative_values

    args = build_parser().parse_args(attach_negative_values(argv))
    try:
        with threads(getattr(args, "threads", None)):
            return args.run(args)
    except (UsageError, *LAB_USAGE_ERRORS) as error:
        args.command_parser.error(" ".join(line.strip() for line in str(error).splitlines()))
