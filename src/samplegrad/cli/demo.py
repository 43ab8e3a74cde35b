"""``samplegrad demo``: measure the estimators and write an HTML report
(:func:`samplegrad.lab.report.demo.run_demo`)."""

from __future__ import annotations

import argparse

from samplegrad.cli._shared import add_config_options, config_from, writing
from samplegrad.lab.report.demo import DemoConfig, run_demo

DESCRIPTION = (
    "Answer 'which gradient estimator?' with measurements: pathwise vs score function vs "
    "measure-valued on Gaussian costs swept over k, REINFORCE vs leave-one-out vs ARM vs "
    "DisARM vs RELAX on a Bernoulli toy, the bias of Gumbel-Softmax and straight-through, and a "
    "Gaussian VAE trained briefly on MNIST with the estimators measured on its encoder. Writes "
    "DIR/index.html (self-contained) and the raw results beside it. A few minutes on two CPU "
    "cores."
)

OPTIONS = {
    "out": {
        "metavar": "DIR",
        "help": "folder for index.html and the results, created if missing",
    },
    "data_dir": {
        "metavar": "DIR",
        "help": "folder with the four MNIST .gz files (default: $SAMPLEGRAD_DATA, then the "
        "per-user cache, then a download; without any, scikit-learn's 8 x 8 digits, said so "
        "on the page)",
    },
    "seed": {"metavar": "S", "minimum": 0, "help": "seeds every measurement and the VAE"},
    "smoke": {"help": "tiny sizes, seconds instead of minutes: checks that everything runs"},
    "progress": {"help": "no bar"},
}
"""The help of :class:`~samplegrad.lab.report.demo.DemoConfig`'s fields, whose metadata carry
none."""


def add(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "demo",
        help="measure the estimators and write an HTML report (what `make demo` runs)",
        description=DESCRIPTION,
    )
    add_config_options(parser, DemoConfig, OPTIONS)
    parser.set_defaults(run=run, command_parser=parser)


def run(args: argparse.Namespace) -> int:
    """Measure, write the report, print where it is."""
    with writing(args.out):
        path = run_demo(config_from(args, DemoConfig))
    print(f"report: {path.resolve()}")
    return 0
