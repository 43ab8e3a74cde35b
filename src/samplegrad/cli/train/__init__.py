"""``samplegrad train vae | bnn | policy``: one module per model, each a
:class:`TrainCommand`: a thin layer over its trainer's ``fit`` (:mod:`samplegrad.lab.training`)
whose options are made from the trainer's config."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from samplegrad.cli._shared import add_config_options, add_threads_option, config_from, writing
from samplegrad.lab.training.config import RunConfig


@dataclasses.dataclass(frozen=True)
class TrainCommand:
    """``samplegrad train NAME``: parse the options into ``config``, ``fit`` it, ``report``
    the summary."""

    name: str
    help: str
    description: str
    config: type[RunConfig]
    fit: Callable[[Any], dict[str, Any]]
    report: Callable[[dict[str, Any], argparse.Namespace], None]
    """Print the summary of a finished run (the options are given for its folder)."""
    options: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    """What the command line adds to the config fields' metadata (their help)."""

    def add(self, models: argparse._SubParsersAction) -> None:
        parser = models.add_parser(self.name, help=self.help, description=self.description)
        add_config_options(
            parser, self.config, {"resume": {"help": self._resume_help()}, **self.options}
        )
        add_threads_option(parser)
        parser.set_defaults(run=self.run, command_parser=parser)

    def _resume_help(self) -> str:
        """``--resume``, with the options a resumed run must repeat (the config's
        ``MUST_MATCH_ON_RESUME``)."""
        *others, last = ["--" + name.replace("_", "-") for name in self.config.MUST_MATCH_ON_RESUME]
        return (
            "continue the run whose checkpoint.pt is in --out; give the same "
            f"{', '.join(others)} and {last} (the others may change)"
        )

    def run(self, args: argparse.Namespace) -> int:
        """Train, then report; a signal that stopped training exits with ``128 + signal`` (as
        a shell reports it)."""
        config = config_from(args, self.config)
        with writing(config.out):
            result = self.fit(config)
        if "interrupted" in result:
            return 128 + result["signal"]
        self.report(result, args)
        return 0


def add(commands: argparse._SubParsersAction) -> None:
    from samplegrad.cli.train import bnn, policy, vae

    parser = commands.add_parser(
        "train",
        help="train models on MNIST",
        description="Train models; see `samplegrad train vae --help`, `samplegrad train bnn "
        "--help` and `samplegrad train policy --help`.",
    )
    models = parser.add_subparsers(title="models", dest="model", required=True)
    for module in (vae, policy, bnn):
        module.COMMAND.add(models)
